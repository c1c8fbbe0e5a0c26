"""The "SAM-Med2D" Segment Editor effect: Qt glue over ``sammed2d.interaction.InteractionCore``.

Mouse and key events on slice views become calls of the core; a timer hands the model's answers back on
the main thread; the options frame shows the core's status. Everything that decides what is segmented,
where, and how it is written lives in the core (tested headless against slicer-core).
"""

from __future__ import annotations

import logging
import os

import ctk
import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from sammed2d.intensity import PRESETS
from sammed2d.interaction import InteractionCore, InteractionError, Status, locate_view, xy_to_ras
from sammed2d.interaction.markers import PromptMarkers

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 50
#: keys of this effect; none is one the Segment Editor itself owns (digits, Esc, Space, Z, Y, Q, W, I, / * , . < >)
KEYS = {"p": "point+", "n": "point-", "b": "box", "Return": "apply", "KP_Enter": "apply", "d": "cancel",
        "g": "propagate", "s": "suggest", "m": "next"}
TOOLS = ("point+", "point-", "box")


class EffectWriter:
    """Writes through the Segment Editor's own logic, so Ctrl+Z in the editor undoes what Apply did."""

    def __init__(self, scriptedEffect) -> None:
        self.scriptedEffect = scriptedEffect

    def save_state_for_undo(self) -> None:
        self.scriptedEffect.saveStateForUndo()

    def modify(self, labelmap, edit: str, extent) -> None:
        effects = slicer.qSlicerSegmentEditorAbstractEffect
        mode = effects.ModificationModeAdd if edit == "add" else effects.ModificationModeRemove
        self.scriptedEffect.modifySelectedSegmentByLabelmap(labelmap, mode, list(extent))


def _client():
    from SAMMed2DLib.connection import shared_connection

    return shared_connection().client


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Click + / − points or drag a box on any slice view; Apply; Propagate through the volume."""

    def __init__(self, scriptedEffect) -> None:
        scriptedEffect.name = "SAM-Med2D"
        scriptedEffect.perSegment = False  # writes the selected segment through the editor's masking itself
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.core: InteractionCore | None = None
        self.tool = "box"
        self.markers: dict[object, PromptMarkers] = {}
        self.dragStart: dict[object, tuple[float, float]] = {}
        self.lastSliceNode = None  # the slice view the mouse was last on: Suggest works there
        self.timer = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self) -> str:
        return """<html>Segment the structure under your prompts with SAM-Med2D (or the embedded LiteMedSAM).<p>
<ul style="margin: 0">
<li><b>Box</b> (B): drag a box around the structure on any slice view.</li>
<li><b>+ point</b> (P) / <b>− point</b> (N): click inside / outside the structure; each click refines the
preview.</li>
<li><b>Apply</b> (Enter) writes the preview into the selected segment on that slice (one undo step,
honouring the editable area, intensity range and overwrite settings under Masking).
<b>Cancel</b> (D) drops it.</li>
<li><b>Propagate</b> (G) carries the segment through the neighbouring slices from every slice you applied;
Apply writes all of it as one undo step. Applied slices are never overwritten.</li>
<li><b>Suggest</b> (S) looks for structures on the slice under the mouse with no prompt (a grid of clicks) and
shows them one at a time, best rated first; <b>Next</b> (M) shows another; Apply writes the one on show.
Each answers a click at its + marker: more points refine it (Cancel first to start afresh).</li>
</ul>
The model runs in a separate process: set it up in the SAM-Med2D module (local or remote server).</html>"""

    # options frame

    def setupOptionsFrame(self) -> None:
        toolsLayout = qt.QHBoxLayout()
        self.toolButtons = {}
        self.toolGroup = qt.QButtonGroup()
        for tool, text, tip in (("point+", "+ Point", "Click inside the structure (P)"),
                                ("point-", "− Point", "Click outside the structure (N)"),
                                ("box", "Box", "Drag a box around the structure (B)")):
            button = qt.QToolButton()
            button.text = text
            button.toolTip = tip
            button.checkable = True
            button.setSizePolicy(qt.QSizePolicy.Expanding, qt.QSizePolicy.Fixed)
            button.connect("clicked()", lambda tool=tool: self.setTool(tool))
            self.toolGroup.addButton(button)
            self.toolButtons[tool] = button
            toolsLayout.addWidget(button)
        self.scriptedEffect.addLabeledOptionsWidget("Prompt:", toolsLayout)

        self.presetCombo = qt.QComboBox()
        self.presetCombo.addItems(list(PRESETS))
        self.presetCombo.toolTip = ("How voxel values are mapped to the model's 0..255 (fitted on the whole volume): "
                                    "a CT window, percentiles (MR, PET) or min–max")
        self.presetCombo.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        self.scriptedEffect.addLabeledOptionsWidget("Intensity:", self.presetCombo)

        self.writeModeCombo = qt.QComboBox()
        self.writeModeCombo.addItem("Replace the segment on the slice", "replace")
        self.writeModeCombo.addItem("Add to the segment", "add")
        self.writeModeCombo.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        self.scriptedEffect.addLabeledOptionsWidget("Apply:", self.writeModeCombo)

        actionsLayout = qt.QHBoxLayout()
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.toolTip = "Write the preview into the selected segment (Enter)"
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.toolTip = "Drop the prompts and the preview (D)"
        self.cancelButton.connect("clicked()", self.onCancel)
        actionsLayout.addWidget(self.applyButton)
        actionsLayout.addWidget(self.cancelButton)
        self.scriptedEffect.addOptionsWidget(actionsLayout)

        suggestLayout = qt.QHBoxLayout()
        self.suggestButton = qt.QPushButton("Suggest")
        self.suggestButton.toolTip = ("Find structures on the slice under the mouse with no prompt, shown one at a "
                                      "time, best rated first (S)")
        self.suggestButton.connect("clicked()", self.onSuggest)
        self.nextButton = qt.QPushButton("Next")
        self.nextButton.toolTip = "Show the next suggestion (M)"
        self.nextButton.connect("clicked()", lambda: self._run(lambda: self.core.next_suggestion()))
        self.previousButton = qt.QPushButton("Previous")
        self.previousButton.toolTip = "Show the previous suggestion"
        self.previousButton.connect("clicked()", lambda: self._run(lambda: self.core.next_suggestion(-1)))
        for button in (self.suggestButton, self.previousButton, self.nextButton):
            suggestLayout.addWidget(button)
        self.scriptedEffect.addLabeledOptionsWidget("Suggestions:", suggestLayout)

        propagation = ctk.ctkCollapsibleGroupBox()
        propagation.title = "Propagation"
        propagationLayout = qt.QFormLayout(propagation)
        self.directionCombo = qt.QComboBox()
        self.directionCombo.addItem("Both directions", "both")
        self.directionCombo.addItem("Increasing slice numbers", "increasing")
        self.directionCombo.addItem("Decreasing slice numbers", "decreasing")
        self.directionCombo.addItem("Between key slices", "between")
        self.directionCombo.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        propagationLayout.addRow("Direction:", self.directionCombo)
        self.limitRangeCheckBox = qt.QCheckBox("Only slices")
        self.rangeWidget = ctk.ctkRangeWidget()
        self.rangeWidget.decimals = 0
        self.rangeWidget.singleStep = 1
        self.rangeWidget.enabled = False
        self.limitRangeCheckBox.connect("toggled(bool)", lambda on: setattr(self.rangeWidget, "enabled", on))
        propagationLayout.addRow(self.limitRangeCheckBox, self.rangeWidget)
        buttons = qt.QHBoxLayout()
        self.propagateButton = qt.QPushButton("Propagate")
        self.propagateButton.toolTip = "Carry the segment from the slices you applied (and the preview) (G)"
        self.propagateButton.connect("clicked()", self.onPropagate)
        self.stopButton = qt.QPushButton("Stop")
        self.stopButton.toolTip = "Stop the propagation; the slices found so far stay in the preview"
        self.stopButton.connect("clicked()", lambda: self.core and self.core.cancel_propagation(keep=True))
        buttons.addWidget(self.propagateButton)
        buttons.addWidget(self.stopButton)
        propagationLayout.addRow(buttons)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        propagationLayout.addRow(self.progressBar)
        self.scriptedEffect.addOptionsWidget(propagation)

        self.modelLabel = qt.QLabel()
        self.modelLabel.wordWrap = True
        settingsButton = qt.QPushButton("Model server settings…")
        settingsButton.connect("clicked()", lambda: slicer.util.selectModule("SAMMed2D"))
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelLabel)
        self.scriptedEffect.addOptionsWidget(settingsButton)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.statusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

    def createCursor(self, widget):
        return qt.QCursor(qt.Qt.CrossCursor)

    def setMRMLDefaults(self) -> None:
        self.scriptedEffect.setParameterDefault("Preset", "percentile")
        self.scriptedEffect.setParameterDefault("WriteMode", "replace")
        self.scriptedEffect.setParameterDefault("Direction", "both")

    def updateGUIFromMRML(self) -> None:
        for widget, name in ((self.presetCombo, "Preset"), (self.writeModeCombo, "WriteMode"),
                             (self.directionCombo, "Direction")):
            wasBlocked = widget.blockSignals(True)
            value = self.scriptedEffect.parameter(name)
            index = widget.findData(value) if widget is not self.presetCombo else widget.findText(value)
            widget.setCurrentIndex(max(index, 0))
            widget.blockSignals(wasBlocked)
        volume = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        if volume is not None and volume.GetImageData() is not None:
            self.rangeWidget.maximum = max(volume.GetImageData().GetDimensions()) - 1
        self.modelLabel.text = self._modelDescription()

    def updateMRMLFromGUI(self) -> None:
        self.scriptedEffect.setParameter("Preset", self.presetCombo.currentText)
        self.scriptedEffect.setParameter("WriteMode", self.writeModeCombo.currentData)
        self.scriptedEffect.setParameter("Direction", self.directionCombo.currentData)
        if self.core is not None:
            self._configureCore()

    # life cycle

    def activate(self) -> None:
        editorNode = self.scriptedEffect.parameterSetNode()
        if self.core is None or self.core.editor_node is not editorNode:
            if self.core is not None:
                self.core.close()
            self.core = InteractionCore(slicer.mrmlScene, editorNode, EffectWriter(self.scriptedEffect), _client,
                                        on_change=self.onStatus)
        self._configureCore()
        self.setTool(self.tool)
        for sliceWidget in self._sliceWidgets():
            markers = PromptMarkers()
            self.markers[sliceWidget] = markers
            self.scriptedEffect.addActor2D(sliceWidget, markers.actor)
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)
        self.timer.start()
        self.onStatus(self.core.status)

    def deactivate(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        if self.core is not None:
            self.core.pause()  # prompts and preview go; applied key slices are remembered
        for sliceWidget, markers in self.markers.items():
            self.scriptedEffect.removeActor2D(sliceWidget, markers.actor)
        self.markers = {}
        self.dragStart = {}

    # events

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget) -> bool:
        if self.core is None or viewWidget.className() != "qMRMLSliceWidget":
            return False
        sliceNode = viewWidget.mrmlSliceNode()
        self.lastSliceNode = sliceNode
        xy = callerInteractor.GetEventPosition()
        try:
            if eventId == vtk.vtkCommand.KeyPressEvent:
                return self._onKey(callerInteractor.GetKeySym())
            if eventId == vtk.vtkCommand.LeftButtonPressEvent:
                if self.tool == "box":
                    self.dragStart[viewWidget] = xy
                else:
                    self.core.add_point(sliceNode, xy_to_ras(sliceNode, xy), positive=self.tool == "point+")
                    self._drawMarkers()
                return True
            if eventId == vtk.vtkCommand.MouseMoveEvent and viewWidget in self.dragStart:
                self.markers[viewWidget].rubber_band(self.dragStart[viewWidget], xy)
                viewWidget.sliceView().scheduleRender()
                return True
            if eventId == vtk.vtkCommand.LeftButtonReleaseEvent and viewWidget in self.dragStart:
                start = self.dragStart.pop(viewWidget)
                self.core.set_box(sliceNode, xy_to_ras(sliceNode, start), xy_to_ras(sliceNode, xy))
                self._drawMarkers()
                return True
        except InteractionError as error:
            self.dragStart.pop(viewWidget, None)
            self._drawMarkers()
            self._showError(str(error))
            return True
        return False

    def processViewNodeEvents(self, callerViewNode, eventId, viewWidget) -> None:
        self._drawMarkers()

    def _onKey(self, key: str) -> bool:
        action = KEYS.get(key)
        if action in TOOLS:
            self.setTool(action)
        elif action == "apply":
            self.onApply()
        elif action == "cancel":
            self.onCancel()
        elif action == "propagate":
            self.onPropagate()
        elif action == "suggest":
            self.onSuggest()
        elif action == "next":
            self._run(lambda: self.core.next_suggestion())
        return action is not None

    def setTool(self, tool: str) -> None:
        self.tool = tool
        self.toolButtons[tool].checked = True

    def onApply(self) -> None:
        self._run(lambda: self.core.apply())

    def onCancel(self) -> None:
        self._run(lambda: self.core.cancel())

    def onPropagate(self) -> None:
        sliceRange = None
        if self.limitRangeCheckBox.checked:
            sliceRange = (int(self.rangeWidget.minimumValue), int(self.rangeWidget.maximumValue))
        self._run(lambda: self.core.propagate(self.directionCombo.currentData, sliceRange))

    def onSuggest(self) -> None:
        sliceNode = self.lastSliceNode or slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        self._run(lambda: self.core.suggest(sliceNode))

    def onPoll(self) -> None:
        if self.core is not None:
            self.core.poll()

    def onStatus(self, status: Status) -> None:
        """The core's status changed: show it (errors in red) and the progress of a propagation or Suggest."""
        if status.error:
            self._showError(f"{status.message} {status.error}")
        else:
            self.statusLabel.setStyleSheet("")
            self.statusLabel.text = status.message
        busy = status.busy
        self.applyButton.enabled = not busy or status.progress is None
        self.propagateButton.enabled = not busy
        self.suggestButton.enabled = not busy
        self.nextButton.enabled = self.previousButton.enabled = self.core is not None and self.core.suggestion_count > 1
        self.stopButton.enabled = status.work == "propagation" and busy
        self.progressBar.visible = status.progress is not None and busy
        if status.progress is not None:
            done, planned = status.progress
            self.progressBar.maximum = max(planned, 1)
            self.progressBar.value = done
        self.modelLabel.text = self._modelDescription()
        self._drawMarkers()

    # helpers

    def _run(self, action) -> None:
        if self.core is None:
            return
        try:
            action()
        except InteractionError as error:
            self._showError(str(error))
        self._drawMarkers()

    def _showError(self, message: str) -> None:
        self.statusLabel.setStyleSheet("color: #c0392b")
        self.statusLabel.text = message

    def _configureCore(self) -> None:
        self.core.preset = self.scriptedEffect.parameter("Preset") or "percentile"
        self.core.write_mode = self.scriptedEffect.parameter("WriteMode") or "replace"

    def _modelDescription(self) -> str:
        from SAMMed2DLib.connection import shared_connection

        return shared_connection().describe()

    def _sliceWidgets(self) -> list:
        layoutManager = slicer.app.layoutManager()
        return [layoutManager.sliceWidget(name) for name in layoutManager.sliceViewNames()]

    def _drawMarkers(self) -> None:
        """Prompts are drawn in every slice view that shows the prompted slice."""
        if self.core is None:
            return
        markers = self.core.markers()
        promptView = self.core.prompt_view
        volume = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        for sliceWidget, actors in self.markers.items():
            sliceNode = sliceWidget.mrmlSliceNode()
            try:
                visible = promptView is not None and volume is not None and locate_view(sliceNode, volume) == promptView
            except InteractionError:
                visible = False
            actors.update(sliceNode, markers, visible)
            sliceWidget.sliceView().scheduleRender()
