"""The audit pipeline: records in, spans, log lines and metrics out (issue 5, items 7-9).

``connection()`` and ``decision()`` run on the event loop. They count the record, pick
whether it becomes a span (every authentication and every deny; allows at
``allow_sample_ratio``), and queue it for the writer thread, which writes the JSON line
and builds the span; the BatchSpanProcessor then exports on its own thread. Nothing on
the data path does I/O or takes a lock.

The TracerProvider and MeterProvider are the pipeline's own, never the global ones:
several gateways in one process each export exactly their own records.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from gateway import __version__
from gateway.audit import attributes as attr
from gateway.audit.config import AuditConfig, otlp_settings, service_name, span_queue_size
from gateway.audit.exporters import CountingSpanExporter, metric_exporter, span_exporter
from gateway.audit.logfile import RotatingJsonLog
from gateway.audit.metrics import AuditMetrics
from gateway.audit.prometheus import CONTENT_TYPE
from gateway.audit.records import AuditRecord, ConnectionRecord, DecisionRecord
from gateway.audit.writer import AllowRun, AuditWriter
from gateway.core.outputs import LoggedAllow

INSTRUMENTATION_SCOPE = "mqttgate.audit"

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class AuditPipeline:
    """Spans over OTLP, the JSON-lines log and metrics, fed by connection/decision records."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        environ: Mapping[str, str] = os.environ,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        """``span_exporters`` and ``metric_readers`` are added to what the config builds
        (a console exporter, an in-memory reader in a benchmark)."""
        self.config = config
        self._ratio = config.allow_sample_ratio
        self.otlp = otlp_settings(config, environ)
        resource = Resource.create({SERVICE_NAME: service_name(config, environ)})

        exporters = list(span_exporters)
        self._otlp_exporter: CountingSpanExporter | None = None
        if self.otlp is not None:
            self._otlp_exporter = CountingSpanExporter(span_exporter(self.otlp))
            exporters.append(self._otlp_exporter)
        self.tracer_provider: TracerProvider | None = None
        self._processors: list[BatchSpanProcessor] = []
        self._resource = resource
        self._scope = InstrumentationScope(INSTRUMENTATION_SCOPE, __version__)
        self._ids = RandomIdGenerator()
        if exporters:
            # Sampling is ours (denies always, allows at the ratio): OTEL_TRACES_SAMPLER
            # must not be able to drop a deny, so the SDK sampler is always-on.
            self.tracer_provider = TracerProvider(
                resource=resource, sampler=ALWAYS_ON, shutdown_on_exit=False
            )
            queue_size = span_queue_size(config, environ)
            for exporter in exporters:
                processor = BatchSpanProcessor(exporter, max_queue_size=queue_size)
                self.tracer_provider.add_span_processor(processor)
                self._processors.append(processor)

        readers = list(metric_readers)
        if self.otlp is not None and self.otlp.metrics:
            interval = config.metrics_export_interval_s
            readers.append(
                PeriodicExportingMetricReader(
                    metric_exporter(self.otlp),
                    export_interval_millis=None if interval is None else interval * 1000.0,
                )
            )
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        self.metrics = AuditMetrics()
        self.metrics.register(
            self.meter_provider.get_meter(INSTRUMENTATION_SCOPE), record_latency=bool(readers)
        )

        log_file = (
            RotatingJsonLog(config.log_file, config.log_max_bytes, config.log_backups)
            if config.log_file
            else None
        )
        self._writer: AuditWriter | None = None
        self._tracing = self.tracer_provider is not None
        if log_file is not None or self._tracing:
            self._writer = AuditWriter(
                log_file,
                self._emit_span if self._tracing else None,
                config.queue_max_records,
                fsync_batches=config.log_fsync,
                on_drop=self.metrics.audit_records_dropped,
            )
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is not None:
            self._writer.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every queued record and export every finished span (tests, admin)."""
        ok = True
        if self._writer is not None:
            ok = self._writer.flush(timeout)
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(int(timeout * 1000)) and ok
        return ok

    def shutdown_sync(self) -> None:
        """Drain the queue, fsync the log, export the remaining spans and metrics."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    async def shutdown(self) -> None:
        """:meth:`shutdown_sync` off the event loop (exports may wait on the network)."""
        await asyncio.to_thread(self.shutdown_sync)

    # -- records (data path) -----------------------------------------------------------

    def connection(self, rec: ConnectionRecord) -> None:
        """One connection attempt: counted, logged, and always a span."""
        self.metrics.connection_attempt(rec.outcome)
        if self._writer is not None:
            self._writer.submit(rec, self._tracing)

    def decision(self, rec: DecisionRecord, *, sampled: bool = False) -> None:
        """One authorization decision: counted and logged always; a span when it is a
        deny or a sampled allow (``sampled``: the session drew it already, see
        ``session_sample_ratio``). Do not also call ``metrics.decision`` for it."""
        self.metrics.decision(rec.action, rec.verdict, rec.decision_ns / 1e9)
        if self._writer is not None:
            ratio = self._ratio
            span = self._tracing and (
                sampled
                or rec.verdict != "allow"
                or ratio >= 1.0
                or (ratio > 0.0 and random.random() < ratio)
            )
            self._writer.submit(rec, span)

    def allows(self, allows: list[LoggedAllow], decider: bytes) -> None:
        """Allows a session appended to its ledger (already counted in the metrics):
        one log line each, built on the writer thread, stamped with this moment;
        ``decider`` is the connection's ``records.decider_fragment``."""
        if self._writer is not None and self.config.log_file is not None:
            self._writer.submit_allows(AllowRun(allows, decider, time.time_ns()))

    @property
    def log_failing(self) -> bool:
        """The last write to the audit log failed (disk full, I/O error)."""
        return self._writer is not None and self._writer.log_failing

    @property
    def wants_allow_records(self) -> bool:
        """Whether every allowed decision must become a record (the log has them all):
        sessions then keep a ledger of the allows they only count (``allows``)."""
        return self.config.log_file is not None

    @property
    def session_sample_ratio(self) -> float:
        """The share of allows a session turns into events when only spans want them: it
        draws before building anything (issue 7), and the pipeline does not draw again."""
        return self._ratio if self._tracing else 0.0

    def prometheus_text(self) -> bytes:
        failing = 1 if self.log_failing else 0
        failed = self._otlp_exporter.failed if self._otlp_exporter is not None else 0
        extra = (
            "# HELP mqttgate_audit_log_failing 1 while the audit log cannot be written.\n"
            "# TYPE mqttgate_audit_log_failing gauge\n"
            f"mqttgate_audit_log_failing {failing}\n"
            "# HELP mqttgate_audit_spans_failed_total Spans the OTLP exporter could not "
            "deliver (the audit log still has every record).\n"
            "# TYPE mqttgate_audit_spans_failed_total counter\n"
            f"mqttgate_audit_spans_failed_total {failed}\n"
        )
        return self.metrics.prometheus_text() + extra.encode()

    @property
    def dropped(self) -> int:
        return self.metrics.audit_dropped

    # -- spans (writer thread) ---------------------------------------------------------

    def _emit_span(self, rec: AuditRecord) -> None:
        """Build the finished span and hand it to the batch processors.

        A record is a span that has already ended, so it is built as a ReadableSpan
        directly rather than started and ended through a Tracer: the attributes are
        already clean (str, int, bool, list of str), and skipping the SDK's per-attribute
        validation makes a span about three times cheaper (bench/audit.py).
        """
        if isinstance(rec, DecisionRecord):
            name = attr.decision_span_name(rec)
            kind = SpanKind.INTERNAL
            attributes = attr.decision_attributes(rec)
            end = rec.time_unix_ns + rec.decision_ns
        else:
            name = attr.connection_span_name(rec)
            kind = SpanKind.SERVER
            attributes = attr.connection_attributes(rec)
            end = rec.time_unix_ns + rec.duration_ns
        context = SpanContext(
            self._ids.generate_trace_id(),
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
        )
        span = ReadableSpan(
            name,
            context=context,
            resource=self._resource,
            attributes=attributes,
            kind=kind,
            instrumentation_scope=self._scope,
            start_time=rec.time_unix_ns,
            end_time=end,
        )
        for processor in self._processors:
            processor.on_end(span)
