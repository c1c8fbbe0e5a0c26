"""Finding the engine package that ships next to the module.

Imported on demand, so a missing or broken engine never stops Slicer from loading the modules;
the reason is kept to show the user.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

ENGINE_PACKAGE = "sammed2d"


@dataclass(frozen=True)
class EngineStatus:
    version: Optional[str]
    error: Optional[str]  # why the engine is unusable; None when it imported


def engineStatus() -> EngineStatus:
    try:
        engine = importlib.import_module(ENGINE_PACKAGE)
    except Exception as error:  # any failure (missing file, broken dependency) means "unavailable"
        return EngineStatus(None, f"{type(error).__name__}: {error}")
    version = getattr(engine, "__version__", None)
    if version is None:
        return EngineStatus(None, f"'{ENGINE_PACKAGE}' was imported but has no __version__")
    return EngineStatus(str(version), None)
