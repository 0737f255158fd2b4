"""A fan-out of live decisions to admin viewers (the live decisions page, issue 8).

Bounded so that a slow viewer never slows the data path: each viewer has a fixed-size
queue, and when it is full the viewer's oldest entries are dropped and counted, never
waited for. With no viewer, publishing costs one length check.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# A viewer that falls this far behind loses the oldest entries: a page shows the recent
# past, and 2,000 entries is minutes of a busy gateway's denies.
VIEWER_QUEUE = 2000
MAX_VIEWERS = 32


@dataclass(eq=False)
class Viewer:
    entries: collections.deque[Mapping[str, object]] = field(
        default_factory=lambda: collections.deque(maxlen=VIEWER_QUEUE)
    )
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    # With --workers N, on the leader: what each other worker's viewer dropped, as its
    # stream last said (server/fleet_admin.py); a worker is here once its stream said
    # hello.
    peers_dropped: dict[int, int] = field(default_factory=dict)

    @property
    def dropped_everywhere(self) -> int:
        return self.dropped + sum(self.peers_dropped.values())

    def push(self, entry: Mapping[str, object]) -> None:
        """Queue one entry, dropping (and counting) the oldest when the queue is full."""
        if len(self.entries) == VIEWER_QUEUE:
            self.dropped += 1
        self.entries.append(entry)
        self.wake.set()

    async def next_batch(self, timeout: float) -> list[Mapping[str, object]]:
        """Whatever is queued, waiting up to ``timeout`` for something to arrive."""
        if not self.entries:
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                return []
        batch = list(self.entries)
        self.entries.clear()
        return batch


class DecisionStream:
    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.viewers: set[Viewer] = set()
        # Called when the first viewer arrives or the last leaves: sessions then start
        # or stop reporting allowed decisions one by one.
        self._on_change = on_change

    def publish(self, entry: Mapping[str, object]) -> None:
        for v in self.viewers:
            v.push(entry)

    def open(self) -> Viewer | None:
        """A new viewer, or None when there are already MAX_VIEWERS."""
        if len(self.viewers) >= MAX_VIEWERS:
            return None
        v = Viewer()
        self.viewers.add(v)
        if len(self.viewers) == 1 and self._on_change is not None:
            self._on_change()
        return v

    def close(self, viewer: Viewer) -> None:
        had = viewer in self.viewers
        self.viewers.discard(viewer)
        if had and not self.viewers and self._on_change is not None:
            self._on_change()
