"""Per-interval value cache with request coalescing and serve-last-good-within-freshness.

N HPAs asking the same query inside ``cache_s`` cost one upstream call; concurrent misses wait
on the one in flight. When the upstream fails, the last good value is served while it is
younger than the rule's freshness limit; after that the failure surfaces (503). Entries are
bounded (LRU), so no input can grow memory without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapter.provider import Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    fetched_at: float


class CoalescingCache(Generic[T]):
    """``get(key, fetch, cache_s, freshness_s)``: one fetch per key per interval."""

    def __init__(self, *, max_entries: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self._max = max_entries
        self._clock = clock
        self.upstream_calls = 0

    def __len__(self) -> int:
        return len(self._entries)

    def age_s(self, key: Hashable) -> float | None:
        """Seconds since the cached value for ``key`` was fetched (None if absent)."""
        e = self._entries.get(key)
        return None if e is None else self._clock() - e.fetched_at

    async def get(
        self, key: Hashable, fetch: Callable[[], Awaitable[T]], *, cache_s: float, freshness_s: float
    ) -> T:
        """The cached value, or a fresh one; ``Unavailable`` once no fresh-enough value exists."""
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now - entry.fetched_at < cache_s:
            self._entries.move_to_end(key)
            return entry.value
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            self._inflight[key] = pending
        try:
            return await asyncio.shield(pending)
        except Unavailable:
            entry = self._entries.get(key)
            if entry is not None and self._clock() - entry.fetched_at <= freshness_s:
                return entry.value
            raise

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        try:
            self.upstream_calls += 1
            value = await fetch()
        finally:
            self._inflight.pop(key, None)
        self._entries[key] = _Entry(value, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return value
