"""Spans on the OTLP wire: a real loopback receiver decodes what the SDK exporter sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit import AuditConfig, AuditPipeline
from tests.audit.otlp_receiver import OtlpGrpcReceiver, OtlpReceiver, ReceivedSpan
from tests.audit.records import connect, decide

STATUS_ERROR = 2
KIND_INTERNAL = 1
KIND_SERVER = 2


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def test_connection_span_attributes(receiver: OtlpReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url))
    pipe.start()
    rec = connect()
    pipe.connection(rec)
    pipe.connection(connect("deny", "expired", client_id="c2"))
    pipe.shutdown_sync()
    spans = receiver.wait_for(lambda s: len(s) >= 2)
    ok = next(s for s in spans if s.attributes["mqttgate.client_id"] == "c1")
    assert ok.name == "mqttgate.connect"
    assert ok.kind == KIND_SERVER
    a = ok.attributes
    assert a["mqttgate.verdict"] == "allow"
    assert a["mqttgate.reason"] == "ok"
    assert a["enduser.id"] == "alice"
    assert a["mqttgate.identity.org"] == "acme"
    assert a["mqttgate.identity.role"] == ["admin", "ops"]
    assert "mqttgate.identity.email" not in a  # None values are left out
    assert a["mqttgate.issuer"] == "https://idp.test"
    assert a["client.address"] == "127.0.0.1"
    assert a["client.port"] == 50123
    assert a["tls.protocol.version"] == "1.3"
    assert a["network.protocol.name"] == "mqtt"
    assert a["network.protocol.version"] == "5.0"
    assert a["messaging.system"] == "mqtt"
    assert ok.start_time_unix_nano == rec.time_unix_ns
    assert ok.end_time_unix_nano == rec.time_unix_ns + 42_000
    assert ok.resource["service.name"] == "mqttgate"
    denied = next(s for s in spans if s.attributes["mqttgate.client_id"] == "c2")
    assert denied.attributes["mqttgate.verdict"] == "deny"
    assert denied.attributes["mqttgate.reason"] == "expired"
    assert denied.status_code != STATUS_ERROR


def test_decision_span_attributes(receiver: OtlpReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url))
    pipe.start()
    rec = decide("deny", topic="users/bob/in")
    pipe.decision(rec)
    pipe.decision(decide("allow", action="delivery"))
    pipe.decision(decide("allow", action="subscribe", topic="users/alice/#"))
    pipe.shutdown_sync()
    spans = receiver.wait_for(lambda s: len(s) >= 3)
    (deny,) = by_name(spans, "mqttgate.authorize publish")
    a = deny.attributes
    assert deny.kind == KIND_INTERNAL
    assert deny.status_code != STATUS_ERROR  # a deny is the system working
    assert a["mqttgate.verdict"] == "deny"
    assert a["mqttgate.reason"] == "deny_rule"
    assert a["messaging.system"] == "mqtt"
    assert a["messaging.destination.name"] == "users/bob/in"
    assert a["messaging.operation.name"] == "publish"
    assert a["messaging.operation.type"] == "send"
    assert a["mqttgate.qos"] == 1
    assert a["mqttgate.retain"] is False
    assert a["mqttgate.rule_id"] == "r-deny"
    assert a["mqttgate.pattern"] == "users/{user_id}/#"
    assert a["mqttgate.policy_version"] == "v7"
    assert a["mqttgate.decision_ns"] == 3_500
    assert a["mqttgate.client_id"] == "c1"
    assert a["enduser.id"] == "alice"
    assert a["client.address"] == "127.0.0.1"
    assert a["mqttgate.connection_id"] == "conn-1"
    assert deny.end_time_unix_nano - deny.start_time_unix_nano == 3_500
    (delivery,) = by_name(spans, "mqttgate.authorize delivery")
    assert delivery.attributes["messaging.operation.type"] == "receive"
    (sub,) = by_name(spans, "mqttgate.authorize subscribe")
    assert "messaging.operation.type" not in sub.attributes
    assert sub.attributes["messaging.destination.name"] == "users/alice/#"


def test_ratio_zero_exports_denies_and_authentications_and_counts_allows(
    receiver: OtlpReceiver,
) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url, allow_sample_ratio=0.0))
    pipe.start()
    pipe.connection(connect())
    pipe.connection(connect("deny", "bad_signature"))
    for i in range(200):
        pipe.decision(decide("allow", n=i))
    for i in range(7):
        pipe.decision(decide("deny", n=i))
    pipe.shutdown_sync()
    spans = receiver.wait_for(lambda s: len(s) >= 9)
    assert len(by_name(spans, "mqttgate.connect")) == 2
    decisions = by_name(spans, "mqttgate.authorize publish")
    assert len(decisions) == 7
    assert all(s.attributes["mqttgate.verdict"] == "deny" for s in decisions)
    assert pipe.metrics.decisions == {("publish", "allow"): 200, ("publish", "deny"): 7}


def test_ratio_between_samples_allows_only(receiver: OtlpReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url, allow_sample_ratio=0.25))
    pipe.start()
    for i in range(2000):
        pipe.decision(decide("allow", n=i))
    for i in range(50):
        pipe.decision(decide("deny", n=i))
    pipe.shutdown_sync()
    spans = receiver.spans()
    allows = [s for s in spans if s.attributes["mqttgate.verdict"] == "allow"]
    denies = [s for s in spans if s.attributes["mqttgate.verdict"] == "deny"]
    assert len(denies) == 50
    assert 300 < len(allows) < 700  # 500 expected; 9 standard deviations of slack
    assert pipe.metrics.decisions[("publish", "allow")] == 2000


def test_allows_the_session_sampled_are_exported_without_a_second_draw(
    receiver: OtlpReceiver,
) -> None:
    """Sessions draw the sample themselves (``session_sample_ratio``) and mark what they
    drew: all of those become spans, and the pipeline draws only for unmarked allows."""
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url, allow_sample_ratio=0.25))
    assert pipe.session_sample_ratio == 0.25
    assert not pipe.wants_allow_records  # no log: sessions may count allows
    pipe.start()
    for i in range(40):
        pipe.decision(decide("allow", n=i), sampled=True)
    pipe.shutdown_sync()
    spans = receiver.wait_for(lambda s: len(s) >= 40)
    assert len([s for s in spans if s.attributes["mqttgate.verdict"] == "allow"]) == 40
    assert pipe.metrics.decisions[("publish", "allow")] == 40


def test_no_session_sampling_without_spans_and_every_allow_with_a_log(tmp_path: Path) -> None:
    assert AuditPipeline(AuditConfig(allow_sample_ratio=0.5)).session_sample_ratio == 0.0
    assert AuditPipeline(AuditConfig(log_file=str(tmp_path / "a.jsonl"))).wants_allow_records


def test_standard_environment_variables(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No [audit] keys at all: OTEL_EXPORTER_OTLP_ENDPOINT switches export on and the SDK
    exporter reads it; OTEL_SERVICE_NAME names the service."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-east")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # must not drop audit spans
    pipe = AuditPipeline(AuditConfig())
    assert pipe.otlp is not None
    pipe.start()
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    (span,) = receiver.wait_for(lambda s: len(s) >= 1)
    assert span.resource["service.name"] == "gw-east"


def test_traces_endpoint_variable(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
    pipe = AuditPipeline(AuditConfig(service_name="from-file"))
    pipe.start()
    pipe.connection(connect())
    pipe.shutdown_sync()
    (span,) = receiver.wait_for(lambda s: len(s) >= 1)
    assert span.resource["service.name"] == "from-file"


def test_no_endpoint_no_export() -> None:
    pipe = AuditPipeline(AuditConfig())
    assert pipe.otlp is None and pipe.tracer_provider is None
    pipe.start()
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    assert pipe.metrics.decisions == {("publish", "deny"): 1}


def test_grpc_export(grpc_receiver: OtlpGrpcReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=grpc_receiver.url, otlp_protocol="grpc"))
    pipe.start()
    pipe.connection(connect())
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    spans = grpc_receiver.wait_for(lambda s: len(s) >= 2)
    assert {s.name for s in spans} == {"mqttgate.connect", "mqttgate.authorize publish"}
    deny = by_name(spans, "mqttgate.authorize publish")[0]
    assert deny.attributes["mqttgate.verdict"] == "deny"
    assert grpc_receiver.latest("mqttgate.decisions", action="publish", verdict="deny") is not None


def test_grpc_protocol_from_environment(
    grpc_receiver: OtlpGrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    pipe = AuditPipeline(AuditConfig())
    assert pipe.otlp is not None and pipe.otlp.protocol == "grpc"
    pipe.start()
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    assert len(grpc_receiver.wait_for(lambda s: len(s) >= 1)) == 1


def test_burst_of_denies_is_not_dropped(receiver: OtlpReceiver) -> None:
    """More denies than the SDK's default span queue (2048) between two exports."""
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url, otlp_metrics=False))
    pipe.start()
    for i in range(5000):
        pipe.decision(decide("deny", n=i))
    pipe.shutdown_sync()
    spans = receiver.wait_for(lambda s: len(s) >= 5000, timeout=20)
    assert len(spans) == 5000
    assert sorted(s.attributes["mqttgate.decision_ns"] for s in spans) == [
        3_500 + i for i in range(5000)
    ]


async def test_async_shutdown_flushes(receiver: OtlpReceiver) -> None:
    pipe = AuditPipeline(AuditConfig(otlp_endpoint=receiver.url))
    pipe.start()
    pipe.decision(decide("deny"))
    await pipe.shutdown()
    spans = await receiver.wait_for_async(lambda s: len(s) >= 1)
    assert spans[0].attributes["mqttgate.verdict"] == "deny"
