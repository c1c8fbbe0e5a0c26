"""The page's shared state: every key the server writes and the page's widgets read (or write back)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..intensity import CT_WINDOWS, PRESETS

#: display windows: the CT windows of the engine (level, width in HU), or "auto" (Slicer's pick from the histogram)
WINDOW_PRESETS = ("auto", *CT_WINDOWS)
MODEL_PRESETS = PRESETS


@dataclass
class PageState:
    # what the core says
    status: str = "Loading…"
    error: str = ""
    busy: bool = False
    propagating: bool = False
    progress_done: int = 0
    progress_planned: int = 0
    has_preview: bool = False
    suggestions: int = 0  # masks found by the last Suggest (0 when none are on show)
    can_undo: bool = False
    can_redo: bool = False
    model_status: str = ""
    # the tool and its settings
    tool: str = "box"
    model_preset: str = "percentile"
    window_preset: str = "auto"
    direction: str = "both"
    limit_range: bool = False
    slice_range: list[int] = field(default_factory=lambda: [0, 0])
    slice_count: int = 1
    # volumes and segments
    volumes: list[dict] = field(default_factory=list)  # {"id", "name"}
    active_volume: str = ""
    segments: list[dict] = field(default_factory=list)  # SegmentRow as dicts
    active_segment: str = ""
    segment_name: str = ""
    segment_color: str = ""
    # files
    data_files: list[str] = field(default_factory=list)
    data_choice: str | None = None
    save_name: str = ""
    max_upload: int = 0
    upload_busy: bool = False


def initial_state(**overrides) -> dict:
    return {**asdict(PageState()), **overrides}
