"""The page's editing session: volumes with their segmentations, the segment list, and the interaction core.

Every action of the page (buttons, keys, state changes) arrives here on the server's event loop, where the
MRML scene lives; the core's model requests run on its own worker and come back through ``poll()``, which
the app's periodic task calls. What the core says (its status, its preview) is written into the page's state
here, and the prompt markers are redrawn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ..interaction import EditorLogicWriter, InteractionCore, InteractionError, Status, editor_logic
from ..interaction.writers import sync_editor_logic
from ..volumes import Volume, read_volume
from . import segments
from .effect import TOOLS, PromptEffect
from .keys import ACTION_OF_KEY
from .loading import add_volume_node, import_labels
from .model import ModelConnection
from .paths import Folder, default_output_name, output_name, volume_name

logger = logging.getLogger(__name__)


class PageEditor:
    """The page's actions and the state they show (see the module docstring)."""

    def __init__(self, slicer_app, state, model: ModelConnection, *, preset: str, data: Folder | None,
                 output: Folder | None) -> None:
        """``slicer_app``'s views must exist already: activating the tool gives each of them its pipeline."""
        self.app = slicer_app
        self.scene = slicer_app.scene
        self.state = state
        self.model = model
        self.data = data
        self.output = output
        self.editor_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "SAM-Med2D web")
        self.writer = EditorLogicWriter(editor_logic(self.scene, self.editor_node))
        self.core = InteractionCore(self.scene, self.editor_node, self.writer, model.client, preset=preset,
                                    on_change=self._show_status)
        self.effect: PromptEffect = slicer_app.segmentation_editor.set_active_effect_type(PromptEffect)
        self.effect.bind(self.core, self.report)
        self._segmentations: dict[str, object] = {}  # volume node id → its segmentation node
        self._watch_state()

    # volumes

    def add_volume(self, volume: Volume, name: str):
        """A volume into the scene, with an empty segmentation of its own, shown at once."""
        node = add_volume_node(self.scene, volume, name)
        segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
        segmentation.CreateClosedSurfaceRepresentation()  # the 3D view shows segments as surfaces
        segments.add(segmentation)
        self._segmentations[node.GetID()] = segmentation
        self.state.volumes = [*self.state.volumes, {"id": node.GetID(), "name": name}]
        self.show_volume(node.GetID())
        return node

    def show_volume(self, volume_id: str) -> None:
        """Make ``volume_id`` the one shown and segmented (prompts and preview of the previous one are dropped)."""
        volume = self.scene.GetNodeByID(volume_id)
        if volume is None or volume_id not in self._segmentations:
            return
        if self.editor_node.GetSourceVolumeNode() is not volume:
            self.core.pause()
            for other_id, segmentation in self._segmentations.items():
                segmentation.GetDisplayNode().SetVisibility(other_id == volume_id)
            segmentation = self._segmentations[volume_id]
            self.editor_node.SetAndObserveSourceVolumeNode(volume)
            self.editor_node.SetAndObserveSegmentationNode(segmentation)
            self.editor_node.SetSelectedSegmentID(segmentation.GetSegmentation().GetNthSegmentID(0) or "")
            sync_editor_logic(self.writer.logic)
            display = self.app.display_manager
            display.show_volume_in_slice_background(volume)
            display.show_volume_in_slice_foreground(None)
            for view in self.app.view_manager.get_slice_views():
                view.set_visible_in_3d(True)
            display.reset_views()
            self._apply_window(self.state.window_preset)
            self.state.slice_range = [0, volume.GetImageData().GetDimensions()[2] - 1]  # all axial slices
        self.state.active_volume = volume_id
        self.state.save_name = default_output_name(volume.GetName())
        self._show_segments()
        self._show_status(self.core.status)

    async def open_data(self, relative: str | None) -> None:
        """Open a volume of the data folder, read off the event loop."""
        if not relative or self.data is None:
            return
        try:
            path = self.data.inside(relative)
            volume = await asyncio.get_running_loop().run_in_executor(None, read_volume, path)
        except (InteractionError, ValueError, FileNotFoundError) as error:
            with self.state:
                self.report(str(error))
            return
        with self.state:
            self.add_volume(volume, volume_name(path.name))
            self.state.status = f"Opened {relative} from the data folder."

    def import_segmentation(self, path: Path) -> None:
        """A label map or .seg.nrrd on the shown volume's grid, as segments of its segmentation."""
        volume = self._volume()
        segmentation = self._segmentations[volume.GetID()]
        ids = import_labels(segmentation, volume, path)
        if ids:
            self.select_segment(ids[0])
        self._show_segments()

    @property
    def segmentation_node(self):
        return self.editor_node.GetSegmentationNode()

    # segments

    def add_segment(self) -> None:
        self.select_segment(segments.add(self._segmentation()))

    def select_segment(self, segment_id: str) -> None:
        if segment_id and segment_id != self.editor_node.GetSelectedSegmentID():
            self.editor_node.SetSelectedSegmentID(segment_id)
            sync_editor_logic(self.writer.logic)
        self._show_segments()

    def toggle_segment(self, segment_id: str) -> None:
        row = next((row for row in segments.rows(self._segmentation()) if row["id"] == segment_id), None)
        if row is not None:
            self._edit(lambda node: segments.set_visible(node, segment_id, not row["visible"]))

    def remove_segment(self, segment_id: str) -> None:
        self._edit(lambda node: segments.remove(node, segment_id))
        remaining = segments.rows(self._segmentation())
        if self.editor_node.GetSelectedSegmentID() == segment_id or not remaining:
            self.editor_node.SetSelectedSegmentID(remaining[0]["id"] if remaining else "")
            sync_editor_logic(self.writer.logic)
        self._show_segments()

    # the tool

    def apply(self) -> None:
        self._run(self.core.apply)

    def cancel(self) -> None:
        self._run(self.core.cancel)

    def propagate(self) -> None:
        slice_range = tuple(int(v) for v in self.state.slice_range) if self.state.limit_range else None
        self._run(lambda: self.core.propagate(self.state.direction, slice_range))  # type: ignore[arg-type]

    def suggest(self) -> None:
        """Suggestions on the slice of the view last clicked (the axial view before any click)."""
        slice_node = self.effect.last_slice_node or self.app.view_manager.get_view("Red").get_view_node()
        self._run(lambda: self.core.suggest(slice_node))

    def next_suggestion(self) -> None:
        self._run(self.core.next_suggestion)

    def previous_suggestion(self) -> None:
        self._run(lambda: self.core.next_suggestion(-1))

    def stop_propagation(self, keep: bool) -> None:
        self._run(lambda: self.core.cancel_propagation(keep=keep))

    def undo(self) -> None:
        self._run(self.writer.undo)

    def redo(self) -> None:
        self._run(self.writer.redo)

    def press(self, key: str) -> None:
        """A key of the page's shortcut table (see ``keys``)."""
        action = ACTION_OF_KEY.get(key)
        if action in TOOLS:
            self.state.tool = action
        elif action is not None:
            getattr(self, action)()

    def report(self, message: str) -> None:
        """A refusal or failure, in words for the user (shown in red until the next status)."""
        self.state.error = message

    # files

    def save_on_server(self) -> Path | None:
        """Write the segmentation as .seg.nrrd under the output folder, named as the page says."""
        if self.output is None:
            self.report("saving on the server is off: start `sammed2d web` with --output-dir")
            return None
        try:
            path = self.output.inside(output_name(self.state.save_name))
            self.write_segmentation(path)
        except (InteractionError, OSError) as error:
            self.report(str(error))
            return None
        self.state.status = f"Saved {path.relative_to(self.output.root)} in the output folder."
        self.state.error = ""
        return path

    def write_segmentation(self, path: Path) -> None:
        """The shown volume's segmentation as a .seg.nrrd file (Slicer's own writer)."""
        segmentation = self._segmentation()
        storage = self.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        try:
            storage.SetFileName(str(path))
            if not storage.WriteData(segmentation):
                raise OSError(f"could not write {path.name}: {storage.GetWriteStateAsString()}")
        finally:
            self.scene.RemoveNode(storage)

    # the event loop

    def poll(self) -> None:
        """Deliver the model's answers and the model server's state (call often from the loop)."""
        self.core.poll()
        model_status = self.model.describe()
        if model_status != self.state.model_status:
            self.state.model_status = model_status

    def close(self) -> None:
        self.core.close()

    # internals

    def _watch_state(self) -> None:
        change = self.state.change
        change("tool")(lambda tool, **_: setattr(self.effect, "tool", tool if tool in TOOLS else "box"))
        change("model_preset")(lambda model_preset, **_: setattr(self.core, "preset", model_preset))
        change("window_preset")(lambda window_preset, **_: self._apply_window(window_preset))
        change("active_volume")(lambda active_volume, **_: self.show_volume(active_volume))
        change("active_segment")(lambda active_segment, **_: self.select_segment(active_segment))
        change("segment_name")(lambda segment_name, **_: self._edit_selected("name", segments.rename, segment_name))
        change("segment_color")(lambda segment_color, **_: self._edit_selected("color", segments.recolor,
                                                                               segment_color))

    def _run(self, action: Callable[[], object]) -> None:
        """``action``; a refusal is shown after the status, which would otherwise clear it."""
        refusal = None
        try:
            action()
        except InteractionError as error:
            refusal = str(error)
        self._show_status(self.core.status)
        if refusal is not None:
            self.report(refusal)

    def _edit(self, edit: Callable[[object], None]) -> None:
        try:
            edit(self._segmentation())
        except InteractionError as error:
            self.report(str(error))
        self._show_segments()

    def _edit_selected(self, field: str, edit: Callable[[object, str, str], None], value: str) -> None:
        """The page edited the selected segment's name or colour (a no-op when it only echoes the segment)."""
        if self.segmentation_node is None or not value:
            return
        segment_id = self.editor_node.GetSelectedSegmentID()
        row = next((row for row in segments.rows(self.segmentation_node) if row["id"] == segment_id), None)
        if row is not None and value != row[field]:
            self._edit(lambda node: edit(node, segment_id, value))

    def _apply_window(self, preset: str) -> None:
        from ..intensity import CT_WINDOWS

        volume = self.editor_node.GetSourceVolumeNode()
        if volume is None or volume.GetDisplayNode() is None:
            return
        display = volume.GetDisplayNode()
        if preset in CT_WINDOWS:
            level, width = CT_WINDOWS[preset]
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(width, level)
        else:
            display.SetAutoWindowLevel(True)

    def _show_segments(self) -> None:
        if self.segmentation_node is None:
            return
        rows = segments.rows(self.segmentation_node)
        selected = self.editor_node.GetSelectedSegmentID() or ""
        row = next((row for row in rows if row["id"] == selected), None)
        self.state.update({"segments": rows, "active_segment": selected,
                           "segment_name": row["name"] if row else "", "segment_color": row["color"] if row else ""})

    def _show_status(self, status: Status) -> None:
        progress = status.progress or (0, 0)
        view = self.core.prompt_view
        volume = self.editor_node.GetSourceVolumeNode()
        count = volume.GetImageData().GetDimensions()[("I", "J", "K").index(view.axis if view else "K")] \
            if volume is not None and volume.GetImageData() is not None else 1
        self.state.update({
            "status": status.message, "error": status.error or "", "busy": status.busy,
            "propagating": status.busy and status.work == "propagation",
            "progress_done": progress[0], "progress_planned": progress[1],
            "has_preview": bool(self.core.preview.masks),
            "suggestions": self.core.suggestion_count,
            "can_undo": bool(self.writer.logic.CanUndo()), "can_redo": bool(self.writer.logic.CanRedo()),
            "slice_count": int(count),
        })
        self.effect.redraw()

    def _volume(self):
        volume = self.editor_node.GetSourceVolumeNode()
        if volume is None:
            raise InteractionError("open a volume first")
        return volume

    def _segmentation(self):
        segmentation = self.segmentation_node
        if segmentation is None:
            raise InteractionError("open a volume first")
        return segmentation
