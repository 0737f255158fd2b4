"""Give freed memory back to the OS after many connections have gone.

First a full garbage collection: a closed connection's objects are left in reference
cycles (aiohttp's WebSocketResponse and what it holds), and CPython collects the oldest
generation only once it has grown by a quarter, so after a thousand connections closed
all of them were still there (the soak counted 999 WebSocketResponse, ~16 MiB of
pymalloc blocks, ten seconds after the last client left).

Then glibc's ``malloc_trim(0)``: glibc keeps memory that ``free()`` returned in its heap
(only the part above the last used chunk is trimmed, and only past
``M_TRIM_THRESHOLD``): after a thousand TLS connections close, about 35 MiB of free C heap
(OpenSSL state, TLS and WebSocket buffers, Python blocks over 512 bytes) stays resident.
``malloc_trim(0)`` releases every free page of it (``MADV_DONTNEED``), not only the top
(bench/README.md "Soak").

Both run from a polling task, never on the data path: once the connection count has
fallen by ``min_drop`` from its peak and stayed down for ``QUIET_S``, and at most every
``MIN_INTERVAL_S``. The trim runs in a worker thread (ctypes releases the GIL), so the
event loop keeps serving; a malloc of the loop thread waits for the arena lock meanwhile.

What neither can return: pymalloc (objects of up to 512 bytes) frees a 1 MiB arena only
when every block in it is free, and CPython 3.11 does not release the free pools of a
partly used arena. Those stay a high-water mark that later connections reuse
(bench/memory_cycles.py).

glibc only, feature-detected (``gnu_get_libc_version`` and ``malloc_trim``); a no-op
elsewhere (musl, macOS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.logs import log

logger = logging.getLogger("mqttgate")

# How often the task reads the connection count: a dict length, once a second.
POLL_S = 1.0
# The count must stay down this long: a broker restart drops everyone and clients come
# back within seconds (jittered backoff); memory they would take again soon is not
# worth giving back.
QUIET_S = 3.0
# At most one trim per this interval: malloc_trim walks the whole heap (about 10 ms
# for 150 MiB here) and the pages it returns fault in again when reused.
MIN_INTERVAL_S = 10.0
# While waiting, a rise of more than this fraction of min_drop starts the wait again
# (clients reconnecting), while ordinary churn of a few connections does not.
RISE_FRACTION = 0.1

Trim = Callable[[], int]


def glibc_malloc_trim() -> Trim | None:
    """``malloc_trim(0)`` of the process's glibc, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl has malloc_trim as a stub since 1.2.1 but no gnu_get_libc_version.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "malloc_trim"):
        return None
    fn = libc.malloc_trim
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int

    def trim() -> int:
        return int(fn(0))

    return trim


def rss_kib() -> int:
    """This process's resident set (``/proc/self/statm``), 0 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * (os.sysconf("SC_PAGE_SIZE") // 1024)


@dataclass(slots=True)
class DropTrigger:
    """When to trim: explicit state, fed (time, connection count) samples."""

    min_drop: int
    quiet_s: float = QUIET_S
    min_interval_s: float = MIN_INTERVAL_S
    peak: int = 0
    _down_since: float | None = None
    _down_count: int = 0
    _last_trim: float | None = None

    def observe(self, now: float, connections: int) -> bool:
        """Whether to trim now; a True resets the peak to ``connections``."""
        self.peak = max(self.peak, connections)
        if self.min_drop <= 0 or self.peak - connections < self.min_drop:
            self._down_since = None
            return False
        rise = max(1, int(self.min_drop * RISE_FRACTION))
        if self._down_since is None or connections > self._down_count + rise:
            self._down_since, self._down_count = now, connections
            return False
        self._down_count = min(self._down_count, connections)
        if now - self._down_since < self.quiet_s:
            return False
        if self._last_trim is not None and now - self._last_trim < self.min_interval_s:
            return False
        self._last_trim = now
        self.peak = connections
        self._down_since = None
        return True


@dataclass(frozen=True, slots=True)
class Returned:
    """One trim: what it gave back, for the log and the tests."""

    connections: int
    rss_before_kib: int
    rss_after_kib: int
    collected: int  # objects the full collection freed
    gc_s: float  # on the event loop
    trim_s: float  # in a worker thread


class MemoryReturn:
    """The polling task: reads ``count()``, trims through ``trim`` when the trigger says."""

    def __init__(
        self,
        count: Callable[[], int],
        min_drop: int,
        trim: Trim | None,
        *,
        poll_s: float = POLL_S,
        quiet_s: float = QUIET_S,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = count
        self.trim = trim
        self.poll_s = poll_s
        self.clock = clock
        self.trigger = DropTrigger(min_drop, quiet_s, min_interval_s)
        self.returned: list[Returned] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.trim is not None and self.trigger.min_drop > 0

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="mqttgate-memory-return")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            connections = self.count()
            if self.trigger.observe(self.clock(), connections):
                await self.trim_now(connections)

    async def trim_now(self, connections: int) -> Returned | None:
        """A full collection, then malloc_trim(0) in a worker thread; None without glibc."""
        trim = self.trim
        if trim is None:
            return None
        before, started = rss_kib(), time.perf_counter()
        # On the loop: it needs the GIL throughout (tens of ms for ~100k objects), once
        # after a large drop, at most every MIN_INTERVAL_S.
        collected = gc.collect()
        collected_at = time.perf_counter()
        await asyncio.to_thread(trim)
        done = Returned(
            connections,
            before,
            rss_kib(),
            collected,
            collected_at - started,
            time.perf_counter() - collected_at,
        )
        del self.returned[:-15]  # the last few, for the tests and a debugger
        self.returned.append(done)
        log(
            logger,
            logging.INFO,
            "memory returned",
            connections=connections,
            rss_before_kib=done.rss_before_kib,
            rss_after_kib=done.rss_after_kib,
            collected=done.collected,
            gc_ms=round(done.gc_s * 1000, 1),
            trim_ms=round(done.trim_s * 1000, 1),
        )
        return done
