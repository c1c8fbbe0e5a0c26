"""Who may use the page: same-origin requests only, and a password when the page is reachable from a network.

Every HTTP request and the websocket go through one aiohttp middleware. Requests that carry another site's
``Origin`` are refused (a page elsewhere in the user's browser must not drive this one), and on a loopback
address the ``Host`` must be a loopback name (against DNS rebinding). With a password, a login form sets a
random session cookie (HttpOnly, SameSite=Strict) that every other request must carry.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from ..server.security import is_loopback

logger = logging.getLogger(__name__)

COOKIE = "sammed2d_session"
LOGIN_PATH = "/login"
_FAILED_LOGIN_DELAY_S = 1.0
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SAM-Med2D</title>
<style>body{{font-family:sans-serif;background:#1e1e1e;color:#eee;display:flex;justify-content:center;
margin-top:15vh}}form{{display:flex;flex-direction:column;gap:.6em;width:18em}}input,button{{font-size:1em;
padding:.4em}}p{{color:#f77}}</style></head>
<body><form method="post" action="{action}"><h2>SAM-Med2D</h2>
<label for="password">Password</label><input id="password" name="password" type="password" autofocus>
<button type="submit">Open</button>{error}</form></body></html>"""


class AccessGuard:
    """The middleware and the login routes; ``password`` None means no login (loopback only)."""

    def __init__(self, host: str, password: str | None) -> None:
        self.loopback = is_loopback(host)
        self._password = password.encode() if password is not None else None
        self._sessions: set[str] = set()

    def install(self, app: web.Application) -> None:
        """Add the checks in front of every route of ``app`` (before it starts), and the login form."""
        app.middlewares.append(self._middleware)
        if self._password is not None:
            app.router.add_get(LOGIN_PATH, self._login_form)
            app.router.add_post(LOGIN_PATH, self._login)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            logger.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, refusal)
            raise web.HTTPForbidden(text=refusal)
        if self._password is not None and request.path != LOGIN_PATH and not self._logged_in(request):
            if request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket":
                raise web.HTTPFound(LOGIN_PATH)
            raise web.HTTPUnauthorized(text="log in first")
        return await handler(request)

    def _refusal(self, request: web.Request) -> str | None:
        host = request.headers.get("Host", "")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return f"cross-origin request from {origin}"
        if self.loopback and _host_name(host) not in _LOOPBACK_NAMES:
            return f"Host {host!r} is not this machine"
        return None

    def _logged_in(self, request: web.Request) -> bool:
        session = request.cookies.get(COOKIE, "")
        return any(hmac.compare_digest(session, known) for known in self._sessions)

    async def _login_form(self, request: web.Request) -> web.Response:
        return _page("")

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("password", "")).encode()
        assert self._password is not None
        if not hmac.compare_digest(given, self._password):
            logger.warning("failed login from %s", request.remote)
            await asyncio.sleep(_FAILED_LOGIN_DELAY_S)  # slows guessing down
            return _page("<p>Wrong password.</p>", status=401)
        session = secrets.token_urlsafe(32)
        self._sessions.add(session)
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
        raise response


def _page(error: str, status: int = 200) -> web.Response:
    return web.Response(text=_LOGIN_PAGE.format(action=html.escape(LOGIN_PATH), error=error),
                        content_type="text/html", status=status)


def _host_name(host: str) -> str:
    """'127.0.0.1:8080' → '127.0.0.1', '[::1]:8080' → '[::1]'."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
