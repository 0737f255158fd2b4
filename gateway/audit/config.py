"""The ``[audit]`` configuration table (issue 5, items 7-9) and how it meets ``OTEL_*``.

Unset OTLP keys defer to the standard OpenTelemetry environment variables, so a
deployment configured the usual way (``OTEL_EXPORTER_OTLP_ENDPOINT`` and friends) needs
no ``[audit]`` table at all. Explicit keys in the file win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

OtlpProtocol = Literal["http/protobuf", "grpc"]
OTLP_PROTOCOLS: tuple[str, ...] = ("http/protobuf", "grpc")

DEFAULT_SERVICE_NAME = "mqttgate"

# OpenTelemetry specification, "OTLP Exporter Configuration" and "SDK environment variables".
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
ENV_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_BSP_MAX_QUEUE_SIZE = "OTEL_BSP_MAX_QUEUE_SIZE"

# The SDK's BatchSpanProcessor holds 2048 spans by default and drops the rest. A burst
# of denies (a client hammering a forbidden topic) outruns that between two exports,
# and every deny must reach the wire: 65536 spans are about 100 MB at worst, held only
# while the collector is slower than the gateway.
DEFAULT_SPAN_QUEUE_SIZE = 65536

# Records waiting for the audit writer thread. At 50k decisions/s the writer drains
# every 50 ms, so 2**17 records are more than two seconds of backlog: a normal load
# never fills it, and a stalled disk shows up as drops in a metric, not as memory growth.
DEFAULT_QUEUE_MAX_RECORDS = 1 << 17

# 100 MiB per file, ten backups: about a gigabyte of compliance log on disk, several
# days of a busy gateway at ~300 bytes a record.
DEFAULT_LOG_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 10


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """``[audit]``: the JSON-lines audit log, OTLP spans and metrics."""

    log_file: str | None = None
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_backups: int = DEFAULT_LOG_BACKUPS
    # fsync after every batch the writer thread writes (a power cut then loses at most
    # one batch); off by default since a clean shutdown always fsyncs.
    log_fsync: bool = False
    queue_max_records: int = DEFAULT_QUEUE_MAX_RECORDS
    # When the audit log cannot be written (disk full): "fail_open" keeps serving and
    # alarms (error log, metric, /readyz detail); "fail_closed" also refuses new
    # connections (HTTP 503) until a write succeeds again, for compliance set-ups where
    # unaudited traffic is worse than no traffic.
    on_log_failure: Literal["fail_open", "fail_closed"] = "fail_open"
    # Share of allowed decisions exported as spans; denies and authentications always are.
    allow_sample_ratio: float = 1.0
    # None: on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set or otlp_endpoint is given.
    otlp_enabled: bool | None = None
    # A base URL (http://collector:4318 or, for grpc, http://collector:4317); the signal
    # path (/v1/traces, /v1/metrics) is appended for http/protobuf. None: OTEL_* variables.
    otlp_endpoint: str | None = None
    # None: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL, then http.
    otlp_protocol: OtlpProtocol | None = None
    otlp_metrics: bool = True
    # None: OTEL_METRIC_EXPORT_INTERVAL (milliseconds), else the SDK's 60 s.
    metrics_export_interval_s: float | None = None
    # None: OTEL_BSP_MAX_QUEUE_SIZE when set, else DEFAULT_SPAN_QUEUE_SIZE.
    span_queue_size: int | None = None
    # None: OTEL_SERVICE_NAME when set, else "mqttgate".
    service_name: str | None = None

    def validate(self) -> tuple[str, str] | None:
        if self.log_file is not None and not self.log_file:
            return ("log_file", "must not be empty (omit it for no audit log)")
        if self.log_max_bytes < 4096:
            return ("log_max_bytes", "must be at least 4096")
        if self.log_backups < 0:
            return ("log_backups", "must not be negative")
        if self.queue_max_records < 1024:
            return ("queue_max_records", "must be at least 1024")
        if not 0.0 <= self.allow_sample_ratio <= 1.0:
            return ("allow_sample_ratio", f"must be between 0 and 1, got {self.allow_sample_ratio}")
        if self.otlp_endpoint is not None and not self.otlp_endpoint.startswith(
            ("http://", "https://")
        ):
            return (
                "otlp_endpoint",
                f"expected an http:// or https:// URL, got {self.otlp_endpoint!r}",
            )
        if self.metrics_export_interval_s is not None and self.metrics_export_interval_s <= 0:
            return ("metrics_export_interval_s", "must be positive")
        if self.span_queue_size is not None and self.span_queue_size < 512:
            return ("span_queue_size", "must be at least 512")
        if self.service_name is not None and not self.service_name:
            return ("service_name", "must not be empty")
        return None


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """The OTLP export the pipeline builds, after the environment has been consulted."""

    protocol: OtlpProtocol
    # None lets the SDK exporter read OTEL_EXPORTER_OTLP_*_ENDPOINT itself.
    traces_endpoint: str | None
    metrics_endpoint: str | None
    metrics: bool


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def otlp_settings(
    config: AuditConfig, environ: Mapping[str, str] = os.environ
) -> OtlpSettings | None:
    """Whether and how to export over OTLP; None when it is off. Raises ValueError on a
    protocol name the environment sets but no exporter implements."""
    enabled = config.otlp_enabled
    if enabled is None:
        enabled = not _truthy(environ.get(ENV_SDK_DISABLED)) and bool(
            config.otlp_endpoint
            or environ.get(ENV_OTLP_ENDPOINT)
            or environ.get(ENV_OTLP_TRACES_ENDPOINT)
        )
    if not enabled:
        return None
    protocol = (
        config.otlp_protocol
        or (
            environ.get(ENV_OTLP_TRACES_PROTOCOL)
            or environ.get(ENV_OTLP_PROTOCOL)
            or "http/protobuf"
        ).strip()
    )
    if protocol not in OTLP_PROTOCOLS:
        raise ValueError(
            f"OTLP protocol {protocol!r} is not supported (expected one of {OTLP_PROTOCOLS})"
        )
    traces: str | None = None
    metrics: str | None = None
    if config.otlp_endpoint:
        base = config.otlp_endpoint
        if protocol == "http/protobuf":
            # OTLP spec "Endpoint URLs for OTLP/HTTP": per-signal paths under the base URL.
            traces = base.rstrip("/") + "/v1/traces"
            metrics = base.rstrip("/") + "/v1/metrics"
        else:
            traces = metrics = base
    # Metrics go over OTLP only where an endpoint for them is known: a traces-only
    # variable must not send metrics to the SDK's default localhost:4318.
    metrics_known = bool(
        config.otlp_endpoint
        or environ.get(ENV_OTLP_ENDPOINT)
        or environ.get(ENV_OTLP_METRICS_ENDPOINT)
    )
    return OtlpSettings(
        "grpc" if protocol == "grpc" else "http/protobuf",
        traces,
        metrics,
        config.otlp_metrics and metrics_known,
    )


def service_name(config: AuditConfig, environ: Mapping[str, str] = os.environ) -> str:
    """The ``service.name`` resource attribute: the file, then OTEL_SERVICE_NAME, then mqttgate."""
    return config.service_name or environ.get(ENV_SERVICE_NAME) or DEFAULT_SERVICE_NAME


def span_queue_size(config: AuditConfig, environ: Mapping[str, str] = os.environ) -> int | None:
    """The BatchSpanProcessor queue size; None lets the SDK read OTEL_BSP_MAX_QUEUE_SIZE."""
    if config.span_queue_size is not None:
        return config.span_queue_size
    return None if environ.get(ENV_BSP_MAX_QUEUE_SIZE) else DEFAULT_SPAN_QUEUE_SIZE
