"""Request and response bodies of the v1 API; their constraints are the published OpenAPI schema.

Unknown fields are refused (a misspelt field must not be silently ignored) and floats must be
finite (JSON parsers accept NaN and Infinity).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..ids import ID_LENGTH
from ..intensity import PRESETS
from ..wire import DTYPES

MAX_POINTS = 64
MAX_KEYS = 64
ID_PATTERN = f"^[0-9a-f]{{{ID_LENGTH}}}$"
HANDLE_PATTERN = "^[0-9a-f]{32}$"  # result handles and job ids

Axis = Literal["K", "J", "I"]
Preset = Literal[PRESETS]  # type: ignore[valid-type]
Dtype = Literal[DTYPES]  # type: ignore[valid-type]
Handle = Annotated[str, Field(pattern=HANDLE_PATTERN, description="a result handle from an earlier segment call")]
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Point(Strict):
    x: Coordinate = Field(description="column, in slice pixels (0 = left edge of the first pixel)")
    y: Coordinate = Field(description="row, in slice pixels")
    label: Literal[0, 1] = Field(1, description="1 includes, 0 excludes")


class Prompt(Strict):
    points: list[Point] = Field(default_factory=list, max_length=MAX_POINTS)
    box: Annotated[list[Coordinate], Field(min_length=4, max_length=4)] | None = Field(
        None, description="x0, y0, x1, y1 in slice pixels")
    previous: Handle | None = Field(None, description="refine this earlier result (same slice) with its logits")
    multimask: bool | None = Field(None, description="best of three masks; default: the model's own habit")


class SegmentSliceRequest(Prompt):
    axis: Axis
    index: int = Field(ge=0, le=1_000_000)
    preset: Preset = "minmax"
    prefetch: bool = Field(True, description="compute the neighbouring slices' embeddings in the background")


class ImagePixels(Strict):
    shape: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=3)]
    dtype: Dtype
    data: str = Field(description="base64 of the zlib stream of the little-endian C-order bytes")


class SegmentImageRequest(Prompt):
    image_id: str = Field(pattern=ID_PATTERN, description="sammed2d.ids.image_id of the pixels")
    image: ImagePixels | None = Field(None, description="the pixels, only when the server lacks this image")
    preset: Preset = "minmax"


class PackedMask(Strict):
    shape: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=2)]
    box: Annotated[list[Annotated[int, Field(ge=0, le=65536)]], Field(min_length=4, max_length=4)] | None = Field(
        description="x0, y0, x1, y1 (exclusive) of the crop; null for an empty mask")
    bits: str = Field(description="base64 of numpy.packbits of the crop, row-major")


class SegmentResponse(BaseModel):
    mask: PackedMask
    score: float
    area: int
    handle: str
    embedding_cached: bool = Field(description="the slice's embedding was ready (no encoder run for this click)")


class VolumeInfo(BaseModel):
    id: str
    shape: list[int]
    dtype: str
    spacing: list[float]
    origin: list[float]
    direction: list[float]
    nbytes: int


class PropagationKey(Strict):
    index: int = Field(ge=0, le=1_000_000)
    handle: Handle | None = Field(None, description="a result on this slice (its mask and logits)")
    mask: PackedMask | None = Field(None, description="a mask drawn by the user, when there is no handle")


class PropagationOptions(Strict):
    """Every field of ``PropagationSettings``, each optional: the defaults are the engine's (a test keeps the
    two in step)."""

    box_margin: float | None = Field(None, ge=0, le=64, description="pixels of the model's input")
    use_mask_prompt: bool | None = Field(None, description="omitted: as the model was trained")
    use_point: bool | None = None
    box_memory: int | None = Field(None, ge=1, le=8)
    refine_passes: int | None = Field(None, ge=0, le=5)
    min_score: float | None = Field(None, ge=0, le=1)
    min_area: int | None = Field(None, ge=1, le=1 << 30)
    max_growth: float | None = Field(None, ge=1, le=1e6)
    max_growth_from_key: float | None = Field(None, ge=1, le=1e6)
    min_shrink: float | None = Field(None, ge=0, le=1)
    min_overlap: float | None = Field(None, ge=0, le=1)
    min_appearance: float | None = Field(None, ge=0, le=1)
    trim_unlike_outline: bool | None = None
    min_agreement: float | None = Field(None, ge=0, le=1)
    min_part: float | None = Field(None, ge=0, le=1)
    discover_radius: float | None = Field(None, ge=0, le=10, description="0 turns the search for split-off parts off")
    discover_percentiles: Annotated[list[Annotated[float, Field(ge=0, le=100)]],
                                    Field(min_length=2, max_length=2)] | None = Field(
        None, description="intensity percentiles of the key mask that candidate parts must lie within")
    discover_min_size: float | None = Field(None, ge=0, le=1)
    discover_min_contrast: float | None = Field(None, ge=0, le=10)
    slice_range: Annotated[list[Annotated[int, Field(ge=0, le=1_000_000)]],
                           Field(min_length=2, max_length=2)] | None = None


class PropagateRequest(Strict):
    axis: Axis
    preset: Preset = "minmax"
    keys: list[PropagationKey] = Field(min_length=1, max_length=MAX_KEYS)
    settings: PropagationOptions = Field(default_factory=PropagationOptions)


class JobInfo(BaseModel):
    id: str
    volume_id: str
    axis: str
    state: Literal["running", "finished", "cancelled", "failed"]
    done: int
    planned: int | None


class ModelInfo(BaseModel):
    id: str
    checkpoint_sha256: str | None = Field(description="null for random weights (tests and benchmarks only)")
    device: str
    dtype: str = Field(description="the image encoder's arithmetic (the prompt encoder and decoder run in float32)")
    acceleration: str = Field(description="the encoder's path, e.g. 'bf16, channels-last, fused attention, compiled'")
    image_size: int
    low_res_size: int


class Limits(BaseModel):
    max_request_bytes: int
    max_upload_bytes: int
    volume_budget_bytes: int
    embedding_budget_bytes: int
    max_results: int
    max_jobs: int
    max_points: int = MAX_POINTS
    max_keys: int = MAX_KEYS


class ServerInfo(BaseModel):
    protocol: int
    server_version: str
    model: ModelInfo
    capabilities: list[str]
    presets: list[str]
    axes: list[str]
    limits: Limits


class ErrorBody(BaseModel):
    error: str = Field(description="stable code for programs, e.g. volume_unknown")
    detail: str = Field(description="what went wrong and what to do, for people")


class EverythingOptions(Strict):
    """Every field of ``sammed2d.everything.EverythingSettings``, each optional: the defaults are the engine's
    (SAM's automatic mask generator; a test keeps the two in step)."""

    points_per_side: int | None = Field(None, ge=1, le=256, description="an m×m grid of clicks: m² decoder calls")
    points_per_batch: int | None = Field(None, ge=1, le=1024)
    pred_iou_thresh: float | None = Field(None, ge=0, le=1)
    stability_score_thresh: float | None = Field(None, ge=0, le=1)
    stability_score_offset: float | None = Field(None, ge=0, le=100)
    box_nms_thresh: float | None = Field(None, ge=0, le=1)
    grid_answer: Literal["decoder", "click"] | None = Field(
        None, description="decoder: SAM's automatic mask generator; click: each point answered as a user's click")


class SuggestSliceRequest(Strict):
    axis: Axis
    index: int = Field(ge=0, le=1_000_000)
    preset: Preset = "minmax"
    settings: EverythingOptions = Field(default_factory=EverythingOptions)
    stream: bool = Field(False, description="answer as NDJSON: a progress line per batch of grid points, then the "
                                            "masks; closing the stream stops the work")


class SuggestedMask(BaseModel):
    mask: PackedMask
    score: float = Field(description="the model's predicted IoU")
    stability: float = Field(description="IoU of the mask thresholded at +offset and -offset logits")
    area: int
    point: list[float] = Field(description="the grid click (x, y) in slice pixels that this mask answers")


class SuggestResponse(BaseModel):
    masks: list[SuggestedMask] = Field(description="best rated first")
    prompts: int = Field(description="grid clicks decoded")
    decoded: int = Field(description="masks the decoder returned before the filters")
    seconds: float
    embedding_cached: bool
