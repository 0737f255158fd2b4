"""Reading policies: schema errors with pointer and line, topic syntax, variables, lints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.acl import PolicyError, check_text, compile_policy, load_policy, policy_schema
from gateway.acl.document import check_document
from gateway.acl.jsonpos import scan_positions


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "2.0", "default_action": "deny", "rules": list(rules), **top}


def rule(rid: str = "r", topic: str = "a", **kw: Any) -> dict[str, Any]:
    return {"id": rid, "topic": topic, "action": "all", "effect": "allow", **kw}


def codes(d: dict[str, Any]) -> list[tuple[str, str, str]]:
    _, problems = check_document(d)
    return [(p.severity, p.code, p.pointer) for p in problems]


def test_schema_is_shipped_in_the_package() -> None:
    schema = policy_schema()
    assert schema["properties"]["version"] == {
        "const": "2.0",
        "description": schema["properties"]["version"]["description"],
    }


def test_schema_errors_carry_pointer_and_line(tmp_path: Path) -> None:
    text = (
        '{\n  "version": "2.0",\n  "rules": [\n    {"id": "a", "topic": "a", "action": "all",'
        ' "effect": "allow"},\n    {"id": "b", "topic": "b",\n     "action": "read",'
        ' "effect": "allow"}\n  ]\n}\n'
    )
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert err.location == f"{path}:6 /rules/1/action"
    assert "'read' is not one of" in err.reason
    assert err.code == "schema"


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        ("a/#/b", "topic_syntax"),
        ("a+/b", "topic_syntax"),
        ("a/b#", "topic_syntax"),
        ("a/\x00", "topic_syntax"),
        ("a/{nope}", "unknown_variable"),
        ("a/{claim:}", "bad_variable"),
        ("a/{email", "bad_variable"),
        ("a/email}", "bad_variable"),
        ("${user_id}/x", "topic_syntax"),
        ("+{user_id}", "topic_syntax"),
    ],
)
def test_topic_errors(topic: str, code: str) -> None:
    assert codes(doc(rule(topic=topic))) == [("error", code, "/rules/0/topic")]


def test_valid_topics_with_variables() -> None:
    for topic in ("users/{email}/inbox", "u-{user_id}-{claim:tier}/#", "$SYS/{org}", "/", "+/+"):
        assert codes(doc(rule(topic=topic))) == [], topic


def test_duplicate_ids_and_keys() -> None:
    assert ("error", "duplicate_id", "/rules/1/id") in codes(doc(rule("x"), rule("x", "b")))
    text = (
        '{"version": "2.0", "rules": [{"id": "a", "topic": "a", "topic": "b",\n'
        '"action": "all", "effect": "allow"}]}'
    )
    document, problems = check_text(text, "p.json")
    assert document is None
    assert [(p.code, p.pointer, p.line) for p in problems] == [
        ("duplicate_key", "/rules/0/topic", 1)
    ]


def test_json_syntax_error_has_a_line() -> None:
    document, problems = check_text('{\n"version": "2.0",\n"rules": [,]}', "p.json")
    assert document is None and problems[0].code == "json" and problems[0].line == 3


def test_unknown_fields_and_when_bindings() -> None:
    assert codes(doc(rule(qos=[3])))[0][:2] == ("error", "schema")
    assert codes(doc(rule(extra=1)))[0][:2] == ("error", "schema")
    assert codes(doc(rule(when={"tier": "gold"}))) == [
        ("error", "unknown_binding", "/rules/0/when/tier")
    ]
    assert codes(doc(rule(when={"claim:tier": "gold", "principal": "x"}))) == []
    assert codes(doc(rule(effect="deny", share_group="g")))[0][1] == "deny_share_group"
    assert codes(doc(rule(share_group="a/b")))[0][1] == "bad_share_group"


def test_lints_are_warnings() -> None:
    # an allow that a deny always overrides
    found = codes(doc(rule("a", "a/+"), rule("d", "a/#", effect="deny")))
    assert ("warning", "never_effective", "/rules/0/topic") in found
    # not when the deny is narrower, or applies to fewer identities
    assert "never_effective" not in {
        c for _, c, _ in codes(doc(rule("a", "a/#"), rule("d", "a/+", effect="deny")))
    }
    assert "never_effective" not in {
        c
        for _, c, _ in codes(
            doc(rule("a", "a/+"), rule("d", "a/#", effect="deny", when={"role": "x"}))
        )
    }
    found = codes(
        doc(
            rule("a", "a/+", when={"role": "x"}),
            rule("d", "a/#", effect="deny", when={"role": ["x", "y"]}),
        )
    )
    assert ("warning", "never_effective", "/rules/0/topic") in found
    # as broad as '#' for everyone
    assert ("warning", "allow_everything", "/rules/0/topic") in codes(doc(rule("a", "+/#")))
    assert codes(doc(rule("a", "#", principal="service:x"))) == []
    # deny rules widen on unusable values
    assert codes(doc(rule("d", "u/{user_id}", effect="deny"))) == [
        ("warning", "unusable_widens", "/rules/0/topic")
    ]
    assert ("warning", "unusable_widens", "/rules/0/when") in codes(
        doc(rule("d", "u", effect="deny", when={"role": "x"}))
    )
    assert ("warning", "deny_qos_ignored", "/rules/0/qos") in codes(
        doc(rule("d", "u", effect="deny", qos=[0]))
    )
    assert ("warning", "share_in_topic", "/rules/0/topic") in codes(doc(rule("s", "$share/g/a")))


def test_compile_policy_raises_and_keeps_warnings() -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(doc(rule(topic="a/#/b")), "mine")
    assert info.value.location == "mine /rules/0/topic"
    p = compile_policy(doc(rule("a", "#")))
    assert [w.code for w in p.warnings] == ["allow_everything"]


def test_default_action_defaults_to_deny() -> None:
    p = compile_policy({"version": "2.0", "rules": []})
    assert p.default_action == "deny"


def test_positions_scanner() -> None:
    text = json.dumps({"a": [1, {"b~/c": "x"}], "d": None}, indent=1)
    pos = scan_positions(text)
    assert pos.lines["/a/1/b~0~1c"] == 5
    assert pos.line_of("/a/1/b~0~1c/deeper") == 5
    assert pos.lines["/d"] == 8


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    text = '{"version": "2.0", "rules": [], "description": ' + "[" * 100_000 + "]" * 100_000 + "}"
    document, problems = check_text(text, "deep.json")
    assert document is None and problems[0].code == "json"
