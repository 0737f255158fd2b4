"""Property tests: the engine against a brute-force oracle over a small level alphabet."""

from __future__ import annotations

from typing import Any

from acl_oracle import ALPHABET, FILTER_LEVELS, o_contains, o_overlaps, om, oracle_decide
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.acl import compile_policy
from gateway.acl.topic import contains, matches, overlaps
from gateway.identity import Identity


@st.composite
def filters(draw: st.DrawFn, levels: tuple[str, ...] = FILTER_LEVELS, max_len: int = 3) -> tuple:
    body = tuple(draw(st.lists(st.sampled_from(levels), min_size=0, max_size=max_len)))
    if draw(st.booleans()) or not body:
        body = (*body, "#")
    if body == ("",):
        body = ("a",)
    return body


topic_names = (
    st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=4)
    .map(tuple)
    .filter(lambda t: t != ("",))
)


@settings(max_examples=1000, deadline=None)
@given(filters(), topic_names)
def test_matches_agrees_with_the_words_of_mqtt(f: tuple, t: tuple) -> None:
    assert matches(f, t) == om(f, t)


@settings(max_examples=2000, deadline=None)
@given(filters(), filters())
def test_contains_agrees_with_enumeration(p: tuple, f: tuple) -> None:
    assert contains(p, f) == o_contains(p, f), (p, f)


@settings(max_examples=2000, deadline=None)
@given(filters(), filters())
def test_overlaps_agrees_with_enumeration(p: tuple, f: tuple) -> None:
    assert overlaps(p, f) == o_overlaps(p, f), (p, f)


def test_known_corners_of_containment_and_overlap() -> None:
    # The headline: allow a/+ must not admit a/#.
    assert not contains(("a", "+"), ("a", "#"))
    # '/#' matches '' (not a topic) and '/…': so '/+/#' contains it and '+' does not overlap it.
    assert contains(("", "+", "#"), ("", "#"))
    assert not overlaps(("", "#"), ("+",))
    # '$' topics are never matched by a first-level wildcard (MQTT 4.7.2).
    assert not overlaps(("#",), ("$x", "#"))
    assert not contains(("+", "#"), ("$x",))
    assert contains(("$x", "#"), ("$x", "+"))


# -- verdicts -----------------------------------------------------------------------

RULE_LEVELS = ("a", "b", "", "$x", "+", "{user_id}", "p-{role}", "{claim:tag}")
IDENTITY_VALUES: list[Any] = ["a", "b", "", "a/b", "$x", "+", ["a", "b"], ["a", "$x"], 7, None]


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    levels = draw(filters(RULE_LEVELS, 2))
    if levels[0].startswith("$") and "{" in levels[0]:
        levels = ("a", *levels[1:])
    effect = draw(st.sampled_from(["allow", "deny"]))
    rule: dict[str, Any] = {
        "id": f"r{index}",
        "topic": "/".join(levels),
        "action": draw(st.sampled_from(["publish", "subscribe", "all"])),
        "effect": effect,
    }
    if effect == "allow":
        if draw(st.booleans()):
            rule["qos"] = sorted(draw(st.sets(st.integers(0, 2), min_size=1, max_size=3)))
        if draw(st.booleans()):
            rule["retain"] = True
        if draw(st.integers(0, 4)) == 0:
            rule["share_group"] = draw(st.sampled_from(["g", "{user_id}", "g-{role}"]))
    if draw(st.integers(0, 3)) == 0:
        rule["when"] = {"role": draw(st.sampled_from(["a", ["a", "b"], "b", 7]))}
    if draw(st.integers(0, 5)) == 0:
        rule["principal"] = "svc"
    return rule


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 5))
    return {
        "version": "2.0",
        "default_action": draw(st.sampled_from(["allow", "deny"])),
        "rules": [draw(rules(i)) for i in range(n)],
    }


@st.composite
def identities(draw: st.DrawFn) -> Identity:
    values: dict[str, Any] = {}
    for name in ("user_id", "role", "tag"):
        if draw(st.integers(0, 4)) > 0:
            values[name] = draw(st.sampled_from(IDENTITY_VALUES))
    principal = draw(st.sampled_from([None, None, "svc"]))
    return Identity.from_values(values, principal=principal)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, tuple[str, ...], int, bool, str | None]:
    action = draw(st.sampled_from(["publish", "subscribe"]))
    target = draw(topic_names) if action == "publish" else draw(filters(max_len=2))
    group = draw(st.sampled_from([None, None, "g", "a", "g-a"])) if action == "subscribe" else None
    return action, target, draw(st.integers(0, 2)), draw(st.booleans()), group


def _ask(policy: Any, identity: Identity, req: tuple) -> Any:
    action, target, qos, retain, group = req
    text = "/".join(target)
    if action == "publish":
        return policy.authorize_publish(identity, text, qos, retain)
    if group is not None:
        text = f"$share/{group}/{text}"
    return policy.authorize_subscribe(identity, text, qos)


def _summary(d: Any) -> tuple[str, str, str | None, int | None]:
    return (d.verdict, d.reason, d.rule_id, d.granted_qos)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), identities(), st.lists(requests(), min_size=1, max_size=4))
def test_verdicts_agree_with_oracle_and_reference(
    doc: dict[str, Any], identity: Identity, reqs: list[tuple]
) -> None:
    cached = compile_policy(doc)
    uncached = compile_policy(doc, decision_cache_size=0)
    for req in reqs:
        action, target, qos, retain, group = req
        expected = oracle_decide(doc, identity, action, target, qos, retain, group)
        got = _ask(uncached, identity, req)
        assert _summary(got) == expected, (req, got)
        assert _summary(_ask(cached, identity, req)) == expected
        assert _summary(_ask(cached, identity, req)) == expected  # from the cache
        text = "/".join(target)
        if group is not None:
            text = f"$share/{group}/{text}"
        ref = cached.reference_decision(identity, action, text, qos, retain)  # type: ignore[arg-type]
        assert _summary(ref) == expected
        if action == "subscribe" and "#" not in target and "+" not in target:
            delivery = cached.authorize_delivery(identity, "/".join(target), qos, share_group=group)
            assert _summary(delivery) == expected


@st.composite
def repeated_variable_policies(draw: st.DrawFn) -> dict[str, Any]:
    """Rules where one multi-valued variable fills several levels (and the share group)."""
    levels = ("{user_id}", "x-{user_id}", "a", "+")
    out = []
    for i in range(draw(st.integers(1, 3))):
        r = draw(rules(i))
        r["topic"] = "/".join(draw(filters(levels, 2)))
        out.append(r)
    return {"version": "2.0", "default_action": draw(st.sampled_from(["allow", "deny"])),
            "rules": out}  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    repeated_variable_policies(),
    st.sampled_from([["a", "b"], ["a", "x-b", "b"], "a"]),
    st.lists(st.sampled_from(["a", "b", "x-a", "x-b", "z"]), min_size=1, max_size=2),
    st.sampled_from([None, "a", "b", "g"]),
)
def test_repeated_multi_valued_variables_agree_with_oracle(
    doc: dict[str, Any], user_id: Any, topic: list[str], group: str | None
) -> None:
    identity = Identity.from_values({"user_id": user_id})
    p = compile_policy(doc, decision_cache_size=0)
    target = tuple(topic)
    for req in (("publish", target, 1, False, None), ("subscribe", target, 1, False, group)):
        assert _summary(_ask(p, identity, req)) == oracle_decide(doc, identity, *req)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_never_effective_lint_finds_exactly_the_overridden_pairs(doc: dict[str, Any]) -> None:
    from gateway.acl.document import check_document
    from gateway.acl.lint import always_overrides

    document, problems = check_document(doc)
    assert document is not None
    flagged = {p.pointer for p in problems if p.code == "never_effective"}
    rules_ = document.rules
    brute = {
        f"/rules/{a.index}/topic"
        for a in rules_
        if a.effect == "allow" and any(always_overrides(d, a) for d in rules_ if d.effect == "deny")
    }
    assert flagged == brute
