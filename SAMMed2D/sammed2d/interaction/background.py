"""Model requests off the caller's thread, answers delivered on it, stale answers dropped.

The GUI thread (Qt in Slicer, the asyncio loop in the web page) submits work and calls ``poll()`` from
its own timer; ``poll`` hands finished answers and progress events to their callbacks on that thread,
where MRML may be touched. Each submission on a channel supersedes the earlier ones: an answer that is
no longer the newest is never delivered (and work not yet started is skipped), so a quick second click
can never be overwritten by the first click's late answer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class Superseded(Exception):
    """Raised inside work that a newer submission on its channel made pointless."""


@dataclass
class _Task:
    channel: str
    ticket: int
    future: Future
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]


class BackgroundRunner:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sammed2d-interaction")
        self._tasks: list[_Task] = []
        self._latest: dict[str, int] = {}
        self._events: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._tickets = 0
        #: answers dropped because a newer request on their channel had been made
        self.dropped = 0

    def submit(self, channel: str, work: Callable[[Callable[[], bool]], Any], on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None]) -> int:
        """Run ``work(is_current)`` on the worker; ``is_current()`` tells it whether it still matters."""
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            self._latest[channel] = ticket

        def is_current() -> bool:
            return self._latest.get(channel) == ticket

        def run() -> Any:
            if not is_current():
                raise Superseded()
            return work(is_current)

        self._tasks.append(_Task(channel, ticket, self._executor.submit(run), on_done, on_error))
        return ticket

    def supersede(self, channel: str) -> None:
        """Forget the answer of whatever runs on ``channel`` (the user cancelled or moved on)."""
        with self._lock:
            self._tickets += 1
            self._latest[channel] = self._tickets

    def post(self, callback: Callable[[], None]) -> None:
        """From the worker: have ``callback`` run on the polling thread at the next ``poll``."""
        self._events.put(callback)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def poll(self) -> bool:
        """Deliver what is ready (call on the GUI thread); returns whether work is still pending."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            event()
        for task in [task for task in self._tasks if task.future.done()]:
            self._tasks.remove(task)
            if self._latest.get(task.channel) != task.ticket:
                self.dropped += 1
                continue
            error = task.future.exception()
            if isinstance(error, Superseded):
                self.dropped += 1
            elif error is not None:
                task.on_error(error)
            else:
                task.on_done(task.future.result())
        return self.busy

    def wait(self, timeout: float = 600.0) -> None:
        """Poll until nothing is pending: for scripts and tests, which have no event loop."""
        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model did not answer within {timeout:g} s")
            time.sleep(0.01)

    def shutdown(self) -> None:
        for channel in list(self._latest):
            self.supersede(channel)
        self._executor.shutdown(wait=False, cancel_futures=True)
