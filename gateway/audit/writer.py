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

import orjson

from gateway.audit.logfile import RotatingJsonLog
from gateway.audit.records import AuditRecord, log_entry
from gateway.logs import log

logger = logging.getLogger("gateway.audit")

# The thread wakes at least this often; a record waits at most this long before it is
# written, which bounds what a crash (not a clean shutdown) can lose.
DRAIN_INTERVAL_S = 0.05
# Wake the thread early once this many records wait: keeps batches and latency small.
WAKE_BATCH = 512

SpanSink = Callable[[AuditRecord], None]


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
        self._queue: deque[tuple[AuditRecord, bool]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._busy = False
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
        q = self._queue
        if len(q) >= self._max or self._stopping:
            self._drop(1)
            return
        q.append((rec, span))
        if len(q) >= WAKE_BATCH and not self._wake.is_set():
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue) + (1 if self._busy else 0)

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
            self._busy = True
            batch: list[tuple[AuditRecord, bool]] = []
            try:
                for _ in range(min(len(q), 4 * WAKE_BATCH)):
                    batch.append(q.popleft())
            except IndexError:
                pass
            self._write(batch)
            self._busy = False
        if self._log is not None and self._fsync_batches:
            self._flush_log(fsync=True)

    def _write(self, batch: list[tuple[AuditRecord, bool]]) -> None:
        if self._log is not None:
            dumps = orjson.dumps
            option = orjson.OPT_APPEND_NEWLINE
            try:
                self._log.write_lines([dumps(log_entry(rec), option=option) for rec, _ in batch])
                self._log.flush()
                self.written += len(batch)
                self.log_failing = False
            except OSError as exc:
                # Disk full, file gone, I/O error: the gateway decides what that means
                # ([audit] on_log_failure); the writer keeps trying with the next batch.
                self.log_failing = True
                self._drop(len(batch))
                log(logger, logging.ERROR, "audit log write failed", error=str(exc))
        if self._span_sink is not None:
            sink = self._span_sink
            for rec, span in batch:
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
