"""Warnings about rules that are valid but probably not what their author meant.

The checks are sound but not complete: a warning is only given when it holds for
every identity, by treating each variable as an opaque level that equals only itself.
"""

from __future__ import annotations

from gateway.acl.rule import Rule
from gateway.acl.topic import MULTI, SINGLE, Levels, contains, normalise

# A marker no literal level can hold (U+0000 is refused in topics, MQTT 4.7.3), so a
# variable level compares equal only to the same variable level.
_OPAQUE = "\x00"


def symbolic_levels(rule: Rule) -> Levels:
    return tuple(t.source if t.is_literal else _OPAQUE + t.source for t in rule.levels)


def always_overrides(deny: Rule, allow: Rule) -> bool:
    """Whether ``deny`` applies and concerns whenever ``allow`` would grant something."""
    if not allow.actions <= deny.actions:
        return False
    if deny.principal is not None and deny.principal != allow.principal:
        return False
    allow_when = {c.binding: c.accepted for c in allow.when}
    for cond in deny.when:
        if cond.binding not in allow_when or not allow_when[cond.binding] <= cond.accepted:
            return False
    return contains(symbolic_levels(deny), symbolic_levels(allow))


class _DenyTrie:
    """Deny rules by symbolic level, so that finding the denies that may contain an allow
    rule walks the allow rule's levels instead of comparing every pair (a lint must stay
    usable on a policy of 100,000 rules)."""

    def __init__(self) -> None:
        self.children: dict[str, _DenyTrie] = {}
        self.rules: list[Rule] = []  # patterns that end here
        self.hash: list[Rule] = []  # patterns whose '#' is the next level

    def add(self, rule: Rule) -> None:
        node = self
        levels = normalise(symbolic_levels(rule))
        for i, level in enumerate(levels):
            if level == MULTI and i == len(levels) - 1:
                node.hash.append(rule)
                return
            node = node.children.setdefault(level, _DenyTrie())
        node.rules.append(rule)

    def containing(self, levels: Levels) -> list[Rule]:
        """The denies whose pattern contains ``levels`` (as ``topic.contains`` decides)."""
        levels = normalise(levels)
        out: list[Rule] = []
        states = [self]
        for i, level in enumerate(levels):
            dollar = i == 0 and level.startswith("$")
            nxt: list[_DenyTrie] = []
            for node in states:
                if not dollar:
                    out.extend(node.hash)
                if level == MULTI:
                    continue
                if (same := node.children.get(level)) is not None:
                    nxt.append(same)
                if level != SINGLE and not dollar and (p := node.children.get(SINGLE)):
                    nxt.append(p)
            states = nxt
        if levels[-1] != MULTI:
            for node in states:
                out.extend(node.rules)
                out.extend(node.hash)
        return out


def lint_rules(rules: tuple[Rule, ...] | list[Rule]) -> list[tuple[str, str, int, str]]:
    """(code, message, rule index, key) for every warning, in rule order."""
    out: list[tuple[str, str, int, str]] = []
    denies = _DenyTrie()
    for r in rules:
        if r.effect == "deny":
            denies.add(r)
    for rule in rules:
        if rule.effect == "allow":
            candidates = sorted(denies.containing(symbolic_levels(rule)), key=lambda d: d.index)
            for deny in candidates:
                if always_overrides(deny, rule):
                    out.append(
                        (
                            "never_effective",
                            f"allow rule {rule.id!r} is never effective: deny rule {deny.id!r}"
                            " concerns everything it allows (deny overrides allow)",
                            rule.index,
                            "topic",
                        )
                    )
                    break
            if (
                rule.principal is None
                and not rule.when
                and contains(symbolic_levels(rule), (MULTI,))
            ):
                out.append(
                    (
                        "allow_everything",
                        f"allow rule {rule.id!r} is as broad as '#' for every identity",
                        rule.index,
                        "topic",
                    )
                )
        else:
            names = [v for t in rule.levels for v in t.variables]
            if names:
                shown = ", ".join("{" + n + "}" for n in dict.fromkeys(names))
                out.append(
                    (
                        "unusable_widens",
                        f"deny rule {rule.id!r}: for an identity where {shown} is unusable,"
                        " each level holding it matches any level (fail closed)",
                        rule.index,
                        "topic",
                    )
                )
            if rule.when:
                shown = ", ".join(c.binding for c in rule.when)
                out.append(
                    (
                        "unusable_widens",
                        f"deny rule {rule.id!r}: its when holds for every identity where"
                        f" {shown} is missing or unusable (fail closed)",
                        rule.index,
                        "when",
                    )
                )
    return out
