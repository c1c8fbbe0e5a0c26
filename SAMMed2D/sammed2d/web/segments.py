"""The segment list of a segmentation node: what the page shows (name, colour, visibility) and its edits."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

from ..interaction import InteractionError

#: colours of new segments, in turn; none is grey (the CT) or yellow (the prompt box)
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.95, 0.33, 0.25), (0.25, 0.78, 0.35), (0.25, 0.55, 0.95), (0.85, 0.35, 0.85), (0.2, 0.8, 0.8),
    (0.95, 0.6, 0.2),
)


@dataclass(frozen=True)
class SegmentRow:
    id: str
    name: str
    color: str  # '#rrggbb'
    visible: bool


def rows(segmentation_node) -> list[dict]:
    """The segments in list order, as the page's state holds them."""
    segmentation = segmentation_node.GetSegmentation()
    display = segmentation_node.GetDisplayNode()
    result = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        visible = bool(display.GetSegmentVisibility(segment_id)) if display is not None else True
        result.append(asdict(SegmentRow(segment_id, segment.GetName(), _hex(segment.GetColor()), visible)))
    return result


def new_id() -> str:
    """An id never used before in this process: what the core remembers of a deleted segment (its applied
    slices) can then never be taken for a new segment's."""
    return f"Segment_{uuid.uuid4().hex[:12]}"


def add(segmentation_node) -> str:
    """A new empty segment named and coloured in turn; returns its id."""
    segmentation = segmentation_node.GetSegmentation()
    count = segmentation.GetNumberOfSegments()
    names = {segmentation.GetNthSegment(index).GetName() for index in range(count)}
    number = count + 1
    while f"Segment {number}" in names:
        number += 1
    return segmentation.AddEmptySegment(new_id(), f"Segment {number}", list(PALETTE[count % len(PALETTE)]))


def rename(segmentation_node, segment_id: str, name: str) -> None:
    name = name.strip()
    if not name:
        raise InteractionError("a segment needs a name")
    _segment(segmentation_node, segment_id).SetName(name)


def recolor(segmentation_node, segment_id: str, color: str) -> None:
    _segment(segmentation_node, segment_id).SetColor(*_rgb(color))


def set_visible(segmentation_node, segment_id: str, visible: bool) -> None:
    _segment(segmentation_node, segment_id)
    segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id, bool(visible))


def remove(segmentation_node, segment_id: str) -> None:
    _segment(segmentation_node, segment_id)
    segmentation_node.GetSegmentation().RemoveSegment(segment_id)


def _segment(segmentation_node, segment_id: str):
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InteractionError(f"there is no segment {segment_id!r} (it may have been deleted)")
    return segment


def _hex(color) -> str:
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in color[:3])


def _rgb(color: str) -> tuple[float, float, float]:
    text = color.strip().lstrip("#")[:6]
    if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise InteractionError(f"{color!r} is not a colour like #ff8800")
    return tuple(int(text[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
