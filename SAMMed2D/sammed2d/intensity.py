"""Explicit intensity mapping of a volume or slice to the 0..255 range the models expect.

The mapping is chosen by the caller and fitted once per volume (so every slice of a volume gets the
same mapping), then recorded with results. It is never taken implicitly from a display window.
Needs numpy only, so the torch-free client and Slicer can use it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import numpy as np

from .errors import InputError

#: CT windows as (level, width) in HU
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct-lung": (-600.0, 1500.0),
    "ct-soft-tissue": (40.0, 400.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
}
PRESETS = (*CT_WINDOWS, "percentile", "minmax", "identity")


@dataclass(frozen=True)
class IntensityMapping:
    """A linear map of [low, high] onto [0, 255] with clipping, plus how it was chosen."""

    preset: str
    low: float
    high: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        array = np.asarray(values, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InputError("the image contains NaN or infinite values")
        scale = 255.0 / max(self.high - self.low, 1e-6)
        return np.clip((array - self.low) * scale, 0.0, 255.0)

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def fit_mapping(
    volume: np.ndarray,
    preset: str,
    *,
    percentiles: tuple[float, float] = (0.5, 99.5),
    window: tuple[float, float] | None = None,
) -> IntensityMapping:
    """Fit ``preset`` to a whole volume (or one image).

    ``ct-*`` use fixed HU windows (or ``window`` = (level, width) to override), ``percentile``
    clips at the volume's percentiles (MR, PET), ``minmax`` is the paper's per-volume min-max and
    ``identity`` keeps data that is already 0..255.
    """
    if preset.startswith("ct-"):
        if window is None and preset not in CT_WINDOWS:
            raise InputError(f"unknown CT window {preset!r}; choose one of {', '.join(CT_WINDOWS)}")
        level, width = window or CT_WINDOWS[preset]
        return IntensityMapping(preset, level - width / 2, level + width / 2)
    if preset == "identity":
        return IntensityMapping(preset, 0.0, 255.0)
    array = np.asarray(volume, dtype=np.float32)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise InputError("cannot fit an intensity mapping: the image has no finite values")
    if preset == "percentile":
        low, high = np.percentile(finite, percentiles)
    elif preset == "minmax":
        low, high = finite.min(), finite.max()
    else:
        raise InputError(f"unknown intensity preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return IntensityMapping(preset, float(low), float(high))
