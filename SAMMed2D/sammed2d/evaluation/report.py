"""Benchmark results as files: summary.json, one CSV row per mask and per volume, a Markdown table.

Means are over masks (the paper's number) and over volume-label pairs (3D Dice); HD95 means skip
masks without a defined distance (empty prediction) and say how many they cover.

Each mode also relates per-mask Dice to the object factors of ``.factors`` (Huang et al. §4.8): the
Spearman rank correlation (a monotone trend, whatever the factor's scale) and the mean Dice per bin.
Bins hold equal numbers of masks ranked by the factor (quartiles), fewer bins when a mode has under
12 masks so that each bin keeps at least 3; a bin is reported with the range of its factor values.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import stats

from .factors import FACTORS
from .modes import ALL_MODES, PROPAGATION_MODES
from .runner import BenchmarkResults, MaskRow, VolumeRow

Summary = dict[str, dict[str, dict]]
FACTOR_BINS = 4
MIN_BIN_MASKS = 3


def summarize(results: BenchmarkResults) -> Summary:
    """``{model: {mode: {"dice_mean", "iou_mean", "hd95_mean_mm", "dice_3d_mean", "n", ..., "labels": {...}}}}``."""
    summary: Summary = {}
    for model in results.encoder:
        encoder_seconds, encoded = results.encoder[model]
        encoder_ms = 1000 * encoder_seconds / encoded if encoded else None
        masks = [row for row in results.masks if row.model == model]
        volumes = [row for row in results.volumes if row.model == model]
        modes = sorted({row.mode for row in masks} | {row.mode for row in volumes}, key=ALL_MODES.index)
        summary[model] = {}
        for mode in modes:
            mode_masks = [row for row in masks if row.mode == mode]
            mode_volumes = [row for row in volumes if row.mode == mode]
            entry = _means(mode_masks, mode_volumes)
            entry.update(_speed(mode, mode_masks, mode_volumes, encoder_ms))
            entry["factors"] = {factor: factor_analysis(mode_masks, factor) for factor in FACTORS}
            labels = list(dict.fromkeys([row.label for row in mode_masks] + [row.label for row in mode_volumes]))
            entry["labels"] = {
                label: _means([row for row in mode_masks if row.label == label],
                              [row for row in mode_volumes if row.label == label])
                for label in labels
            }
            summary[model][mode] = entry
    return summary


def _means(masks: list[MaskRow], volumes: list[VolumeRow]) -> dict:
    distances = [row.hd95_mm for row in masks if math.isfinite(row.hd95_mm)]
    return {
        "dice_mean": _mean(row.dice for row in masks),
        "iou_mean": _mean(row.iou for row in masks),
        "hd95_mean_mm": _mean(distances),
        "hd95_n": len(distances),
        "n": len(masks),
        "dice_3d_mean": _mean(row.dice_3d for row in volumes),
        "hd95_3d_mean_mm": _mean(row.hd95_mm for row in volumes if math.isfinite(row.hd95_mm)),
        "n_volumes": len(volumes),
    }


def _speed(mode: str, masks: list[MaskRow], volumes: list[VolumeRow], encoder_ms: float | None) -> dict:
    """Per-mask decoder time and the paper's FPS column: slices per second with one encoder pass each.

    Propagation is timed as a whole (it encodes the slices it walks through): slices segmented per second.
    """
    if mode in PROPAGATION_MODES:
        seconds = sum(row.seconds or 0.0 for row in volumes)
        slices = sum(row.slices for row in volumes)
        return {"decoder_ms_per_mask": None, "encoder_ms_per_slice": _round(encoder_ms),
                "slices_per_second": _round(slices / seconds) if seconds else None}
    decoder_ms = _mean(1000 * row.decoder_seconds for row in masks if row.decoder_seconds is not None)
    per_slice_ms = (encoder_ms or 0.0) + (decoder_ms or 0.0)
    return {"decoder_ms_per_mask": decoder_ms, "encoder_ms_per_slice": _round(encoder_ms),
            "slices_per_second": _round(1000 / per_slice_ms) if per_slice_ms else None}


def factor_analysis(masks: list[MaskRow], factor: str) -> dict:
    """``{"spearman_rho", "p_value", "n", "bins": [{"low", "high", "n", "dice_mean"}, ...]}`` over masks whose
    factor is defined; rho and p are None when fewer than 3 masks or a constant series leave them undefined."""
    pairs = sorted((getattr(row, factor), row.dice) for row in masks if math.isfinite(getattr(row, factor)))
    values, dices = [value for value, _ in pairs], [d for _, d in pairs]
    rho = p_value = None
    if len(pairs) >= 3 and len(set(values)) > 1 and len(set(dices)) > 1:
        result = stats.spearmanr(values, dices)
        rho, p_value = _round(result.statistic), _significant(result.pvalue)
    count = min(FACTOR_BINS, max(len(pairs) // MIN_BIN_MASKS, 1))
    bins = [{"low": _significant(values[part[0]]), "high": _significant(values[part[-1]]), "n": len(part),
             "dice_mean": _mean(dices[i] for i in part)}
            for part in np.array_split(np.arange(len(pairs)), count) if len(part)]
    return {"spearman_rho": rho, "p_value": p_value, "n": len(pairs), "bins": bins}


def _significant(value: float) -> float:
    return float(f"{float(value):.4g}")


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return _round(sum(values) / len(values)) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def write_csv(rows: list[MaskRow] | list[VolumeRow], row_type: type, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in fields(row_type)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return path


def write_summary(summary: Summary, path: Path) -> Path:
    path.write_text(json.dumps(summary, indent=1, allow_nan=False), encoding="utf-8")
    return path


def markdown(summary: Summary) -> str:
    """One table of modes × models (2D Dice, 3D Dice, masks), one per-label table per model, then Dice by
    object factor per model and mode."""
    models = list(summary)
    modes = list(dict.fromkeys(mode for model in models for mode in summary[model]))
    lines = ["| mode | " + " | ".join(f"{model} Dice | {model} 3D Dice | {model} HD95 mm | n"
                                      for model in models) + " |",
             "|---|" + "---:|" * (4 * len(models))]
    for mode in modes:
        cells = []
        for model in models:
            entry = summary[model].get(mode, {})
            cells += [_cell(entry.get("dice_mean")), _cell(entry.get("dice_3d_mean")),
                      _cell(entry.get("hd95_mean_mm"), 1), str(entry.get("n", ""))]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    speed = ["", "| model | encoder ms/slice | slices/s (box) |", "|---|---:|---:|"]
    for model in models:
        box = summary[model].get("box", {})
        any_mode = next(iter(summary[model].values()), {})
        speed.append(f"| {model} | {_cell(any_mode.get('encoder_ms_per_slice'), 0)} | "
                     f"{_cell(box.get('slices_per_second'), 2)} |")
    per_label = []
    for model in models:
        labels = list(dict.fromkeys(label for entry in summary[model].values() for label in entry["labels"]))
        per_label += ["", f"Dice per label, {model} (3D Dice in brackets):", "",
                      "| mode | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for mode, entry in summary[model].items():
            cells = [f"{_cell(entry['labels'].get(label, {}).get('dice_mean'))} "
                     f"({_cell(entry['labels'].get(label, {}).get('dice_3d_mean'))})" for label in labels]
            per_label.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines + speed + per_label + _factor_tables(summary)) + "\n"


def _factor_tables(summary: Summary) -> list[str]:
    """Per model and mode: Spearman ρ of Dice with each factor, and mean Dice per bin (factor range, masks)."""
    lines = ["", "Dice by object factor (Spearman ρ of per-mask Dice with the factor; bins of equal mask count, "
                 "ranked by the factor, with their factor range and masks):"]
    for model, entries in summary.items():
        for mode, entry in entries.items():
            analyses = entry.get("factors", {})
            columns = max((len(analysis["bins"]) for analysis in analyses.values()), default=0)
            if not columns:
                continue
            lines += ["", f"{model}, {mode}:", "",
                      "| factor | ρ | p | " + " | ".join(f"bin {n}" for n in range(1, columns + 1)) + " |",
                      "|---|---:|---:|" + "---:|" * columns]
            for factor, analysis in analyses.items():
                cells = [f"{_cell(part['dice_mean'])} [{part['low']:.3g}–{part['high']:.3g}, n {part['n']}]"
                         for part in analysis["bins"]]
                cells += [""] * (columns - len(cells))
                lines.append(f"| {factor.replace('_', ' ')} | {_cell(analysis['spearman_rho'], 2)} | "
                             f"{'–' if analysis['p_value'] is None else format(analysis['p_value'], '.2g')} | "
                             + " | ".join(cells) + " |")
    return lines


def _cell(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
