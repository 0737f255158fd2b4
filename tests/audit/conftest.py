"""Fixtures: real OTLP receivers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.audit.otlp_receiver import OtlpGrpcReceiver, OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    r = OtlpGrpcReceiver().start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _no_ambient_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide the OTLP setup; a developer's shell must not send spans elsewhere."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_SAMPLER",
        "OTEL_BSP_MAX_QUEUE_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
