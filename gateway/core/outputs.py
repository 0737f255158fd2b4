"""What a session asks its shell to do: bytes each way, and a few actions.

The session never performs I/O. Each call returns a ``Step``; the shell writes
``to_client`` and ``to_upstream`` in order, then carries out ``actions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.mqtt.packets import Connect

if TYPE_CHECKING:
    from gateway.acl.decision import PolicyDecision


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Verify the credentials of this CONNECT; answer with ``auth_succeeded``/``auth_failed``."""

    connect: Connect
    client_id: str  # the client id in force: the client's, or the one the gateway assigned
    # The client sent an empty id (v5 3.1.3.1, v3.1.1 clean session): the broker may give
    # the upstream session any unique id, and no template applies to it.
    assigned: bool = False


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    """MQTT v5 AUTH 0x19 with a fresh token; answer with ``reauth_succeeded``/``reauth_failed``."""

    token: str


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """Open the broker connection; answer with ``upstream_connected``/``upstream_failed``."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close both sides once what is queued has been written.

    ``ws_code`` is the WebSocket close code (RFC 6455 section 7.4.1).
    """

    reason: str
    ws_code: int = 1000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decision or lifecycle event for the audit trail (spans, log, metrics)."""

    kind: str  # "connect", "publish", "subscribe", "delivery", "disconnect", "reauth"
    verdict: str  # "allow" | "deny" | "info"
    reason: str
    attributes: Mapping[str, object] = field(default_factory=dict)
    # An allow the session drew for a span (``Session.allow_sample_ratio``): the pipeline
    # exports it without drawing again.
    sampled: bool = False


class LoggedAllow:
    """One allowed decision for the audit log, without an ``AuditEvent`` (issue 7).

    When the audit log wants every allow but nothing else does, a session appends these
    to ``Session.allow_ledger`` and the shell hands the list over whole. The known-packet
    scan appends the one it remembered with a topic (``decision_ns`` 0: nothing was
    looked up), so a packet forwarded unchanged costs a list append here. ``encoded`` is
    the audit writer's: the record's constant JSON, filled on first use and reused for
    every packet that shares this object.
    """

    __slots__ = ("action", "decision", "decision_ns", "encoded", "qos", "retain", "topic")

    def __init__(
        self,
        action: str,
        topic: str,
        qos: int,
        retain: bool,
        decision: PolicyDecision,
        decision_ns: int = 0,
    ) -> None:
        self.action = action
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.decision = decision
        self.decision_ns = decision_ns
        self.encoded: bytes | None = None


@dataclass(frozen=True, slots=True)
class RetainedStored:
    """A retained message with a TTL went upstream: the retention sweeper clears it later
    (issue 10, item 2). ``topic`` is the broker-side name."""

    topic: str
    org: str | None
    ttl_s: int


@dataclass(frozen=True, slots=True)
class RetainedCleared:
    """An empty retained publish went upstream: nothing is left to sweep there."""

    topic: str


Action = (
    Authenticate
    | Reauthenticate
    | OpenUpstream
    | Close
    | AuditEvent
    | RetainedStored
    | RetainedCleared
)


@dataclass(slots=True)
class Step:
    """The outcome of one call into the session."""

    to_client: list[bytes] = field(default_factory=list)
    to_upstream: list[bytes] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @property
    def close(self) -> Close | None:
        for a in self.actions:
            if isinstance(a, Close):
                return a
        return None
