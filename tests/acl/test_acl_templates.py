"""The five shipped templates: valid, documented, identical in config/, cases hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.acl import check_text, compile_policy
from gateway.acl.cases import parse_cases, run_cases
from gateway.acl.policy_templates import TEMPLATE_NAMES, get_template

REPO = Path(__file__).resolve().parents[2]


def test_the_five_templates_are_shipped() -> None:
    assert set(TEMPLATE_NAMES) == {
        "permit-all",
        "notifications",
        "agent-pipelines",
        "chat-channels",
        "blank",
    }


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_config_templates_are_identical_to_the_package_copies(name: str) -> None:
    t = get_template(name)
    assert (REPO / "config/templates" / f"{name}.json").read_text("utf-8") == t.policy_text
    assert (REPO / "config/templates" / f"{name}.cases.json").read_text("utf-8") == t.cases_text


def test_config_templates_hold_nothing_else() -> None:
    names = {p.name for p in (REPO / "config/templates").iterdir()}
    assert names == {f"{n}{s}" for n in TEMPLATE_NAMES for s in (".json", ".cases.json")}


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_is_valid_and_documented(name: str) -> None:
    t = get_template(name)
    document, problems = check_text(t.policy_text, name)
    assert document is not None, problems
    assert len(str(t.policy["description"])) > 100  # a paragraph, not a title
    expected_warnings = {"permit-all": {"allow_everything"}}.get(name, set())
    assert {p.code for p in problems} == expected_warnings


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_case_table_holds(name: str) -> None:
    t = get_template(name)
    cases = parse_cases(t.cases)
    assert len(cases) >= 3
    results = run_cases(compile_policy(t.policy, name), cases)
    assert [r.mismatch() for r in results if not r.ok] == []
    # both verdicts occur, so a table cannot pass by always allowing or always denying
    verdicts = {c.expect for c in cases}
    assert verdicts == ({"deny"} if name == "blank" else {"allow", "deny"})


def test_a_broken_policy_fails_a_template_table() -> None:
    t = get_template("notifications")
    doc = t.policy
    doc["rules"] = [r for r in doc["rules"] if r["id"] != "own-notifications"]
    results = run_cases(compile_policy(doc), parse_cases(t.cases))
    # case 1 loses its grant; 3 and 4 expect reasons that rule gave (not_contained, unbound)
    assert [r.case.number for r in results if not r.ok] == [1, 3, 4]
