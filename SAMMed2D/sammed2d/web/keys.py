"""The page's keyboard shortcuts: one table for what the keys do and for the list shown on the page."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    keys: tuple[str, ...]  # as the page names them: lower-case key, "ctrl+" / "shift+" prefixes
    action: str
    label: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut(("p",), "point+", "+ point: click inside the structure"),
    Shortcut(("n",), "point-", "− point: click outside it"),
    Shortcut(("b",), "box", "Box: drag around the structure"),
    Shortcut(("enter",), "apply", "Apply the preview to the selected segment"),
    Shortcut(("escape", "d"), "cancel", "Cancel the prompts and the preview"),
    Shortcut(("g",), "propagate", "Propagate through the neighbouring slices"),
    Shortcut(("s",), "suggest", "Suggest structures on the slice last clicked (axial at first)"),
    Shortcut(("m",), "next_suggestion", "Show the next suggestion"),
    Shortcut(("ctrl+z",), "undo", "Undo"),
    Shortcut(("ctrl+y", "ctrl+shift+z"), "redo", "Redo"),
)

ACTION_OF_KEY: dict[str, str] = {key: shortcut.action for shortcut in SHORTCUTS for key in shortcut.keys}


def describe(shortcut: Shortcut) -> str:
    """'Ctrl+Y / Ctrl+Shift+Z' for the page's list."""
    return " / ".join("+".join(part.capitalize() for part in key.split("+")) for key in shortcut.keys)
