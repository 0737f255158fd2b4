"""ACL v2 decisions per second for 10, 1,000 and 100,000 rules (``python bench/acl.py``).

Every policy has the same shape: per tenant, rules with variables ({user_id},
{agent_id}, {org}) for publish and subscribe, a ``when`` on role, a deny, and
wildcards. Requests name random tenants, so the index must find the right branch
among all of them. "cached" answers repeat requests from the per-identity decision
cache; "uncached" compiles the policy with the cache off, so every request walks
the index (identities stay bound: variables are bound once per identity).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from gateway.acl import Policy, compile_policy
from gateway.identity import Identity

RULES_PER_TENANT = 5
SIZES = (10, 1_000, 100_000)


def make_policy_doc(n_rules: int) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    t = 0
    while len(rules) < n_rules:
        base = f"tenants/t{t}"
        rules += [
            {"id": f"inbox-{t}", "topic": f"{base}/users/{{user_id}}/inbox", "action": "subscribe",
             "effect": "allow", "qos": [0, 1]},
            {"id": f"out-{t}", "topic": f"{base}/agents/{{agent_id}}/out/#", "action": "publish",
             "effect": "allow", "qos": [0, 1], "when": {"role": ["engineer", "admin"]}},
            {"id": f"feeds-{t}", "topic": f"{base}/feeds/+/news", "action": "subscribe",
             "effect": "allow"},
            {"id": f"org-{t}", "topic": f"{base}/orgs/{{org}}/#", "action": "all",
             "effect": "allow", "retain": True},
            {"id": f"secret-{t}", "topic": f"{base}/orgs/+/secret/#", "action": "all",
             "effect": "deny"},
        ]  # fmt: skip
        t += 1
    return {"version": "2.0", "default_action": "deny", "rules": rules[:n_rules]}


def make_requests(
    n_tenants: int, count: int, hot: int = 0, seed: int = 1
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``count`` requests over ``hot`` tenants drawn from the whole policy (0: all of them).

    A fixed number of hot tenants keeps the memory the requests touch the same size
    whatever the number of rules, so the table compares the index and not the CPU
    caches; ``--hot 0`` shows the cost of cold memory as well.
    """
    rnd = random.Random(seed)
    tenants = rnd.sample(range(n_tenants), min(hot, n_tenants)) if hot else range(n_tenants)
    pubs, subs = [], []
    for _ in range(count):
        t = rnd.choice(tenants)
        pubs.append(
            rnd.choice(
                [
                    (f"tenants/t{t}/agents/a1/out/r{rnd.randrange(50)}", 1),
                    (f"tenants/t{t}/orgs/acme/data/{rnd.randrange(50)}", 0),
                    (f"tenants/t{t}/orgs/acme/secret/{rnd.randrange(50)}", 0),
                    (f"tenants/t{t}/agents/a2/out/x", 1),
                ]
            )
        )
        subs.append(
            rnd.choice(
                [
                    (f"tenants/t{t}/users/u1/inbox", 1),
                    (f"tenants/t{t}/feeds/f{rnd.randrange(50)}/news", 1),
                    (f"tenants/t{t}/orgs/acme/#", 1),
                    (f"tenants/t{t}/feeds/+/news", 0),
                    ("tenants/+/feeds/f1/news", 0),
                ]
            )
        )
    return pubs, subs


IDENTITY = Identity.from_values(
    {"user_id": "u1", "agent_id": "a1", "org": "acme", "role": "engineer"}
).with_client_id("c1")


def rate(fn: Callable[[], None], calls: int, min_seconds: float = 0.5) -> float:
    """Calls per second, repeating the batch until ``min_seconds`` have passed."""
    done = 0
    start = time.perf_counter()
    while True:
        fn()
        done += calls
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def bench(n_rules: int, requests: int, hot: int, repeat: int = 1) -> dict[str, float]:
    doc = make_policy_doc(n_rules)
    n_tenants = max(1, n_rules // RULES_PER_TENANT)
    pubs, subs = make_requests(n_tenants, requests, hot)
    t0 = time.perf_counter()
    uncached = compile_policy(doc, decision_cache_size=0)
    compile_s = time.perf_counter() - t0
    cached = compile_policy(doc, decision_cache_size=requests * 2)

    def run_pub(p: Policy) -> Callable[[], None]:
        def go() -> None:
            for topic, q in pubs:
                p.authorize_publish(IDENTITY, topic, q, False)

        return go

    def run_sub(p: Policy) -> Callable[[], None]:
        def go() -> None:
            for f, q in subs:
                p.authorize_subscribe(IDENTITY, f, q)

        return go

    for p in (uncached, cached):  # warm: bind the identity, build union views, fill cache
        run_pub(p)()
        run_sub(p)()
    best = {"compile_s": compile_s}
    for _ in range(repeat):  # best of rounds: on a shared machine, noise only slows
        for key, fn, n in (
            ("pub_uncached", run_pub(uncached), len(pubs)),
            ("sub_uncached", run_sub(uncached), len(subs)),
            ("pub_cached", run_pub(cached), len(pubs)),
            ("sub_cached", run_sub(cached), len(subs)),
        ):
            best[key] = max(best.get(key, 0.0), rate(fn, n))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--requests", type=int, default=2000, help="distinct requests per run")
    parser.add_argument("--hot", type=int, default=100, help="tenants requests go to (0: all)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is shown")
    args = parser.parse_args()
    print(
        f"{'rules':>8} {'compile s':>10} {'pub uncached':>13} {'sub uncached':>13}"
        f" {'pub cached':>11} {'sub cached':>11}   (decisions/s)"
    )
    for n in args.sizes:
        r = bench(n, args.requests, args.hot, args.repeat)
        print(
            f"{n:>8,} {r['compile_s']:>10.2f} {r['pub_uncached']:>13,.0f}"
            f" {r['sub_uncached']:>13,.0f} {r['pub_cached']:>11,.0f} {r['sub_cached']:>11,.0f}"
        )


if __name__ == "__main__":
    main()
