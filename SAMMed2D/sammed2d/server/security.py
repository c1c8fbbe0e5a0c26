"""Who may talk to the model process: bearer tokens and where the server may listen.

The server always requires a token. Without an explicit one it generates one and may only listen
on a loopback address; exposing the model to a network is a deliberate act that needs a token the
operator chose (and, over untrusted networks, TLS).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from ..errors import InputError

TOKEN_ENV = "SAMMED2D_TOKEN"
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class TokenChoice:
    token: str
    generated: bool


def choose_token(given: str | None) -> TokenChoice:
    """The operator's token (flag or environment), or a fresh random one."""
    if given:
        if len(given) < MIN_TOKEN_LENGTH:
            raise InputError(
                f"the token is {len(given)} characters; use at least {MIN_TOKEN_LENGTH} random characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return TokenChoice(given, generated=False)
    return TokenChoice(secrets.token_urlsafe(32), generated=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def check_bind(host: str, token: TokenChoice) -> None:
    """Refuse to expose the model beyond this machine unless the operator chose the token."""
    if not is_loopback(host) and token.generated:
        raise InputError(
            f"refusing to listen on {host} without an explicit token: anyone who can reach this machine could use "
            f"the model. Pass --token (or set {TOKEN_ENV}) with a secret you share with the clients, and prefer "
            "--ssl-certfile/--ssl-keyfile on untrusted networks; or listen on 127.0.0.1 (the default)"
        )


class BearerCheck:
    """Compares an Authorization header with the token in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def accepts(self, header: bytes | None) -> bool:
        return header is not None and hmac.compare_digest(header, self._expected)
