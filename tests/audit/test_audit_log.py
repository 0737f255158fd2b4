"""The JSON-lines audit log: every record, rotation by size, nothing lost on shutdown."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.acl.decision import PolicyDecision
from gateway.audit import AuditConfig, AuditPipeline, ConnectionRecord, DecisionRecord
from gateway.audit.logfile import RotatingJsonLog
from gateway.audit.records import decider_fragment, decision_entry, logged_allow_lines
from gateway.core.outputs import LoggedAllow
from tests.audit.otlp_receiver import OtlpReceiver
from tests.audit.records import connect, decide


def read_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_every_record_is_logged_even_unsampled_allows(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(
        AuditConfig(log_file=str(log), allow_sample_ratio=0.0, otlp_endpoint=receiver.url)
    )
    pipe.start()
    pipe.connection(connect())
    for i in range(100):
        pipe.decision(decide("allow", n=i))
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    lines = read_lines(log)
    assert len(lines) == 102
    assert [e["type"] for e in lines[:2]] == ["connection", "decision"]
    assert sum(1 for e in lines if e.get("verdict") == "allow") == 100
    assert len(receiver.spans()) == 2  # the connection and the deny


def test_log_entry_fields(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log)))
    pipe.start()
    c = connect()
    d = decide("deny", topic="users/bob/in")
    pipe.connection(c)
    pipe.decision(d)
    pipe.shutdown_sync()
    conn, dec = read_lines(log)
    assert conn == {
        "ts": conn["ts"],
        "time_unix_ns": c.time_unix_ns,
        "type": "connection",
        "kind": "connect",
        "outcome": "allow",
        "reason": "ok",
        "client_id": "c1",
        "user_id": "alice",
        "issuer": "https://idp.test",
        "identity": {"user_id": "alice", "org": "acme", "role": ["admin", "ops"]},
        "client_address": "127.0.0.1",
        "client_port": 50123,
        "tls_version": "1.3",
        "protocol_level": 5,
        "duration_ns": 42_000,
        "connection_id": "conn-1",
    }
    assert isinstance(conn["ts"], str) and conn["ts"].endswith("Z")
    assert dec["type"] == "decision"
    assert dec["verdict"] == "deny"
    assert dec["topic"] == "users/bob/in"
    assert dec["rule_id"] == "r-deny"
    assert dec["pattern"] == "users/{user_id}/#"
    assert dec["policy_version"] == "v7"
    assert dec["qos"] == 1 and dec["retain"] is False
    assert dec["decision_ns"] == 3_500
    assert dec["time_unix_ns"] == d.time_unix_ns


def test_secret_looking_bindings_never_written(tmp_path: Path, receiver: OtlpReceiver) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log), otlp_endpoint=receiver.url))
    pipe.start()
    pipe.connection(
        ConnectionRecord(
            "allow",
            "ok",
            client_id="c1",
            identity={"user_id": "alice", "access_token": token, "client_secret": token},
        )
    )
    pipe.shutdown_sync()
    assert token.encode() not in log.read_bytes()
    (span,) = receiver.wait_for(lambda s: len(s) >= 1)
    assert token not in repr(span.attributes)
    assert span.attributes["mqttgate.identity.user_id"] == "alice"


def test_nothing_lost_on_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log)))
    pipe.start()
    for i in range(10_000):
        pipe.decision(decide("allow" if i % 3 else "deny", n=i))
    pipe.shutdown_sync()
    lines = read_lines(log)
    assert len(lines) == 10_000
    assert [e["decision_ns"] for e in lines] == [3_500 + i for i in range(10_000)]
    assert pipe.dropped == 0


def test_records_before_start_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log)))
    pipe.decision(decide("deny"))
    pipe.shutdown_sync()
    assert len(read_lines(log)) == 1


def test_log_appends_across_restarts(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    for _ in range(2):
        pipe = AuditPipeline(AuditConfig(log_file=str(log)))
        pipe.start()
        pipe.decision(decide("deny"))
        pipe.shutdown_sync()
    assert len(read_lines(log)) == 2


def test_rotation_keeps_n_backups(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    config = AuditConfig(log_file=str(log), log_max_bytes=4096, log_backups=3)
    pipe = AuditPipeline(config)
    pipe.start()
    total = 400  # ~ 500 bytes a line: many more files than backups
    for i in range(total):
        pipe.decision(decide("deny", n=i))
    pipe.shutdown_sync()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 4096
        assert p.read_bytes().endswith(b"\n")
    # The newest records survive, in order, across current and backups.
    kept = [
        e["decision_ns"]
        for name in ("audit.log.3", "audit.log.2", "audit.log.1", "audit.log")
        for e in read_lines(tmp_path / name)
    ]
    assert kept == [3_500 + i for i in range(total - len(kept), total)]


def test_rotation_zero_backups_never_discards(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = RotatingJsonLog(path, max_bytes=4096, backups=0)
    log.write_lines([b"x" * 99 + b"\n"] * 100)
    log.close()
    assert path.stat().st_size == 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["audit.log"]


def test_oversized_line_gets_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = RotatingJsonLog(path, max_bytes=4096, backups=2)
    log.write_lines([b"a\n", b"b" * 5000 + b"\n", b"c\n"])
    log.close()
    assert (tmp_path / "audit.log.2").read_bytes() == b"a\n"
    assert (tmp_path / "audit.log.1").read_bytes() == b"b" * 5000 + b"\n"
    assert path.read_bytes() == b"c\n"


def test_full_queue_counts_drops(tmp_path: Path) -> None:
    """A writer that is not running and a queue at its bound: the excess is counted."""
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log), queue_max_records=1024))
    for i in range(1500):
        pipe.decision(DecisionRecord("publish", "t", "allow", "allow_rule", decision_ns=i))
    assert pipe.dropped == 476
    assert b"mqttgate_audit_records_dropped_total 476" in pipe.prometheus_text()
    pipe.shutdown_sync()
    assert len(read_lines(log)) == 1024


def test_decision_record_from_policy_decision(tmp_path: Path) -> None:
    from gateway.acl.decision import PolicyDecision
    from gateway.audit import decision_record

    d = PolicyDecision("allow", "allow_rule", "r1", "a/+", 0, "v3")
    rec = decision_record("subscribe", "a/+", d, qos=2, client_id="c9", time_unix_ns=5)
    assert (rec.verdict, rec.reason, rec.rule_id, rec.pattern) == (
        "allow",
        "allow_rule",
        "r1",
        "a/+",
    )
    assert rec.policy_version == "v3" and rec.granted_qos == 0 and rec.time_unix_ns == 5
    same = decision_record("subscribe", "a/+", d, qos=0)
    assert same.granted_qos is None


def _ledger_allow(topic: str = "users/alice/in", decision_ns: int = 0) -> LoggedAllow:
    d = PolicyDecision("allow", "allow_rule", "own", "users/{user_id}/#", 1, "v7")
    return LoggedAllow("publish", topic, 1, True, d, decision_ns)


def test_ledger_lines_are_the_lines_of_the_equivalent_records() -> None:
    """A ledger allow (issue 7) is written with the same bytes as the DecisionRecord the
    session would otherwise have reported, field order included."""
    allow = _ledger_allow(decision_ns=1234)
    decider = decider_fragment("c1", "alice", "127.0.0.1", "abc")
    t = 1_748_779_201_000_001_000
    lines = logged_allow_lines([allow, allow], decider, t)
    rec = DecisionRecord(
        action="publish",
        topic="users/alice/in",
        verdict="allow",
        reason="allow_rule",
        qos=1,
        retain=True,
        rule_id="own",
        pattern="users/{user_id}/#",
        policy_version="v7",
        decision_ns=1234,
        client_id="c1",
        user_id="alice",
        client_address="127.0.0.1",
        granted_qos=1,
        connection_id="abc",
        time_unix_ns=t,
    )
    expected = orjson.dumps(decision_entry(rec), option=orjson.OPT_APPEND_NEWLINE)
    assert lines == [expected, expected]
    assert orjson.loads(lines[0])["ts"] == "2025-06-01T12:00:01.000001Z"
    # A second run reuses the encoded fields with another time.
    assert allow.encoded is not None
    later = logged_allow_lines([allow], decider, t + 1_000_000_000)
    assert orjson.loads(later[0])["ts"] == "2025-06-01T12:00:02.000001Z"


def test_ledger_runs_are_logged_in_order_with_records(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log)))
    pipe.start()
    decider = decider_fragment("c1", None, "::1", "x")
    pipe.decision(decide("deny", n=0))
    pipe.allows([_ledger_allow(f"t/{i}") for i in range(5)], decider)
    pipe.decision(decide("deny", n=1))
    pipe.shutdown_sync()
    lines = read_lines(log)
    assert [x["verdict"] for x in lines] == ["deny"] + ["allow"] * 5 + ["deny"]
    assert [x["topic"] for x in lines[1:6]] == [f"t/{i}" for i in range(5)]
    assert lines[1]["user_id"] is None and lines[1]["client_address"] == "::1"


def test_ledger_runs_count_against_the_queue_bound(tmp_path: Path) -> None:
    """The bound is in records, not queue entries: a run of 600 allows is 600 of them."""
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log), queue_max_records=1024))
    decider = decider_fragment("c1", "alice", "127.0.0.1", "x")
    pipe.allows([_ledger_allow()] * 600, decider)
    pipe.allows([_ledger_allow()] * 600, decider)  # would pass the bound: dropped whole
    pipe.allows([_ledger_allow()] * 424, decider)  # exactly fills it
    pipe.decision(decide("allow"))
    assert pipe.dropped == 601
    pipe.shutdown_sync()
    assert len(read_lines(log)) == 1024


def test_a_record_that_cannot_be_encoded_is_dropped_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    pipe = AuditPipeline(AuditConfig(log_file=str(log)))
    pipe.start()
    pipe.connection(ConnectionRecord("allow", "ok", identity={"groups": {"a", "b"}}))  # a set
    assert pipe.flush()
    pipe.decision(decide("deny", n=1))
    assert pipe.flush()
    assert pipe.dropped == 1
    pipe.shutdown_sync()
    assert [x["type"] for x in read_lines(log)] == ["decision"]
