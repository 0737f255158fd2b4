"""Reading a policy document: JSON, the shipped JSON Schema, topic syntax, variables.

Every problem carries the file, line and JSON pointer it concerns, so that
``mqttgate acl validate`` can point at it and ``load_policy`` can refuse with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema
import orjson

from gateway.acl.jsonpos import Positions, join_pointer, scan_positions
from gateway.acl.rule import (
    Action,
    Rule,
    Template,
    TemplateError,
    check_variable,
    conditions_from_json,
    parse_template,
)
from gateway.acl.topic import MAX_TOPIC_BYTES, MULTI, SINGLE

Severity = Literal["error", "warning"]
ALL_QOS = frozenset({0, 1, 2})  # MQTT 4.3: the three QoS levels


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation finding; ``code`` is stable, ``message`` is for people."""

    severity: Severity
    code: str
    message: str
    pointer: str
    line: int | None
    source: str

    @property
    def location(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where} {self.pointer or '/'}"

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "pointer": self.pointer,
            "line": self.line,
            "source": self.source,
        }


class PolicyError(Exception):
    """A policy that cannot be compiled; ``location`` and ``reason`` name the first error."""

    def __init__(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"] or problems
        first = errors[0]
        super().__init__(str(first))
        self.problems = problems
        self.location = first.location
        self.reason = first.message
        self.code = first.code


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A checked document: its rules in order, the default, and its content hash."""

    source: str
    default_action: Literal["allow", "deny"]
    rules: tuple[Rule, ...]
    version: str
    description: str | None


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package (gateway/acl/schema.json)."""
    text = resources.files("gateway.acl").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def content_version(doc: Any) -> str:
    """A hash of the document's content: key order and whitespace do not change it."""
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "sha256:" + digest[:16]


class _Collector:
    def __init__(self, source: str, positions: Positions | None) -> None:
        self.source = source
        self.positions = positions
        self.problems: list[Problem] = []

    def add(self, severity: Severity, code: str, message: str, path: tuple[str | int, ...]) -> None:
        pointer = join_pointer(path)
        line = self.positions.line_of(pointer) if self.positions else None
        self.problems.append(Problem(severity, code, message, pointer, line, self.source))

    def error(self, code: str, message: str, *path: str | int) -> None:
        self.add("error", code, message, path)

    def warn(self, code: str, message: str, *path: str | int) -> None:
        self.add("warning", code, message, path)


def parse_topic_pattern(topic: str) -> tuple[Template, ...]:
    """A rule's topic: a filter whose literal levels may hold variables.

    Raises ValueError naming the problem (MQTT 4.7 syntax, unknown variable).
    """
    if "\x00" in topic:
        raise ValueError("a topic may not contain U+0000 (MQTT 4.7.3)")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise ValueError(f"a topic is at most {MAX_TOPIC_BYTES} bytes (MQTT 1.5.4)")
    levels = topic.split("/")
    out: list[Template] = []
    for i, level in enumerate(levels):
        if level in (SINGLE, MULTI):
            if level == MULTI and i != len(levels) - 1:
                raise ValueError("'#' must be the last level (MQTT 4.7.1.2)")
        elif SINGLE in level or MULTI in level:
            raise ValueError(
                f"level {level!r}: a wildcard must fill a whole level (MQTT 4.7.1.2, 4.7.1.3)"
            )
        template = parse_template(level)
        if i == 0 and not template.is_literal and level.startswith("$"):
            # A bound value never starts with '$'; a first level that does would make
            # the pattern reach broker-internal topics through a variable.
            raise ValueError("a first level starting with '$' may not hold a variable")
        out.append(template)
    return tuple(out)


def _check_rule(raw: dict[str, Any], i: int, c: _Collector) -> Rule | None:
    ok = True
    rid: str = raw["id"]
    effect = raw["effect"]
    try:
        levels = parse_topic_pattern(raw["topic"])
    except TemplateError as e:
        c.error(
            "unknown_variable" if "unknown" in str(e) else "bad_variable",
            str(e),
            "rules",
            i,
            "topic",
        )
        ok = False
    except ValueError as e:
        c.error("topic_syntax", str(e), "rules", i, "topic")
        ok = False
    group: Template | None = None
    if "share_group" in raw:
        if effect == "deny":
            c.error(
                "deny_share_group",
                "share_group restricts what an allow rule grants; a deny rule covers every group",
                "rules",
                i,
                "share_group",
            )
            ok = False
        text = raw["share_group"]
        try:
            group = parse_template(text)
            if any(ch in text for ch in "+#/\x00"):
                raise ValueError("a share group may not contain '+', '#', '/' or U+0000")
        except TemplateError as e:
            c.error("unknown_variable", str(e), "rules", i, "share_group")
            ok = False
        except ValueError as e:
            c.error("bad_share_group", str(e), "rules", i, "share_group")
            ok = False
    for name in raw.get("when", {}):
        if name == "principal":
            continue
        try:
            check_variable(name)
        except TemplateError as e:
            c.error(
                "unknown_binding",
                f"when: {e}".replace("variable", "binding"),
                "rules",
                i,
                "when",
                name,
            )
            ok = False
    if effect == "deny" and ("qos" in raw or "retain" in raw):
        key = "qos" if "qos" in raw else "retain"
        c.warn(
            "deny_qos_ignored",
            f"{key} on a deny rule is meaningless: a deny refuses whatever the QoS and retain flag",
            "rules",
            i,
            key,
        )
    if raw["topic"].startswith("$share/"):
        c.warn(
            "share_in_topic",
            "rules name the inner filter of $share/{group}/{filter};"
            " use share_group to restrict the group",
            "rules",
            i,
            "topic",
        )
    if not ok:
        return None
    action = raw["action"]
    actions: frozenset[Action] = (
        frozenset({"publish", "subscribe"}) if action == "all" else frozenset({action})
    )
    return Rule(
        id=rid,
        index=i,
        effect=effect,
        actions=actions,
        topic=raw["topic"],
        levels=levels,
        qos=frozenset(raw.get("qos", ALL_QOS)),
        retain=bool(raw.get("retain", False)),
        when=conditions_from_json(raw.get("when", {})),
        principal=raw.get("principal"),
        share_group=group,
        description=raw.get("description"),
        retained_ttl_s=raw.get("retained_ttl_s"),
    )


def check_document(
    doc: Any, source: str = "<policy>", positions: Positions | None = None
) -> tuple[PolicyDocument | None, list[Problem]]:
    """Schema, syntax and lints; the document is None when there is any error."""
    from gateway.acl.lint import lint_rules

    c = _Collector(source, positions)
    if positions is not None:
        for pointer, line in positions.duplicates:
            c.problems.append(
                Problem(
                    "error",
                    "duplicate_key",
                    "key given twice (JSON keeps only the last)",
                    pointer,
                    line,
                    source,
                )
            )
    validator = jsonschema.Draft202012Validator(policy_schema())
    schema_errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    for err in schema_errors:
        c.error("schema", err.message, *err.absolute_path)
    if schema_errors:
        return None, c.problems
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(doc["rules"]):
        if raw["id"] in seen:
            c.error(
                "duplicate_id",
                f"rule id {raw['id']!r} already used by rule {seen[raw['id']]}",
                "rules",
                i,
                "id",
            )
        seen.setdefault(raw["id"], i)
        rule = _check_rule(raw, i, c)
        if rule is not None:
            rules.append(rule)
    if any(p.severity == "error" for p in c.problems):
        return None, c.problems
    for code, message, index, key in lint_rules(rules):
        c.warn(code, message, "rules", index, key)
    return (
        PolicyDocument(
            source=source,
            default_action=doc.get("default_action", "deny"),
            rules=tuple(rules),
            version=content_version(doc),
            description=doc.get("description"),
        ),
        c.problems,
    )


def check_text(text: str, source: str) -> tuple[PolicyDocument | None, list[Problem]]:
    """Parse JSON text, then check it; JSON syntax errors carry their line."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        return None, [Problem("error", "json", e.msg, "", e.lineno, source)]
    except RecursionError:
        return None, [Problem("error", "json", "nested too deeply", "", None, source)]
    try:
        positions: Positions | None = scan_positions(text)
    except RecursionError:  # json.loads managed; errors will lack line numbers
        positions = None
    return check_document(doc, source, positions)
