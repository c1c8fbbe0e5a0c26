"""SAM-Med2D module for 3D Slicer.

The module is the home of the SAM-Med2D interactive segmentation tools. The heavy work
(model, server, client) lives in the engine package ``sammed2d`` that ships next to this
file; this module only reports on it and, later, exposes its settings. Qt is used only in
the Widget class so that the Logic stays usable from scripts and headless runs.
"""

from __future__ import annotations

import importlib
from typing import Optional

import slicer
from SAMMed2DLib.engine import ENGINE_PACKAGE, EngineStatus, engineStatus
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)



#
# SAMMed2D
#


class SAMMed2D(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAM-Med2D"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SAMMed2D developers"]
        self.parent.helpText = (
            "This module hosts the SAM-Med2D Segment Editor effect (interactive segmentation of "
            "2D slices and 3D volumes from clicks and boxes) and the settings of the model server "
            "that runs the model. The panel shows which SAM-Med2D engine is installed."
        )
        self.parent.acknowledgementText = (
            "Built on SAM-Med2D: J. Cheng et al., \"SAM-Med2D\", arXiv:2308.16184 (2023), "
            "https://arxiv.org/abs/2308.16184, and on LiteMedSAM, the lightweight MedSAM model by the "
            "MedSAM authors (J. Ma et al.), used as the default model because it runs on a CPU."
        )


#
# SAMMed2DWidget
#


class SAMMed2DWidget(ScriptedLoadableModuleWidget):
    """Module panel. Kept thin: it only displays what the logic reports."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic: Optional[SAMMed2DLogic] = None
        self.engineStatusLabel = None
        self.refreshButton = None

    def setup(self) -> None:
        """Build the "Model" section; the engine is imported only when the status is refreshed."""
        ScriptedLoadableModuleWidget.setup(self)
        import ctk
        import qt

        self.logic = SAMMed2DLogic()

        modelCollapsibleButton = ctk.ctkCollapsibleButton()
        modelCollapsibleButton.text = "Model"
        self.layout.addWidget(modelCollapsibleButton)
        modelFormLayout = qt.QFormLayout(modelCollapsibleButton)

        self.engineStatusLabel = qt.QLabel()
        self.engineStatusLabel.wordWrap = True
        self.engineStatusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        modelFormLayout.addRow("Engine:", self.engineStatusLabel)

        # Lets the user re-check after installing or updating the engine without reloading the module.
        self.refreshButton = qt.QPushButton("Refresh")
        self.refreshButton.toolTip = "Check again whether the SAM-Med2D engine package can be imported."
        self.refreshButton.connect("clicked(bool)", self.onRefreshButton)
        modelFormLayout.addRow(self.refreshButton)

        self.layout.addStretch(1)
        self.updateEngineStatus()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self.refreshButton is not None:
            self.refreshButton.disconnect("clicked(bool)", self.onRefreshButton)

    def onRefreshButton(self, checked: bool = False) -> None:
        self.updateEngineStatus()

    def updateEngineStatus(self) -> None:
        """Show the engine version, or say plainly why it cannot be used."""
        if self.logic is None or self.engineStatusLabel is None:
            return
        status = self.logic.engineStatus()
        if status.version is not None:
            self.engineStatusLabel.text = f"{ENGINE_PACKAGE} {status.version}"
        else:
            self.engineStatusLabel.text = (
                f"The SAM-Med2D engine package '{ENGINE_PACKAGE}' could not be imported: "
                f"{status.error}. Reinstall the SAMMed2D extension."
            )


#
# SAMMed2DLogic
#


class SAMMed2DLogic(ScriptedLoadableModuleLogic):
    """Non-GUI side of the module, usable from the Python console and from scripts."""

    def engineStatus(self) -> EngineStatus:
        """Version of the engine package shipped with the extension, or why it cannot be imported."""
        return engineStatus()


#
# SAMMed2DTest
#


class SAMMed2DTest(ScriptedLoadableModuleTest):
    """Self-test run inside Slicer (Reload and Test, or ctest via slicer_add_python_unittest)."""

    def setUp(self) -> None:
        """Start from an empty scene so that tests do not depend on each other."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_EngineVersion()

    def test_EngineVersion(self) -> None:
        """The engine shipped with the module must be importable and report its version."""
        self.delayDisplay("Checking the SAM-Med2D engine version")
        status = SAMMed2DLogic().engineStatus()
        self.assertIsNone(status.error)
        engine = importlib.import_module(ENGINE_PACKAGE)
        self.assertEqual(status.version, str(engine.__version__))
        self.delayDisplay(f"Engine version {status.version}: test passed")
