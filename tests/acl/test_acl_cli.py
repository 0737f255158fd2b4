"""``mqttgate acl ...`` through the real entry point, with exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {
            "id": "own-inbox",
            "topic": "users/{email}/inbox",
            "action": "subscribe",
            "effect": "allow",
            "qos": [0, 1],
        },
        {
            "id": "agent-out",
            "topic": "agents/{client_id}/out/#",
            "action": "publish",
            "effect": "allow",
            "qos": [0, 1],
            "retain": True,
            "when": {"role": ["engineer", "admin"]},
        },
        {"id": "no-secrets", "topic": "broadcast/secret/#", "action": "all", "effect": "deny"},
    ],
}

CASES = [
    {
        "identity": {"email": "a@b.c"},
        "action": "subscribe",
        "topic": "users/a@b.c/inbox",
        "qos": 2,
        "expect": "allow",
        "granted_qos": 1,
    },
    {
        "identity": {"email": "a@b.c"},
        "action": "subscribe",
        "topic": "users/+/inbox",
        "expect": "deny",
    },
    {
        "identity": {"role": "engineer"},
        "client_id": "c1",
        "action": "publish",
        "topic": "agents/c1/out/x",
        "qos": 1,
        "retain": True,
        "expect": "allow",
    },
]


def write(tmp_path: Path, name: str, obj: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj, indent=2))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["acl", *argv])
    except SystemExit as e:  # argparse usage errors
        rc = int(e.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_validate_valid_invalid_and_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good.json", POLICY)
    rc, out, _ = run(capsys, "validate", good)
    assert rc == 0 and "valid, 3 rules" in out
    bad_doc = json.loads(json.dumps(POLICY))
    bad_doc["rules"][2]["topic"] = "broadcast/#/secret"
    bad_doc["rules"].append(dict(bad_doc["rules"][0]))
    bad = write(tmp_path, "bad.json", bad_doc)
    rc, out, err = run(capsys, "validate", bad)
    assert rc == 1
    assert f"{bad}:" in err and "/rules/2/topic" in err and "duplicate_id" in err
    rc, out, _ = run(capsys, "validate", bad, "--json")
    report = json.loads(out)
    assert rc == 1 and report["valid"] is False
    assert {(e["code"], e["pointer"]) for e in report["errors"]} == {
        ("topic_syntax", "/rules/2/topic"),
        ("duplicate_id", "/rules/3/id"),
    }
    assert all(isinstance(e["line"], int) for e in report["errors"])
    rc, _, err = run(capsys, "validate", str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read" in err
    rc, _, _ = run(capsys, "validate")
    assert rc == 2


def test_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path, "p.json", POLICY)
    rc, out, _ = run(
        capsys,
        "simulate",
        policy,
        "--identity",
        '{"user_id": "u1", "email": "a@b.c"}',
        "--client-id",
        "c1",
        "--action",
        "subscribe",
        "--topic",
        "users/a@b.c/inbox",
        "--qos",
        "1",
        "--json",
    )
    d = json.loads(out)
    assert rc == 0
    assert {k: d[k] for k in ("verdict", "reason", "rule_id", "pattern", "granted_qos")} == {
        "verdict": "allow",
        "reason": "allow_rule",
        "rule_id": "own-inbox",
        "pattern": "users/a@b.c/inbox",
        "granted_qos": 1,
    }
    assert d["policy_version"].startswith("sha256:") and "explain" not in d
    rc, out, _ = run(
        capsys,
        "simulate",
        policy,
        "--identity",
        '{"role": "admin"}',
        "--client-id",
        "c1",
        "--action",
        "publish",
        "--topic",
        "agents/c1/out/x",
        "--retain",
        "--explain",
    )
    assert rc == 0 and out.startswith("ALLOW reason=allow_rule rule=agent-out")
    assert "own-inbox (allow): skipped" in out and "no-secrets (deny): not_concerned" in out
    rc, out, _ = run(
        capsys,
        "simulate",
        policy,
        "--action",
        "publish",
        "--topic",
        "broadcast/secret/x",
        "--json",
        "--explain",
    )
    d = json.loads(out)
    assert (d["verdict"], d["reason"], d["rule_id"]) == ("deny", "deny_rule", "no-secrets")
    assert [s["rule_id"] for s in d["explain"]] == ["own-inbox", "agent-out", "no-secrets"]
    rc, _, err = run(
        capsys, "simulate", policy, "--identity", "[1]", "--action", "publish", "--topic", "t"
    )
    assert rc == 2 and "--identity" in err
    rc, _, _ = run(capsys, "simulate", policy, "--action", "read", "--topic", "t")
    assert rc == 2


def test_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path, "p.json", POLICY)
    cases = write(tmp_path, "c.json", CASES)
    rc, out, _ = run(capsys, "test", policy, cases)
    assert rc == 0 and "3 cases, 3 passed, 0 failed" in out
    wrong = [dict(CASES[0]), dict(CASES[1], expect="allow"), dict(CASES[2], granted_qos=0)]
    cases = write(tmp_path, "wrong.json", wrong)
    rc, out, _ = run(capsys, "test", policy, cases)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0].startswith("case 2: subscribe 'users/+/inbox'") and "got deny" in lines[0]
    assert lines[1].startswith("case 3: publish") and lines[-1].endswith("2 failed")
    rc, out, _ = run(capsys, "test", policy, cases, "--json")
    results = json.loads(out)
    assert rc == 1 and [(r["case"], r["ok"]) for r in results] == [
        (1, True),
        (2, False),
        (3, False),
    ]
    malformed = write(tmp_path, "m.json", [{"action": "publish"}])
    rc, _, err = run(capsys, "test", policy, malformed)
    assert rc == 1 and "case 1" in err


def test_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "old.json", POLICY)
    new_doc = json.loads(json.dumps(POLICY))
    new_doc["rules"][0]["topic"] = "users/{email}/#"
    new_doc["rules"][0]["qos"] = [0]
    new = write(tmp_path, "new.json", new_doc)
    cases = write(
        tmp_path,
        "c.json",
        [*CASES, {"identity": {"email": "a@b.c"}, "action": "subscribe", "topic": "users/a@b.c/x"}],
    )
    rc, out, _ = run(capsys, "diff", old, new, "--cases", cases)
    assert rc == 0
    assert "rules changed: own-inbox" in out
    assert "case 1: subscribe 'users/a@b.c/inbox' qos 2: allow qos 1" in out
    assert "case 4: subscribe 'users/a@b.c/x' qos 0: deny [default] -> allow qos 0" in out
    assert "2 of 4 cases change verdict" in out
    rc, out, _ = run(capsys, "diff", old, new, "--cases", cases, "--json", "--fail-on-change")
    assert rc == 1 and [c["case"] for c in json.loads(out)["changed"]] == [1, 4]
    rc, out, _ = run(capsys, "diff", old, old, "--cases", cases, "--fail-on-change")
    assert rc == 0 and "0 of 4" in out


def test_templates_and_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "templates")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        "permit-all",
        "notifications",
        "agent-pipelines",
        "chat-channels",
        "blank",
    ]
    rc, out, _ = run(capsys, "templates", "--json")
    assert len(json.loads(out)) == 5
    target = tmp_path / "policy.json"
    cases = tmp_path / "cases.json"
    rc, _, _ = run(
        capsys, "init", "--template", "chat-channels", "-o", str(target), "--cases", str(cases)
    )
    assert rc == 0 and json.loads(target.read_text())["rules"]
    rc, out, _ = run(capsys, "test", str(target), str(cases))
    assert rc == 0
    rc, _, err = run(capsys, "init", "--template", "blank", "-o", str(target))
    assert rc == 2 and "exists" in err
    rc, _, _ = run(capsys, "init", "--template", "blank", "-o", str(target), "--force")
    assert rc == 0 and json.loads(target.read_text())["rules"] == []
    rc, out, _ = run(capsys, "init", "--template", "permit-all")
    assert rc == 0 and json.loads(out)["rules"][0]["id"] == "permit-all"
    rc, _, err = run(capsys, "init", "--template", "nope")
    assert rc == 2 and "unknown template" in err
