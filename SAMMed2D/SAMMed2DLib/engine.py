"""Finding the engine package that ships next to the module, and what this Python can do with it.

Imported on demand, so a missing or broken engine never stops Slicer from loading the modules;
the reason is kept to show the user, together with the state of the packages the engine needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

from .dependencies import DependencyReport, check_dependencies

ENGINE_PACKAGE = "sammed2d"


@dataclass(frozen=True)
class EngineStatus:
    version: Optional[str]
    error: Optional[str]  # why the engine is unusable; None when it imported
    dependencies: Optional[DependencyReport] = None  # None when not checked

    @property
    def text(self) -> str:
        """The panel's status: the engine version or why it failed, then what the installed packages allow."""
        if self.version is not None:
            engine = f"{ENGINE_PACKAGE} {self.version}"
        else:
            engine = (f"The SAM-Med2D engine package '{ENGINE_PACKAGE}' could not be imported: {self.error}. "
                      "Reinstall the SAMMed2D extension.")
        if self.dependencies is None:
            return engine
        return f"{engine}\n{self.dependencies.summary()}"


def engineStatus() -> EngineStatus:
    report = check_dependencies()
    try:
        engine = importlib.import_module(ENGINE_PACKAGE)
    except Exception as error:  # any failure (missing file, broken dependency) means "unavailable"
        return EngineStatus(None, f"{type(error).__name__}: {error}", report)
    version = getattr(engine, "__version__", None)
    if version is None:
        return EngineStatus(None, f"'{ENGINE_PACKAGE}' was imported but has no __version__", report)
    return EngineStatus(str(version), None, report)
