"""OTLP exporters for spans and metrics, HTTP/protobuf or gRPC.

Only what ``[audit]`` sets explicitly is passed to an exporter; everything else (headers,
certificates, compression, timeouts, and the endpoint when the file names none) is left
for the SDK exporter to read from the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.audit.config import OtlpSettings


class CountingSpanExporter(SpanExporter):
    """Counts the spans an exporter failed to deliver (collector down, timeouts), so a
    dead collector shows on /metrics instead of only in a warning (issue 9, item 4)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = 0
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            self.failed += len(spans)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def span_exporter(settings: OtlpSettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=settings.traces_endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=settings.traces_endpoint)


def metric_exporter(settings: OtlpSettings) -> MetricExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(endpoint=settings.metrics_endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=settings.metrics_endpoint)
