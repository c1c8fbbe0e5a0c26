"""One least-recently-used cache under a budget, with one computation per missing key.

Embeddings, uploaded volumes, result handles, finished jobs and kept propagations are all "keep the
recent ones, within a budget, and tell the owner what was dropped". Computing a missing value goes
through the cache too (``get_or_compute``), so two callers that want the same missing value (two
clicks on a new slice, a click and the prefetcher) compute it once: the second waits for the first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterable, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    """A computation under way; waiters get its value or its exception."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: V | None = None
        self._error: BaseException | None = None

    def finish(self, value: V) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> V:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class BoundedLRU(Generic[K, V]):
    """Thread-safe LRU whose entries' ``sizeof`` sum stays within ``budget`` (the newest entry is always kept).

    ``on_evict(key, value)`` runs outside the lock for every entry that leaves, by eviction or ``remove``,
    so an owner can drop what it derived from it; a ``put`` that replaces a key's value does not call it.
    """

    def __init__(self, budget: int, sizeof: Callable[[V], int] = lambda value: 1,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        self.budget = budget
        self._sizeof = sizeof
        self._on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._flights: dict[K, _Flight[V]] = {}
        self._used = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def used(self) -> int:
        """The sum of ``sizeof`` over the entries kept."""
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._entries

    def claimed(self, key: K) -> bool:
        """Whether ``key`` is kept or being computed: ``get_or_compute`` would not compute it again."""
        with self._lock:
            return key in self._entries or key in self._flights

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._lookup(key)

    def values(self) -> list[V]:
        """The entries' values, least recently used first (a snapshot)."""
        with self._lock:
            return [value for value, _ in self._entries.values()]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            evicted = self._store(key, value)
        self._notify(evicted)

    def remove(self, key: K) -> V | None:
        """Drop ``key``; returns its value, or None when it was not kept."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._used -= entry[1]
        if entry is None:
            return None
        self._notify([(key, entry[0])])
        return entry[0]

    def remove_where(self, condition: Callable[[K], bool]) -> None:
        """Drop every entry whose key meets ``condition``."""
        with self._lock:
            dropped = [(key, self._entries.pop(key)) for key in [key for key in self._entries if condition(key)]]
            self._used -= sum(size for _, (_, size) in dropped)
        self._notify([(key, value) for key, (value, _) in dropped])

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The kept value, or ``compute()``'s, kept; a computation already under way for ``key`` is waited for.

        When ``compute`` raises, every caller waiting for it gets the exception and nothing is kept.
        """
        return self.get_or_compute_many([key], lambda keys: [compute()])[0]

    def get_or_compute_many(self, keys: Sequence[K], compute: Callable[[list[K]], Sequence[V]]) -> list[V]:
        """Values of ``keys`` (distinct), computing the missing ones in one ``compute(missing_keys)`` call.

        For batched work (an encoder call on several slices); keys another caller is computing are waited for.
        """
        values: dict[K, V] = {}
        waiting: dict[K, _Flight[V]] = {}
        own: dict[K, _Flight[V]] = {}
        with self._lock:
            for key in keys:
                value = self._lookup(key)
                if value is not None:
                    values[key] = value
                elif key in self._flights:
                    waiting[key] = self._flights[key]
                else:
                    own[key] = self._flights[key] = _Flight()
        if own:
            self._compute(own, compute, values)
        for key, flight in waiting.items():
            values[key] = flight.wait()
        return [values[key] for key in keys]

    def _compute(self, own: dict[K, _Flight[V]], compute: Callable[[list[K]], Sequence[V]],
                 values: dict[K, V]) -> None:
        try:
            computed = list(compute(list(own)))
            if len(computed) != len(own):
                raise RuntimeError(f"computed {len(computed)} values for {len(own)} keys")
        except BaseException as error:
            with self._lock:
                for key in own:
                    del self._flights[key]
            for flight in own.values():
                flight.fail(error)
            raise
        evicted = []
        with self._lock:  # kept and released in one step: no caller can start a second computation in between
            for (key, flight), value in zip(own.items(), computed):
                evicted += self._store(key, value)
                del self._flights[key]
                flight.finish(value)
                values[key] = value
        self._notify(evicted)

    def _lookup(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def _store(self, key: K, value: V) -> list[tuple[K, V]]:
        """Keep ``value`` as the newest entry; returns the entries evicted to stay within the budget."""
        size = self._sizeof(value)
        old = self._entries.pop(key, None)
        if old is not None:
            self._used -= old[1]
        self._entries[key] = (value, size)
        self._used += size
        evicted = []
        while self._used > self.budget and len(self._entries) > 1:
            old_key, (old_value, old_size) = self._entries.popitem(last=False)
            self._used -= old_size
            evicted.append((old_key, old_value))
        return evicted

    def _notify(self, dropped: Iterable[tuple[K, V]]) -> None:
        if self._on_evict is not None:
            for key, value in dropped:
                self._on_evict(key, value)
