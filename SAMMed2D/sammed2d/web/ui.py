"""The page's layout: a toolbar, a side panel with the tool, the segments and the files, and the views.

Widgets read and write the keys of ``state.PageState`` and call the editor's actions; element ids name the
controls a person (or a browser test) uses.
"""

from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v
from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui
from trame_slicer.views import SliceView

from .editor import PageEditor
from .keys import SHORTCUTS, describe
from .script import KEY_TRIGGER, page_script
from .state import MODEL_PRESETS, WINDOW_PRESETS

_CSS = """
html { overflow: hidden; }
.sammed2d-panel .v-card-title { font-size: 0.95rem; padding-bottom: 0; }
.sammed2d-views { position: fixed; top: var(--v-layout-top); left: var(--v-layout-left); right: 0; bottom: 0;
  display: flex; }
.sammed2d-view-label { position: absolute; top: 4px; right: 8px; color: #ddd; font-size: 0.8rem;
  pointer-events: none; text-shadow: 0 0 3px #000; }
"""
_TOOLS = (("box", "mdi-selection-drag", "Box (B)", "tool-box"),
          ("point+", "mdi-plus-circle-outline", "+ point (P)", "tool-point-positive"),
          ("point-", "mdi-minus-circle-outline", "− point (N)", "tool-point-negative"))
_DIRECTIONS = [{"title": "Both directions", "value": "both"}, {"title": "Increasing slices", "value": "increasing"},
               {"title": "Decreasing slices", "value": "decreasing"},
               {"title": "Between key slices", "value": "between"}]


def build_page(server, editor: PageEditor, layout_manager, *, data_folder: bool, output_folder: bool) -> VAppLayout:
    server.trigger(KEY_TRIGGER)(editor.press)
    with VAppLayout(server, full_height=True) as page:
        client.Style(_CSS)
        client.Script(page_script())
        _toolbar(editor, data_folder)
        with v.VNavigationDrawer(permanent=True, width=360, classes="sammed2d-panel"):
            _tool_panel(editor)
            _propagation_panel(editor)
            _segment_panel(editor)
            _file_panel(editor, output_folder)
            _shortcut_panel()
        with v.VMain(), html.Div(classes="sammed2d-views"):
            layout_manager.initialize_layout_grid(page)
    return page


def view_overlay(server, view_id: str, view) -> None:
    """The view's own controls (slice slider, reset) and its name in the top right corner."""
    if isinstance(view, SliceView):
        create_vertical_slice_view_gutter_ui(server, view_id, view)
        label = view.get_orientation()
    else:
        create_vertical_view_gutter_ui(server, view_id, view)
        label = "3D"
    html.Div(label, id=f"view-{view.get_singleton_tag()}", classes="sammed2d-view-label")


def _toolbar(editor: PageEditor, data_folder: bool) -> None:
    with v.VAppBar(density="compact"):
        v.VAppBarTitle("SAM-Med2D", style="max-width: 9em;")
        v.VSelect(id="volume", v_model=("active_volume",), items=("volumes",), item_title="name", item_value="id",
                  label="Volume", density="compact", hide_details=True, style="max-width: 14em;", classes="mx-2")
        v.VSelect(id="window", v_model=("window_preset",), items=("window_presets", list(WINDOW_PRESETS)),
                  label="Window", density="compact", hide_details=True, style="max-width: 11em;", classes="mx-2")
        if data_folder:
            v.VSelect(id="data-file", v_model=("data_choice",), items=("data_files",), label="Open from data folder",
                      density="compact", hide_details=True, style="max-width: 16em;", classes="mx-2",
                      update_modelValue=(editor.open_data, "[$event]"))
        v.VFileInput(id="upload", label="Upload a volume", density="compact", hide_details=True, multiple=True,
                     prepend_icon="mdi-upload", disabled=("upload_busy",), style="max-width: 16em;", classes="mx-2",
                     change="upload_busy = true; window.sammed2dUpload($event.target.files, max_upload)"
                            ".then((message) => { if (message) error = message; })"
                            ".finally(() => { upload_busy = false; })")
        v.VSpacer()
        v.VChip("{{ model_status }}", id="model-status", size="small", classes="mx-2")


def _tool_panel(editor: PageEditor) -> None:
    with v.VCard(flat=True, title="Prompt"):
        with v.VCardText():
            with v.VBtnToggle(v_model=("tool",), mandatory=True, density="compact", divided=True, classes="mb-2"):
                for value, icon, text, element_id in _TOOLS:
                    v.VBtn(text, value=value, prepend_icon=icon, id=element_id, size="small")
            v.VSelect(id="model-preset", v_model=("model_preset",), items=("model_presets", list(MODEL_PRESETS)),
                      label="Model intensity", density="compact", hide_details=True, classes="mb-2")
            with html.Div(classes="d-flex ga-2 mb-2"):
                v.VBtn("Apply", id="apply", color="primary", click=editor.apply,
                       disabled=("!has_preview || propagating",))
                v.VBtn("Cancel", id="cancel", click=editor.cancel)
                v.VBtn(icon="mdi-undo", id="undo", click=editor.undo, disabled=("!can_undo",), size="small")
                v.VBtn(icon="mdi-redo", id="redo", click=editor.redo, disabled=("!can_redo",), size="small")
            with html.Div(classes="d-flex ga-2 mb-2 align-center"):
                v.VBtn("Suggest", id="suggest", prepend_icon="mdi-auto-fix", click=editor.suggest,
                       disabled=("busy",), size="small", variant="tonal")
                v.VBtn(icon="mdi-chevron-left", id="previous-suggestion", click=editor.previous_suggestion,
                       disabled=("suggestions < 2",), size="small", variant="text")
                v.VBtn(icon="mdi-chevron-right", id="next-suggestion", click=editor.next_suggestion,
                       disabled=("suggestions < 2",), size="small", variant="text")
            v.VProgressLinear(id="busy", v_show=("busy",), indeterminate=("!progress_planned",),
                              model_value=("progress_planned ? 100 * progress_done / progress_planned : 0",),
                              color="primary", classes="mb-2")
            html.Div("{{ status }}", id="status", classes="text-body-2")
            v.VAlert(id="error", v_show=("error",), text=("error",), type="error", density="compact",
                     classes="mt-2 text-body-2")


def _propagation_panel(editor: PageEditor) -> None:
    with v.VCard(flat=True, title="Propagate"):
        with v.VCardText():
            v.VSelect(id="direction", v_model=("direction",), items=("directions", _DIRECTIONS), label="Direction",
                      density="compact", hide_details=True, classes="mb-2")
            v.VCheckbox(id="limit-range", v_model=("limit_range",), label="Only slices", density="compact",
                        hide_details=True)
            v.VRangeSlider(id="slice-range", v_model=("slice_range",), min=0, max=("slice_count - 1",), step=1,
                           disabled=("!limit_range",), thumb_label=True, density="compact", hide_details=True)
            with html.Div(classes="d-flex ga-2 mt-2"):
                v.VBtn("Propagate", id="propagate", click=editor.propagate, disabled=("busy",), size="small")
                v.VBtn("Stop, keep", id="stop-keep", click=(editor.stop_propagation, "[true]"),
                       disabled=("!propagating",), size="small", variant="tonal")
                v.VBtn("Stop, drop", id="stop-discard", click=(editor.stop_propagation, "[false]"),
                       disabled=("!propagating",), size="small", variant="tonal")
            html.Div("{{ progress_done }} / {{ progress_planned }} slices", id="progress", v_show=("propagating",),
                     classes="text-caption mt-1")


def _segment_panel(editor: PageEditor) -> None:
    with v.VCard(flat=True, title="Segments"):
        with v.VCardText():
            with v.VList(density="compact", id="segments"):
                with v.VListItem(v_for="segment in segments", key="segment.id",
                                 active=("segment.id === active_segment",),
                                 click="active_segment = segment.id"):
                    with v.Template(v_slot_prepend=True):
                        v.VIcon("mdi-square-rounded", color=("segment.color",))
                    v.VListItemTitle("{{ segment.name }}")
                    with v.Template(v_slot_append=True):
                        v.VBtn(icon=("segment.visible ? 'mdi-eye' : 'mdi-eye-off'",), variant="text", size="small",
                               click_stop=(editor.toggle_segment, "[segment.id]"))
                        v.VBtn(icon="mdi-delete", variant="text", size="small",
                               click_stop=(editor.remove_segment, "[segment.id]"))
            with html.Div(classes="d-flex ga-2 align-center"):
                v.VBtn("Add", id="add-segment", prepend_icon="mdi-plus", click=editor.add_segment, size="small")
                v.VTextField(id="segment-name", v_model_lazy=("segment_name",), label="Name", density="compact",
                             hide_details=True)
                with v.VMenu(close_on_content_click=False):
                    with v.Template(v_slot_activator="{ props }"):
                        v.VBtn(icon="mdi-palette", v_bind="props", size="small", color=("segment_color",),
                               id="segment-color")
                    v.VColorPicker(v_model=("segment_color",), modes=("['hex']",), mode="hex")


def _file_panel(editor: PageEditor, output_folder: bool) -> None:
    with v.VCard(flat=True, title="Save"):
        with v.VCardText():
            if output_folder:
                with html.Div(classes="d-flex ga-2 align-center"):
                    v.VTextField(id="save-name", v_model=("save_name",), label="File in the output folder",
                                 density="compact", hide_details=True)
                    v.VBtn("Save", id="save", click=editor.save_on_server, size="small")
            v.VBtn("Download .seg.nrrd", id="download", href="download", raw_attrs=["download"],
                   prepend_icon="mdi-download", size="small", classes="mt-2")


def _shortcut_panel() -> None:
    with v.VCard(flat=True, title="Keys"):
        with v.VCardText(), html.Table(id="shortcuts", classes="text-caption"):
            for shortcut in SHORTCUTS:
                with html.Tr():
                    html.Td(describe(shortcut), classes="pr-3 font-weight-bold")
                    html.Td(shortcut.label)
