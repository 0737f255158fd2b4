"""Metrics: the Prometheus text body parses and its counts match; OTLP metrics agree."""

from __future__ import annotations

import re

import pytest

from gateway.audit import (
    CLIENT_TO_UPSTREAM,
    PROMETHEUS_CONTENT_TYPE,
    UPSTREAM_TO_CLIENT,
    AuditConfig,
    AuditPipeline,
)
from gateway.audit.metrics import LATENCY_BOUNDS_S
from gateway.audit.prometheus import escape_label_value
from tests.audit.otlp_receiver import OtlpReceiver
from tests.audit.records import connect, decide

# Exposition format 0.0.4: comment lines, or name{labels} value.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = rf'{_NAME}="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE_LINE = re.compile(
    rf"^{_NAME}(?:\{{{_LABEL}(?:,{_LABEL})*\}})? (?:[-+]?[0-9.e+-]+|\+Inf|-Inf|NaN)$"
)
COMMENT_LINE = re.compile(rf"^# (?:HELP {_NAME} .*|TYPE {_NAME} (?:counter|gauge|histogram))$")


def exercise(pipe: AuditPipeline) -> None:
    m = pipe.metrics
    for _ in range(5):
        m.connection_opened()
    m.connection_closed()
    m.connection_closed()
    pipe.connection(connect())
    pipe.connection(connect("deny", "expired"))
    m.auth_failure("expired")
    m.auth_failure("expired")
    m.auth_failure('odd"reason\\x\n')
    m.packets(CLIENT_TO_UPSTREAM, 3, 300)
    m.packets(CLIENT_TO_UPSTREAM, 1, 50)
    m.packets(UPSTREAM_TO_CLIENT, 2, 20)
    m.revocation(4)
    for i in range(10):
        pipe.decision(decide("allow", n=i))  # 3.5 µs
    pipe.decision(decide("deny", action="subscribe"))
    m.decision("delivery", "allow", 0.5)  # above the last bound: +Inf only


def test_prometheus_text_is_strictly_well_formed() -> None:
    pipe = AuditPipeline(AuditConfig())
    exercise(pipe)
    text = pipe.prometheus_text().decode()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert SAMPLE_LINE.match(line) or COMMENT_LINE.match(line), line
    assert PROMETHEUS_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_prometheus_text_parses_and_counts_match() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    pipe = AuditPipeline(AuditConfig())
    exercise(pipe)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    types: dict[str, str] = {}
    for fam in parser.text_string_to_metric_families(pipe.prometheus_text().decode()):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert types["mqttgate_connections_active"] == "gauge"
    assert types["mqttgate_decision_duration_seconds"] == "histogram"
    assert get("mqttgate_connections_active") == 3
    assert get("mqttgate_connections_opened_total") == 5
    assert get("mqttgate_connection_attempts_total", outcome="allow") == 1
    assert get("mqttgate_connection_attempts_total", outcome="deny") == 1
    assert get("mqttgate_auth_failures_total", reason="expired") == 2
    assert get("mqttgate_auth_failures_total", reason='odd"reason\\x\n') == 1
    assert get("mqttgate_decisions_total", action="publish", verdict="allow") == 10
    assert get("mqttgate_decisions_total", action="subscribe", verdict="deny") == 1
    assert get("mqttgate_decisions_total", action="delivery", verdict="allow") == 1
    assert get("mqttgate_packets_total", direction="client_to_upstream") == 4
    assert get("mqttgate_bytes_total", direction="client_to_upstream") == 350
    assert get("mqttgate_packets_total", direction="upstream_to_client") == 2
    assert get("mqttgate_bytes_total", direction="upstream_to_client") == 20
    assert get("mqttgate_revocations_total") == 4
    assert get("mqttgate_audit_records_dropped_total") == 0
    h = "mqttgate_decision_duration_seconds"
    assert get(h + "_count", action="publish") == 10
    assert get(h + "_bucket", action="publish", le="2.5e-06") == 0
    assert get(h + "_bucket", action="publish", le="5e-06") == 10
    assert get(h + "_bucket", action="publish", le="+Inf") == 10
    assert get(h + "_sum", action="publish") == pytest.approx((10 * 3_500 + 45) / 1e9)
    assert get(h + "_bucket", action="delivery", le=str(LATENCY_BOUNDS_S[-1])) == 0
    assert get(h + "_bucket", action="delivery", le="+Inf") == 1


def test_pipelines_do_not_share_counters() -> None:
    a = AuditPipeline(AuditConfig())
    b = AuditPipeline(AuditConfig())
    a.metrics.connection_opened()
    a.decision(decide("deny"))
    assert b"mqttgate_connections_active 1" in a.prometheus_text()
    assert b"mqttgate_connections_active 0" in b.prometheus_text()
    assert b"mqttgate_decisions_total{" not in b.prometheus_text()


def test_label_escaping() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_otlp_metrics_match(receiver: OtlpReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url))
    pipe.start()
    exercise(pipe)
    pipe.shutdown_sync()  # the final collection is exported on shutdown

    def value(name: str, **labels: str) -> float | None:
        p = receiver.latest(name, **labels)
        assert p is not None, (name, labels)
        return p.value

    assert value("mqttgate.connections.active") == 3
    assert value("mqttgate.connections.opened") == 5
    assert value("mqttgate.decisions", action="publish", verdict="allow") == 10
    assert value("mqttgate.decisions", action="subscribe", verdict="deny") == 1
    assert value("mqttgate.auth.failures", reason="expired") == 2
    assert value("mqttgate.packets", direction="client_to_upstream") == 4
    assert value("mqttgate.bytes", direction="upstream_to_client") == 20
    assert value("mqttgate.revocations") == 4
    assert value("mqttgate.connection.attempts", outcome="deny") == 1
    hist = receiver.latest("mqttgate.decision.duration", action="publish")
    assert hist is not None and hist.kind == "histogram"
    assert hist.count == 10
    assert len(hist.bucket_counts) == len(LATENCY_BOUNDS_S) + 1
    assert hist.resource["service.name"] == "mqttgate"
