"""Progress of the long loops (training batches, benchmark masks): a bar for people, JSON lines for programs.

By default a tqdm bar. Inside ``json_lines(stream)`` (``sammed2d train|benchmark --progress-json``) each step is
one line ``{"done": n, "total": m, "stage": "..."}`` on ``stream`` instead: a bar redraws itself with carriage
returns for a terminal, while a parent process (the Slicer training module runs these commands as children)
needs whole lines it can parse.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional, TextIO, Union

from tqdm.auto import tqdm

_json_stream: Optional[TextIO] = None


@contextmanager
def json_lines(stream: Optional[TextIO]) -> Iterator[None]:
    """Report progress to ``stream`` as JSON lines within the block (None: bars, as outside it)."""
    global _json_stream
    previous, _json_stream = _json_stream, stream
    try:
        yield
    finally:
        _json_stream = previous


class JsonProgress:
    """The part of tqdm's interface the engine uses; writes a line when created and after every step."""

    def __init__(self, iterable: Optional[Iterable], total: int, initial: int, stage: str, stream: TextIO) -> None:
        self.iterable, self.total, self.n, self.stage, self.stream = iterable, total, initial, stage, stream
        self._write()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()  # after the loop body, as tqdm counts

    def update(self, n: int = 1) -> None:
        self.n += n
        self._write()

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Extra numbers of a bar (epoch, loss) are for people; the run's own logs keep them."""

    def close(self) -> None:
        """Nothing to tidy: every line is already written."""

    def _write(self) -> None:
        self.stream.write(json.dumps({"done": self.n, "total": self.total, "stage": self.stage}) + "\n")
        self.stream.flush()


ProgressBar = Union[tqdm, JsonProgress]


def progress_bar(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, initial: int = 0,
                 desc: str = "", disable: bool = False, **options: Any) -> ProgressBar:
    """A tqdm bar, or JSON lines inside ``json_lines``; ``disable`` silences both."""
    if _json_stream is None or disable:
        return tqdm(iterable, total=total, initial=initial, desc=desc, disable=disable, **options)
    steps = total if total is not None else len(iterable)  # type: ignore[arg-type]
    return JsonProgress(iterable, steps, initial, desc, _json_stream)
