"""OTLP exporters for spans and metrics, HTTP/protobuf or gRPC.

Only what ``[audit]`` sets explicitly is passed to an exporter; everything else (headers,
certificates, compression, timeouts, and the endpoint when the file names none) is left
for the SDK exporter to read from the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.audit.config import OtlpSettings


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
