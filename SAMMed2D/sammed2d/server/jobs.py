"""Propagation jobs: each runs in its own thread, streams its events and can be cancelled.

A job's model calls are background work (``ModelLock.background``), so clicks from any client go
first. Cancelling sets a flag the propagation checks before every slice; a finished job stays
visible for a while so a client can read how it ended.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from ..bounded_lru import BoundedLRU
from ..propagation import Propagation
from ..wire import pack_mask
from .refusals import Busy
from .locking import ModelLock

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any] | None], None]  # None ends the stream


@dataclass
class JobStatus:
    id: str
    volume_id: str
    axis: str
    state: str = "running"  # running, finished, cancelled, failed
    done: int = 0
    planned: int | None = None


class PropagationJob:
    def __init__(self, propagation: Propagation, volume_id: str, lock: ModelLock, emit: Emit) -> None:
        self.status = JobStatus(uuid.uuid4().hex, volume_id, propagation.axis)
        self.propagation = propagation
        self._lock = lock
        self._emit = emit
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sammed2d-job-{self.status.id[:8]}", daemon=True)
        self._on_end: Callable[[PropagationJob], None] = lambda job: None

    @property
    def id(self) -> str:
        return self.status.id

    def cancel(self) -> None:
        self._cancel.set()

    def start(self, on_end: Callable[["PropagationJob"], None]) -> None:
        self._on_end = on_end
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _progress(self, done: int, planned: int, index: int) -> None:
        result = self.propagation.shown(index)
        self.status.done, self.status.planned = done, planned
        self._emit({"event": "slice", "index": index, "done": done, "planned": planned, "score": result.score,
                    "mask": pack_mask(result.mask)})

    def _run(self) -> None:
        try:
            with self._lock.background():
                report = self.propagation.run(progress=self._progress, cancel=self._cancel.is_set)
            self.status.state = "cancelled" if report.cancelled else "finished"
            self._emit({
                "event": "finished", "cancelled": report.cancelled, "computed": report.computed,
                "reused": report.reused, "done": self.status.done, "planned": self.status.planned,
                "stops": [{"source": s.source, "direction": s.direction, "index": s.index,
                           "check": s.reason.check, "reason": str(s.reason)}
                          for s in report.stops],
            })
        except Exception:
            logger.exception("propagation job %s failed", self.id)
            self.status.state = "failed"
            self._emit({"event": "error", "error": "internal", "detail": "the propagation failed; see the server log"})
        finally:
            self._emit(None)
            self._on_end(self)


class JobRegistry:
    def __init__(self, max_running: int, keep_finished: int = 64) -> None:
        self.max_running = max_running
        self._running: dict[str, PropagationJob] = {}
        self._finished: BoundedLRU[str, JobStatus] = BoundedLRU(keep_finished)
        self._lock = threading.Lock()

    def start(self, job: PropagationJob) -> None:
        with self._lock:
            if len(self._running) >= self.max_running:
                raise Busy("too_many_jobs", f"{self.max_running} propagations are running; wait for one to "
                           "finish or cancel one (DELETE /v1/jobs/{id})")
            self._running[job.id] = job
        job.start(self._ended)

    def _ended(self, job: PropagationJob) -> None:
        with self._lock:
            self._running.pop(job.id, None)
            self._finished.put(job.id, job.status)  # in the same step: a status read always finds the job

    def busy(self, propagation: Propagation) -> bool:
        """Whether a running job works on ``propagation`` (two jobs must never share one)."""
        with self._lock:
            return any(job.propagation is propagation for job in self._running.values())

    def status(self, job_id: str) -> JobStatus | None:
        with self._lock:
            job = self._running.get(job_id)
            return job.status if job is not None else self._finished.get(job_id)

    def cancel(self, job_id: str) -> JobStatus | None:
        with self._lock:
            job = self._running.get(job_id)
        if job is not None:
            job.cancel()
            return job.status
        return self.status(job_id)

    def all(self) -> list[JobStatus]:
        with self._lock:
            return [job.status for job in self._running.values()] + self._finished.values()

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._running.values())
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.join(timeout=30)
