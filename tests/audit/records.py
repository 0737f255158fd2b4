"""Sample records for the audit tests."""

from __future__ import annotations

from types import MappingProxyType

from gateway.audit import ConnectionRecord, DecisionRecord


def connect(outcome: str = "allow", reason: str = "ok", client_id: str = "c1") -> ConnectionRecord:
    return ConnectionRecord(
        outcome="allow" if outcome == "allow" else "deny",
        reason=reason,
        client_id=client_id,
        user_id="alice",
        identity=MappingProxyType(
            {"user_id": "alice", "org": "acme", "role": ["admin", "ops"], "email": None}
        ),
        issuer="https://idp.test",
        client_address="127.0.0.1",
        client_port=50123,
        tls_version="1.3",
        protocol_level=5,
        duration_ns=42_000,
        connection_id="conn-1",
    )


def decide(
    verdict: str = "allow",
    action: str = "publish",
    topic: str = "users/alice/out",
    client_id: str = "c1",
    n: int = 0,
) -> DecisionRecord:
    allow = verdict == "allow"
    return DecisionRecord(
        action=action,
        topic=topic,
        verdict="allow" if allow else "deny",
        reason="allow_rule" if allow else "deny_rule",
        qos=1,
        retain=False,
        rule_id="r-own" if allow else "r-deny",
        pattern="users/{user_id}/#",
        policy_version="v7",
        decision_ns=3_500 + n,
        client_id=client_id,
        user_id="alice",
        client_address="127.0.0.1",
        connection_id="conn-1",
    )
