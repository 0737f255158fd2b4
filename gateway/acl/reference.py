"""The ACL v2 semantics evaluated rule by rule: the reference the index must agree with.

This costs time proportional to the number of rules, so the gateway never decides
with it; ``acl simulate --explain`` uses it to say why each rule did or did not take
part, and the test suite checks the index against it and against a brute-force oracle.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.acl import decision as r
from gateway.acl.decision import ExplainStep
from gateway.acl.rule import Action, Rule, topic_values
from gateway.acl.topic import SINGLE, Levels, contains, matches, normalise, overlaps
from gateway.identity import Identity


@dataclass(frozen=True, slots=True)
class BoundPattern:
    """One pattern of a rule for one identity (one per combination of multi-values)."""

    levels: Levels
    group: str | None
    text: str


def bound_patterns(rule: Rule, identity: Identity, *, unbound_as_plus: bool) -> list[BoundPattern]:
    """The rule's patterns for ``identity``; a level with an unusable variable becomes ``+``.

    Callers that must not widen (allow rules) check ``unusable_variables`` first.
    """
    names = rule.variables
    choices: list[tuple[str | None, ...]] = []
    for var in names:
        found = topic_values(identity, var)
        if found is not None:
            choices.append(found)
        elif unbound_as_plus:
            choices.append((None,))
        else:
            return []
    out: list[BoundPattern] = []
    for combo in itertools.product(*choices):
        values = dict(zip(names, combo, strict=True))
        levels: list[str] = []
        shown: list[str] = []
        for t in rule.levels:
            if any(values[v] is None for v in t.variables):
                levels.append(SINGLE)
                shown.append(t.source)
                continue
            text = "".join(str(values[p]) if is_var else p for is_var, p in t.parts)
            levels.append(text)
            shown.append(text)
        group: str | None = None
        if rule.share_group is not None:
            g = rule.share_group
            if all(values[v] is not None for v in g.variables):
                group = "".join(str(values[p]) if is_var else p for is_var, p in g.parts)
        out.append(BoundPattern(normalise(tuple(levels)), group, "/".join(shown)))
    return out


def _first(rules: Sequence[tuple[Rule, BoundPattern]]) -> tuple[Rule, BoundPattern]:
    return min(rules, key=lambda rp: rp[0].index)


def _decide(
    verdict: r.Verdict,
    reason: str,
    hit: tuple[Rule, BoundPattern] | None,
    granted: int | None,
    version: str,
    steps: list[ExplainStep],
) -> r.PolicyDecision:
    return r.PolicyDecision(
        verdict,
        reason,
        hit[0].id if hit else None,
        hit[1].text if hit else None,
        granted,
        version,
        tuple(steps),
    )


def evaluate(
    rules: Sequence[Rule],
    default_action: r.Verdict,
    version: str,
    identity: Identity,
    action: Action,
    target: Levels,
    qos: int,
    retain: bool = False,
    group: str | None = None,
) -> r.PolicyDecision:
    """Decide one valid request by the letter of the semantics; every step explained.

    ``target`` is a topic name for publish and a (normalised) filter for subscribe.
    """
    steps: list[ExplainStep] = []
    denies: list[tuple[Rule, BoundPattern]] = []
    concerning: list[tuple[Rule, BoundPattern]] = []  # applicable allow rules that concern
    granting: list[tuple[Rule, BoundPattern]] = []  # contain / match, with the group
    group_refused: list[tuple[Rule, BoundPattern]] = []
    unbound: list[tuple[Rule, BoundPattern]] = []
    target = normalise(target)

    def concerns(p: BoundPattern) -> bool:
        return matches(p.levels, target) if action == "publish" else overlaps(p.levels, target)

    for rule in rules:
        if action not in rule.actions:
            steps.append(ExplainStep(rule.id, rule.effect, "skipped", f"not a {action} rule"))
            continue
        if not rule.conditions_hold(identity):
            steps.append(
                ExplainStep(rule.id, rule.effect, "not_applicable", "principal or when fails")
            )
            continue
        missing = rule.unusable_variables(identity) if rule.effect == "allow" else ()
        pats = bound_patterns(rule, identity, unbound_as_plus=True)
        hits = [p for p in pats if concerns(p)]
        if missing:
            names = ", ".join("{" + v + "}" for v in missing)
            if hits:
                unbound.append((rule, hits[0]))
            steps.append(
                ExplainStep(rule.id, rule.effect, "not_applicable", f"unusable variable {names}")
            )
            continue
        if not hits:
            shown = pats[0].text if pats else None
            steps.append(ExplainStep(rule.id, rule.effect, "not_concerned", "", shown))
            continue
        if rule.effect == "deny":
            denies.append((rule, hits[0]))
            steps.append(ExplainStep(rule.id, "deny", "concerns", "deny rule", hits[0].text))
            continue
        concerning.append((rule, hits[0]))
        if action == "publish":
            granting.append((rule, hits[0]))
            steps.append(ExplainStep(rule.id, "allow", "matches", "", hits[0].text))
            continue
        inside = [p for p in hits if contains(p.levels, target)]
        if not inside:
            steps.append(
                ExplainStep(rule.id, "allow", "overlaps", "does not contain", hits[0].text)
            )
            continue
        if rule.share_group is not None:
            fitting = [p for p in inside if p.group is not None and p.group == group]
            if not fitting:
                group_refused.append((rule, inside[0]))
                steps.append(
                    ExplainStep(rule.id, "allow", "contains", "share group differs", inside[0].text)
                )
                continue
            inside = fitting
        granting.append((rule, inside[0]))
        steps.append(ExplainStep(rule.id, "allow", "contains", "", inside[0].text))

    if denies:
        return _decide("deny", r.DENY_RULE, _first(denies), None, version, steps)
    if action == "publish":
        ok = [rp for rp in granting if qos in rp[0].qos and (rp[0].retain or not retain)]
        if ok:
            return _decide("allow", r.ALLOW_RULE, _first(ok), qos, version, steps)
        if granting:
            qos_ok = [rp for rp in granting if qos in rp[0].qos]
            if qos_ok:
                return _decide("deny", r.RETAIN_NOT_ALLOWED, _first(qos_ok), None, version, steps)
            return _decide("deny", r.QOS_NOT_ALLOWED, _first(granting), None, version, steps)
    else:
        levels = [(max((q for q in rp[0].qos if q <= qos), default=-1), rp) for rp in granting]
        best = max((lv for lv, _ in levels), default=-1)
        if best >= 0:
            top = _first([rp for lv, rp in levels if lv == best])
            return _decide("allow", r.ALLOW_RULE, top, best, version, steps)
        if granting:
            return _decide("deny", r.QOS_NOT_ALLOWED, _first(granting), None, version, steps)
        if group_refused:
            hit = _first(group_refused)
            return _decide("deny", r.SHARE_GROUP_NOT_ALLOWED, hit, None, version, steps)
        if concerning:
            return _decide("deny", r.NOT_CONTAINED, _first(concerning), None, version, steps)
    if default_action == "allow":
        return _decide("allow", r.DEFAULT, None, qos, version, steps)
    if unbound:
        return _decide("deny", r.UNBOUND_VARIABLE, _first(unbound), None, version, steps)
    return _decide("deny", r.DEFAULT, None, None, version, steps)
