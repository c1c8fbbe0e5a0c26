"""``sammed2d web`` assembled: trame server, Slicer scene and views, the editor, the page, routes, the poll task.

Everything that touches MRML or VTK runs on the server's asyncio loop. The model runs in another process;
a periodic task hands its answers to the core (``poll``) and pushes the state to the page, so the views stay
responsive while the model works.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from trame.app import get_server
from trame_rca.utils import RcaViewAdapter
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand

from ..volumes import read_volume
from .editor import PageEditor
from .model import ModelConnection
from .options import WebOptions
from .paths import Folder, volume_name
from .routes import FileRoutes
from .security import AccessGuard
from .state import initial_state
from .ui import build_page, view_overlay

logger = logging.getLogger(__name__)

RENDER_WINDOW_ENV = "VTK_DEFAULT_OPENGL_WINDOW"
#: how often the model's answers are looked for: an answer waits at most this long (the check itself is cheap)
POLL_S = 0.02


def configure_rendering() -> None:
    """Off-screen rendering without a display: Mesa's EGL, unless a display or an explicit choice exists
    (VTK would otherwise crash on its first render). Must run before the first render window is made."""
    if not os.environ.get("DISPLAY") and RENDER_WINDOW_ENV not in os.environ:
        os.environ[RENDER_WINDOW_ENV] = "vtkEGLRenderWindow"


def page_layout():
    """Axial view large on the left; sagittal, coronal and 3D stacked on the right."""
    side = Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.sagittal_view(),
                                             ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.threed_view()])
    return Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), side], flex_sizes=["3", "2"])


def refit_when_resized(view) -> None:
    """The page sizes the views only once it is shown: fit the volume into the new size, on the same slice."""

    def refit(*_) -> None:
        offset = view.get_slice_value()
        view.fit_view_to_content()
        view.set_slice_value(offset)

    view.interactor().AddObserver(vtkCommand.WindowResizeEvent, refit, -1.0)  # after the view's own resize


class WebApp:
    """One page server. Build it on the loop that will run it (views and their GL contexts live there)."""

    def __init__(self, options: WebOptions, name: str = "sammed2d-web") -> None:
        configure_rendering()
        self.options = options
        self.server = get_server(name, client_type="vue3")
        # this process's command line is sammed2d's, not trame's: trame must not read it
        self.server.cli.parse_known_args = functools.partial(self.server.cli.parse_known_args, [])
        self.server.enable_module(trame_slicer_module)
        self.state = self.server.state
        self.state.update(initial_state(model_preset=options.preset, max_upload=options.max_upload))
        self.state.trame__title = "SAM-Med2D"
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=view_overlay,
                               three_d_view_ui_f=view_overlay)
        self.layout = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout.register_layout("sammed2d", page_layout())
        self.layout.set_layout("sammed2d")
        for view in self.slicer.view_manager.get_slice_views():
            refit_when_resized(view)
        self.model = ModelConnection(options.serve_args, options.server_url, options.token)
        data = Folder(options.data_dir) if options.data_dir is not None else None
        output = Folder(options.output_dir) if options.output_dir is not None else None
        self.editor = PageEditor(self.slicer, self.state, self.model, preset=options.preset, data=data, output=output)
        if data is not None:
            self.state.data_files = data.volumes()
        self._open_given_volumes()
        self.scratch = Path(tempfile.mkdtemp(prefix="sammed2d-web-"))
        self.routes = FileRoutes(self.editor, self.state, options.max_upload, self.scratch)
        self.guard = AccessGuard(options.host, options.password)
        self.page = build_page(self.server, self.editor, self.layout, data_folder=data is not None,
                               output_folder=output is not None)
        self.server.controller.on_server_bind.add(self._bind)
        #: the views' remote-area adapters, each with a render loop that must stop before the GL contexts go
        self._view_adapters: list[RcaViewAdapter] = []
        self.server.controller.rc_area_register.add(self._view_adapters.append)

    @property
    def port(self) -> int:
        return self.server.port

    async def serve(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Run until the server stops; ``on_ready(url)`` once it listens."""
        self.model.start()
        if on_ready is not None:
            self.server.controller.on_server_ready.add(lambda **_: on_ready(self.url))
        pump = asyncio.create_task(self._pump())
        try:
            await self.server.start(port=self.options.port, host=self.options.host, open_browser=False,
                                    show_connection_info=False, exec_mode="coroutine", timeout=0, thread=True)
        finally:
            pump.cancel()
            # a frame rendered after close() would make a view's GL context current again on this thread, to be
            # destroyed later from another one (a crash at interpreter exit when the loop ran on a worker thread)
            await asyncio.gather(*(adapter.close() for adapter in self._view_adapters), return_exceptions=True)
            self.close()

    @property
    def url(self) -> str:
        host = self.options.host if ":" not in self.options.host else f"[{self.options.host}]"
        return f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        await self.server.stop()

    def close(self) -> None:
        self.editor.close()
        self.model.close()
        for view in self.slicer.view_manager.get_views():
            view.finalize()  # release the GL contexts on the thread that made them
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _bind(self, web_server) -> None:
        self.guard.install(web_server.app)
        self.routes.install(web_server.app)

    def _open_given_volumes(self) -> None:
        for path in self.options.volumes:
            self.editor.add_volume(read_volume(path), volume_name(path.name))
        if self.options.volumes:
            self.editor.show_volume(self.state.volumes[0]["id"])
        if self.options.segmentation is not None:
            self.editor.import_segmentation(self.options.segmentation)

    async def _pump(self) -> None:
        """Hand the model's answers to the core and push the state (and re-rendered views) to the page."""
        while True:
            try:
                with self.state:
                    self.editor.poll()
            except Exception:  # a bug must not stop the page from updating
                logger.exception("poll failed")
            await asyncio.sleep(POLL_S)


def run(options: WebOptions) -> int:
    """What ``sammed2d web`` runs: serve until interrupted (Ctrl+C)."""

    async def main() -> None:
        app = WebApp(options)
        # a terminated page stops its model server child too (Ctrl+C does so through KeyboardInterrupt)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(app.stop()))
        await app.serve(on_ready=lambda url: print(f"SAM-Med2D web page at {url} (Ctrl+C stops it)", flush=True))

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0
