"""The only server paths a page may name: inside the configured data folder (read) or output folder (write).

A client sends names relative to a folder; they are resolved (symbolic links followed) and refused unless
the result still lies inside that folder, so neither ``..``, an absolute path nor a link can reach out.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..interaction import InteractionError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
SEGMENTATION_SUFFIX = ".seg.nrrd"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,120}")
_MAX_LISTED = 500
_MAX_DEPTH = 4


class PathRefused(InteractionError):
    """A name that points outside the folder the page may use; nothing was read or written."""


class Folder:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve(strict=True)

    def inside(self, relative: str) -> Path:
        """``relative`` resolved under the folder, or ``PathRefused``."""
        candidate = (self.root / relative).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            raise PathRefused(f"{relative!r} lies outside the folder the page may use")
        return candidate

    def _contains(self, relative: str) -> bool:
        try:
            self.inside(relative)
        except PathRefused:
            return False
        return True

    def volumes(self) -> list[str]:
        """Volume files and DICOM series folders below the folder, as relative names (sorted, capped)."""
        found: list[str] = []
        for path in sorted(_walk(self.root, _MAX_DEPTH)):
            if len(found) >= _MAX_LISTED:
                break
            relative = path.relative_to(self.root).as_posix()
            if (is_volume_file(path.name) or (path.is_dir() and _holds_dicom(path))) and self._contains(relative):
                found.append(relative)
        return found


def is_volume_file(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(VOLUME_SUFFIXES) and not lowered.endswith(SEGMENTATION_SUFFIX)


def volume_name(file_name: str) -> str:
    """'lung2_image.nii.gz' → 'lung2_image': how a volume from a file is called on the page."""
    for suffix in VOLUME_SUFFIXES:
        if file_name.lower().endswith(suffix):
            return file_name[: -len(suffix)]
    return file_name


def output_name(name: str) -> str:
    """A plain file name for a saved segmentation (no folders), ending in .seg.nrrd."""
    name = name.strip()
    if not name.lower().endswith(SEGMENTATION_SUFFIX):
        name += SEGMENTATION_SUFFIX
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise PathRefused(f"{name!r} is not a plain file name: use letters, digits, spaces, '.', '_' and '-'")
    return name


def default_output_name(name: str) -> str:
    """The save name offered for a volume's segmentation: the volume's name made plain."""
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return output_name(plain or "segmentation")


def _walk(folder: Path, depth: int):
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        yield entry
        if depth > 1 and entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry, depth - 1)


def _holds_dicom(folder: Path) -> bool:
    try:
        return any(entry.suffix.lower() == ".dcm" for entry in folder.iterdir())
    except OSError:
        return False
