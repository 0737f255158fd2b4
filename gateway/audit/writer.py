"""The audit writer thread: takes records off the data path, writes the log, builds spans.

The event loop only appends to a deque (atomic in CPython, no lock) and, when a batch
is waiting, sets an event. Everything with a cost — JSON encoding, file I/O, building
OpenTelemetry spans — happens on this thread, in batches. The deque is bounded: when
it is full a record is dropped and counted (``mqttgate_audit_records_dropped_total``)
rather than growing memory without limit behind a stalled disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway.audit.logfile import RotatingJsonLog
from gateway.audit.records import AuditRecord, log_entry, logged_allow_lines
from gateway.core.outputs import LoggedAllow
from gateway.logs import log

logger = logging.getLogger("gateway.audit")

# The thread wakes at least this often; a record waits at most this long before it is
# written, which bounds what a crash (not a clean shutdown) can lose.
DRAIN_INTERVAL_S = 0.05
# Wake the thread early once this many records wait: keeps batches and latency small.
WAKE_BATCH = 512

SpanSink = Callable[[AuditRecord], None]


@dataclass(frozen=True, slots=True)
class AllowRun:
    """Allows a session only appended to its ledger, from one turn of one connection."""

    allows: list[LoggedAllow]
    decider: bytes  # records.decider_fragment of the connection
    time_unix_ns: int


Entry = tuple[AuditRecord, bool] | AllowRun


class AuditWriter:
    """One background thread draining a bounded queue into the log and a span sink."""

    def __init__(
        self,
        log_file: RotatingJsonLog | None,
        span_sink: SpanSink | None,
        max_records: int,
        *,
        fsync_batches: bool = False,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._log = log_file
        self._span_sink = span_sink
        self._max = max_records
        self._fsync_batches = fsync_batches
        self._on_drop = on_drop
        self._queue: deque[Entry] = deque()
        # Records queued and records taken off: each written by one thread only (the
        # event loop, this thread), so no lock; their difference bounds the queue.
        self._queued = 0
        self._taken = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.spans = 0
        self.dropped = 0
        self._drop_logged_at = 0.0

    log_failing = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mqttgate-audit", daemon=True)
            self._thread.start()

    def submit(self, rec: AuditRecord, span: bool) -> None:
        """Queue one record (data path: no I/O, no lock)."""
        queued = self._queued
        if queued - self._taken >= self._max or self._stopping:
            self._drop(1)
            return
        self._queue.append((rec, span))
        self._queued = queued + 1
        if queued + 1 - self._taken >= WAKE_BATCH and not self._wake.is_set():
            self._wake.set()

    def submit_allows(self, run: AllowRun) -> None:
        """Queue a run of ledger allows, one log line each (data path: no I/O, no lock)."""
        n = len(run.allows)
        queued = self._queued
        if queued + n - self._taken > self._max or self._stopping:
            self._drop(n)
            return
        self._queue.append(run)
        self._queued = queued + n
        if queued + n - self._taken >= WAKE_BATCH and not self._wake.is_set():
            self._wake.set()

    def pending(self) -> int:
        """Records queued and not yet written (or dropped by a failing write)."""
        return self._queued - self._taken

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (the log flushed, spans handed on)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.pending():
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.002)
        return True

    def close(self) -> None:
        """Drain everything, fsync and close the log. Nothing queued before is lost."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drain()  # records queued when the thread never started
        if self._log is not None:
            try:
                self._log.close()
            except OSError as exc:
                self.log_failing = True
                log(logger, logging.ERROR, "audit log close failed", error=str(exc))

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self._on_drop is not None:
            self._on_drop(n)
        now = time.monotonic()
        if now - self._drop_logged_at > 10.0:  # one line per ten seconds, not per record
            self._drop_logged_at = now
            log(logger, logging.ERROR, "audit queue full, records dropped", dropped=self.dropped)

    def _run(self) -> None:
        while True:
            self._wake.wait(DRAIN_INTERVAL_S)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        q = self._queue
        while q:
            batch: list[Entry] = []
            records = 0
            try:
                while records < 4 * WAKE_BATCH:
                    entry = q.popleft()
                    batch.append(entry)
                    records += len(entry.allows) if type(entry) is AllowRun else 1
            except IndexError:
                pass
            try:
                self._write(batch, records)
            finally:
                self._taken += records  # written, dropped or failed: no longer pending
        if self._log is not None and self._fsync_batches:
            self._flush_log(fsync=True)

    def _write(self, batch: list[Entry], records: int) -> None:
        if self._log is not None:
            dumps = orjson.dumps
            option = orjson.OPT_APPEND_NEWLINE
            lines: list[bytes] = []
            for entry in batch:
                try:
                    if isinstance(entry, AllowRun):
                        lines += logged_allow_lines(entry.allows, entry.decider, entry.time_unix_ns)
                    else:
                        lines.append(dumps(log_entry(entry[0]), option=option))
                except Exception as exc:  # a record that cannot be encoded must not stop us
                    bad = len(entry.allows) if isinstance(entry, AllowRun) else 1
                    records -= bad
                    self._drop(bad)
                    log(logger, logging.ERROR, "audit record not encodable", error=repr(exc))
            try:
                self._log.write_lines(lines)
                self._log.flush()
                self.written += records
                self.log_failing = False
            except OSError as exc:
                # Disk full, file gone, I/O error: the gateway decides what that means
                # ([audit] on_log_failure); the writer keeps trying with the next batch.
                self.log_failing = True
                self._drop(records)
                log(logger, logging.ERROR, "audit log write failed", error=str(exc))
        if self._span_sink is not None:
            sink = self._span_sink
            for entry in batch:
                if isinstance(entry, AllowRun):
                    continue  # ledger allows are never spans (sampled ones are events)
                rec, span = entry
                if span:
                    try:
                        sink(rec)
                        self.spans += 1
                    except Exception as exc:  # a bad record must not stop the writer
                        log(logger, logging.ERROR, "audit span failed", error=repr(exc))

    def _flush_log(self, fsync: bool) -> None:
        assert self._log is not None
        try:
            self._log.flush(fsync=fsync)
        except OSError as exc:
            log(logger, logging.ERROR, "audit log flush failed", error=str(exc))
