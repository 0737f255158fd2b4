"""What the audit records: one connection attempt, one authorization decision.

Records are built by the connection shell on the data path, so they are plain frozen
slotted dataclasses with no work in their constructor beyond the clock. They never hold
a credential: identity values come from verified claims, reasons from closed
vocabularies (``gateway.auth.reasons``, ``gateway.acl.decision``), and binding names that
look like secrets are dropped before anything is written (:func:`safe_identity`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import orjson

if TYPE_CHECKING:
    from gateway.acl.decision import PolicyDecision
    from gateway.core.outputs import LoggedAllow

Outcome = Literal["allow", "deny"]

_EMPTY: Mapping[str, object] = MappingProxyType({})

# Binding names that may carry a credential if a claim mapping is careless; their
# values never reach a log line or a span.
_SECRET_MARKERS: tuple[str, ...] = ("token", "secret", "password", "passwd", "credential", "jwt")


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One connection attempt (CONNECT) or re-authentication (MQTT 5 §4.12.1)."""

    outcome: Outcome
    # "ok" for an allow; an authentication reason (gateway.auth.reasons.Reason) or a
    # refusal such as a denied will otherwise.
    reason: str
    client_id: str | None = None
    user_id: str | None = None
    # Identity bindings as Identity.as_dict() gives them: name -> str | list[str] | None.
    identity: Mapping[str, object] = field(default_factory=lambda: _EMPTY)
    issuer: str | None = None
    client_address: str | None = None
    client_port: int | None = None
    # "1.2" / "1.3", as ssl.SSLObject.version() gives minus the "TLSv" prefix.
    tls_version: str | None = None
    # The CONNECT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0), MQTT 5 §3.1.2.2.
    protocol_level: int | None = None
    # "connect" or "reauth".
    kind: str = "connect"
    # How long the authentication took (0 when unknown).
    duration_ns: int = 0
    # Correlates the connection span with the session's decisions.
    connection_id: str | None = None
    time_unix_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One authorization decision: publish, subscribe, delivery, will, unsubscribe, ..."""

    action: str
    topic: str
    verdict: Outcome
    reason: str
    qos: int | None = None
    retain: bool | None = None
    rule_id: str | None = None
    pattern: str | None = None
    policy_version: str | None = None
    # Time spent deciding, in nanoseconds (the span's duration).
    decision_ns: int = 0
    client_id: str | None = None
    user_id: str | None = None
    client_address: str | None = None
    # The QoS the decision grants (a SUBSCRIBE may be downgraded), when it differs.
    granted_qos: int | None = None
    connection_id: str | None = None
    time_unix_ns: int = field(default_factory=time.time_ns)


AuditRecord = ConnectionRecord | DecisionRecord


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def safe_identity(identity: Mapping[str, object]) -> dict[str, object]:
    """The identity bindings that may be written: no secret-looking names, no None."""
    return {k: v for k, v in identity.items() if v is not None and not is_secret_name(k)}


# The last second _iso formatted: records come in bursts within one second, and
# strftime is most of the cost of a timestamp. A tuple, so a reader on another thread
# sees a whole pair.
_iso_second: tuple[int, str] = (-1, "")


def _iso(time_unix_ns: int) -> str:
    global _iso_second
    seconds, ns = divmod(time_unix_ns, 1_000_000_000)
    second = _iso_second
    if second[0] != seconds:
        second = _iso_second = (
            seconds,
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)),
        )
    return f"{second[1]}.{ns // 1000:06d}Z"


def connection_entry(rec: ConnectionRecord) -> dict[str, object]:
    """The audit-log object for a connection record (docs/audit.md, "Log format")."""
    return {
        "ts": _iso(rec.time_unix_ns),
        "time_unix_ns": rec.time_unix_ns,
        "type": "connection",
        "kind": rec.kind,
        "outcome": rec.outcome,
        "reason": rec.reason,
        "client_id": rec.client_id,
        "user_id": rec.user_id,
        "issuer": rec.issuer,
        "identity": safe_identity(rec.identity),
        "client_address": rec.client_address,
        "client_port": rec.client_port,
        "tls_version": rec.tls_version,
        "protocol_level": rec.protocol_level,
        "duration_ns": rec.duration_ns,
        "connection_id": rec.connection_id,
    }


def decision_entry(rec: DecisionRecord) -> dict[str, object]:
    """The audit-log object for a decision record (docs/audit.md, "Log format")."""
    return {
        "ts": _iso(rec.time_unix_ns),
        "time_unix_ns": rec.time_unix_ns,
        **_decision_fields(
            rec.action,
            rec.topic,
            rec.qos,
            rec.retain,
            rec.verdict,
            rec.reason,
            rec.rule_id,
            rec.pattern,
            rec.policy_version,
            rec.granted_qos,
            rec.decision_ns,
        ),
        **_decider_fields(rec.client_id, rec.user_id, rec.client_address, rec.connection_id),
    }


def _decision_fields(
    action: str,
    topic: str,
    qos: int | None,
    retain: bool | None,
    verdict: str,
    reason: str,
    rule_id: str | None,
    pattern: str | None,
    policy_version: str | None,
    granted_qos: int | None,
    decision_ns: int,
) -> dict[str, object]:
    # A decision line is its time, then these, then _decider_fields: the order of
    # docs/audit.md, shared by decision_entry and logged_allow_lines.
    return {
        "type": "decision",
        "action": action,
        "topic": topic,
        "qos": qos,
        "retain": retain,
        "verdict": verdict,
        "reason": reason,
        "rule_id": rule_id,
        "pattern": pattern,
        "policy_version": policy_version,
        "granted_qos": granted_qos,
        "decision_ns": decision_ns,
    }


def _decider_fields(
    client_id: str | None,
    user_id: str | None,
    client_address: str | None,
    connection_id: str | None,
) -> dict[str, object]:
    return {
        "client_id": client_id,
        "user_id": user_id,
        "client_address": client_address,
        "connection_id": connection_id,
    }


def decider_fragment(
    client_id: str | None,
    user_id: str | None,
    client_address: str | None,
    connection_id: str | None,
) -> bytes:
    """The end of a connection's decision lines (its last four fields, the closing brace
    and the newline), encoded once per connection for ``logged_allow_lines``."""
    fields = _decider_fields(client_id, user_id, client_address, connection_id)
    return orjson.dumps(fields)[1:] + b"\n"


def logged_allow_lines(
    allows: Iterable[LoggedAllow], decider: bytes, time_unix_ns: int
) -> list[bytes]:
    """Audit-log lines for allows a session only appended to its ledger: the same bytes
    as ``decision_entry`` of the equivalent record gives, but the head is encoded once
    for the whole run (one read's packets share its time) and each allow's fields once
    for every packet forwarded on it (``LoggedAllow.encoded``)."""
    head = b'{"ts":"%s","time_unix_ns":%d,' % (_iso(time_unix_ns).encode(), time_unix_ns)
    lines = []
    for allow in allows:
        fields = allow.encoded
        if fields is None:
            d = allow.decision
            entry = _decision_fields(
                allow.action,
                allow.topic,
                allow.qos,
                allow.retain,
                d.verdict,
                d.reason,
                d.rule_id,
                d.pattern,
                d.policy_version,
                d.granted_qos,
                allow.decision_ns,
            )
            fields = allow.encoded = orjson.dumps(entry)[1:-1] + b","
        lines.append(head + fields + decider)
    return lines


def log_entry(rec: AuditRecord) -> dict[str, object]:
    if isinstance(rec, DecisionRecord):
        return decision_entry(rec)
    return connection_entry(rec)


def decision_record(
    action: str,
    topic: str,
    decision: PolicyDecision,
    *,
    qos: int | None = None,
    retain: bool | None = None,
    decision_ns: int = 0,
    client_id: str | None = None,
    user_id: str | None = None,
    client_address: str | None = None,
    connection_id: str | None = None,
    time_unix_ns: int | None = None,
) -> DecisionRecord:
    """A record from the policy's answer; granted_qos is kept only when it differs."""
    granted = decision.granted_qos if decision.granted_qos != qos else None
    return DecisionRecord(
        action=action,
        topic=topic,
        verdict=decision.verdict,
        reason=decision.reason,
        qos=qos,
        retain=retain,
        rule_id=decision.rule_id,
        pattern=decision.pattern,
        policy_version=decision.policy_version,
        decision_ns=decision_ns,
        client_id=client_id,
        user_id=user_id,
        client_address=client_address,
        granted_qos=granted,
        connection_id=connection_id,
        time_unix_ns=time.time_ns() if time_unix_ns is None else time_unix_ns,
    )
