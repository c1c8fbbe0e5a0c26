"""Torch-free client of ``sammed2d serve`` (numpy + requests): what Slicer's Python imports.

Nothing here may import torch, directly or through the engine; ``sammed2d.wire`` is the only
engine module it uses.
"""

from .client import (
    Client,
    PropagatedSlice,
    PropagationStream,
    RemoteVolume,
    SegmentResult,
    SuggestedMask,
    SuggestResult,
    Timeouts,
)
from .errors import (
    ApiError,
    BadRequest,
    Cancelled,
    ProtocolMismatch,
    SAMMed2DClientError,
    ServerError,
    ServerNotRunning,
    ServerTimeout,
    Unauthorized,
    VolumeEvicted,
)
from .local import LocalServer

__all__ = [
    "ApiError", "BadRequest", "Cancelled", "Client", "LocalServer", "PropagatedSlice", "PropagationStream",
    "ProtocolMismatch", "RemoteVolume", "SAMMed2DClientError", "SegmentResult", "ServerError", "ServerNotRunning",
    "ServerTimeout", "SuggestedMask", "SuggestResult", "Timeouts", "Unauthorized", "VolumeEvicted",
]
