"""The one error type that means "what you gave is wrong": the server answers it with a 4xx, the CLI with
exit status 2 and one line. Anything else raised inside the engine is a fault of ours and is reported as
such (a logged 500, a traceback), never passed off as the user's mistake.
"""

from __future__ import annotations


class InputError(ValueError):
    """A request, file, prompt or option the engine cannot use; ``str()`` says what to change."""


class Cancelled(Exception):
    """Long work stopped because its caller asked (a closed stream, a superseded request): it has no result."""


class PromptOutside(InputError):
    """A point or box corner off the slice: a front-end may answer it apart (the server's ``prompt_outside``)."""
