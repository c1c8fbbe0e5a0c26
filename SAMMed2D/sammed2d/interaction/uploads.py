"""The source volume on the model server: sent once per volume and intensity mapping, again only when
its voxels change.

The voxels are copied on the GUI thread (VTK objects are not thread-safe) only when the image data's
modification time differs from the last upload; the upload itself runs on the worker, and the server is
asked by content id first, so a server that already holds the voxels receives none.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..client import Client, RemoteVolume
from ..wire import DTYPES
from .errors import InteractionError
from .slice_mapping import lps_geometry


@dataclass(frozen=True)
class VolumeSnapshot:
    """What the worker needs to make a volume available on a server."""

    key: tuple[str, str]
    modified: int
    array: np.ndarray | None  # None when the last upload is still valid
    geometry: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]
    preset: str


class VolumeUploads:
    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._uploaded: dict[tuple[str, str], tuple[int, str, RemoteVolume]] = {}
        self._lock = threading.Lock()

    def snapshot(self, volume_node, preset: str) -> VolumeSnapshot:
        """On the GUI thread: the volume's state, with a copy of its voxels if they must travel."""
        from vtkmodules.util import numpy_support

        image = volume_node.GetImageData()
        key = (volume_node.GetID(), preset)
        modified = int(image.GetMTime())
        with self._lock:
            known = self._uploaded.get(key)
        array = None
        if known is None or known[0] != modified:
            size_i, size_j, size_k = image.GetDimensions()
            if image.GetNumberOfScalarComponents() != 1:
                raise InteractionError(f"'{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} "
                                       "components per voxel; select a scalar (grey-level) volume as source volume")
            scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
            if scalars.nbytes > self.max_bytes:
                raise InteractionError(
                    f"'{volume_node.GetName()}' is {scalars.nbytes / 2**20:.0f} MiB, more than the "
                    f"{self.max_bytes / 2**20:.0f} MiB this extension sends to a model server: crop it first "
                    "(Crop Volume module) to the region you segment")
            array = np.array(scalars.reshape(size_k, size_j, size_i), copy=True)
            if array.dtype.name not in DTYPES:  # e.g. int64 or uint64 voxels: the models see floats anyway
                array = array.astype(np.float32)
        return VolumeSnapshot(key, modified, array, lps_geometry(volume_node), preset)

    def resolve(self, client: Client, snapshot: VolumeSnapshot) -> RemoteVolume:
        """On the worker: the server-side volume for ``snapshot`` (uploading the voxels when needed)."""
        with self._lock:
            known = self._uploaded.get(snapshot.key)
        if snapshot.array is None and known is not None and known[1] == client.url:
            return known[2]
        array = snapshot.array if snapshot.array is not None else known[2].array  # type: ignore[index]
        spacing, origin, direction = snapshot.geometry
        remote = client.upload(array, spacing, origin, direction, preset=snapshot.preset)
        with self._lock:
            self._uploaded[snapshot.key] = (snapshot.modified, client.url, remote)
        return remote
