"""Timing shared by the latency benchmarks (run as scripts from this folder, so they import it as ``timing``)."""

from __future__ import annotations

import time
from typing import Callable


def timed_ms(function: Callable[[], object]) -> float:
    """Milliseconds one call of ``function`` takes, on the monotonic high-resolution clock."""
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000
