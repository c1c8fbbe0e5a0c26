"""Why the service refuses a request, by kind: the service and the job table say what went wrong, the routes
say how HTTP spells it (``routes.STATUS``).

A refusal carries a stable code for programs and a sentence for people. The caller's other mistakes are the
engine's ``InputError``; anything else is a fault of ours.
"""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Mismatch(Refusal):
    """The request contradicts the data it names (an id that is not the content's hash, a result of another slice)."""


class Unknown(Refusal):
    """What the request names is not held here (never sent, deleted, or evicted to stay within a budget)."""


class TooLarge(Refusal):
    """Over one of the server's memory limits."""


class Busy(Refusal):
    """Every slot for this work is taken: try again when one is free."""
