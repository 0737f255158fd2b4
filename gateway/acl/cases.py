"""Tables of expected decisions: what ``acl test`` and ``acl diff`` read.

A case is ``{"identity": {...}, "client_id": ..., "action": "publish"|"subscribe",
"topic": ..., "qos": 0, "retain": false, "expect": "allow"|"deny", "granted_qos": 1}``;
``qos``, ``retain``, ``client_id`` and ``granted_qos`` are optional, and so is
``expect`` for ``acl diff``. An identity key ``principal`` names a service account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.acl.decision import PolicyDecision
from gateway.acl.policy import Policy
from gateway.identity import Identity

_KEYS = {
    "identity",
    "client_id",
    "action",
    "topic",
    "qos",
    "retain",
    "expect",
    "granted_qos",
    "description",
    "reason",
}


class CaseError(ValueError):
    """A malformed case table; the message names the 1-based case number."""


@dataclass(frozen=True, slots=True)
class Case:
    number: int  # 1-based, as printed
    identity: Identity
    action: Literal["publish", "subscribe"]
    topic: str
    qos: int
    retain: bool
    expect: Literal["allow", "deny"] | None
    granted_qos: int | None
    reason: str | None
    description: str | None


def identity_from_json(
    values: Any, client_id: str | None = None, principal: str | None = None
) -> Identity:
    """Bindings from a JSON object; its ``principal`` key names a service account."""
    if not isinstance(values, dict):
        raise ValueError("an identity is a JSON object of bindings")
    values = dict(values)
    p = values.pop("principal", None)
    if p is not None and not isinstance(p, str):
        raise ValueError("principal must be a string")
    identity = Identity.from_values(values, principal=principal or p)
    if client_id is not None:
        identity = identity.with_client_id(client_id)
    return identity


def parse_case(raw: Any, number: int, *, need_expect: bool) -> Case:
    def bad(msg: str) -> CaseError:
        return CaseError(f"case {number}: {msg}")

    if not isinstance(raw, dict):
        raise bad("a case is a JSON object")
    unknown = set(raw) - _KEYS
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}")
    action = raw.get("action")
    if action not in ("publish", "subscribe"):
        raise bad("action must be 'publish' or 'subscribe'")
    topic = raw.get("topic")
    if not isinstance(topic, str):
        raise bad("topic must be a string")
    qos = raw.get("qos", 0)
    if not isinstance(qos, int) or isinstance(qos, bool):
        raise bad("qos must be an integer")
    retain = raw.get("retain", False)
    if not isinstance(retain, bool):
        raise bad("retain must be true or false")
    expect = raw.get("expect")
    if expect not in ("allow", "deny") and (need_expect or expect is not None):
        raise bad("expect must be 'allow' or 'deny'")
    granted = raw.get("granted_qos")
    if granted is not None and granted not in (0, 1, 2):
        raise bad("granted_qos must be 0, 1 or 2")
    client_id = raw.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise bad("client_id must be a string")
    try:
        identity = identity_from_json(raw.get("identity", {}), client_id)
    except ValueError as e:
        raise bad(str(e)) from None
    return Case(
        number, identity, action, topic, qos, retain, expect, granted, raw.get("reason"),
        raw.get("description"),
    )  # fmt: skip


def parse_cases(data: Any, *, need_expect: bool = True) -> list[Case]:
    if not isinstance(data, list):
        raise CaseError("a case table is a JSON list of case objects")
    return [parse_case(raw, i, need_expect=need_expect) for i, raw in enumerate(data, 1)]


def decide(policy: Policy, case: Case, *, explain: bool = False) -> PolicyDecision:
    if case.action == "publish":
        return policy.authorize_publish(
            case.identity, case.topic, case.qos, case.retain, explain=explain
        )
    return policy.authorize_subscribe(case.identity, case.topic, case.qos, explain=explain)


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: PolicyDecision

    @property
    def ok(self) -> bool:
        c, d = self.case, self.decision
        if c.expect is not None and d.verdict != c.expect:
            return False
        if c.granted_qos is not None and d.granted_qos != c.granted_qos:
            return False
        return c.reason is None or d.reason == c.reason

    def mismatch(self) -> str:
        c, d = self.case, self.decision
        want = f"{c.expect}"
        if c.granted_qos is not None:
            want += f" (granted QoS {c.granted_qos})"
        if c.reason is not None:
            want += f" [{c.reason}]"
        got = d.verdict + (f" (granted QoS {d.granted_qos})" if d.granted_qos is not None else "")
        return (
            f"case {c.number}: {c.action} {c.topic!r} qos {c.qos}"
            f"{' retain' if c.retain else ''}: expected {want}, got {got}"
            f" [{d.reason}{', rule ' + d.rule_id if d.rule_id else ''}]"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "case": self.case.number,
            "ok": self.ok,
            "action": self.case.action,
            "topic": self.case.topic,
            "expect": self.case.expect,
            "expected_granted_qos": self.case.granted_qos,
            **self.decision.as_dict(),
        }


def run_cases(policy: Policy, cases: list[Case]) -> list[CaseResult]:
    return [CaseResult(c, decide(policy, c)) for c in cases]
