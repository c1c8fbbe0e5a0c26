"""SAM-Med2D Training module for 3D Slicer.

Companion of the SAMMed2D module for researchers: adapter fine-tuning and Dice benchmarking
of SAM-Med2D models over labelled volumes. It is meant to run headless as well as from the
module panel:

    Slicer --no-main-window --python-script SAMMed2DTraining.py -- version
    Slicer --no-main-window --python-script SAMMed2DTraining.py -- benchmark --case CT.nrrd CT.seg.nrrd --out results
    Slicer --no-main-window --python-script SAMMed2DTraining.py -- train --case CT.nrrd CT.seg.nrrd --out run

From the Python console, the logic runs on nodes of the scene. Benchmarks and training run as a child
process (``sammed2d benchmark`` / ``sammed2d train``), so Slicer stays responsive and never loads torch:

    logic = slicer.util.getModuleLogic("SAMMed2DTraining")
    run = logic.startBenchmark([(volumeNode, segmentationNode)], "/tmp/results", modes=["box", "propagate-box"])
    run.state, run.progress, run.log_lines()      # poll; run.cancel() stops it

The engine package ``sammed2d`` ships with the SAMMed2D module, whose directory Slicer puts
on the Python path. Qt is used only in the Widget class; the logic's work is done in
``SAMMed2DTrainingLib`` (Qt-free, tested with slicer-core).
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import slicer
import slicer.util  # exit() ends headless runs; imported explicitly rather than relying on start-up imports
from SAMMed2DLib.engine import EngineStatus, engineStatus
from SAMMed2DLib.selftest import EngineSelfTest
from SAMMed2DTrainingLib.commandline import runCommandLine, scriptArguments
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

if TYPE_CHECKING:
    from SAMMed2DTrainingLib.childrun import ChildRun


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
            "volumes. Both run in a separate process with progress and a log, and can be cancelled. "
            "They can also run without the user interface: "
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
    """Module panel: the engine status, and a Benchmark and a Fine-tune section that each start one child run.

    Kept thin: the logic starts the run; a timer shows its progress and log, so Slicer stays responsive while the
    child works for minutes or hours.
    """

    POLL_MSEC = 500
    TITLES = {"benchmark": "Benchmark", "training": "Fine-tune"}

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic: Optional[SAMMed2DTrainingLogic] = None
        self.engineStatusLabel = None
        self.timer = None
        self.controls: dict[str, types.SimpleNamespace] = {}
        self.runs: dict[str, Optional["ChildRun"]] = {kind: None for kind in self.TITLES}

    def setup(self) -> None:
        """Build the sections; the engine is imported lazily through the logic."""
        ScriptedLoadableModuleWidget.setup(self)
        from SAMMed2DLib.panel import collapsibleForm, pollTimer, selectableLabel

        self.logic = SAMMed2DTrainingLogic()
        self.engineStatusLabel = selectableLabel()
        collapsibleForm(self.layout, "Model").addRow("Engine:", self.engineStatusLabel)
        for kind in self.TITLES:
            self.setupRunSection(kind)
        self.layout.addStretch(1)
        self.timer = pollTimer(self.POLL_MSEC, self.onPoll)
        self.updateEngineStatus()
        self.onPoll()

    def setupRunSection(self, kind: str) -> None:
        """Inputs, options, Start/Cancel, progress and log of one kind of run ("benchmark" or "training")."""
        import ctk
        import qt
        from SAMMed2DLib.panel import checkpointEdit, collapsibleForm, modelCombo

        form = collapsibleForm(self.layout, self.TITLES[kind], collapsed=kind == "training")
        controls = types.SimpleNamespace()
        self.controls[kind] = controls

        controls.volume = self.nodeSelector(["vtkMRMLScalarVolumeNode"], "The image volume.")
        form.addRow("Volume:", controls.volume)
        controls.labels = self.nodeSelector(["vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode"],
                                            "Its reference segmentation (or label map): the ground truth.")
        form.addRow("Segmentation:", controls.labels)
        controls.out = ctk.ctkPathLineEdit()
        controls.out.filters = ctk.ctkPathLineEdit.Dirs
        controls.out.settingKey = f"SAMMed2DTraining/{kind}Folder"
        controls.out.toolTip = ("Where the results go: summary.json, tables and plots." if kind == "benchmark" else
                                "The run folder: last.pth, best.pth and train.jsonl (it must not hold a run yet).")
        form.addRow("Output folder:", controls.out)
        controls.model = modelCombo()
        form.addRow("Model:", controls.model)
        controls.checkpoint = checkpointEdit()
        form.addRow("Checkpoint:", controls.checkpoint)
        controls.model.connect("currentIndexChanged(int)", lambda index=0, kind=kind: self.onModelChanged(kind))
        self.onModelChanged(kind)
        if kind == "benchmark":
            controls.modes = qt.QLineEdit("paper")
            controls.modes.toolTip = ("Prompting modes or groups, separated by spaces: groups paper, clicks, "
                                      "propagation, huang, randomness, all; modes such as box, point1, clicks5, "
                                      "propagate-box.")
            form.addRow("Modes:", controls.modes)
        else:
            controls.epochs = qt.QSpinBox()
            controls.epochs.setRange(1, 1000)
            controls.epochs.value = 15
            controls.epochs.toolTip = "Passes over the training slices (the paper's recipe uses 15)."
            form.addRow("Epochs:", controls.epochs)

        buttons = qt.QHBoxLayout()
        controls.startButton = qt.QPushButton("Start")
        controls.startButton.connect("clicked(bool)", lambda checked=False, kind=kind: self.onStart(kind))
        controls.cancelButton = qt.QPushButton("Cancel")
        controls.cancelButton.connect("clicked(bool)", lambda checked=False, kind=kind: self.onCancel(kind))
        buttons.addWidget(controls.startButton)
        buttons.addWidget(controls.cancelButton)
        form.addRow(buttons)
        controls.progressBar = qt.QProgressBar()
        form.addRow("Progress:", controls.progressBar)
        controls.status = qt.QLabel()
        controls.status.wordWrap = True
        controls.status.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        form.addRow("Status:", controls.status)
        controls.log = qt.QPlainTextEdit()
        controls.log.readOnly = True
        controls.log.maximumBlockCount = 2000
        controls.log.setMinimumHeight(120)
        form.addRow("Log:", controls.log)
        controls.shownLog = ()

    @staticmethod
    def nodeSelector(nodeTypes: list, toolTip: str):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = nodeTypes
        selector.showChildNodeTypes = False  # a label map is not offered as an image volume
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.noneEnabled = True
        selector.selectNodeUponCreation = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = toolTip
        return selector

    def cleanup(self) -> None:
        """The module is reloaded or Slicer closes: nobody could follow or cancel the runs any more."""
        if self.timer is not None:
            self.timer.stop()
        for run in self.runs.values():
            if run is not None:
                run.cancel()

    def updateEngineStatus(self) -> None:
        """Show the engine version and what the installed packages allow, or say plainly why it cannot be used."""
        if self.logic is None or self.engineStatusLabel is None:
            return
        self.engineStatusLabel.text = self.logic.engineStatus().text

    def currentModel(self, kind: str):
        from SAMMed2DLib.connection import MODEL_CHOICES

        return MODEL_CHOICES[max(0, self.controls[kind].model.currentIndex)]

    def onModelChanged(self, kind: str) -> None:
        self.controls[kind].checkpoint.enabled = self.currentModel(kind).needs_checkpoint

    def onStart(self, kind: str) -> None:
        """Write the chosen nodes to files (quick) and start the child run; the timer shows the rest."""
        controls = self.controls[kind]
        volume, labels = controls.volume.currentNode(), controls.labels.currentNode()
        out = controls.out.currentPath.strip()
        model = self.currentModel(kind)
        checkpoint = controls.checkpoint.currentPath.strip() if model.needs_checkpoint else ""
        if volume is None or labels is None:
            slicer.util.errorDisplay("Choose a volume and its segmentation.")
            return
        if not out:
            slicer.util.errorDisplay("Choose an output folder.")
            return
        if model.needs_checkpoint and not checkpoint:
            slicer.util.errorDisplay(f"{model.label} needs its checkpoint file: choose it under Checkpoint.")
            return
        controls.out.addCurrentPathToHistory()
        if checkpoint:
            controls.checkpoint.addCurrentPathToHistory()
        with slicer.util.tryWithErrorDisplay(f"Could not start the {self.TITLES[kind].lower()}.", waitCursor=True):
            if kind == "benchmark":
                name = f"{model.id}:{checkpoint}" if checkpoint else model.id
                self.runs[kind] = self.logic.startBenchmark([(volume, labels)], out, models=[name],
                                                            modes=controls.modes.text.split())
            else:
                self.runs[kind] = self.logic.startTraining([(volume, labels)], out, model=model.id,
                                                           checkpoint=checkpoint or None, epochs=controls.epochs.value)
            controls.shownLog = ()
            self.timer.start()
        self.onPoll()

    def onCancel(self, kind: str) -> None:
        if self.runs[kind] is not None:
            self.runs[kind].cancel()
        self.onPoll()

    def onPoll(self) -> None:
        """Show every run's state, progress and log; the timer stops once no run is left running."""
        for kind in self.TITLES:
            self.showRun(kind)
        if self.timer is not None and not any(run is not None and run.state == "running"
                                              for run in self.runs.values()):
            self.timer.stop()

    def showRun(self, kind: str) -> None:
        controls, run = self.controls[kind], self.runs[kind]
        running = run is not None and run.state == "running"
        controls.startButton.enabled = not running
        controls.cancelButton.enabled = running
        if run is None:
            controls.status.text = "not started"
            return
        progress = run.progress
        if running and progress.total == 0:
            controls.progressBar.setRange(0, 0)  # busy: the child is still loading the model and the data
        else:
            controls.progressBar.setRange(0, max(progress.total, 1))
            controls.progressBar.setValue(progress.done)
        controls.progressBar.format = f"{progress.stage}: %v / %m" if progress.stage else "%p%"
        controls.status.text = f"{run.state}: {run.error}" if run.error else run.state
        lines = run.log_lines()
        shown = (len(lines), lines[-1] if lines else "")
        if shown != controls.shownLog:
            controls.log.setPlainText("\n".join(lines))
            controls.log.verticalScrollBar().setValue(controls.log.verticalScrollBar().maximum)
            controls.shownLog = shown


#
# SAMMed2DTrainingLogic
#


class SAMMed2DTrainingLogic(ScriptedLoadableModuleLogic):
    """Non-GUI side of the module, used by the panel and by scripts alike.

    ``startBenchmark`` / ``startTraining`` return at once with a running ``ChildRun`` (poll ``state``,
    ``progress``, ``log_lines()``; ``cancel()``). ``benchmark`` / ``train`` are the same runs for scripts that
    want to block until the result is written: they wait for the child, never load torch into Slicer, and are
    not for the panel.
    """

    def engineStatus(self) -> EngineStatus:
        """Version of the engine package shipped with the extension, or why it cannot be imported."""
        return engineStatus()

    def startBenchmark(self, cases: Sequence[tuple], out: Union[str, Path], **options) -> "ChildRun":
        """Benchmark on (volume node, segmentation or label map node) pairs, or (image, labels) files.

        Options as ``SAMMed2DTrainingLib.launch.startBenchmark`` (models as NAME[:CHECKPOINT], modes, preset, axis,
        labels, slices, seed …). The child writes summary.json, CSVs, a Markdown table and plots to ``out``.
        """
        from SAMMed2DTrainingLib.launch import startBenchmark

        return startBenchmark(cases, out, **options)

    def startTraining(self, cases: Sequence[tuple], out: Union[str, Path], valFraction: float = 0.2,
                      axes: Sequence[str] = ("K",), preset: str = "minmax", **config) -> "ChildRun":
        """Fine-tune on (volume node, segmentation node) pairs or files; volumes are split whole for validation.

        ``config`` holds ``sammed2d.training.trainer.TrainingConfig`` fields (model, checkpoint, trainable, epochs …).
        The child writes last.pth, best.pth and train.jsonl to ``out``.
        """
        from SAMMed2DTrainingLib.launch import startTraining

        return startTraining(cases, out, valFraction, axes, preset, **config)

    def benchmark(self, cases: Sequence[tuple], out: Union[str, Path], **options) -> "ChildRun":
        """``startBenchmark`` and wait for it; raises RuntimeError with the engine's reason when it fails."""
        return self._waitFor(self.startBenchmark(cases, out, **options))

    def train(self, cases: Sequence[tuple], out: Union[str, Path], valFraction: float = 0.2,
              axes: Sequence[str] = ("K",), preset: str = "minmax", **config) -> "ChildRun":
        """``startTraining`` and wait for it; raises RuntimeError with the engine's reason when it fails."""
        return self._waitFor(self.startTraining(cases, out, valFraction, axes, preset, **config))

    @staticmethod
    def _waitFor(run: "ChildRun") -> "ChildRun":
        run.wait()
        if run.state != "finished":
            raise RuntimeError(f"{run.name} {run.state}" + (f": {run.error}" if run.error else ""))
        return run


#
# SAMMed2DTrainingTest
#


class SAMMed2DTrainingTest(EngineSelfTest, ScriptedLoadableModuleTest):
    """Self-test run inside Slicer (Reload and Test, or ctest via slicer_add_python_unittest)."""

    def runTest(self) -> None:
        self.setUp()
        self.test_EngineVersion()
        self.test_CommandLineVersion()
        self.test_ChildRunReportsTheEngineError()

    def test_CommandLineVersion(self) -> None:
        """The headless entry point succeeds for `version` and fails cleanly on a bad command."""
        self.delayDisplay("Checking the command-line entry point")
        self.assertEqual(runCommandLine(["version"]), 0)
        self.assertEqual(runCommandLine(["no-such-command"]), 1)
        self.delayDisplay("Command-line entry point: test passed")

    def test_ChildRunReportsTheEngineError(self) -> None:
        """A benchmark runs in Slicer's own Python as a child process, and a failure comes back as one line."""
        self.delayDisplay("Starting a benchmark child process on a missing file")
        with tempfile.TemporaryDirectory() as folder:
            missing = Path(folder) / "missing.nrrd"
            run = SAMMed2DTrainingLogic().startBenchmark([(str(missing), str(missing))], Path(folder) / "out")
            self.assertTrue(run.wait(300), "the child process did not end")
        self.assertEqual(run.state, "failed", "\n".join(run.log_lines()))
        self.assertEqual(run.error, f"{missing} does not exist")
        self.delayDisplay("Child run: test passed")


#
# Headless entry point (SAMMed2DTrainingLib.commandline: runCommandLine, scriptArguments)
#


if __name__ == "__main__":
    # `--python-script` does not make Slicer exit by itself: always end with an explicit status.
    status = runCommandLine(scriptArguments(sys.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    slicer.util.exit(status)
