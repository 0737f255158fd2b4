"""The retention sweeper: clears retained messages when their TTL passes, for every
protocol level (issue 10, item 2).

The session reports each retained publish with a TTL that went upstream
(:meth:`RetentionSweeper.record`) and each empty retained publish
(:meth:`RetentionSweeper.forget`); both are non-blocking. One task owns the SQLite
schedule: it writes the reports in one transaction, and when something is due it
connects with the gateway's service account and publishes an empty retained payload to
each due topic (MQTT 3.3.1.3: that removes the retained message). Rows are removed only
after the broker acknowledged the clear (QoS 1), so a restart, a crash or a broker
outage delays a clear but never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from gateway.protection.broker import BrokerParams
from gateway.protection.schedule import Due, Schedule

logger = logging.getLogger("mqttgate.retention")

# Clears per connection round; bounds the time one round holds the schedule.
BATCH = 500


class RetentionSweeper:
    """Schedules and performs the clearing of expired retained messages."""

    def __init__(
        self,
        db_path: Path | str,
        broker: BrokerParams,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_cleared: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self._db_path = db_path
        self._broker = broker
        self._interval_s = interval_s
        self._clock = clock
        self._on_cleared = on_cleared
        self._pending: list[tuple[str, str | None, float | None]] = []
        self._wake = asyncio.Event()
        self._schedule: Schedule | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Open the schedule (creating it) and start sweeping."""
        self._schedule = await asyncio.to_thread(Schedule, self._db_path)
        self._task = asyncio.create_task(self._run(), name="retention-sweeper")

    def record(self, topic: str, org: str | None, ttl_s: int) -> None:
        """A retained publish with a TTL went upstream to broker-side topic ``topic``."""
        self._pending.append((topic, org, self._clock() + ttl_s))
        self._wake.set()

    def forget(self, topic: str) -> None:
        """An empty retained publish cleared ``topic``: nothing left to sweep there."""
        self._pending.append((topic, None, None))
        self._wake.set()

    async def flush(self) -> None:
        """Write the reports so far to the schedule (a crash after this loses nothing)."""
        if self._schedule is None or not self._pending:
            return
        batch, self._pending = self._pending, []
        await asyncio.to_thread(self._schedule.apply, batch)

    async def pending(self) -> list[Due]:
        """The schedule as stored (for tests and an admin view)."""
        await self.flush()
        assert self._schedule is not None
        return await asyncio.to_thread(self._schedule.pending)

    async def sweep_once(self) -> list[str]:
        """Clear what is due now; the topics cleared. Raises aiomqtt.MqttError when the
        broker cannot be reached (the rows stay)."""
        await self.flush()
        assert self._schedule is not None
        due = await asyncio.to_thread(self._schedule.due, self._clock(), BATCH)
        if not due:
            return []
        cleared: list[Due] = []
        try:
            async with self._broker.client() as client:
                for item in due:
                    await client.publish(item.topic, b"", qos=1, retain=True)
                    cleared.append(item)
        finally:
            if cleared:
                await asyncio.to_thread(self._schedule.done, cleared)
        for item in cleared:
            logger.info(
                "retained message expired and cleared",
                extra={"fields": {"topic": item.topic, "org": item.org}},
            )
            if self._on_cleared is not None:
                self._on_cleared(item.topic, item.org)
        return [item.topic for item in cleared]

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.sweep_once()
            except aiomqtt.MqttError as exc:
                logger.warning(
                    "retention sweep could not reach the broker",
                    extra={"fields": {"error": str(exc)}},
                )
            except Exception:
                logger.exception("retention sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stop sweeping (a round in progress gets ``grace_s`` to finish); the reports
        not yet written are written first."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace_s)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._schedule is not None:
            await self.flush()
            await asyncio.to_thread(self._schedule.close)
            self._schedule = None
