"""SAM-Med2D Training module for 3D Slicer.

Companion of the SAMMed2D module for researchers: adapter fine-tuning and Dice benchmarking
of SAM-Med2D models over labelled volumes. It is meant to run headless as well as from the
module panel:

    Slicer --no-main-window --python-script SAMMed2DTraining.py -- version
    Slicer --no-main-window --python-script SAMMed2DTraining.py -- benchmark --case CT.nrrd CT.seg.nrrd --out results
    Slicer --no-main-window --python-script SAMMed2DTraining.py -- train --case CT.nrrd CT.seg.nrrd --out run

From the Python console, the logic runs on nodes of the scene:

    logic = slicer.util.getModuleLogic("SAMMed2DTraining")
    output = logic.benchmark([(volumeNode, segmentationNode)], "/tmp/results", modes=["box", "propagate-box"])

The engine package ``sammed2d`` ships with the SAMMed2D module, whose directory Slicer puts
on the Python path. Qt is used only in the Widget class; the logic's work is done in
``SAMMed2DTrainingLib`` (Qt-free, tested with slicer-core).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import slicer
import slicer.util  # exit() ends headless runs; imported explicitly rather than relying on start-up imports
from SAMMed2DLib.engine import ENGINE_PACKAGE, EngineStatus, engineStatus
from SAMMed2DTrainingLib.commandline import runCommandLine, scriptArguments
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)



#
# SAMMed2DTraining
#


class SAMMed2DTraining(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAM-Med2D Training"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["SAMMed2D"]
        self.parent.contributors = ["SAMMed2D developers"]
        self.parent.helpText = (
            "Adapter fine-tuning and Dice benchmarking of SAM-Med2D models on your own labelled "
            "volumes. It can run without the user interface: "
            "<code>Slicer --no-main-window --python-script SAMMed2DTraining.py -- ...</code> "
            "(for example <code>-- version</code> prints the engine version)."
        )
        self.parent.acknowledgementText = (
            "Follows the training and evaluation recipe of SAM-Med2D: J. Cheng et al., "
            "\"SAM-Med2D\", arXiv:2308.16184 (2023), https://arxiv.org/abs/2308.16184. "
            "LiteMedSAM, the lightweight MedSAM model by the MedSAM authors (J. Ma et al.), "
            "is available as a baseline."
        )


#
# SAMMed2DTrainingWidget
#


class SAMMed2DTrainingWidget(ScriptedLoadableModuleWidget):
    """Module panel. Kept thin: it only displays what the logic reports."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic: Optional[SAMMed2DTrainingLogic] = None
        self.engineStatusLabel = None

    def setup(self) -> None:
        """Build the "Model" section; the engine is imported lazily through the logic."""
        ScriptedLoadableModuleWidget.setup(self)
        import ctk
        import qt

        self.logic = SAMMed2DTrainingLogic()

        modelCollapsibleButton = ctk.ctkCollapsibleButton()
        modelCollapsibleButton.text = "Model"
        self.layout.addWidget(modelCollapsibleButton)
        modelFormLayout = qt.QFormLayout(modelCollapsibleButton)

        self.engineStatusLabel = qt.QLabel()
        self.engineStatusLabel.wordWrap = True
        self.engineStatusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        modelFormLayout.addRow("Engine:", self.engineStatusLabel)

        self.layout.addStretch(1)
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
                f"{status.error}. It ships with the SAMMed2D module of this "
                "extension; reinstall the extension."
            )


#
# SAMMed2DTrainingLogic
#


class SAMMed2DTrainingLogic(ScriptedLoadableModuleLogic):
    """Non-GUI side of the module, used by the panel and by headless runs alike."""

    def engineStatus(self) -> EngineStatus:
        """Version of the engine package shipped with the extension, or why it cannot be imported."""
        return engineStatus()

    def benchmark(self, cases: Sequence[tuple], out: Union[str, Path], **options):
        """Benchmark on (volume node, segmentation or label map node) pairs, or (image, labels) files.

        Options as ``SAMMed2DTrainingLib.runs.benchmarkCases`` (models, modes, preset, axis, labels, seed …).
        Writes summary.json, CSVs, a Markdown table and plots to ``out``; returns the engine's BenchmarkOutput.
        """
        from SAMMed2DTrainingLib.runs import benchmarkCases  # imports torch: only when asked

        return benchmarkCases(cases, out, **options)

    def train(self, cases: Sequence[tuple], out: Union[str, Path], valFraction: float = 0.2,
              axes: Sequence[str] = ("K",), preset: str = "minmax", **config):
        """Fine-tune on (volume node, segmentation node) pairs or files; volumes are split whole for validation.

        ``config`` holds ``sammed2d.training.trainer.TrainingConfig`` fields (model, checkpoint, trainable, epochs …).
        """
        from sammed2d.training.trainer import TrainingConfig
        from SAMMed2DTrainingLib.runs import trainCases

        return trainCases(cases, TrainingConfig(out=Path(out), **config), valFraction, axes, preset)


#
# SAMMed2DTrainingTest
#


class SAMMed2DTrainingTest(ScriptedLoadableModuleTest):
    """Self-test run inside Slicer (Reload and Test, or ctest via slicer_add_python_unittest)."""

    def setUp(self) -> None:
        """Start from an empty scene so that tests do not depend on each other."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_EngineVersion()
        self.test_CommandLineVersion()

    def test_EngineVersion(self) -> None:
        """The engine shipped with the extension must be importable and report its version."""
        self.delayDisplay("Checking the SAM-Med2D engine version")
        status = SAMMed2DTrainingLogic().engineStatus()
        self.assertIsNone(status.error)
        engine = importlib.import_module(ENGINE_PACKAGE)
        self.assertEqual(status.version, str(engine.__version__))
        self.delayDisplay(f"Engine version {status.version}: test passed")

    def test_CommandLineVersion(self) -> None:
        """The headless entry point succeeds for `version` and fails cleanly on a bad command."""
        self.delayDisplay("Checking the command-line entry point")
        self.assertEqual(runCommandLine(["version"]), 0)
        self.assertEqual(runCommandLine(["no-such-command"]), 1)
        self.delayDisplay("Command-line entry point: test passed")


#
# Headless entry point (SAMMed2DTrainingLib.commandline: runCommandLine, scriptArguments)
#


if __name__ == "__main__":
    # `--python-script` does not make Slicer exit by itself: always end with an explicit status.
    status = runCommandLine(scriptArguments(sys.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    slicer.util.exit(status)
