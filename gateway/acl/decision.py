"""What a policy answers: a verdict, the reason, the deciding rule and its bound pattern."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["allow", "deny"]

# Reason codes (ACL v2 "Semantics"). They appear in audit records: never rename one.
ALLOW_RULE = "allow_rule"  # an applicable allow rule grants the request
DENY_RULE = "deny_rule"  # an applicable deny rule concerns the request
DEFAULT = "default"  # no applicable rule concerns the request: default_action decides
QOS_NOT_ALLOWED = "qos_not_allowed"  # an allow rule concerns/contains it, not at this QoS
RETAIN_NOT_ALLOWED = "retain_not_allowed"  # an allow rule matches the topic, not with retain
NOT_CONTAINED = "not_contained"  # allow rules overlap the filter, none contains it
UNBOUND_VARIABLE = "unbound_variable"  # only allow rules with unusable variables concern it
INVALID_TOPIC = "invalid_topic"  # not a topic name / filter MQTT 4.7 allows
INVALID_QOS = "invalid_qos"  # QoS outside 0..2 (MQTT 4.3)
SHARE_GROUP_NOT_ALLOWED = "share_group_not_allowed"  # containing rules restrict the group

REASONS: tuple[str, ...] = (
    ALLOW_RULE,
    DENY_RULE,
    DEFAULT,
    QOS_NOT_ALLOWED,
    RETAIN_NOT_ALLOWED,
    NOT_CONTAINED,
    UNBOUND_VARIABLE,
    INVALID_TOPIC,
    INVALID_QOS,
    SHARE_GROUP_NOT_ALLOWED,
)


@dataclass(frozen=True, slots=True)
class ExplainStep:
    """Why one rule did or did not take part in a decision (``acl simulate --explain``)."""

    rule_id: str
    effect: str
    outcome: str  # "skipped" | "not_applicable" | "not_concerned" | "concerns" | "grants" ...
    detail: str
    pattern: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "effect": self.effect,
            "outcome": self.outcome,
            "detail": self.detail,
            "pattern": self.pattern,
        }


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The answer to one PUBLISH, SUBSCRIBE or delivery check."""

    verdict: Verdict
    reason: str
    rule_id: str | None
    pattern: str | None
    granted_qos: int | None
    policy_version: str
    explain: tuple[ExplainStep, ...] | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "verdict": self.verdict,
            "reason": self.reason,
            "rule_id": self.rule_id,
            "pattern": self.pattern,
            "granted_qos": self.granted_qos,
            "policy_version": self.policy_version,
        }
        if self.explain is not None:
            out["explain"] = [s.as_dict() for s in self.explain]
        return out
