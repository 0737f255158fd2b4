"""gateway/server/memory_return.py: when the gateway trims, and that a trim returns memory."""

from __future__ import annotations

import asyncio

import pytest

from gateway.server.memory_return import (
    DropTrigger,
    MemoryReturn,
    glibc_malloc_trim,
    rss_kib,
)


def feed(trigger: DropTrigger, samples: list[tuple[float, int]]) -> list[float]:
    """The times at which the trigger fired."""
    return [t for t, n in samples if trigger.observe(t, n)]


def test_trims_once_after_a_drop_that_stays() -> None:
    trig = DropTrigger(min_drop=100, quiet_s=3.0, min_interval_s=10.0)
    up = [(float(t), 1000) for t in range(5)]
    down = [(float(t), 0) for t in range(5, 20)]
    assert feed(trig, up + down) == [8.0]  # down from t=5, quiet 3 s
    assert trig.peak == 0


def test_no_trim_for_a_small_drop_or_while_growing() -> None:
    trig = DropTrigger(min_drop=100)
    samples = [(float(t), 1000 - (t % 2) * 50) for t in range(60)]  # churn of 50
    samples += [(60.0 + t, 1000 + 10 * t) for t in range(60)]  # growing
    assert feed(trig, samples) == []


def test_reconnecting_clients_restart_the_wait() -> None:
    trig = DropTrigger(min_drop=100, quiet_s=3.0)
    samples = [(0.0, 1000), (1.0, 0), (2.0, 0), (3.0, 300), (4.0, 300), (5.0, 300)]
    assert feed(trig, samples) == []  # 300 came back at t=3: waiting since t=3
    assert feed(trig, [(6.0, 300)]) == [6.0]


def test_min_interval_between_trims() -> None:
    trig = DropTrigger(min_drop=100, quiet_s=1.0, min_interval_s=10.0)
    first = [(0.0, 1000), (1.0, 0), (2.0, 0)]
    again = [(3.0, 1000), (4.0, 0), (5.0, 0), (6.0, 0), (11.0, 0), (12.0, 0)]
    assert feed(trig, first) == [2.0]
    assert feed(trig, again) == [12.0]  # due at t=5, held back until t=2+10


def test_zero_is_off() -> None:
    trig = DropTrigger(min_drop=0)
    assert feed(trig, [(0.0, 1000)] + [(float(t), 0) for t in range(1, 100)]) == []


async def test_the_task_trims_after_the_count_falls() -> None:
    """The polling task with a counting trim: fires once, after the drop, not before."""
    calls: list[int] = []
    count = [500]
    ret = MemoryReturn(
        lambda: count[0],
        100,
        lambda: calls.append(1) or 1,
        poll_s=0.01,
        quiet_s=0.05,
        min_interval_s=60.0,
    )
    ret.start()
    try:
        await asyncio.sleep(0.1)
        assert calls == []
        count[0] = 3
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert calls == [1]
        assert ret.returned[-1].connections == 3
    finally:
        await ret.stop()


glibc = pytest.mark.skipif(glibc_malloc_trim() is None, reason="glibc only")


@glibc
async def test_a_trim_gives_free_heap_back() -> None:
    """Real glibc: 64 MiB of 2 KiB blocks freed under a live one stay resident until the
    trim (the top of the heap is pinned, so free() alone returns nothing)."""
    blocks = [bytearray(2048) for _ in range(32 * 1024)]
    pin = bytearray(2048)  # allocated last: above the freed blocks
    del blocks
    ret = MemoryReturn(lambda: 0, 100, glibc_malloc_trim())
    before = rss_kib()
    done = await ret.trim_now(0)
    assert done is not None
    assert done.rss_before_kib - done.rss_after_kib > 32 * 1024, (before, done)
    assert len(pin) == 2048


def test_no_trim_function_means_disabled() -> None:
    assert not MemoryReturn(lambda: 0, 100, None).enabled
    assert not MemoryReturn(lambda: 0, 0, lambda: 1).enabled
