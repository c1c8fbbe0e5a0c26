"""The page's model server: a ``sammed2d serve`` child started here, or a running server elsewhere.

Starting a local server loads a model (tens of seconds on a CPU), so it happens on a thread while the page
is already up; until it answers, a prompt is refused with a message saying so. The core asks ``client()``
at each request; a local child that died is reported as such rather than as a network error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..client import Client, LocalServer, SAMMed2DClientError
from ..interaction import InteractionError

logger = logging.getLogger(__name__)


class ModelConnection:
    def __init__(self, serve_args: Sequence[str] = (), url: str | None = None, token: str | None = None) -> None:
        """A remote server when ``url`` is given, else a local child with ``serve_args``."""
        self._serve_args = list(serve_args)
        self._url = url
        self._token = token
        self.local: LocalServer | None = None
        self._client: Client | None = None
        self._error: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect (remote) or start the child (local) in the background."""
        self._thread = threading.Thread(target=self._connect, name="sammed2d-model-start", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the server answers or failed (scripts, tests); True if it answers."""
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            return self._client is not None

    def client(self) -> Client:
        """The client for a request now, or an ``InteractionError`` telling the user why there is none."""
        with self._lock:
            client, error = self._client, self._error
        if error is not None:
            raise InteractionError(f"the model server is not available: {error}")
        if client is None:
            raise InteractionError("the model server is still starting (loading the model can take a minute on a "
                                   "CPU): prompt again in a moment")
        if self.local is not None and self.local.process is not None and self.local.process.poll() is not None:
            raise InteractionError(f"the local model server has stopped (exit code {self.local.process.returncode}); "
                                   "nothing was changed. Restart `sammed2d web` to start it again")
        return client

    def describe(self) -> str:
        """One line for the page."""
        with self._lock:
            client, error = self._client, self._error
        where = f"remote server {self._url}" if self._url else "local server"
        if error is not None:
            return f"{where}: failed ({error})"
        if client is None:
            return f"{where}: starting…"
        model = client.info.get("model", {})
        return f"{where}: {model.get('id', '?')} on {model.get('device', '?')}"

    def close(self) -> None:
        if self.local is not None:
            self.local.stop()
        elif self._client is not None:
            self._client.close()

    def _connect(self) -> None:
        try:
            if self._url is not None:
                client = Client(self._url, self._token or "")
            else:
                self.local = LocalServer(self._serve_args)
                client = self.local.start()
        except SAMMed2DClientError as error:
            logger.error("model server: %s", error)
            with self._lock:
                self._error = str(error).splitlines()[0]
            return
        logger.info("model server ready at %s", client.url)
        with self._lock:
            self._client = client
