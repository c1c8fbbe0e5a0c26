"""HTTP routes beside the page: volume uploads and the segmentation download.

Uploads stream into a private scratch folder (never a client-chosen path), stop at the size limit, are read
by the engine's readers off the event loop and deleted afterwards; a file that is not an image is refused
with the reader's reason. The download writes the shown segmentation as .seg.nrrd into scratch and sends it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from pathlib import Path

from aiohttp import BodyPartReader, web

from ..errors import InputError
from ..interaction import InteractionError
from .editor import PageEditor
from .loading import read_uploaded
from .paths import default_output_name, volume_name

logger = logging.getLogger(__name__)

UPLOAD_PATH = "/upload"
DOWNLOAD_PATH = "/download"
_CHUNK = 1 << 20
_MAX_FILES = 5000


class TooLarge(Exception):
    pass


class FileRoutes:
    def __init__(self, editor: PageEditor, state, max_upload: int, scratch: Path) -> None:
        self.editor = editor
        self.state = state
        self.max_upload = max_upload
        self.scratch = scratch

    def install(self, app: web.Application) -> None:
        app.router.add_post(UPLOAD_PATH, self.upload)
        app.router.add_get(DOWNLOAD_PATH, self.download)

    async def upload(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self.max_upload + _CHUNK:  # the form's own bytes are small
            return self._refuse(413, self._too_large())
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            name = await self._receive(request, folder)
            volume = await asyncio.get_running_loop().run_in_executor(None, read_uploaded, folder)
        except TooLarge:
            return self._refuse(413, self._too_large())
        except (ValueError, FileNotFoundError) as error:
            return self._refuse(415, f"not opened: {error}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        with self.state:
            self.editor.add_volume(volume, name)
            self.state.status = f"Opened the upload {name} ({' × '.join(map(str, volume.shape[::-1]))} voxels)."
        return web.json_response({"message": ""})

    async def download(self, request: web.Request) -> web.Response:
        volume = self.editor.editor_node.GetSourceVolumeNode()
        if volume is None:
            raise web.HTTPNotFound(text="open a volume first")
        name = default_output_name(volume.GetName())
        with tempfile.TemporaryDirectory(dir=self.scratch) as folder:
            path = Path(folder) / name
            try:
                self.editor.write_segmentation(path)
            except (InteractionError, OSError) as error:
                raise web.HTTPInternalServerError(text=str(error)) from None
            body = path.read_bytes()
        return web.Response(body=body, content_type="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def _receive(self, request: web.Request, folder: Path) -> str:
        """Write each file part into ``folder`` under a plain name; returns a name for the volume."""
        reader = await request.multipart()
        total, names = 0, []
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                continue
            if len(names) >= _MAX_FILES:
                raise InputError(f"more than {_MAX_FILES} files")
            name = _plain(part.filename, len(names))
            names.append(name)
            with (folder / name).open("wb") as file:
                while chunk := await part.read_chunk(_CHUNK):
                    total += len(chunk)
                    if total > self.max_upload:
                        raise TooLarge()
                    file.write(chunk)
        if not names:
            raise InputError("the upload held no file")
        return _volume_name(names)

    def _too_large(self) -> str:
        return f"too large: this page accepts uploads up to {self.max_upload / 2**20:.0f} MiB (--max-upload)"

    def _refuse(self, status: int, message: str) -> web.Response:
        logger.warning("upload refused: %s", message)
        with self.state:
            self.editor.report(f"The upload was {message}")
        return web.json_response({"message": f"The upload was {message}"}, status=status)


def _plain(filename: str, index: int) -> str:
    """A file name without folders or odd characters, unique within one upload."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename.replace("\\", "/")).name).lstrip(".") or "file"
    return f"{index:04d}_{base}"


def _volume_name(names: list[str]) -> str:
    return "DICOM series" if len(names) > 1 else volume_name(names[0].split("_", 1)[1])
