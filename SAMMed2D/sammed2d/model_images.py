"""The slice as a model sees it: one path for inference, training and the paper's mask filters.

Intensities are mapped to 0..255 as floats (never rounded to 8 bits), and slices with non-square pixels
(a sagittal slice of 5 mm CT, say) are resampled along their rows to square pixels, so anatomy keeps its
shape. Training builds its samples here too, so the weights learn on exactly the images they will see.
"""

from __future__ import annotations

import numpy as np

from .intensity import IntensityMapping
from .volumes import Axis, Volume

#: pixel aspect ratios closer to 1 than this are treated as square
ASPECT_TOLERANCE = 0.01


def model_rows(volume: Volume, axis: Axis) -> int:
    """Rows of the model image of a slice normal to ``axis`` (the columns stay as they are)."""
    rows = volume.slice_shape(axis)[0]
    row_spacing, column_spacing = volume.pixel_spacing(axis)
    aspect = row_spacing / column_spacing
    return rows if abs(aspect - 1) <= ASPECT_TOLERANCE else max(2, round(rows * aspect))


def model_image(volume: Volume, mapping: IntensityMapping, axis: Axis, index: int) -> np.ndarray:
    """(model rows, W) float32 in 0..255: the slice mapped, then resampled bilinearly to square pixels."""
    image = mapping.apply(volume.slice(axis, index))
    rows = model_rows(volume, axis)
    if rows == image.shape[0]:
        return image
    import torch  # only anisotropic slices need it; the paper's data rules stay torch-free
    import torch.nn.functional as F

    resized = F.interpolate(torch.from_numpy(image)[None, None], size=(rows, image.shape[1]), mode="bilinear",
                            align_corners=False)
    return np.clip(resized[0, 0].numpy(), 0.0, 255.0)  # float rounding can step past 255 (255.00002)


def rows_under_centres(rows: int, onto: int) -> np.ndarray:
    """For each of ``onto`` rows spanning the same extent as ``rows`` rows, the one of ``rows`` under its centre.

    Masks go between a slice and its model image by nearest neighbour this way, in both directions (the session
    maps the model's masks back with it), so a mask taken there and back is unchanged. Integer arithmetic:
    a centre on a row boundary goes to the same row whichever way round the sizes are.
    """
    return (2 * np.arange(onto) + 1) * rows // (2 * onto)


def mask_to_model(mask: np.ndarray, model_rows: int) -> np.ndarray:
    """A slice's (H, W) mask on the model image's rows."""
    return mask[rows_under_centres(mask.shape[0], model_rows)]
