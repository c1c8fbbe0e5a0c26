"""The request guard in front of every route: token, body size, fault containment, one log line.

It is plain ASGI (no per-request task or body buffering) so it adds microseconds to a click, and it
answers before the app runs: a request without the token or with an oversized body is refused from
its headers alone, before any of the body is read.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .security import TOKEN_ENV, BearerCheck

logger = logging.getLogger("sammed2d.server.requests")

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestGuard:
    def __init__(self, app: ASGIApp, *, bearer: BearerCheck, body_limit: Callable[[str, str], int]) -> None:
        self.app = app
        self.bearer = bearer
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        status: list[int] = []

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            refusal = self._refusal(scope)
            await (refusal or self.app)(scope, receive, tracked_send)
        except ClientDisconnect:
            status.append(499)  # the client went away mid-response (a closed propagation stream, say)
        except Exception:
            logger.exception("internal error on %s %s", method, path)
            if not status:
                detail = "internal server error; the details are in the server log"
                await error_response(500, "internal", detail)(scope, receive, tracked_send)
        finally:
            client = scope.get("client") or ("-", 0)
            logger.info("%s %s %s %d %.1f ms", client[0], method, path, status[-1] if status else 0,
                        (time.perf_counter() - started) * 1000)

    def _refusal(self, scope: Scope):
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        if not self.bearer.accepts(authorization):
            detail = (
                "wrong token: use the token that `sammed2d serve` printed or was started with"
                if authorization else "this server needs a token: send the header 'Authorization: Bearer <token>'"
            )
            return error_response(401, "unauthorized", f"{detail} (--token or {TOKEN_ENV} on the server)",
                                  {"WWW-Authenticate": "Bearer"})
        if scope["method"] not in _BODY_METHODS:
            return None
        length = headers.get(b"content-length")
        if length is None:
            return error_response(411, "length_required", "send the body with a Content-Length header")
        try:
            size = int(length)
        except ValueError:
            return error_response(400, "bad_request", f"Content-Length {length!r} is not a number")
        limit = self.body_limit(scope["method"], scope["path"])
        if size > limit:
            return error_response(413, "too_large", f"the request body is {size} bytes; this server accepts at most "
                                  f"{limit} on {scope['path']} (see limits in GET /v1/info)")
        return None
