"""SAM-Med2D Training module for 3D Slicer.

Companion of the SAMMed2D module for researchers: adapter fine-tuning and Dice benchmarking
of SAM-Med2D models over labelled volumes. It is meant to run headless as well as from the
module panel:

    Slicer --no-main-window --python-script SAMMed2DTraining.py -- version

The engine package ``sammed2d`` ships with the SAMMed2D module, whose directory Slicer puts
on the Python path. Qt is used only in the Widget class.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from typing import List, Optional, Sequence

import slicer
import slicer.util  # exit() ends headless runs; imported explicitly rather than relying on start-up imports
from SAMMed2DLib.engine import ENGINE_PACKAGE, EngineStatus, engineStatus
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
        self.parent.dependencies = []
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
# Headless entry point
#


def scriptArguments(argv: Sequence[str]) -> List[str]:
    """Arguments meant for this script: those after the first "--".

    Slicer passes the arguments that follow the script path on to sys.argv; the "--" keeps
    ours apart from Slicer's own options. Without "--", everything after the script path is used.
    """
    argv = list(argv)
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv[1:]


def buildArgumentParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="Slicer --no-main-window --python-script SAMMed2DTraining.py --",
        description="SAM-Med2D adapter fine-tuning and Dice benchmarking, run headless inside Slicer.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subcommands.required = True
    subcommands.add_parser("version", help="print the version of the SAM-Med2D engine and exit")
    return parser


def runCommandLine(args: Sequence[str]) -> int:
    """Run one command; return the process exit status (0 success, 1 failure). Never raises."""
    parser = buildArgumentParser()
    try:
        options = parser.parse_args(list(args))
    except SystemExit as stop:  # argparse exits on --help (status 0) and on bad arguments (status 2).
        return 0 if stop.code in (0, None) else 1

    try:
        if options.command == "version":
            status = SAMMed2DTrainingLogic().engineStatus()
            if status.version is None:
                print(f"error: cannot import '{ENGINE_PACKAGE}': {status.error}", file=sys.stderr)
                return 1
            print(f"{ENGINE_PACKAGE} {status.version}")
            return 0
        print(f"error: unknown command {options.command!r}", file=sys.stderr)
        return 1
    except Exception:  # A failed run must still end with a status, not leave Slicer running.
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    # `--python-script` does not make Slicer exit by itself: always end with an explicit status.
    status = runCommandLine(scriptArguments(sys.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    slicer.util.exit(status)
