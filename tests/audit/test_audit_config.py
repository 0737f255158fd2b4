"""The [audit] table: typed loading, validation, and how it meets the OTEL_* variables."""

from __future__ import annotations

import tomllib

import pytest

from gateway.audit.config import (
    DEFAULT_SPAN_QUEUE_SIZE,
    AuditConfig,
    otlp_settings,
    service_name,
    span_queue_size,
)
from gateway.configload import ConfigError, load_dataclass


def load(text: str) -> AuditConfig:
    return load_dataclass(AuditConfig, tomllib.loads(text), "gw.toml", "audit")


def test_defaults() -> None:
    c = load("")
    assert c.log_file is None
    assert c.allow_sample_ratio == 1.0
    assert otlp_settings(c, {}) is None
    assert service_name(c, {}) == "mqttgate"


def test_full_table() -> None:
    c = load(
        """
        log_file = "/var/log/mqttgate/audit.log"
        log_max_bytes = 1048576
        log_backups = 5
        allow_sample_ratio = 0.1
        otlp_endpoint = "http://jaeger:4318"
        otlp_protocol = "http/protobuf"
        service_name = "gw"
        metrics_export_interval_s = 15
        """
    )
    assert c.log_backups == 5 and c.allow_sample_ratio == 0.1
    s = otlp_settings(c, {})
    assert s is not None
    assert s.traces_endpoint == "http://jaeger:4318/v1/traces"
    assert s.metrics_endpoint == "http://jaeger:4318/v1/metrics"
    assert s.metrics


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("allow_sample_ratio = 1.5", "audit.allow_sample_ratio"),
        ("allow_sample_ratio = -0.1", "audit.allow_sample_ratio"),
        ('otlp_protocol = "http/json"', "audit.otlp_protocol"),
        ('otlp_endpoint = "jaeger:4318"', "audit.otlp_endpoint"),
        ("log_max_bytes = 10", "audit.log_max_bytes"),
        ("log_backups = -1", "audit.log_backups"),
        ('log_file = ""', "audit.log_file"),
        ("queue_max_records = 5", "audit.queue_max_records"),
        ("logfile = 'x'", "audit.logfile"),
        ("otlp_enabled = 'yes'", "audit.otlp_enabled"),
    ],
)
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert info.value.key == key


def test_enabled_by_environment() -> None:
    c = AuditConfig()
    assert otlp_settings(c, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is not None
    s = otlp_settings(c, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert s is not None
    # Endpoints left for the SDK to read; no metrics to an unknown endpoint.
    assert s.traces_endpoint is None and not s.metrics
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert otlp_settings(c, both) is None
    assert otlp_settings(AuditConfig(otlp_enabled=False), both) is None


def test_protocol_precedence() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    s = otlp_settings(AuditConfig(), env)
    assert s is not None and s.protocol == "grpc"
    s = otlp_settings(AuditConfig(), {**env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})
    assert s is not None and s.protocol == "http/protobuf"
    s = otlp_settings(AuditConfig(otlp_protocol="http/protobuf"), env)
    assert s is not None and s.protocol == "http/protobuf"
    s = otlp_settings(AuditConfig(otlp_endpoint="http://c:4317", otlp_protocol="grpc"), {})
    assert s is not None and s.traces_endpoint == "http://c:4317"
    with pytest.raises(ValueError, match="http/json"):
        otlp_settings(AuditConfig(), {**env, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_service_name_and_queue_precedence() -> None:
    assert service_name(AuditConfig(), {"OTEL_SERVICE_NAME": "east"}) == "east"
    assert service_name(AuditConfig(service_name="file"), {"OTEL_SERVICE_NAME": "east"}) == "file"
    assert span_queue_size(AuditConfig(), {}) == DEFAULT_SPAN_QUEUE_SIZE
    assert span_queue_size(AuditConfig(), {"OTEL_BSP_MAX_QUEUE_SIZE": "100"}) is None
    assert span_queue_size(AuditConfig(span_queue_size=1000), {}) == 1000
