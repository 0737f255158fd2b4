"""A brute-force oracle for ACL v2: enumerate every topic over a small level alphabet.

Containment and overlap are decided by looking at every valid topic name (MQTT 4.7.3:
at least one character) up to one level deeper than either filter; verdicts are
decided by the words of the issue, rule by rule, on top of those. Nothing here
imports the engine's topic or index code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

from gateway.acl.rule import MAX_TOPIC_VALUES
from gateway.identity import Identity, is_usable_value

# 'z' never appears in a generated filter: the fresh value a wildcard can take.
ALPHABET = ("a", "b", "", "$x", "z")
FILTER_LEVELS = ("a", "b", "", "$x", "+")


@cache
def topics(depth: int, alphabet: tuple[str, ...] = ALPHABET) -> tuple[tuple[str, ...], ...]:
    out = []
    for n in range(1, depth + 1):
        for t in itertools.product(alphabet, repeat=n):
            if t != ("",):  # the empty string is not a topic name
                out.append(t)
    return tuple(out)


def om(f: Sequence[str], t: Sequence[str]) -> bool:
    """MQTT 4.7 by its words."""
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False

    def rec(i: int, j: int) -> bool:
        if i == len(f):
            return j == len(t)
        if f[i] == "#":
            return True
        if j == len(t):
            return False
        return (f[i] == "+" or f[i] == t[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


def _alphabet(p: tuple[str, ...], f: tuple[str, ...]) -> tuple[str, ...]:
    """ALPHABET plus any literal level of either filter (a bound variable's value)."""
    extra = sorted({x for x in (*p, *f) if x not in ("+", "#") and x not in ALPHABET})
    return ALPHABET + tuple(extra)


@lru_cache(maxsize=200_000)
def o_contains(p: tuple[str, ...], f: tuple[str, ...]) -> bool:
    depth = max(len(p), len(f)) + 1
    return all(om(p, t) for t in topics(depth, _alphabet(p, f)) if om(f, t))


@lru_cache(maxsize=200_000)
def o_overlaps(p: tuple[str, ...], f: tuple[str, ...]) -> bool:
    depth = max(len(p), len(f)) + 1
    return any(om(p, t) and om(f, t) for t in topics(depth, _alphabet(p, f)))


def _values(identity: Identity, name: str, limit: int | None = None) -> tuple[str, ...] | None:
    """Usable values of a binding, or None (missing, empty, non-text, bad character,
    more than ``limit`` values)."""
    b = identity.binding(name)
    if not b.present or not b.values or not all(is_usable_value(v) for v in b.values):
        return None
    if limit is not None and len(b.values) > limit:
        return None
    return b.values


def _json_text(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v)


def _expand(text: str, values: dict[str, str | None]) -> str | None:
    for name, v in values.items():
        token = "{" + name + "}"
        if token in text:
            if v is None:
                return None
            text = text.replace(token, v)
    return text


def oracle_decide(
    doc: dict[str, Any],
    identity: Identity,
    action: str,
    target: tuple[str, ...],
    qos: int,
    retain: bool,
    group: str | None,
) -> tuple[str, str, str | None, int | None]:
    """(verdict, reason, rule_id, granted_qos) by the issue's words."""
    denies, concerning, granting, refused, unbound = [], [], [], [], []
    for idx, rule in enumerate(doc["rules"]):
        if rule["action"] not in (action, "all"):
            continue
        effect = rule["effect"]
        if "principal" in rule and identity.principal != rule["principal"]:
            continue
        holds = True
        for name, accepted in rule.get("when", {}).items():
            accepted = accepted if isinstance(accepted, list) else [accepted]
            vals = _values(identity, name.removeprefix("claim:"))
            if vals is None:
                holds = holds and effect == "deny"
                continue
            if not set(vals) & {_json_text(a) for a in accepted}:
                holds = False
        if not holds:
            continue
        names = sorted(
            {n for text in (rule["topic"], rule.get("share_group", "")) for n in _var_names(text)}
        )
        choices = []
        missing = False
        for n in names:
            vals = _values(identity, n.removeprefix("claim:"), MAX_TOPIC_VALUES)
            if vals is None:
                missing = True
                choices.append((None,))
            else:
                choices.append(vals)
        pats = []
        for combo in itertools.product(*choices):
            values = dict(zip(names, combo, strict=True))
            levels = tuple(
                "+" if _expand(level, values) is None else _expand(level, values)
                for level in rule["topic"].split("/")
            )
            g = _expand(rule["share_group"], values) if "share_group" in rule else None
            pats.append((levels, g))
        if action == "publish":
            hits = [p for p in pats if om(p[0], target)]
        else:
            hits = [p for p in pats if o_overlaps(p[0], target)]
        if not hits:
            continue
        if effect == "allow" and missing:
            unbound.append(idx)
            continue
        if effect == "deny":
            denies.append(idx)
            continue
        concerning.append(idx)
        if action == "publish":
            granting.append(idx)
            continue
        inside = [p for p in hits if o_contains(p[0], target)]
        if not inside:
            continue
        if "share_group" in rule and not any(g is not None and g == group for _, g in inside):
            refused.append(idx)
            continue
        granting.append(idx)
    rules = doc["rules"]

    def qos_of(i: int) -> list[int]:
        return list(rules[i].get("qos", [0, 1, 2]))

    if denies:
        return ("deny", "deny_rule", rules[min(denies)]["id"], None)
    if action == "publish":
        ok = [i for i in granting if qos in qos_of(i) and (rules[i].get("retain") or not retain)]
        if ok:
            return ("allow", "allow_rule", rules[min(ok)]["id"], qos)
        if granting:
            with_qos = [i for i in granting if qos in qos_of(i)]
            if with_qos:
                return ("deny", "retain_not_allowed", rules[min(with_qos)]["id"], None)
            return ("deny", "qos_not_allowed", rules[min(granting)]["id"], None)
    else:
        levels = {i: max([q for q in qos_of(i) if q <= qos], default=-1) for i in granting}
        best = max(levels.values(), default=-1)
        if best >= 0:
            winner = min(i for i, lv in levels.items() if lv == best)
            return ("allow", "allow_rule", rules[winner]["id"], best)
        if granting:
            return ("deny", "qos_not_allowed", rules[min(granting)]["id"], None)
        if refused:
            return ("deny", "share_group_not_allowed", rules[min(refused)]["id"], None)
        if concerning:
            return ("deny", "not_contained", rules[min(concerning)]["id"], None)
    if doc.get("default_action", "deny") == "allow":
        return ("allow", "default", None, qos)
    if unbound:
        return ("deny", "unbound_variable", rules[min(unbound)]["id"], None)
    return ("deny", "default", None, None)


def _var_names(text: str) -> list[str]:
    out = []
    rest = text
    while "{" in rest:
        start = rest.index("{")
        end = rest.index("}", start)
        out.append(rest[start + 1 : end])
        rest = rest[end + 1 :]
    return out
