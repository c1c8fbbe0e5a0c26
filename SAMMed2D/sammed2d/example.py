"""A synthetic abdominal CT slice with known anatomy, so the demo runs where no patient data exists.

Hounsfield values, a smooth body outline, organ textures, partial-volume blur and scanner-like noise
make it look like a real axial slice; the organs' true masks let the demo report Dice honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: (name, HU, centre (row, col) as fraction of size, semi-axes (rows, cols) as fraction, rotation degrees)
_ORGANS = (
    ("liver", 60.0, (0.42, 0.31), (0.14, 0.15), -25.0),
    ("spleen", 50.0, (0.40, 0.76), (0.08, 0.055), 30.0),
    ("right kidney", 35.0, (0.60, 0.34), (0.065, 0.045), 15.0),
    ("left kidney", 35.0, (0.60, 0.66), (0.065, 0.045), -15.0),
    ("aorta", 180.0, (0.54, 0.52), (0.028, 0.028), 0.0),
    ("vertebra", 650.0, (0.68, 0.50), (0.06, 0.065), 0.0),
)


@dataclass(frozen=True)
class ExampleSlice:
    hounsfield: np.ndarray  # (H, W) float32
    organs: dict[str, np.ndarray]  # name → (H, W) bool ground truth
    spacing_mm: tuple[float, float]


def _ellipse(
    shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float], angle: float
) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    r0, c0 = centre[0] * shape[0], centre[1] * shape[1]
    a, b = axes[0] * shape[0], axes[1] * shape[1]
    theta = np.deg2rad(angle)
    dr, dc = rows - r0, cols - c0
    u = dr * np.cos(theta) + dc * np.sin(theta)
    v = -dr * np.sin(theta) + dc * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def make_example_slice(size: int = 384, seed: int = 7) -> ExampleSlice:
    """Build the phantom; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    image = np.full(shape, -1000.0, dtype=np.float32)  # air
    body = _ellipse(shape, (0.52, 0.5), (0.36, 0.44), 0.0)
    image[body] = -90.0  # subcutaneous fat
    muscle = _ellipse(shape, (0.52, 0.5), (0.32, 0.40), 0.0)
    image[muscle] = 45.0
    cavity = _ellipse(shape, (0.50, 0.5), (0.28, 0.36), 0.0)
    image[cavity] = -60.0  # intra-abdominal fat
    bowel_gas = [_ellipse(shape, (0.36 + 0.05 * k, 0.52 + 0.04 * (k % 2)), (0.025, 0.03), 0.0) for k in range(3)]
    for gas in bowel_gas:
        image[gas] = -850.0
    organs = {}
    for name, hu, centre, axes, angle in _ORGANS:
        mask = _ellipse(shape, centre, axes, angle)
        if name == "liver":  # a realistic notch: the gallbladder fossa
            mask &= ~_ellipse(shape, (0.52, 0.42), (0.05, 0.04), 0.0)
        image[mask] = hu
        for earlier in organs.values():  # what is painted later lies on top
            earlier &= ~mask
        organs[name] = mask
    texture = ndimage.gaussian_filter(rng.normal(0.0, 18.0, shape), 2.0)
    image = ndimage.gaussian_filter(image, 1.0) + texture + rng.normal(0.0, 12.0, shape)
    return ExampleSlice(image.astype(np.float32), organs, (0.8, 0.8))
