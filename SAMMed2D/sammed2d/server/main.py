"""Start the server: check the security policy, bind, load the model, then hand over to uvicorn.

The policy is checked before the (slow) model load so a refused configuration fails at once, and
the socket is bound before the model load so ``--port 0`` can report the port it got.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import uvicorn

from ..devices import resolve_device
from ..models import LoadedModel, ViTConfig, load_model
from ..models.acceleration import can_compile, configure_threads
from ..sizes import parse_size
from .app import HttpLimits, create_app
from .security import check_bind, choose_token, is_loopback
from .service import SegmentationService, ServiceLimits
from ..errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    model: str
    checkpoint: Path | None
    device: str
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    memory_budget: str = "2G"
    embedding_budget: str = "1G"
    max_upload: str = "1G"
    max_request: str = "64M"
    threads: int | None = None
    precision: str = "auto"
    #: None: compile where possible (the server lives long enough to pay the one-off cost back)
    compile: bool | None = None
    prefetch: int = 2
    max_jobs: int = 4
    #: tests and benchmarks only: a random network of the given ViT size, reproducible through the seed
    random_weights: bool = False
    vit: str | None = None
    seed: int = 0


def serve(options: ServeOptions, announce: Callable[[str], None]) -> int:
    """Run until interrupted; ``announce`` prints the address (and a generated token) for the user."""
    token = choose_token(options.token)
    check_bind(options.host, token)
    if (options.ssl_certfile is None) != (options.ssl_keyfile is None):
        raise InputError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for path in (options.ssl_certfile, options.ssl_keyfile):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
    tls = options.ssl_certfile is not None
    if not is_loopback(options.host) and not tls:
        logger.warning("listening on %s without TLS: the token and images cross the network in clear text",
                       options.host)
    http_limits = HttpLimits(parse_size(options.max_request), parse_size(options.max_upload))
    service_limits = ServiceLimits(
        volume_budget_bytes=parse_size(options.memory_budget),
        embedding_budget_bytes=parse_size(options.embedding_budget),
        max_jobs=options.max_jobs, prefetch_radius=options.prefetch,
    )
    listener = _bind(options.host, options.port)
    configure_threads(options.threads)
    model = _load(options)
    model.encoder.warm_up(model.spec.image_size)
    _return_freed_memory()
    app = create_app(SegmentationService(model, service_limits), token.token, http_limits)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=5,
        timeout_keep_alive=60,  # clicks come seconds apart: keep the connection (and its TLS session) open
        ssl_certfile=options.ssl_certfile, ssl_keyfile=options.ssl_keyfile,
    )
    host, port = listener.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    weights = "random weights" if model.checkpoint is None else model.checkpoint.name
    announce(f"sammed2d serve: listening on {'https' if tls else 'http'}://{url_host}:{port} "
             f"(model {model.name} from {weights} on {model.device}, {model.acceleration.describe()})")
    if token.generated:
        announce(f"sammed2d serve: token {token.token} (generated; clients send it as 'Authorization: Bearer <token>'; "
                 "choose your own with --token or SAMMED2D_TOKEN)")
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol must say TCP: asyncio sets TCP_NODELAY on accepted connections only
    then, and without it every response waits ~40 ms for a delayed ACK (Nagle)."""
    listener = None
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, protocol)
        if os.name == "posix":
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
        return listener
    except OSError as error:
        if listener is not None:
            listener.close()
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}"
                         " (is another server running there? choose another --port, or 0 for any free one)") from None


def _return_freed_memory() -> None:
    """Hand the memory freed by loading and compiling back to the system (glibc keeps it otherwise: ~0.5 GB)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim, or the allocator returns memory itself


def _load(options: ServeOptions) -> LoadedModel:
    device = resolve_device(options.device)
    compile = options.compile
    if compile is None:
        compile = options.precision != "exact" and can_compile(device)
    speed = {"device": device, "precision": options.precision, "compile": compile}
    if options.random_weights:
        logger.warning("serving RANDOM weights: for tests and benchmarks only, the masks mean nothing")
        torch.manual_seed(options.seed)
        vit = ViTConfig.from_json(options.vit) if options.vit else None
        return load_model(options.model, vit=vit, random_weights=True, **speed)
    return load_model(options.model, options.checkpoint, **speed)
