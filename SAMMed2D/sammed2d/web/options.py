"""What ``sammed2d web`` was asked to do, parsed and checked before anything heavy is imported or started.

A refused configuration (a network address without a password, a model both local and remote) fails
here, at once, with a message that says what to change.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..intensity import PRESETS
from ..server.security import TOKEN_ENV, is_loopback
from ..sizes import parse_size

PASSWORD_ENV = "SAMMED2D_WEB_PASSWORD"
MIN_PASSWORD_LENGTH = 12
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class WebOptions:
    volumes: tuple[Path, ...] = ()
    segmentation: Path | None = None
    #: a local model server (started as a child): its ``sammed2d serve`` arguments
    serve_args: tuple[str, ...] = ()
    #: or a remote one
    server_url: str | None = None
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    password: str | None = field(default=None, repr=False)
    data_dir: Path | None = None
    output_dir: Path | None = None
    max_upload: int = 1 << 30
    preset: str = "percentile"

    @property
    def remote(self) -> bool:
        return self.server_url is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volumes", type=Path, nargs="*", metavar="VOLUME",
                        help="volumes to open: NRRD, NIfTI, MHA … or a folder holding one DICOM series")
    parser.add_argument("--segmentation", type=Path, help="a .seg.nrrd or label map on the first volume's grid, "
                        "to continue editing")
    parser.add_argument("--preset", default="percentile", choices=PRESETS,
                        help="how voxels are mapped to the model's 0..255 (default: %(default)s; the page can "
                             "change it)")
    model = parser.add_argument_group("model server (a local child process, or a remote one)")
    model.add_argument("--model", help="model of the local server (default: the server's, litemedsam)")
    model.add_argument("--checkpoint", type=Path, help="weights file of the local server's model")
    model.add_argument("--device", help="device of the local server: cuda, cpu or auto")
    model.add_argument("--threads", type=int, help="CPU threads of the local server")
    model.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the local server's encoder (slow start, faster slices)")
    model.add_argument("--server", dest="server_url", metavar="URL",
                       help="use a running `sammed2d serve` at URL instead of starting one")
    model.add_argument("--token", help=f"that server's token (default: ${TOKEN_ENV})")
    web = parser.add_argument_group("the page")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine "
                     "only); any other address needs --password")
    web.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s; 0 picks one)")
    web.add_argument("--password", help=f"password the page asks for (default: ${PASSWORD_ENV}); prefer the "
                     "variable, other users of the machine can read command lines")
    web.add_argument("--data-dir", type=Path, help="folder whose volumes the page may open (nothing outside it)")
    web.add_argument("--output-dir", type=Path, help="folder the page may save segmentations to (nothing outside "
                     "it); without it the page only offers downloads")
    web.add_argument("--max-upload", default="1G", help="largest volume upload from the page (default: %(default)s)")


def options_from_arguments(args: argparse.Namespace) -> WebOptions:
    """Check the arguments (security policy first) and turn them into options."""
    password = args.password or os.environ.get(PASSWORD_ENV) or None
    check_exposure(args.host, password)
    local_flags = [flag for flag, value in (("--model", args.model), ("--checkpoint", args.checkpoint),
                                            ("--device", args.device), ("--threads", args.threads),
                                            ("--compile", args.compile)) if value is not None]
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.server_url is not None:
        if local_flags:
            raise InputError(f"{', '.join(local_flags)} configure a local model server; with --server the remote "
                             "server's own model is used: drop them, or drop --server")
        if not token:
            raise InputError(f"--server needs the server's token: pass --token or set {TOKEN_ENV}")
    elif args.token:
        raise InputError("--token is for a remote server (--server URL); a local server gets a fresh token by itself")
    for path in args.volumes:
        if not path.exists():
            raise InputError(f"{path} does not exist")
    if args.segmentation is not None and not args.volumes:
        raise InputError("--segmentation needs a volume to lie on: name the volume too")
    for flag, folder in (("--data-dir", args.data_dir), ("--output-dir", args.output_dir)):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{flag} {folder} is not a folder")
    return WebOptions(
        volumes=tuple(args.volumes), segmentation=args.segmentation, serve_args=tuple(_serve_args(args)),
        server_url=args.server_url, token=token if args.server_url else None, host=args.host, port=args.port,
        password=password, data_dir=args.data_dir, output_dir=args.output_dir,
        max_upload=parse_size(args.max_upload), preset=args.preset,
    )


def check_exposure(host: str, password: str | None) -> None:
    """Refuse to show the page beyond this machine without a password of reasonable length."""
    if not is_loopback(host) and not password:
        raise InputError(
            f"refusing to listen on {host} without a password: anyone who can reach this machine could open, edit "
            f"and save segmentations. Pass --password (or set {PASSWORD_ENV}), and put the page behind HTTPS on "
            "untrusted networks; or listen on 127.0.0.1 (the default)")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"the password is {len(password)} characters; use at least {MIN_PASSWORD_LENGTH}")


def _serve_args(args: argparse.Namespace) -> list[str]:
    serve: list[str] = []
    for flag, value in (("--model", args.model), ("--checkpoint", args.checkpoint), ("--device", args.device),
                        ("--threads", args.threads)):
        if value is not None:
            serve += [flag, str(value)]
    if args.compile is not None:
        serve.append("--compile" if args.compile else "--no-compile")
    return serve
