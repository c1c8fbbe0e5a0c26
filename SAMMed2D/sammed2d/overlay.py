"""PNG overlays of masks and prompts on a slice, for the CLI and reports.

Figures are drawn with matplotlib's object API onto its Agg canvas: no pyplot, no global backend, so
importing this inside Slicer or a web server changes nothing for their own plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def save_overlay(
    slice_u8: np.ndarray,
    masks: dict[str, np.ndarray],
    path: str | Path,
    *,
    boxes: Sequence[Sequence[float]] = (),
    points: Sequence[tuple[float, float, int]] = (),
    title: str = "",
) -> Path:
    """Draw each mask as a translucent colour with its outline, boxes in yellow, points green (+) / red (−)."""
    height, width = slice_u8.shape[:2]
    figure = Figure(figsize=(6, 6 * height / width), dpi=120)
    axes = figure.subplots()
    axes.imshow(slice_u8, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    colours = matplotlib.colormaps["tab10"]
    for index, (name, mask) in enumerate(masks.items()):
        colour = colours(index % 10)
        layer = np.zeros((height, width, 4))
        layer[mask.astype(bool)] = (*colour[:3], 0.35)
        axes.imshow(layer, interpolation="nearest")
        if mask.any():
            axes.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
        axes.plot([], [], color=colour, linewidth=4, label=name)
    for x0, y0, x1, y1 in boxes:
        axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", linewidth=1.2))
    for x, y, label in points:
        axes.plot(x, y, marker="P" if label else "X", color="lime" if label else "red", markersize=9,
                  markeredgecolor="k")
    if masks:
        axes.legend(loc="lower right", fontsize=8, framealpha=0.7)
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
