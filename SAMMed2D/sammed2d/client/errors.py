"""What can go wrong when talking to ``sammed2d serve``, each with a message that says what to do."""

from __future__ import annotations


class SAMMed2DClientError(Exception):
    """Base of every client error; ``str()`` is written for the user."""


class ServerNotRunning(SAMMed2DClientError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"no SAM-Med2D server answers at {url} ({reason}): start it with `sammed2d serve` (or from the SAM-Med2D "
            "module panel), or check the address, the port and http versus https"
        )
        self.url = url


class ServerTimeout(SAMMed2DClientError):
    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(
            f"the server at {url} did not answer within {seconds:g} s: it may be busy (a large model on a CPU, a long "
            "propagation); try again, or raise the client's timeout"
        )


class Unauthorized(SAMMed2DClientError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            f"the server at {url} refused the token (wrong token or none): use the token `sammed2d serve` printed or "
            f"was started with (--token / SAMMED2D_TOKEN). Server said: {detail}"
        )


class Cancelled(SAMMed2DClientError):
    """The caller stopped a long request (its ``cancel()`` said so); the server stops working on it too."""


class ProtocolMismatch(SAMMed2DClientError):
    """The server speaks another protocol version, or is not a SAM-Med2D server at all."""


class ApiError(SAMMed2DClientError):
    """A refusal from the server, with its HTTP status, error code and explanation."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.detail = detail


class BadRequest(ApiError):
    """The request was wrong (4xx): the detail says what to change."""


class VolumeEvicted(BadRequest):
    """The server no longer holds the volume; the client re-uploads it and retries once by itself."""


class ServerError(ApiError):
    """A fault on the server (5xx); it is logged there."""
