"""The issue's semantics, one worked example each, and a test for every reason code."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.acl import REASONS, Policy, PolicyDecision, PolicyHolder, compile_policy
from gateway.acl.rule import MAX_TOPIC_VALUES
from gateway.identity import Identity

ALICE = Identity.from_values({"user_id": "u1", "email": "a@b.c", "role": "engineer"})


def policy(*rules: dict[str, Any], default: str = "deny") -> Policy:
    return compile_policy({"version": "2.0", "default_action": default, "rules": list(rules)})


def rule(rid: str, topic: str, action: str = "all", effect: str = "allow", **kw: Any) -> dict:
    return {"id": rid, "topic": topic, "action": action, "effect": effect, **kw}


def sub(p: Policy, f: str, qos: int = 2, who: Identity = ALICE) -> PolicyDecision:
    return p.authorize_subscribe(who, f, qos)


def pub(
    p: Policy, t: str, qos: int = 0, retain: bool = False, who: Identity = ALICE
) -> PolicyDecision:
    return p.authorize_publish(who, t, qos, retain)


def check(d: PolicyDecision, verdict: str, reason: str, rule_id: str | None = None) -> None:
    assert (d.verdict, d.reason) == (verdict, reason), d
    if rule_id is not None:
        assert d.rule_id == rule_id, d


def test_allow_rule_and_bound_pattern() -> None:
    p = policy(rule("own", "users/{email}/inbox", "subscribe", qos=[0, 1]))
    d = sub(p, "users/a@b.c/inbox", 1)
    check(d, "allow", "allow_rule", "own")
    assert d.pattern == "users/a@b.c/inbox" and d.granted_qos == 1
    assert d.policy_version == p.version and d.allowed
    check(sub(p, "users/x@y.z/inbox", 1), "deny", "default")


def test_deny_overrides_allow_whatever_the_order() -> None:
    a, d = rule("a", "a/#"), rule("d", "a/secret", effect="deny")
    for p in (policy(a, d), policy(d, a)):
        check(pub(p, "a/secret"), "deny", "deny_rule", "d")
        check(pub(p, "a/public"), "allow", "allow_rule", "a")


def test_containment_not_overlap_grants_subscriptions() -> None:
    p = policy(rule("a+", "a/+", "subscribe"))
    check(sub(p, "a/#"), "deny", "not_contained", "a+")
    check(sub(p, "a/x"), "allow", "allow_rule")
    check(sub(p, "+/x"), "deny", "not_contained")
    p = policy(rule("a#", "a/#", "subscribe"), rule("no", "a/secret", "subscribe", "deny"))
    check(sub(p, "a/#"), "deny", "deny_rule", "no")
    check(sub(p, "a/+"), "deny", "deny_rule", "no")
    check(sub(p, "a/public"), "allow", "allow_rule", "a#")


def test_default_decides_only_when_no_applicable_rule_concerns() -> None:
    p = policy(rule("a", "a/+", "subscribe"), default="allow")
    check(sub(p, "b/#"), "allow", "default")
    assert sub(p, "b/#", 1).granted_qos == 1
    check(sub(p, "a/#"), "deny", "not_contained")  # the default does not rescue it


def test_publish_qos_and_retain() -> None:
    p = policy(rule("out", "agents/{user_id}/out/#", "publish", qos=[0, 1], retain=False))
    check(pub(p, "agents/u1/out/x", 1), "allow", "allow_rule", "out")
    check(pub(p, "agents/u1/out/x", 2), "deny", "qos_not_allowed", "out")
    check(pub(p, "agents/u1/out/x", 1, retain=True), "deny", "retain_not_allowed", "out")
    # qos_not_allowed whatever default_action says
    p2 = policy(rule("out", "t", "publish", qos=[0]), default="allow")
    check(pub(p2, "t", 1), "deny", "qos_not_allowed")


def test_subscribe_qos_downgrade_or_refusal() -> None:
    p = policy(rule("lo", "t/#", "subscribe", qos=[0]), rule("mid", "t/x", "subscribe", qos=[1]))
    d = sub(p, "t/x", 2)
    check(d, "allow", "allow_rule", "mid")
    assert d.granted_qos == 1
    assert sub(p, "t/y", 2).granted_qos == 0
    p = policy(rule("hi", "t", "subscribe", qos=[1, 2]))
    check(sub(p, "t", 0), "deny", "qos_not_allowed", "hi")
    assert sub(p, "t", 2).granted_qos == 2


def test_unbound_variable_fails_closed() -> None:
    nobody = Identity.from_values({"user_id": "u1"})
    p = policy(rule("own", "users/{email}/#"))
    check(pub(p, "users/x/inbox", who=nobody), "deny", "unbound_variable", "own")
    check(sub(p, "users/+/inbox", who=nobody), "deny", "unbound_variable", "own")
    # never an empty string: users//inbox is not granted either
    check(pub(p, "users//inbox", who=nobody), "deny", "unbound_variable")
    for bad in ("", "a/b", "a+", "#", "$SYS", "x\x00y", {"o": 1}, None, ["a", "b/c"]):
        who = Identity.from_values({"email": bad})
        assert not pub(p, "users/a+/x", who=who).allowed
        assert pub(p, "users/x/inbox", who=who).reason == "unbound_variable"


def test_deny_rule_with_unusable_variable_covers_every_value() -> None:
    p = policy(rule("all", "#"), rule("block", "users/{email}-mail/#", effect="deny"))
    who = Identity.from_values({"email": "a/b"})
    check(pub(p, "users/anything/x", who=who), "deny", "deny_rule", "block")
    assert pub(p, "users/anything/x", who=who).pattern == "users/{email}-mail/#"
    check(pub(p, "other", who=who), "allow", "allow_rule", "all")
    check(pub(p, "users/a@b.c-mail/x"), "deny", "deny_rule")
    check(pub(p, "users/z/x"), "allow", "allow_rule")


def test_when_fails_allow_and_holds_deny_on_unusable() -> None:
    p = policy(rule("eng", "t", when={"role": ["engineer", "admin"]}))
    check(pub(p, "t"), "allow", "allow_rule")
    check(pub(p, "t", who=Identity.from_values({"role": ["x", "admin"]})), "allow", "allow_rule")
    check(pub(p, "t", who=Identity.from_values({})), "deny", "default")
    p = policy(rule("all", "t"), rule("guests", "t", effect="deny", when={"role": "guest"}))
    check(pub(p, "t"), "allow", "allow_rule")
    check(pub(p, "t", who=Identity.from_values({})), "deny", "deny_rule", "guests")
    check(pub(p, "t", who=Identity.from_values({"role": 5})), "allow", "allow_rule")
    p = policy(rule("n", "t", when={"claim:level": 5}))
    check(pub(p, "t", who=Identity.from_values({"level": 5})), "allow", "allow_rule")


def test_principal_restricts_a_rule_to_a_service_account() -> None:
    p = policy(rule("svc", "events/#", "publish", principal="service:rest_publisher"))
    svc = Identity.from_values({}, principal="service:rest_publisher")
    check(pub(p, "events/x", who=svc), "allow", "allow_rule")
    check(pub(p, "events/x"), "deny", "default")


def test_multi_valued_bindings_expand_consistently() -> None:
    who = Identity.from_values({"org": ["o1", "o2"]})
    p = policy(rule("pair", "{org}/{org}"))
    check(pub(p, "o1/o1", who=who), "allow", "allow_rule")
    check(pub(p, "o2/o2", who=who), "allow", "allow_rule")
    check(pub(p, "o1/o2", who=who), "deny", "default")
    check(sub(p, "o1/o2", who=who), "deny", "default")
    check(sub(p, "o2/+", who=who), "deny", "not_contained")
    p = policy(rule("g", "jobs/{org}/#", "subscribe", share_group="w-{org}"))
    check(sub(p, "$share/w-o1/jobs/o1/x", who=who), "allow", "allow_rule")
    check(sub(p, "$share/w-o2/jobs/o1/x", who=who), "deny", "share_group_not_allowed")


def test_a_binding_with_too_many_values_is_unusable_in_topics_only() -> None:
    many = [f"o{i}" for i in range(MAX_TOPIC_VALUES + 1)]
    who = Identity.from_values({"org": many, "role": many})
    p = policy(rule("t", "{org}/x"), rule("w", "w", when={"role": "o3"}))
    check(pub(p, "o1/x", who=who), "deny", "unbound_variable", "t")
    check(pub(p, "w", who=who), "allow", "allow_rule", "w")  # when only tests membership
    p = policy(rule("all", "#"), rule("d", "{org}/x", effect="deny"))
    check(pub(p, "zzz/x", who=who), "deny", "deny_rule", "d")
    fits = Identity.from_values({"org": many[:MAX_TOPIC_VALUES]})
    check(pub(p, "zzz/x", who=fits), "allow", "allow_rule", "all")


def test_dollar_topics_and_shared_subscriptions() -> None:
    p = policy(rule("all", "#"))
    check(pub(p, "$SYS/broker/load"), "deny", "default")
    check(sub(p, "$SYS/#"), "deny", "default")
    check(sub(p, "+/#"), "allow", "allow_rule")
    p = policy(rule("sys", "$SYS/broker/#", "subscribe"))
    check(sub(p, "$SYS/broker/load"), "allow", "allow_rule")
    p = policy(rule("g", "jobs/#", "subscribe", share_group="workers"))
    check(sub(p, "$share/workers/jobs/1"), "allow", "allow_rule")
    check(sub(p, "$share/others/jobs/1"), "deny", "share_group_not_allowed")
    check(sub(p, "jobs/1"), "deny", "share_group_not_allowed")
    p = policy(rule("n", "news/#", "subscribe"), rule("x", "news/x", "subscribe", "deny"))
    check(sub(p, "$share/g/news/y"), "allow", "allow_rule")
    check(sub(p, "$share/g/news/+"), "deny", "deny_rule")


def test_invalid_requests() -> None:
    p = policy(rule("all", "#"), default="allow")
    for t in ("", "a/+", "a/#", "a\x00b"):
        check(pub(p, t), "deny", "invalid_topic")
    for f in ("", "a/#/b", "a+", "$share/g", "$share//a", "$share/g+/a", "$share/g/"):
        check(sub(p, f), "deny", "invalid_topic")
    check(pub(p, "a", 3), "deny", "invalid_qos")
    check(sub(p, "a", -1), "deny", "invalid_qos")
    check(p.authorize_delivery(ALICE, "a/+", 0), "deny", "invalid_topic")


def test_topics_are_compared_byte_for_byte() -> None:
    p = policy(rule("c", "Café/x"))
    check(pub(p, "Café/x"), "allow", "allow_rule")
    check(pub(p, "Cafe\u0301/x"), "deny", "default")  # no Unicode normalisation
    check(pub(p, "café/x"), "deny", "default")  # no case folding
    check(pub(p, "Café/../Café/x"), "deny", "default")  # no '..' handling


def test_delivery_is_a_subscription_to_exactly_the_topic() -> None:
    p = policy(
        rule("a", "a/#", "subscribe", qos=[0, 1]), rule("d", "a/secret", "subscribe", "deny")
    )
    d = p.authorize_delivery(ALICE, "a/x", 2)
    check(d, "allow", "allow_rule")
    assert d.granted_qos == 1
    check(p.authorize_delivery(ALICE, "a/secret", 0), "deny", "deny_rule")


def test_policies_are_swapped_atomically_and_carry_their_version() -> None:
    old, new = policy(rule("a", "a")), policy(rule("b", "b"))
    holder = PolicyHolder(old)
    assert holder.swap(new) is old and holder.current is new
    assert old.version != new.version
    same = compile_policy({"rules": [rule("a", "a")], "default_action": "deny", "version": "2.0"})
    assert same.version == old.version  # key order does not matter


def test_explain_lists_every_rule() -> None:
    p = policy(rule("a", "a/#"), rule("b", "b", "publish"), rule("c", "a/x", effect="deny"))
    d = p.authorize_subscribe(ALICE, "a/y", 1, explain=True)
    assert d.explain is not None
    assert [s.rule_id for s in d.explain] == ["a", "b", "c"]
    assert [s.outcome for s in d.explain] == ["contains", "skipped", "not_concerned"]


def test_decision_cache_is_bounded() -> None:
    p = compile_policy({"version": "2.0", "rules": [rule("a", "#")]}, decision_cache_size=8)
    for i in range(100):
        pub(p, f"t/{i}")
    assert all(len(b.decisions) <= 8 for b in p._bound.values())


# One request per reason code, so that a new code without a test fails here.
REASON_CASES: dict[str, tuple[list[dict[str, Any]], str, str, int, bool]] = {
    "allow_rule": ([rule("a", "a")], "publish", "a", 0, False),
    "deny_rule": ([rule("a", "#"), rule("d", "a", effect="deny")], "publish", "a", 0, False),
    "default": ([], "publish", "a", 0, False),
    "qos_not_allowed": ([rule("a", "a", qos=[0])], "publish", "a", 1, False),
    "retain_not_allowed": ([rule("a", "a")], "publish", "a", 0, True),
    "not_contained": ([rule("a", "a/+")], "subscribe", "a/#", 0, False),
    "unbound_variable": ([rule("a", "{org}/x")], "publish", "o/x", 0, False),
    "invalid_topic": ([], "subscribe", "a/#/b", 0, False),
    "invalid_qos": ([], "publish", "a", 7, False),
    "share_group_not_allowed": ([rule("a", "a", share_group="g")], "subscribe", "a", 0, False),
}


def test_every_reason_has_a_case() -> None:
    assert set(REASON_CASES) == set(REASONS)


@pytest.mark.parametrize("reason", REASONS)
def test_reason(reason: str) -> None:
    rules, action, topic, qos, retain = REASON_CASES[reason]
    p = policy(*rules)
    if action == "publish":
        d = p.authorize_publish(ALICE, topic, qos, retain)
    else:
        d = p.authorize_subscribe(ALICE, topic, qos)
    assert d.reason == reason
    assert d.allowed == (reason == "allow_rule")
    ref = p.reference_decision(ALICE, action, topic, qos, retain)  # type: ignore[arg-type]
    assert (ref.verdict, ref.reason, ref.rule_id) == (d.verdict, d.reason, d.rule_id)


@pytest.mark.parametrize("topic", ["users/{email}/x", "{claim:tenant}/x", "pre-{user_id}-post"])
def test_variables_fill_whole_or_part_of_a_level(topic: str) -> None:
    who = Identity.from_values({"email": "e", "tenant": "t", "user_id": "u"})
    p = policy(rule("r", topic))
    concrete = topic.replace("{email}", "e").replace("{claim:tenant}", "t")
    concrete = concrete.replace("{user_id}", "u")
    check(pub(p, concrete, who=who), "allow", "allow_rule")
