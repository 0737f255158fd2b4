"""The compiled form of a policy: one trie over topic levels per (action, effect).

A decision walks the request's levels, following at each level the literal child,
the ``+`` child, ``#`` entries and variable children bound for the identity; its cost
grows with the topic's depth, not with the number of rules. Overlap with a filter's
``+`` follows the union of all children (built once, then memoised), and with ``#``
reads a per-subtree summary: a bit mask of the *applicability classes* present below
and one representative rule per class.

An applicability class is what decides, for an identity, whether a rule applies
regardless of topic: (effect, principal, when, and, for allow rules, the variables
it uses). An identity evaluates each class once, on first use, into bit masks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.acl.rule import Action, Assignment, Condition, Rule, Template, merge_assignment
from gateway.acl.topic import MULTI, SINGLE, Levels
from gateway.identity import Identity


class Entry:
    """A rule placed in a trie, with its applicability class."""

    __slots__ = ("bit", "cls", "rule")

    def __init__(self, rule: Rule, cls: int) -> None:
        self.rule = rule
        self.cls = cls
        self.bit = 1 << cls


class Node:
    """A trie node; built once by ``build_trie`` and never changed afterwards."""

    __slots__ = ("end", "hash", "literal", "mask", "plus", "reps", "templated")

    def __init__(self) -> None:
        self.literal: dict[str, Node] = {}
        self.plus: Node | None = None
        self.templated: dict[str, tuple[Template, Node]] = {}
        self.end: list[Entry] = []  # patterns that end here
        self.hash: list[Entry] = []  # patterns whose '#' is the next level
        self.mask = 0  # classes of every entry here and below
        self.reps: dict[int, Entry] = {}  # class -> its first rule (document order) here/below


class Summary:
    """Entries reduced to what ``first_hit`` needs: their classes and the first rule of each."""

    __slots__ = ("mask", "reps")

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self.mask = 0
        self.reps: dict[int, Entry] = {}
        for e in entries:
            self.add(e)

    def add(self, e: Entry) -> None:
        self.mask |= e.bit
        old = self.reps.get(e.cls)
        if old is None or e.rule.index < old.rule.index:
            self.reps[e.cls] = e


def _finish(node: Node) -> None:
    children = [*node.literal.values(), *(c for _, c in node.templated.values())]
    if node.plus is not None:
        children.append(node.plus)
    for child in children:
        _finish(child)
    for entry in (*node.end, *node.hash):
        _keep_rep(node, entry)
    for child in children:
        for entry in child.reps.values():
            _keep_rep(node, entry)


def _keep_rep(node: Node, entry: Entry) -> None:
    node.mask |= entry.bit
    old = node.reps.get(entry.cls)
    if old is None or entry.rule.index < old.rule.index:
        node.reps[entry.cls] = entry


def trie_levels(rule: Rule) -> tuple[Template, ...]:
    """``#`` is stored as ``+/#`` and ``/#`` as ``/+/#`` (see ``topic.normalise``)."""
    lv = rule.levels
    plus = Template.of(SINGLE, ((False, SINGLE),))
    if len(lv) == 1 and lv[0].source == MULTI:
        return (plus, lv[0])
    if len(lv) == 2 and lv[0].source == "" and lv[1].source == MULTI:
        return (lv[0], plus, lv[1])
    return lv


def build_trie(entries: Sequence[Entry]) -> Node:
    root = Node()
    for entry in entries:
        node = root
        levels = trie_levels(entry.rule)
        for i, t in enumerate(levels):
            if t.source == MULTI and i == len(levels) - 1:
                node.hash.append(entry)
                break
            if t.source == SINGLE:
                node.plus = node.plus or Node()
                node = node.plus
            elif t.is_literal:
                node = node.literal.setdefault(t.source, Node())
            else:
                if t.source not in node.templated:
                    node.templated[t.source] = (t, Node())
                node = node.templated[t.source][1]
        else:
            node.end.append(entry)
    _finish(root)
    return root


class View:
    """The union of some trie nodes, materialised lazily and memoised by the trie."""

    __slots__ = (
        "_any",
        "_lit",
        "_merged",
        "_plus",
        "end",
        "end_sum",
        "hash",
        "hash_sum",
        "mask",
        "parts",
        "reps",
        "templated",
        "trie",
    )

    def __init__(self, trie: Trie, parts: tuple[Node, ...]) -> None:
        self.trie = trie
        self.parts = parts
        self._lit: dict[str, View] = {}
        self._merged: dict[str, tuple[Node, ...]] | None = None
        self._plus: View | bool | None = False
        self._any: dict[bool, View | None] = {}
        self.templated: tuple[tuple[Template, Node], ...] = tuple(
            tc for p in parts for tc in p.templated.values()
        )
        self.end: tuple[Entry, ...] = tuple(e for p in parts for e in p.end)
        self.hash: tuple[Entry, ...] = tuple(e for p in parts for e in p.hash)
        self.end_sum = Summary(self.end)
        self.hash_sum = Summary(self.hash)
        self.mask = 0
        self.reps: dict[int, Entry] = {}
        for p in parts:
            self.mask |= p.mask
            for cls, e in p.reps.items():
                old = self.reps.get(cls)
                if old is None or e.rule.index < old.rule.index:
                    self.reps[cls] = e

    def literal(self, level: str) -> View | None:
        """The child for a literal level. Only hits are memoised: the level comes from
        the client, and remembering misses would let it grow the memo without bound."""
        view = self._lit.get(level)
        if view is not None:
            return view
        if len(self.parts) == 1:
            child = self.parts[0].literal.get(level)
            found: tuple[Node, ...] = () if child is None else (child,)
        else:
            if self._merged is None:  # once per union view, so a lookup stays O(1)
                merged: dict[str, list[Node]] = {}
                for p in self.parts:
                    for k, c in p.literal.items():
                        merged.setdefault(k, []).append(c)
                self._merged = {k: tuple(v) for k, v in merged.items()}
            found = self._merged.get(level, ())
        view = self.trie.view(found)
        if view is not None:
            self._lit[level] = view
        return view

    def plus(self) -> View | None:
        if self._plus is False:
            self._plus = self.trie.view(tuple(p.plus for p in self.parts if p.plus is not None))
        assert self._plus is not True
        return self._plus

    def any_child(self, first_level: bool) -> View | None:
        """Every child: what a filter's ``+`` overlaps (``$`` literals excepted at the root)."""
        if first_level not in self._any:
            found: list[Node] = []
            for p in self.parts:
                found.extend(
                    c for k, c in p.literal.items() if not (first_level and k.startswith("$"))
                )
                found.extend(c for _, c in p.templated.values())
                if p.plus is not None:
                    found.append(p.plus)
            self._any[first_level] = self.trie.view(tuple(found))
        return self._any[first_level]


class Trie:
    """One trie and the memo of its union views (the only state that grows after build)."""

    __slots__ = ("_views", "root")

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._views: dict[tuple[int, ...], View] = {}
        node = build_trie(entries)
        root = self.view((node,))
        assert root is not None
        self.root = root

    def view(self, parts: tuple[Node, ...]) -> View | None:
        if not parts:
            return None
        key = tuple(sorted({id(p) for p in parts}))
        v = self._views.get(key)
        if v is None:
            unique = tuple({id(p): p for p in parts}.values())
            v = self._views[key] = View(self, unique)
        return v


@dataclass(frozen=True, slots=True)
class ApplicabilityClass:
    effect: str
    principal: str | None
    when: tuple[Condition, ...]
    variables: tuple[str, ...]  # allow rules only; empty for deny rules


def class_key(rule: Rule) -> ApplicabilityClass:
    variables = tuple(sorted(rule.variables)) if rule.effect == "allow" else ()
    return ApplicabilityClass(rule.effect, rule.principal, rule.when, variables)


# What a walk finds: a rule entry with the assignment of multi-valued variables
# chosen along the way.
Hit = tuple[Entry, Assignment]


class BoundTemplates:
    """Variable children of views, bound for one identity on first use."""

    __slots__ = ("_by_view", "_templates", "identity")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._templates: dict[Template, tuple[tuple[str, Assignment], ...] | None] = {}
        self._by_view: dict[View, tuple[dict[str, list[tuple[Node, Assignment]]], list[Node]]] = {}

    def bind(self, t: Template) -> tuple[tuple[str, Assignment], ...] | None:
        try:
            return self._templates[t]
        except KeyError:
            b = self._templates[t] = t.bind(self.identity)
            return b

    def at(self, view: View) -> tuple[dict[str, list[tuple[Node, Assignment]]], list[Node]]:
        """For a view: bound text -> children, and children whose variable is unusable."""
        got = self._by_view.get(view)
        if got is None:
            by_text: dict[str, list[tuple[Node, Assignment]]] = {}
            unbound: list[Node] = []
            for t, child in view.templated:
                b = self.bind(t)
                if b is None:
                    unbound.append(child)
                else:
                    for text, asg in b:
                        by_text.setdefault(text, []).append((child, asg))
            got = self._by_view[view] = (by_text, unbound)
        return got


def _step_literal(
    trie: Trie, v: View, level: str, first: bool, asg: Assignment, bt: BoundTemplates
) -> Iterator[tuple[View, Assignment]]:
    """Children of ``v`` that a literal topic level can enter.

    A variable child whose binding is unusable is entered as if it were ``+``: a deny
    rule then covers every value it could have had, and an allow rule is excluded by
    its class (so that ``unbound_variable`` can still be reported).
    """
    dollar = first and level.startswith("$")
    c = v.literal(level)
    if c is not None:
        yield c, asg
    if not dollar:
        p = v.plus()
        if p is not None:
            yield p, asg
    if v.templated:
        by_text, unbound = bt.at(v)
        for child, a2 in by_text.get(level, ()):
            merged = merge_assignment(asg, a2)
            if merged is not None:
                cv = trie.view((child,))
                assert cv is not None
                yield cv, merged
        if not dollar:
            for child in unbound:
                cv = trie.view((child,))
                assert cv is not None
                yield cv, asg


def walk_match(trie: Trie, topic: Levels, bt: BoundTemplates) -> Iterator[Hit]:
    """Entries whose bound pattern matches topic name ``topic`` (MQTT 4.7)."""
    states: list[tuple[View, Assignment]] = [(trie.root, ())]
    for i, level in enumerate(topic):
        dollar = i == 0 and level.startswith("$")
        nxt: list[tuple[View, Assignment]] = []
        for v, asg in states:
            if not dollar:
                for e in v.hash:
                    yield e, asg
            nxt.extend(_step_literal(trie, v, level, i == 0, asg, bt))
        states = nxt
    for v, asg in states:
        for e in v.end:
            yield e, asg
        for e in v.hash:
            yield e, asg


def walk_contain(trie: Trie, filt: Levels, bt: BoundTemplates) -> Iterator[Hit]:
    """Entries whose bound pattern contains filter ``filt`` (already normalised)."""
    states: list[tuple[View, Assignment]] = [(trie.root, ())]
    for i, level in enumerate(filt):
        wild = level in (SINGLE, MULTI)
        dollar = i == 0 and not wild and level.startswith("$")
        nxt: list[tuple[View, Assignment]] = []
        for v, asg in states:
            if not dollar:
                for e in v.hash:
                    yield e, asg
            if level == MULTI:
                continue
            if level == SINGLE:
                p = v.plus()
                if p is not None:
                    nxt.append((p, asg))
                continue
            nxt.extend(_step_literal(trie, v, level, i == 0, asg, bt))
        states = nxt
    if filt[-1] != MULTI:
        for v, asg in states:
            for e in v.end:
                yield e, asg
            for e in v.hash:
                yield e, asg


def walk_overlap(
    trie: Trie, filt: Levels, bt: BoundTemplates
) -> Iterator[tuple[Summary | View, Assignment]]:
    """Entries whose bound pattern overlaps ``filt`` (normalised), as summaries: a view
    stands for its whole subtree (a filter's ``#``)."""
    states: list[tuple[View, Assignment]] = [(trie.root, ())]
    for i, level in enumerate(filt):
        wild = level in (SINGLE, MULTI)
        dollar = i == 0 and not wild and level.startswith("$")
        nxt: list[tuple[View, Assignment]] = []
        for v, asg in states:
            if level == MULTI:
                if i == 0:
                    yield v.hash_sum, asg
                    below = v.any_child(True)
                    if below is not None:
                        yield below, asg
                else:
                    yield v, asg
                continue
            if not dollar:
                yield v.hash_sum, asg
            if level == SINGLE:
                a = v.any_child(i == 0)
                if a is not None:
                    nxt.append((a, asg))
                continue
            nxt.extend(_step_literal(trie, v, level, i == 0, asg, bt))
        states = nxt
    if filt[-1] != MULTI:
        for v, asg in states:
            yield v.end_sum, asg
            yield v.hash_sum, asg


def first_entry(hits: Iterator[Hit], want: int) -> Hit | None:
    """The entry of lowest document order whose class is in ``want``."""
    best: Hit | None = None
    for e, asg in hits:
        if e.bit & want and (best is None or e.rule.index < best[0].rule.index):
            best = (e, asg)
    return best


def first_hit(
    hits: Iterator[tuple[Summary | View, Assignment]], want: int
) -> tuple[Entry, Assignment] | None:
    """The hit of lowest document order whose class is in ``want``; O(classes hit)."""
    best: tuple[Entry, Assignment] | None = None
    for item, asg in hits:
        m = item.mask & want
        while m:
            low = m & -m
            e = item.reps[low.bit_length() - 1]
            if best is None or e.rule.index < best[0].rule.index:
                best = (e, asg)
            m ^= low
    return best


@dataclass(frozen=True, slots=True)
class CompiledIndex:
    """Four tries and the class table; immutable once built."""

    classes: tuple[ApplicabilityClass, ...]
    tries: dict[tuple[Action, str], Trie]

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> CompiledIndex:
        classes: dict[ApplicabilityClass, int] = {}
        buckets: dict[tuple[Action, str], list[Entry]] = {
            (a, e): [] for a in ("publish", "subscribe") for e in ("allow", "deny")
        }
        for rule in rules:
            key = class_key(rule)
            n = classes.setdefault(key, len(classes))
            entry = Entry(rule, n)
            for action in sorted(rule.actions):
                buckets[(action, rule.effect)].append(entry)
        return cls(tuple(classes), {k: Trie(v) for k, v in buckets.items()})
