"""A JSON-lines record of a training run: one line per step and per epoch, appended across resumes.

Machines read it (plots, the benchmark, a tail -f); humans get the same figures through logging.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO


class RunLog:
    """Appends events to ``path``; with ``path=None`` (non-main processes) it records nothing."""

    def __init__(self, path: Path | None) -> None:
        self._handle: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
        self._handle.flush()  # a killed run keeps every line written before the kill

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
