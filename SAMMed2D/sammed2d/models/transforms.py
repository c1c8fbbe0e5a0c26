"""How each model family turns an 8-bit slice into its input tensor, and its logits back into a mask.

The two recipes differ and the weights depend on them, so each registry entry names its own:
- ``StretchResize``: SAM-Med2D. Normalise with SAM's mean/std, then resize straight to S×S with
  nearest neighbour (aspect not kept); prompts scale by S/W and S/H; logits go back bilinearly.
- ``LongestSidePad``: original SAM and LiteMedSAM. Resize the longest side to S, normalise (SAM mean/std,
  or per-image min-max to [0, 1]), zero-pad to S×S; logits are cropped before resizing back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from .architecture import SAM_PIXEL_MEAN, SAM_PIXEL_STD

Size = tuple[int, int]


class InputTransform(Protocol):
    size: int

    def image_to_input(self, image: torch.Tensor) -> tuple[torch.Tensor, Size]:
        """(H, W, 3) float in 0..255 → (1, 3, S, S) model input and the resized (h, w) before padding."""

    def scale_points(self, points: np.ndarray, original_size: Size) -> np.ndarray:
        """(…, 2) xy pixel coordinates of the slice → model input coordinates."""

    def logits_to_original(self, low_res: torch.Tensor, resized: Size, original_size: Size) -> torch.Tensor:
        """(K, 1, h, w) low-res logits → (K, 1, H, W) logits at the slice's resolution."""


def _sam_normalise(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(SAM_PIXEL_MEAN, dtype=image.dtype, device=image.device)
    std = torch.tensor(SAM_PIXEL_STD, dtype=image.dtype, device=image.device)
    return (image - mean) / std


@dataclass(frozen=True)
class StretchResize:
    size: int

    def image_to_input(self, image: torch.Tensor) -> tuple[torch.Tensor, Size]:
        normalised = _sam_normalise(image).permute(2, 0, 1)[None]
        # "nearest" (floor indexing) is what OpenCV INTER_NEAREST does in the reference
        return F.interpolate(normalised, size=(self.size, self.size), mode="nearest"), (self.size, self.size)

    def scale_points(self, points: np.ndarray, original_size: Size) -> np.ndarray:
        height, width = original_size
        scaled = np.array(points, dtype=np.float64, copy=True)
        scaled[..., 0] *= self.size / width
        scaled[..., 1] *= self.size / height
        return scaled

    def logits_to_original(self, low_res: torch.Tensor, resized: Size, original_size: Size) -> torch.Tensor:
        full = F.interpolate(low_res, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return F.interpolate(full, size=original_size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class LongestSidePad:
    size: int
    normalisation: Literal["sam", "minmax"]

    def image_to_input(self, image: torch.Tensor) -> tuple[torch.Tensor, Size]:
        resized_size = ResizeLongestSide.get_preprocess_shape(image.shape[0], image.shape[1], self.size)
        channels_first = image.permute(2, 0, 1)[None]
        resized = F.interpolate(channels_first, size=resized_size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalisation == "sam":
            resized = _sam_normalise(resized[0].permute(1, 2, 0)).permute(2, 0, 1)[None]
        else:
            low, high = resized.amin(), resized.amax()
            resized = (resized - low) / torch.clamp(high - low, min=1e-8)
        padded = F.pad(resized, (0, self.size - resized_size[1], 0, self.size - resized_size[0]))
        return padded, resized_size

    def scale_points(self, points: np.ndarray, original_size: Size) -> np.ndarray:
        flat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return ResizeLongestSide(self.size).apply_coords(flat, original_size).reshape(np.shape(points))

    def logits_to_original(self, low_res: torch.Tensor, resized: Size, original_size: Size) -> torch.Tensor:
        full = F.interpolate(low_res, size=(self.size, self.size), mode="bilinear", align_corners=False)
        cropped = full[..., : resized[0], : resized[1]]
        return F.interpolate(cropped, size=original_size, mode="bilinear", align_corners=False)
