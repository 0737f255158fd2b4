"""A compiled policy: decisions for PUBLISH, SUBSCRIBE and delivery (ACL v2 "Semantics").

A ``Policy`` never changes after compilation; reloading builds a new one and swaps
it in (``PolicyHolder``). Its caches (per-identity bound variables and decisions)
only remember answers, so two threads reading one policy see the same verdicts.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.acl import decision as r
from gateway.acl.decision import PolicyDecision
from gateway.acl.document import PolicyDocument, PolicyError, Problem, check_document, check_text
from gateway.acl.index import (
    ApplicabilityClass,
    BoundTemplates,
    CompiledIndex,
    Entry,
    first_entry,
    first_hit,
    walk_contain,
    walk_match,
    walk_overlap,
)
from gateway.acl.reference import evaluate
from gateway.acl.rule import Action, Assignment, Rule, merge_assignment, topic_values
from gateway.acl.topic import Levels, TopicSyntaxError, normalise, parse_name, parse_subscription
from gateway.identity import Identity

# Decisions remembered per identity: a client publishes to a handful of topics, and
# 256 keeps a long-lived session's hot set while bounding what a topic scan can grow.
DECISION_CACHE_SIZE = 256
# Identities whose bound variables and decisions are kept; beyond this the least
# recently used is forgotten and rebinds on its next request.
IDENTITY_CACHE_SIZE = 4096
VALID_QOS = (0, 1, 2)  # MQTT 4.3


def class_holds(c: ApplicabilityClass, identity: Identity) -> bool:
    """Principal and ``when`` (an unusable binding fails an allow, holds for a deny)."""
    if c.principal is not None and identity.principal != c.principal:
        return False
    for cond in c.when:
        b = identity.binding(cond.binding)
        if not b.usable:
            if c.effect == "allow":
                return False
            continue
        if not any(v in cond.accepted for v in b.values):
            return False
    return True


class _Bound:
    """One identity's view of the policy: class masks, bound variables, decisions."""

    __slots__ = ("cond", "decisions", "identity", "ok", "templates")

    def __init__(self, identity: Identity, classes: tuple[ApplicabilityClass, ...]) -> None:
        self.identity = identity
        self.templates = BoundTemplates(identity)
        self.decisions: OrderedDict[tuple[Any, ...], PolicyDecision] = OrderedDict()
        cond = ok = 0
        for n, c in enumerate(classes):
            if not class_holds(c, identity):
                continue
            cond |= 1 << n
            if all(topic_values(identity, v) is not None for v in c.variables):
                ok |= 1 << n
        self.cond = cond  # principal and when hold
        self.ok = ok  # ... and every variable of an allow rule is usable


class Policy:
    """A compiled, immutable policy. Build with ``compile_policy`` or ``load_policy``."""

    __slots__ = (
        "_bound",
        "_decision_cache_size",
        "_identity_cache_size",
        "_index",
        "_last",
        "_lock",
        "_retained_ttls",
        "default_action",
        "description",
        "rules",
        "source",
        "version",
        "warnings",
    )

    def __init__(
        self,
        document: PolicyDocument,
        warnings: tuple[Problem, ...] = (),
        *,
        decision_cache_size: int = DECISION_CACHE_SIZE,
        identity_cache_size: int = IDENTITY_CACHE_SIZE,
    ) -> None:
        self.source = document.source
        self.version = document.version
        self.default_action: r.Verdict = document.default_action
        self.rules: tuple[Rule, ...] = document.rules
        self._retained_ttls: dict[str, int] = {
            r.id: r.retained_ttl_s for r in document.rules if r.retained_ttl_s is not None
        }
        self.description = document.description
        self.warnings = warnings
        self._index = CompiledIndex.build(document.rules)
        self._decision_cache_size = decision_cache_size
        self._identity_cache_size = identity_cache_size
        self._bound: OrderedDict[tuple[Any, ...], _Bound] = OrderedDict()
        self._lock = threading.Lock()
        self._last: tuple[Identity, _Bound] | None = None

    def __repr__(self) -> str:
        return f"<Policy {self.source} {self.version} rules={len(self.rules)}>"

    def retained_ttl(self, rule_id: str | None) -> int | None:
        """The ``retained_ttl_s`` of the rule that granted a publish, if it sets one."""
        if rule_id is None or not self._retained_ttls:
            return None
        return self._retained_ttls.get(rule_id)

    # -- public decisions ---------------------------------------------------------

    def authorize_publish(
        self, identity: Identity, topic: str, qos: int, retain: bool, *, explain: bool = False
    ) -> PolicyDecision:
        """PUBLISH to ``topic`` with ``qos`` and ``retain`` (ACL v2 "PUBLISH")."""
        b = self._bind(identity)
        key = ("p", topic, qos, retain)
        d = b.decisions.get(key)
        if d is not None and not explain:
            # Cached: the topic and QoS were checked when the decision was made.
            return d
        if qos not in VALID_QOS:
            return self._refuse(r.INVALID_QOS)
        try:
            levels = parse_name(topic)
        except TopicSyntaxError:
            return self._refuse(r.INVALID_TOPIC)
        if d is None:
            d = self._store(b, key, self._publish(b, levels, qos, retain))
        if explain:
            return self._explained(d, identity, "publish", levels, qos, retain, None)
        return d

    def authorize_subscribe(
        self, identity: Identity, topic_filter: str, qos: int, *, explain: bool = False
    ) -> PolicyDecision:
        """SUBSCRIBE to ``topic_filter`` (``$share/{group}/{filter}`` decided on the inner one)."""
        b = self._bind(identity)
        raw_key = ("S", topic_filter, qos)
        if not explain:
            d = b.decisions.get(raw_key)
            if d is not None:  # the filter was parsed when this was decided
                return d
        if qos not in VALID_QOS:
            return self._refuse(r.INVALID_QOS)
        try:
            sub = parse_subscription(topic_filter)
        except TopicSyntaxError:
            return self._refuse(r.INVALID_TOPIC)
        d = self._subscribe_levels(identity, sub.filter, sub.group, qos, explain, topic_filter)
        if not explain:
            self._store(b, raw_key, d)
        return d

    def authorize_delivery(
        self, identity: Identity, topic: str, qos: int, *, share_group: str | None = None
    ) -> PolicyDecision:
        """May ``identity`` receive a message on ``topic`` now? As a SUBSCRIBE to exactly
        ``topic`` (in ``share_group`` when the message came through a shared subscription)."""
        b = self._bind(identity)
        raw_key = ("D", topic, qos, share_group)
        d = b.decisions.get(raw_key)
        if d is not None:
            return d
        if qos not in VALID_QOS:
            return self._refuse(r.INVALID_QOS)
        try:
            levels = parse_name(topic)
        except TopicSyntaxError:
            return self._refuse(r.INVALID_TOPIC)
        if share_group is not None and any(c in share_group for c in "+#/\x00"):
            return self._refuse(r.INVALID_TOPIC)
        d = self._subscribe_levels(identity, levels, share_group, qos, False, None)
        return self._store(b, raw_key, d)

    # -- machinery ----------------------------------------------------------------

    def _subscribe_levels(
        self,
        identity: Identity,
        levels: Levels,
        group: str | None,
        qos: int,
        explain: bool,
        text: str | None,
    ) -> PolicyDecision:
        levels = normalise(levels)
        b = self._bind(identity)
        key = ("s", levels, group, qos)
        d = self._cached(b, key)
        if d is None:
            d = self._store(b, key, self._subscribe(b, levels, group, qos))
        if explain:
            return self._explained(d, identity, "subscribe", levels, qos, False, group)
        return d

    def _refuse(self, reason: str) -> PolicyDecision:
        return PolicyDecision("deny", reason, None, None, None, self.version)

    def _decide(
        self,
        b: _Bound,
        verdict: r.Verdict,
        reason: str,
        hit: tuple[Entry, Assignment] | None,
        granted: int | None,
    ) -> PolicyDecision:
        if hit is None:
            return PolicyDecision(verdict, reason, None, None, granted, self.version)
        entry, asg = hit
        pattern = entry.rule.render(b.identity, asg)
        return PolicyDecision(verdict, reason, entry.rule.id, pattern, granted, self.version)

    def _publish(self, b: _Bound, topic: Levels, qos: int, retain: bool) -> PolicyDecision:
        tries = self._index.tries
        deny = first_entry(walk_match(tries[("publish", "deny")], topic, b.templates), b.ok)
        if deny is not None:
            return self._decide(b, "deny", r.DENY_RULE, deny, None)
        allow_trie = tries[("publish", "allow")]
        grant = qos_only = concern = unbound = None
        for e, asg in walk_match(allow_trie, topic, b.templates):
            if not e.bit & b.ok:
                if e.bit & b.cond:
                    unbound = _earlier(unbound, (e, asg))
                continue
            concern = _earlier(concern, (e, asg))
            if qos in e.rule.qos:
                if e.rule.retain or not retain:
                    grant = _earlier(grant, (e, asg))
                else:
                    qos_only = _earlier(qos_only, (e, asg))
        if grant is not None:
            return self._decide(b, "allow", r.ALLOW_RULE, grant, qos)
        if qos_only is not None:
            return self._decide(b, "deny", r.RETAIN_NOT_ALLOWED, qos_only, None)
        if concern is not None:
            return self._decide(b, "deny", r.QOS_NOT_ALLOWED, concern, None)
        return self._default(b, unbound, qos)

    def _default(
        self, b: _Bound, unbound: tuple[Entry, Assignment] | None, qos: int
    ) -> PolicyDecision:
        if self.default_action == "allow":
            return self._decide(b, "allow", r.DEFAULT, None, qos)
        if unbound is not None:
            return self._decide(b, "deny", r.UNBOUND_VARIABLE, unbound, None)
        return self._decide(b, "deny", r.DEFAULT, None, None)

    def _subscribe(self, b: _Bound, filt: Levels, group: str | None, qos: int) -> PolicyDecision:
        tries = self._index.tries
        deny_trie, allow_trie = tries[("subscribe", "deny")], tries[("subscribe", "allow")]
        deny = first_hit(walk_overlap(deny_trie, filt, b.templates), b.ok)
        if deny is not None:
            return self._decide(b, "deny", r.DENY_RULE, deny, None)
        best_level = -1
        best = containing = refused = None
        for e, asg in walk_contain(allow_trie, filt, b.templates):
            if not e.bit & b.ok:
                continue
            if not self._group_fits(b, e.rule, asg, group):
                refused = _earlier(refused, (e, asg))
                continue
            containing = _earlier(containing, (e, asg))
            level = max((q for q in e.rule.qos if q <= qos), default=-1)
            if level > best_level or (level == best_level and level >= 0 and _before(e, best)):
                best_level, best = level, (e, asg)
        if best is not None and best_level >= 0:
            return self._decide(b, "allow", r.ALLOW_RULE, best, best_level)
        if containing is not None:
            return self._decide(b, "deny", r.QOS_NOT_ALLOWED, containing, None)
        if refused is not None:
            return self._decide(b, "deny", r.SHARE_GROUP_NOT_ALLOWED, refused, None)
        concern = first_hit(walk_overlap(allow_trie, filt, b.templates), b.ok)
        if concern is not None:
            return self._decide(b, "deny", r.NOT_CONTAINED, concern, None)
        unbound = None
        if self.default_action == "deny" and b.cond & ~b.ok:
            unbound = first_hit(walk_overlap(allow_trie, filt, b.templates), b.cond & ~b.ok)
        return self._default(b, unbound, qos)

    @staticmethod
    def _group_fits(b: _Bound, rule: Rule, asg: Assignment, group: str | None) -> bool:
        """A rule with ``share_group`` grants only shared subscriptions in that group."""
        if rule.share_group is None:
            return True
        if group is None:
            return False
        bound = b.templates.bind(rule.share_group)
        if bound is None:
            return False
        return any(text == group and merge_assignment(asg, a2) is not None for text, a2 in bound)

    def _bind(self, identity: Identity) -> _Bound:
        last = self._last
        if last is not None and last[0] is identity:
            # The same identity object as the previous call (a session's, a benchmark's):
            # no key to build, no lock to take.
            return last[1]
        b = self._bind_slow(identity)
        self._last = (identity, b)
        return b

    def _bind_slow(self, identity: Identity) -> _Bound:
        key = (identity.principal, identity.cache_key())
        with self._lock:
            b = self._bound.get(key)
            if b is not None:
                self._bound.move_to_end(key)
                return b
        b = _Bound(identity, self._index.classes)
        with self._lock:
            self._bound[key] = b
            if len(self._bound) > self._identity_cache_size:
                self._bound.popitem(last=False)
        return b

    def _cached(self, b: _Bound, key: tuple[Any, ...]) -> PolicyDecision | None:
        if not self._decision_cache_size:
            return None
        with self._lock:
            d = b.decisions.get(key)
            if d is not None:
                b.decisions.move_to_end(key)
            return d

    def _store(self, b: _Bound, key: tuple[Any, ...], d: PolicyDecision) -> PolicyDecision:
        if self._decision_cache_size:
            with self._lock:
                b.decisions[key] = d
                if len(b.decisions) > self._decision_cache_size:
                    b.decisions.popitem(last=False)
        return d

    def _explained(
        self,
        d: PolicyDecision,
        identity: Identity,
        action: Action,
        target: Levels,
        qos: int,
        retain: bool,
        group: str | None,
    ) -> PolicyDecision:
        ref = evaluate(
            self.rules,
            self.default_action,
            self.version,
            identity,
            action,
            target,
            qos,
            retain,
            group,
        )
        return dataclasses.replace(d, explain=ref.explain)

    def reference_decision(
        self,
        identity: Identity,
        action: Action,
        topic: str,
        qos: int,
        retain: bool = False,
    ) -> PolicyDecision:
        """The same question answered rule by rule (slow; for tests and ``--explain``)."""
        if qos not in VALID_QOS:
            return self._refuse(r.INVALID_QOS)
        try:
            if action == "publish":
                target, group = parse_name(topic), None
            else:
                sub = parse_subscription(topic)
                target, group = sub.filter, sub.group
        except TopicSyntaxError:
            return self._refuse(r.INVALID_TOPIC)
        return evaluate(
            self.rules,
            self.default_action,
            self.version,
            identity,
            action,
            target,
            qos,
            retain,
            group,
        )


def _before(e: Entry, other: tuple[Entry, Assignment] | None) -> bool:
    return other is None or e.rule.index < other[0].rule.index


def _earlier(
    current: tuple[Entry, Assignment] | None, candidate: tuple[Entry, Assignment]
) -> tuple[Entry, Assignment]:
    return candidate if _before(candidate[0], current) else current  # type: ignore[return-value]


class PolicyHolder:
    """The policy in force; ``swap`` replaces it atomically (a reference assignment)."""

    __slots__ = ("_current",)

    def __init__(self, policy: Policy) -> None:
        self._current = policy

    @property
    def current(self) -> Policy:
        return self._current

    def swap(self, policy: Policy) -> Policy:
        """Put ``policy`` in force; returns the one it replaces."""
        old, self._current = self._current, policy
        return old


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Compiling allocates millions of long-lived objects and no cycles worth collecting;
    the cyclic collector would rescan the growing heap again and again (measured: index
    build of 100,000 rules 6.8 s with it, 1.2 s without). Process-wide, for the duration."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compile_policy(
    doc: dict[str, Any],
    source: str = "<policy>",
    *,
    decision_cache_size: int = DECISION_CACHE_SIZE,
) -> Policy:
    """Check and compile a policy document; raises PolicyError on any error."""
    with _collector_paused():
        document, problems = check_document(doc, source)
        if document is None:
            raise PolicyError(problems)
        return Policy(
            document,
            tuple(p for p in problems if p.severity == "warning"),
            decision_cache_size=decision_cache_size,
        )


def load_policy(path: str | Path, *, decision_cache_size: int = DECISION_CACHE_SIZE) -> Policy:
    """Read, check and compile a policy file; PolicyError carries file:line and pointer."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError([Problem("error", "unreadable", str(e), "", None, str(p))]) from None
    with _collector_paused():
        document, problems = check_text(text, str(p))
        if document is None:
            raise PolicyError(problems)
        return Policy(
            document,
            tuple(x for x in problems if x.severity == "warning"),
            decision_cache_size=decision_cache_size,
        )
