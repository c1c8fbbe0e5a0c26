"""PNG plots of a benchmark: Dice per mode, per label, against the number of clicks and against object factors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .factors import FACTORS
from .modes import CLICK_MODES, prompt_count
from .report import Summary
from .runner import MaskRow


def write_plots(summary: Summary, folder: Path, masks: Sequence[MaskRow]) -> list[Path]:
    """Figures go straight to PNG through matplotlib's object API (no pyplot, no global backend to set)."""
    written = [_per_mode(summary, folder / "dice_per_mode.png"), _per_label(summary, folder / "dice_per_label.png")]
    clicks = _versus_clicks(summary, folder / "dice_vs_clicks.png")
    factors = _versus_factors(summary, masks, folder / "dice_vs_factors.png")
    return written + [path for path in (clicks, factors) if path]


def _size(groups: int, series: int) -> tuple[float, float]:
    """Wide enough for the bars, within what a page or screen shows."""
    return min(max(6.0, 0.3 * groups * max(series, 1) + 2), 16.0), 4.5


def _bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups))
    for number, (name, values) in enumerate(series.items()):
        ax.bar(positions + number * width, [np.nan if v is None else v for v in values], width, label=name)
    ax.set_xticks(positions + width * (len(series) - 1) / 2, groups, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice")
    ax.legend(fontsize="small")


def _per_mode(summary: Summary, path: Path) -> Path:
    from matplotlib.figure import Figure

    modes = list(dict.fromkeys(mode for entries in summary.values() for mode in entries))
    series = {}
    for model, entries in summary.items():
        series[f"{model} (per mask)"] = [entries.get(mode, {}).get("dice_mean") for mode in modes]
        if any(entry.get("dice_3d_mean") is not None for entry in entries.values()):
            series[f"{model} (3D)"] = [entries.get(mode, {}).get("dice_3d_mean") for mode in modes]
    figure = Figure(figsize=_size(len(modes), len(series)), layout="constrained")
    ax = figure.subplots()
    _bars(ax, modes, series)
    ax.set_title("Dice per prompting mode")
    figure.savefig(path, dpi=100)
    return path


def _per_label(summary: Summary, path: Path) -> Path:
    """Per-label Dice of the box mode (the paper's headline prompt), else of the first mode run."""
    from matplotlib.figure import Figure

    series, labels, shown = {}, [], ""
    for model, entries in summary.items():
        shown = "box" if "box" in entries else next(iter(entries), "")
        per_label = entries.get(shown, {}).get("labels", {})
        labels = list(dict.fromkeys(labels + list(per_label)))
        series[model] = per_label
    figure = Figure(figsize=_size(len(labels), len(series)), layout="constrained")
    ax = figure.subplots()
    _bars(ax, labels, {model: [values.get(label, {}).get("dice_mean") for label in labels]
                       for model, values in series.items()})
    ax.set_title(f"Dice per label ({shown} mode)")
    figure.savefig(path, dpi=100)
    return path


def _versus_clicks(summary: Summary, path: Path) -> Path | None:
    """Iterative clicks (the paper's interactive test) beside one-shot points, per model."""
    from matplotlib.figure import Figure

    curves = {}
    for model, entries in summary.items():
        for name, modes in (("iterative", CLICK_MODES), ("one-shot", ("point1", "points3", "points5"))):
            points = [(prompt_count(mode), entries[mode]["dice_mean"]) for mode in modes
                      if mode in entries and entries[mode]["dice_mean"] is not None]
            if len(points) > 1:
                curves[f"{model} {name}"] = points
    if not curves:
        return None
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    ax = figure.subplots()
    for name, points in curves.items():
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xlabel("clicks")
    ax.set_ylabel("Dice (per mask)")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(1, max(x for points in curves.values() for x, _ in points) + 1))
    ax.legend(fontsize="small")
    ax.set_title("Dice against the number of clicks")
    figure.savefig(path, dpi=100)
    return path


def _versus_factors(summary: Summary, masks: Sequence[MaskRow], path: Path) -> Path | None:
    """Per-mask Dice against each object factor, one colour per model and mode, ρ (Spearman) in the legend."""
    from matplotlib.figure import Figure

    series = list(dict.fromkeys((row.model, row.mode) for row in masks))
    if not series:
        return None
    figure = Figure(figsize=(5 * len(FACTORS), 4.5), layout="constrained")
    for ax, factor in zip(figure.subplots(1, len(FACTORS), sharey=True), FACTORS):
        for model, mode in series:
            pairs = [(getattr(row, factor), row.dice) for row in masks
                     if row.model == model and row.mode == mode and math.isfinite(getattr(row, factor))]
            rho = summary[model][mode]["factors"][factor]["spearman_rho"]
            label = f"{model} {mode}" + ("" if rho is None else f" (ρ {rho:.2f})")
            if pairs:
                ax.scatter(*zip(*pairs), s=14, alpha=0.6, label=label)
        if factor == "area_fraction":
            ax.set_xscale("log")
        ax.set_xlabel(factor.replace("_", " "))
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="x-small")
    figure.axes[0].set_ylabel("Dice (per mask)")
    figure.suptitle("Dice against object size, aspect ratio and contrast with the surroundings")
    figure.savefig(path, dpi=100)
    return path
