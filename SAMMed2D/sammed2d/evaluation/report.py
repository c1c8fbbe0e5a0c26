"""Benchmark results as files: summary.json, one CSV row per mask and per volume, a Markdown table.

Means are over masks (the paper's number) and over volume-label pairs (3D Dice); HD95 means skip
masks without a defined distance (empty prediction) and say how many they cover.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable

from .modes import ALL_MODES, PROPAGATION_MODES
from .runner import BenchmarkResults, MaskRow, VolumeRow

Summary = dict[str, dict[str, dict]]


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
    """One table of modes × models (2D Dice, 3D Dice, masks), then one per-label table per model."""
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
    return "\n".join(lines + speed + per_label) + "\n"


def _cell(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
