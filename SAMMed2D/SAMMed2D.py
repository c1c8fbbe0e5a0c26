"""SAM-Med2D module for 3D Slicer: registers the "SAM-Med2D" Segment Editor effect, runs the model server
panel, and offers the effect's operations from the Python console (``SAMMed2DLogic``).

The heavy work (model, server, client, the interaction core) lives in the engine package ``sammed2d`` that
ships next to this file. Qt is used only in the Widget class and the effect, so the Logic stays usable from
scripts and headless runs.
"""

from __future__ import annotations

import os
from typing import Optional

import slicer
from SAMMed2DLib.engine import EngineStatus, engineStatus
from SAMMed2DLib.selftest import EngineSelfTest
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

EFFECT_SOURCE = os.path.join(os.path.dirname(__file__), "SegmentEditorSAMMed2DLib", "SegmentEditorEffect.py")


def registerEffect() -> None:
    """Add the "SAM-Med2D" effect to the Segment Editor (Slicer calls this once start-up is complete)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(EFFECT_SOURCE.replace("\\", "/"))
    instance.self().register()


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
            "2D slices and 3D volumes from clicks and boxes) and the model server the effect talks to.<br>"
            "<b>Model server</b>: <i>Local</i> starts the model on this computer in a separate process "
            "(LiteMedSAM needs no download; SAM-Med2D and SAM need their checkpoint file); <i>Remote</i> "
            "connects to a <code>sammed2d serve</code> on another computer with its URL and token, and "
            "<i>Test connection</i> shows the model, device and version it runs, or what is wrong.<br>"
            "<b>Dependencies</b> tells whether this Slicer can only use a remote server or can also run "
            "one locally, names any missing package, and <i>Install…</i> lists exactly what it will "
            "install before doing it (PyTorch through the PyTorch extension when it is installed)."
        )
        slicer.app.connect("startupCompleted()", registerEffect)
        self.parent.acknowledgementText = (
            "Built on SAM-Med2D: J. Cheng et al., \"SAM-Med2D\", arXiv:2308.16184 (2023), "
            "https://arxiv.org/abs/2308.16184, and on LiteMedSAM, the lightweight MedSAM model by the "
            "MedSAM authors (J. Ma et al.), used as the default model because it runs on a CPU."
        )


#
# SAMMed2DWidget
#


class SAMMed2DWidget(ScriptedLoadableModuleWidget):
    """Module panel: the model server (local child process or remote) and the Python packages it needs.

    Kept thin: the work is in SAMMed2DLib (connection, dependencies), which is tested without Qt. Anything that
    takes more than a moment (starting or stopping a server, a handshake, probing torch) runs on a worker thread
    and a timer brings its result to the panel, so the application never freezes.
    """

    POLL_MSEC = 500

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic: Optional[SAMMed2DLogic] = None
        self.connection = None
        self.executor = None
        self.timer = None
        self.remoteFuture = None  # "Test connection" in flight
        self.deviceFuture = None  # torch device probe in flight
        self.stopFuture = None  # a stop in flight: Start waits for it
        self.shownLog: tuple = ()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from concurrent.futures import ThreadPoolExecutor

        from SAMMed2DLib.connection import shared_connection
        from SAMMed2DLib.panel import pollTimer

        self.logic = SAMMed2DLogic()
        self.connection = shared_connection()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="SAMMed2DWidget")
        self.setupServerSection()
        self.setupDependencySection()
        self.layout.addStretch(1)

        self.timer = pollTimer(self.POLL_MSEC, self.onPoll)
        self.timer.start()
        slicer.app.aboutToQuit.connect(self.onAboutToQuit)
        self.onModeChanged()
        self.onModelChanged()
        self.updateEngineStatus()
        self.onPoll()

    def setupServerSection(self) -> None:
        """Local / Remote choice, the settings of each, and the connection state line."""
        import qt
        from SAMMed2DLib.panel import checkpointEdit, collapsibleForm, modelCombo, selectableLabel

        form = collapsibleForm(self.layout, "Model server")
        self.connectionLabel = selectableLabel()
        form.addRow("Status:", self.connectionLabel)

        modes = qt.QHBoxLayout()
        self.localRadio = qt.QRadioButton("Local")
        self.localRadio.toolTip = "Run the model on this computer, in a separate process started by Slicer."
        self.remoteRadio = qt.QRadioButton("Remote")
        self.remoteRadio.toolTip = "Use a `sammed2d serve` running on another computer (for example with a GPU)."
        modes.addWidget(self.localRadio)
        modes.addWidget(self.remoteRadio)
        modes.addStretch(1)
        form.addRow("Server:", modes)
        self.remoteRadio.checked = qt.QSettings().value("SAMMed2D/mode", "local") == "remote"
        self.localRadio.checked = not self.remoteRadio.checked
        self.localRadio.connect("toggled(bool)", self.onModeChanged)

        self.localFrame = qt.QFrame()
        local = qt.QFormLayout(self.localFrame)
        local.setContentsMargins(0, 0, 0, 0)
        self.modelCombo = modelCombo()
        self.modelCombo.currentIndex = max(0, self.modelCombo.findData(qt.QSettings().value("SAMMed2D/model", "")))
        self.modelCombo.connect("currentIndexChanged(int)", self.onModelChanged)
        local.addRow("Model:", self.modelCombo)
        self.checkpointEdit = checkpointEdit()
        local.addRow("Checkpoint:", self.checkpointEdit)
        self.deviceCombo = qt.QComboBox()
        self.deviceCombo.addItems(["auto", "cpu", "cuda"])
        self.deviceCombo.toolTip = "auto: the GPU (CUDA) when torch sees one, else the CPU."
        self.deviceCombo.currentText = qt.QSettings().value("SAMMed2D/device", "auto")
        local.addRow("Device:", self.deviceCombo)
        buttons = qt.QHBoxLayout()
        self.startButton = qt.QPushButton("Start")
        self.startButton.toolTip = "Start the local model server (loading a model takes seconds to minutes)."
        self.startButton.connect("clicked(bool)", self.onStartButton)
        self.stopButton = qt.QPushButton("Stop")
        self.stopButton.connect("clicked(bool)", self.onStopButton)
        buttons.addWidget(self.startButton)
        buttons.addWidget(self.stopButton)
        local.addRow(buttons)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        self.logView.maximumBlockCount = 2000
        self.logView.setMinimumHeight(120)
        self.logView.toolTip = "Output of the local model server."
        local.addRow("Log:", self.logView)
        form.addRow(self.localFrame)

        self.remoteFrame = qt.QFrame()
        remote = qt.QFormLayout(self.remoteFrame)
        remote.setContentsMargins(0, 0, 0, 0)
        self.urlEdit = qt.QLineEdit(qt.QSettings().value("SAMMed2D/url", ""))
        self.urlEdit.placeholderText = "http://server:8765"
        remote.addRow("URL:", self.urlEdit)
        self.tokenEdit = qt.QLineEdit()
        self.tokenEdit.echoMode = qt.QLineEdit.Password
        self.tokenEdit.placeholderText = "the token `sammed2d serve` printed or was given"
        remote.addRow("Token:", self.tokenEdit)
        self.testButton = qt.QPushButton("Test connection")
        self.testButton.toolTip = "Connect, check the protocol version and the token, and use this server."
        self.testButton.connect("clicked(bool)", self.onTestButton)
        remote.addRow(self.testButton)
        self.remoteLabel = selectableLabel()
        remote.addRow(self.remoteLabel)
        form.addRow(self.remoteFrame)

    def setupDependencySection(self) -> None:
        """What this Slicer's Python can do, and the Install… button for what is missing."""
        import qt
        from SAMMed2DLib.panel import collapsibleForm, selectableLabel

        form = collapsibleForm(self.layout, "Dependencies")
        self.engineStatusLabel = selectableLabel()
        form.addRow("Engine:", self.engineStatusLabel)
        self.deviceLabel = selectableLabel()
        form.addRow("Device:", self.deviceLabel)
        buttons = qt.QHBoxLayout()
        self.installButton = qt.QPushButton("Install…")
        self.installButton.toolTip = "Show what is missing, then install it into Slicer's Python."
        self.installButton.connect("clicked(bool)", self.onInstallButton)
        self.refreshButton = qt.QPushButton("Refresh")
        self.refreshButton.toolTip = "Check the installed packages again."
        self.refreshButton.connect("clicked(bool)", self.onRefreshButton)
        buttons.addWidget(self.installButton)
        buttons.addWidget(self.refreshButton)
        form.addRow(buttons)

    def cleanup(self) -> None:
        """The module is reloaded or the application closes; a running server is left to onAboutToQuit / atexit."""
        if self.timer is not None:
            self.timer.stop()
        slicer.app.aboutToQuit.disconnect(self.onAboutToQuit)
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    def onAboutToQuit(self) -> None:
        if self.connection is not None:
            self.connection.stop()

    # model server

    def onModeChanged(self, checked: bool = False) -> None:
        import qt

        local = bool(self.localRadio.checked)
        self.localFrame.visible = local
        self.remoteFrame.visible = not local
        qt.QSettings().setValue("SAMMed2D/mode", "local" if local else "remote")

    def currentModel(self):
        from SAMMed2DLib.connection import MODEL_CHOICES

        return MODEL_CHOICES[max(0, self.modelCombo.currentIndex)]

    def onModelChanged(self, index: int = 0) -> None:
        self.checkpointEdit.enabled = self.currentModel().needs_checkpoint

    def onStartButton(self, checked: bool = False) -> None:
        import qt

        model = self.currentModel()
        checkpoint = self.checkpointEdit.currentPath.strip() if model.needs_checkpoint else None
        if model.needs_checkpoint and not checkpoint:
            slicer.util.errorDisplay(f"{model.label} needs its checkpoint file: choose it under Checkpoint.")
            return
        if checkpoint:
            self.checkpointEdit.addCurrentPathToHistory()
        settings = qt.QSettings()
        settings.setValue("SAMMed2D/model", model.id)
        settings.setValue("SAMMed2D/device", self.deviceCombo.currentText)
        self.connection.start_local_async(model.id, checkpoint, self.deviceCombo.currentText)
        self.onPoll()

    def onStopButton(self, checked: bool = False) -> None:
        self.stopFuture = self.executor.submit(self.connection.stop)
        self.onPoll()

    def onTestButton(self, checked: bool = False) -> None:
        import qt

        url, token = self.urlEdit.text.strip(), self.tokenEdit.text.strip()
        if not url:
            self.remoteLabel.text = "Enter the server's URL, for example http://server:8765."
            return
        qt.QSettings().setValue("SAMMed2D/url", url)
        self.remoteLabel.text = f"Connecting to {url}…"
        self.remoteFuture = self.executor.submit(self.connection.connect_remote, url, token)
        self.onPoll()

    def onPoll(self) -> None:
        """Bring worker results to the panel and keep buttons and the log in step with the connection."""
        if self.connection is None:
            return
        if self.remoteFuture is not None and self.remoteFuture.done():
            self.showRemoteResult(self.remoteFuture)
            self.remoteFuture = None
        if self.deviceFuture is not None and self.deviceFuture.done():
            probe = self.deviceFuture.result()
            described = {"cuda": "cuda (torch sees a CUDA GPU)", "cpu": "cpu (torch sees no CUDA GPU)"}
            self.deviceLabel.text = described.get(probe.device, f"unknown: {probe.error}")
            self.deviceFuture = None
        state = self.connection.state
        stopping = self.stopFuture is not None and not self.stopFuture.done()
        self.connectionLabel.text = "stopping the local server…" if stopping else self.connection.describe()
        self.startButton.enabled = not stopping and state != "starting"
        self.stopButton.enabled = not stopping and state in ("starting", "running", "remote")
        self.testButton.enabled = self.remoteFuture is None
        lines = self.connection.log_lines()
        shown = (len(lines), lines[-1] if lines else "")
        if shown != self.shownLog:
            self.logView.setPlainText("\n".join(lines))
            self.logView.verticalScrollBar().setValue(self.logView.verticalScrollBar().maximum)
            self.shownLog = shown

    def showRemoteResult(self, future) -> None:
        from sammed2d.client import SAMMed2DClientError

        try:
            report = future.result()
        except SAMMed2DClientError as error:
            self.remoteLabel.text = f"Failed: {error}"
            return
        self.remoteLabel.text = f"Connected: {report.describe()} (protocol {report.protocol})"

    # dependencies

    def onRefreshButton(self, checked: bool = False) -> None:
        self.updateEngineStatus()

    def updateEngineStatus(self) -> None:
        """Show the engine version and what the installed packages allow; probe the device when torch is there."""
        if self.logic is None:
            return
        status = self.logic.engineStatus()
        self.engineStatusLabel.text = status.text
        if status.dependencies is None or not status.dependencies.server_ok:
            self.deviceLabel.text = "needs the local server packages"
        elif self.deviceFuture is None:
            from SAMMed2DLib.dependencies import probe_device

            self.deviceLabel.text = "checking which device torch sees…"
            self.deviceFuture = self.executor.submit(probe_device, self.connection.python)

    def onInstallButton(self, checked: bool = False) -> None:
        """List exactly what will be installed, ask once, then install it on the main thread (as pip_install needs)."""
        from SAMMed2DLib.dependencies import check_dependencies, execute_plan, find_pytorch_utils, plan_install

        pytorchUtils = find_pytorch_utils()
        plan = plan_install(check_dependencies(), pytorchUtils is not None)
        if plan.empty:
            slicer.util.infoDisplay(plan.describe())
            return
        question = (f"{plan.describe()}\n\nThis can take several minutes. A running local server is stopped first. "
                    "Packages Slicer already has at a suitable version are left as they are.")
        if not slicer.util.confirmOkCancelDisplay(question, "Install SAM-Med2D dependencies"):
            return
        self.connection.stop()
        with slicer.util.tryWithErrorDisplay("Installing the SAM-Med2D dependencies failed.", waitCursor=True):
            execute_plan(plan, slicer.util.pip_install, pytorchUtils)
            slicer.util.infoDisplay("The packages are installed: the local server can be started.")
        self.updateEngineStatus()


#
# SAMMed2DLogic
#


class SAMMed2DLogic(ScriptedLoadableModuleLogic):
    """Non-GUI side of the module, usable from the Python console and from scripts.

    ``segmentation(volume, segmentationNode, segmentId)`` returns a ``ScriptedSegmentation`` that segments,
    refines and propagates with the effect's own code, masking and undo, e.g.::

        logic = slicer.util.getModuleLogic("SAMMed2D")
        logic.startLocalServer()                      # or logic.connectRemote(url, token)
        seg = logic.segmentation(volumeNode, segmentationNode, segmentId, preset="ct-lung")
        seg.segment(box=[i0, j0, k, i1, j1, k], coordinates="IJK")
        seg.propagate("both")
        seg.undo()
    """

    def engineStatus(self) -> EngineStatus:
        """Version of the engine package shipped with the extension, or why it cannot be imported."""
        return engineStatus()

    def startLocalServer(self, model: str = "litemedsam", checkpoint: Optional[str] = None, device: str = "auto"):
        """Start the local model server and wait until it answers (the panel's Start, blocking)."""
        from SAMMed2DLib.connection import shared_connection

        return shared_connection().start_local(model, checkpoint, device)

    def connectRemote(self, url: str, token: str):
        from SAMMed2DLib.connection import shared_connection

        return shared_connection().connect_remote(url, token)

    def stopServer(self) -> None:
        from SAMMed2DLib.connection import shared_connection

        shared_connection().stop()

    def segmentation(self, volumeNode, segmentationNode, segmentId: str, preset: str = "percentile",
                     writeMode: str = "replace"):
        """The effect's operations on one segment, without the GUI (see ``SAMMed2DLib.scripting``)."""
        from SAMMed2DLib.connection import shared_connection
        from SAMMed2DLib.scripting import ScriptedSegmentation

        return ScriptedSegmentation(volumeNode, segmentationNode, segmentId, lambda: shared_connection().client,
                                    preset=preset, writeMode=writeMode)


#
# SAMMed2DTest
#


class SAMMed2DTest(EngineSelfTest, ScriptedLoadableModuleTest):
    """Self-test run inside Slicer (Reload and Test, or ctest via slicer_add_python_unittest).

    It drives the effect's core through a real local model server on a generated CT volume and checks
    voxels against the phantom's known anatomy, then undo. It needs the engine's dependencies in Slicer's
    Python (the module panel's Install…); without them it fails and says so.
    """

    def runTest(self) -> None:
        self.setUp()
        self.test_EngineVersion()
        self.setUp()
        self.test_EffectRegistered()
        self.setUp()
        self.test_SegmentAndUndo()

    def test_EffectRegistered(self) -> None:
        """The Segment Editor lists the effect and can activate it."""
        editorWidget = slicer.qMRMLSegmentEditorWidget()
        editorWidget.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editorWidget.setMRMLSegmentEditorNode(editorNode)
        self.assertIn("SAM-Med2D", editorWidget.availableEffectNames())

    def test_SegmentAndUndo(self) -> None:
        """A box around the phantom's liver gives the liver (Dice ≥ 0.85) on that slice only; Undo empties it."""
        from SAMMed2DLib.selfcheck import checkLiver, phantomScene

        volume, segmentation, segmentId, liver = phantomScene(slicer.mrmlScene)
        logic = SAMMed2DLogic()
        self.delayDisplay("Starting a local LiteMedSAM server (the first start may take a minute)")
        logic.startLocalServer("litemedsam", device="cpu")
        try:
            scripted = logic.segmentation(volume, segmentation, segmentId, preset="ct-soft-tissue")
            check = checkLiver(scripted, volume, segmentation, segmentId, liver)
            scripted.close()
        finally:
            logic.stopServer()
        self.assertGreaterEqual(check.dice, 0.85, f"liver Dice {check.dice:.3f}")
        self.assertEqual(check.written_elsewhere, 0, "Apply wrote outside the prompted slice")
        self.assertEqual(check.left_after_undo, 0, "Undo did not restore the empty segment")
        self.delayDisplay(f"Liver Dice {check.dice:.3f}, undo exact: test passed")
