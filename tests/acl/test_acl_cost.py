"""A decision's work does not grow with the number of rules (counted, not timed)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from gateway.acl import compile_policy
from gateway.identity import Identity

WHO = Identity.from_values({"user_id": "u1", "agent_id": "a1", "org": "acme", "role": "engineer"})


def tenant_policy(tenants: int) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for t in range(tenants):
        b = f"tenants/t{t}"
        rules += [
            {"id": f"in-{t}", "topic": f"{b}/users/{{user_id}}/inbox", "action": "subscribe",
             "effect": "allow", "qos": [0, 1]},
            {"id": f"out-{t}", "topic": f"{b}/agents/{{agent_id}}/out/#", "action": "publish",
             "effect": "allow", "when": {"role": "engineer"}},
            {"id": f"feed-{t}", "topic": f"{b}/feeds/+/news", "action": "subscribe",
             "effect": "allow"},
            {"id": f"no-{t}", "topic": f"{b}/orgs/+/secret/#", "action": "all", "effect": "deny"},
        ]  # fmt: skip
    return {"version": "2.0", "default_action": "deny", "rules": rules}


def calls(fn: Callable[[], object]) -> int:
    """Python function calls made by ``fn()``: a deterministic measure of its work."""
    count = 0

    def prof(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


REQUESTS: list[tuple[str, str, int]] = [
    ("publish", "tenants/t3/agents/a1/out/x", 0),
    ("publish", "tenants/t3/orgs/acme/secret/x", 0),
    ("publish", "tenants/t3/nothing/here", 0),
    ("subscribe", "tenants/t3/users/u1/inbox", 1),
    ("subscribe", "tenants/t3/feeds/+/news", 1),
    ("subscribe", "tenants/+/feeds/x/news", 1),
    ("subscribe", "tenants/+/orgs/#", 1),
    ("subscribe", "tenants/#", 1),
    ("subscribe", "#", 1),
]


def work(tenants: int) -> list[int]:
    policy = compile_policy(tenant_policy(tenants), decision_cache_size=0)
    out = []
    for action, topic, qos in REQUESTS:
        ask: Callable[[], object]
        if action == "publish":
            ask = partial(policy.authorize_publish, WHO, topic, qos, False)
        else:
            ask = partial(policy.authorize_subscribe, WHO, topic, qos)
        ask()  # first use binds variables and builds union views, once
        out.append(calls(ask))
    return out


def test_decision_work_is_the_same_for_10_and_5000_tenants() -> None:
    small, large = work(10), work(5000)
    assert small == large, list(zip(REQUESTS, small, large, strict=True))
