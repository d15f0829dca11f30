"""The per-interval cache: coalescing, expiry, serve-last-good within freshness, bounded size."""

from __future__ import annotations

import asyncio

import pytest

from adapter.provider import Unavailable
from adapter.providers.cache import CoalescingCache


async def test_coalesces_and_expires() -> None:
    now = [0.0]
    cache: CoalescingCache[int] = CoalescingCache(clock=lambda: now[0])
    gate = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiters = [asyncio.create_task(cache.get("k", fetch, cache_s=5, freshness_s=60)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 20
    assert await cache.get("k", fetch, cache_s=5, freshness_s=60) == 1
    now[0] = 6
    assert await cache.get("k", fetch, cache_s=5, freshness_s=60) == 2
    assert cache.upstream_calls == 2


async def test_last_good_within_freshness_then_unavailable() -> None:
    now = [0.0]
    cache: CoalescingCache[str] = CoalescingCache(clock=lambda: now[0])

    async def ok() -> str:
        return "v"

    async def down() -> str:
        raise Unavailable("down")

    assert await cache.get("k", ok, cache_s=5, freshness_s=30) == "v"
    now[0] = 20
    assert await cache.get("k", down, cache_s=5, freshness_s=30) == "v"
    now[0] = 31
    with pytest.raises(Unavailable):
        await cache.get("k", down, cache_s=5, freshness_s=30)


async def test_bounded() -> None:
    cache: CoalescingCache[int] = CoalescingCache(max_entries=10)

    async def one() -> int:
        return 1

    for i in range(100):
        await cache.get(i, one, cache_s=5, freshness_s=60)
    assert len(cache) == 10
