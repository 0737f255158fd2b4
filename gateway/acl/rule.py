"""Rules of a policy, and the variable templates that fill their topic levels.

A template is one topic level (or a share group) made of literal text and
variables: ``users``, ``{email}``, ``user-{user_id}``. Binding it to an identity
yields one text per combination of values (multi-valued bindings expand the rule
into one pattern per value) or ``None`` when some variable is unusable (ACL v2
"Bindings fail closed").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.identity import STANDARD_BINDINGS, Identity

Effect = Literal["allow", "deny"]
Action = Literal["publish", "subscribe"]
RuleAction = Literal["publish", "subscribe", "all"]

# ``{claim:NAME}`` reads the custom binding NAME.
CLAIM_PREFIX = "claim:"
_VARIABLE = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

# A variable's value for one pattern: (variable, value) pairs of multi-valued bindings
# chosen along a match, so that ``{x}/{x}`` with x = [a, b] means a/a and b/b only.
Assignment = tuple[tuple[str, str], ...]


# A binding with more values than this is not expanded in topics (it is unusable there,
# so it fails closed). Two such variables in one level would otherwise expand a rule into
# 64 x 64 patterns for one identity; role and group lists are far shorter in practice.
# ``when`` conditions have no such limit: they only test membership.
MAX_TOPIC_VALUES = 64


def topic_values(identity: Identity, variable: str) -> tuple[str, ...] | None:
    """The values a variable takes in a topic, or None when it is unusable there."""
    binding = identity.binding(binding_name(variable))
    if not binding.usable or len(binding.values) > MAX_TOPIC_VALUES:
        return None
    return binding.values


class TemplateError(ValueError):
    """A malformed variable reference in a topic level or share group."""


def binding_name(variable: str) -> str:
    """The binding a variable reads: ``email`` -> ``email``, ``claim:tier`` -> ``tier``."""
    return variable[len(CLAIM_PREFIX) :] if variable.startswith(CLAIM_PREFIX) else variable


def check_variable(variable: str) -> None:
    """Known variables are the standard bindings and ``claim:NAME``."""
    if variable.startswith(CLAIM_PREFIX):
        if not _NAME.fullmatch(variable[len(CLAIM_PREFIX) :]):
            raise TemplateError(f"{{{variable}}}: a claim name is letters, digits, _ . -")
        return
    if variable not in STANDARD_BINDINGS:
        known = ", ".join(sorted("{" + n + "}" for n in STANDARD_BINDINGS))
        raise TemplateError(f"unknown variable {{{variable}}}; known: {known}, {{claim:NAME}}")


@dataclass(frozen=True, slots=True)
class Template:
    """Literal text and variables; ``parts`` alternate as (is_variable, text)."""

    source: str
    parts: tuple[tuple[bool, str], ...]
    # Derived from ``parts`` once: the index asks for them for every rule level.
    variables: tuple[str, ...] = ()
    is_literal: bool = True

    @classmethod
    def of(cls, source: str, parts: tuple[tuple[bool, str], ...]) -> Template:
        names = tuple(text for is_var, text in parts if is_var)
        return cls(source, parts, names, not names)

    def bind(self, identity: Identity) -> tuple[tuple[str, Assignment], ...] | None:
        """Every text this template takes for ``identity``; None if a variable is unusable.

        Only multi-valued variables are recorded in the assignment: single values
        cannot disagree with themselves.
        """
        names = tuple(dict.fromkeys(self.variables))
        choices: list[tuple[str, ...]] = []
        for var in names:
            found = topic_values(identity, var)
            if found is None:
                return None
            choices.append(found)
        out: list[tuple[str, Assignment]] = []
        for combo in itertools.product(*choices):
            values = dict(zip(names, combo, strict=True))
            text = "".join(values[t] if is_var else t for is_var, t in self.parts)
            assignment = tuple(
                sorted((v, values[v]) for v, c in zip(names, choices, strict=True) if len(c) > 1)
            )
            out.append((text, assignment))
        return tuple(out)


def parse_template(text: str) -> Template:
    """Parse ``user-{user_id}``; braces are only for variables."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _VARIABLE.finditer(text):
        literal = text[pos : m.start()]
        if "{" in literal or "}" in literal:
            raise TemplateError(f"unbalanced brace in {text!r}")
        if literal:
            parts.append((False, literal))
        check_variable(m.group(1))
        parts.append((True, m.group(1)))
        pos = m.end()
    tail = text[pos:]
    if "{" in tail or "}" in tail:
        raise TemplateError(f"unbalanced brace in {text!r}")
    if tail or not parts:
        parts.append((False, tail))
    return Template.of(text, tuple(parts))


def merge_assignment(a: Assignment, b: Assignment) -> Assignment | None:
    """The union of two assignments, or None when they give a variable two values."""
    if not a:
        return b
    if not b:
        return a
    merged = dict(a)
    for var, value in b:
        if merged.setdefault(var, value) != value:
            return None
    return tuple(sorted(merged.items()))


@dataclass(frozen=True, slots=True)
class Condition:
    """``when``: binding name -> accepted text values (JSON values normalised)."""

    binding: str
    accepted: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; ``index`` is its position in the document (for ties)."""

    id: str
    index: int
    effect: Effect
    actions: frozenset[Action]
    topic: str
    levels: tuple[Template, ...]
    qos: frozenset[int]
    retain: bool
    when: tuple[Condition, ...]
    principal: str | None
    share_group: Template | None
    description: str | None = None
    # Retained messages this (allow) rule admits live at most this long (issue 10).
    retained_ttl_s: int | None = None

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable in the topic and share group, in order, without repeats."""
        seen: dict[str, None] = {}
        for t in self.levels:
            seen.update(dict.fromkeys(t.variables))
        if self.share_group is not None:
            seen.update(dict.fromkeys(self.share_group.variables))
        return tuple(seen)

    def conditions_hold(self, identity: Identity) -> bool:
        """``principal`` and ``when``; an unusable binding fails an allow, holds for a deny."""
        if self.principal is not None and identity.principal != self.principal:
            return False
        for cond in self.when:
            binding = identity.binding(cond.binding)
            if not binding.usable:
                if self.effect == "allow":
                    return False
                continue
            if not any(v in cond.accepted for v in binding.values):
                return False
        return True

    def unusable_variables(self, identity: Identity) -> tuple[str, ...]:
        return tuple(v for v in self.variables if topic_values(identity, v) is None)

    def render(self, identity: Identity, assignment: Assignment = ()) -> str:
        """The bound pattern for audit: values substituted, unusable ones left as ``{x}``.

        A multi-valued variable not fixed by ``assignment`` shows its first value.
        """
        fixed = dict(assignment)
        out: list[str] = []
        for t in self.levels:
            text = []
            for is_var, part in t.parts:
                if not is_var:
                    text.append(part)
                    continue
                values = topic_values(identity, part)
                if values is None:
                    text.append("{" + part + "}")
                else:
                    text.append(fixed.get(part, values[0]))
            out.append("".join(text))
        return "/".join(out)


def normalise_json_value(value: object) -> tuple[str, ...]:
    """``when`` values are compared as bindings are: JSON text for numbers and booleans."""
    from gateway.identity import binding_from_value

    values = value if isinstance(value, list) else [value]
    texts: list[str] = []
    for v in values:
        texts.extend(binding_from_value("when", v).values)
    return tuple(texts)


def conditions_from_json(when: Mapping[str, object]) -> tuple[Condition, ...]:
    return tuple(
        Condition(binding_name(name), frozenset(normalise_json_value(value)))
        for name, value in sorted(when.items())
    )
