"""The two admin pages in Chromium (issue 8, items 2, 3 and 5): the policy simulator agrees
with the CLI, marks problems on their lines and exports the case table ``acl test`` reads;
the live decisions page shows a refused agent within a second. Screenshots of both pages
are saved under the test's tmp dir, and any console error fails the test (fixture ``tab``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.browser.browser import Page
from tests.browser.conftest import AdminGateway, sign_in
from tests.support.gateway_thread import GatewayThread

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {"id": "own", "topic": "users/{user_id}/#", "action": "all", "effect": "allow",
         "qos": [0, 1]},
        {"id": "team-events", "topic": "teams/{org}/+/events", "action": "subscribe",
         "effect": "allow"},
        {"id": "no-admin", "topic": "users/+/admin/#", "action": "all", "effect": "deny"},
    ],
}  # fmt: skip

# (identity, client id, action, topic, qos, retain)
REQUESTS: list[tuple[dict[str, Any], str, str, str, int, bool]] = [
    ({"user_id": "alice"}, "", "publish", "users/alice/inbox", 1, False),
    ({"user_id": "alice"}, "c1", "publish", "users/alice/admin/x", 0, True),
    ({"user_id": "bob", "org": "acme"}, "", "subscribe", "teams/acme/+/events", 1, False),
    ({"user_id": "bob", "org": "acme"}, "", "subscribe", "teams/#", 0, False),
    ({"user_id": "alice"}, "", "subscribe", "users/alice/inbox", 2, False),
    ({"user_id": "alice"}, "", "publish", "users/alice/inbox", 2, False),
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "acl", *args], capture_output=True, text=True, timeout=30
    )


def open_simulator(page: Page, gw: GatewayThread) -> None:
    assert sign_in(page, gw, "/admin/ui/simulator").endswith("/admin/ui/simulator")
    page.wait_for("document.body.dataset.ready === '1'")


def fill_request(page: Page, request: tuple[dict[str, Any], str, str, str, int, bool]) -> None:
    identity, client_id, action, topic, qos, retain = request
    page.fill("#identity", json.dumps(identity))
    page.fill("#client-id", client_id)
    page.select("#action", action)
    page.fill("#topic", topic)
    page.select("#qos", str(qos))
    page.eval(f"document.getElementById('retain').checked = {json.dumps(retain)}")


def simulate(page: Page) -> dict[str, Any]:
    """Click Simulate and read the decision as the page shows it."""
    page.eval("document.getElementById('result').replaceChildren()")
    page.click("#simulate")
    page.wait_for("document.getElementById('verdict')")
    shown: dict[str, Any] = page.eval(
        """(() => ({
        verdict: document.getElementById('verdict').textContent,
        facts: Object.fromEntries([...document.querySelectorAll('[data-fact]')]
                 .map((d) => [d.dataset.fact, d.textContent])),
        trace: [...document.querySelectorAll('#trace tbody tr')]
                 .map((r) => [...r.cells].map((c) => c.textContent)),
        }))()"""
    )
    return shown


def shown_as_cli(d: dict[str, Any]) -> dict[str, Any]:
    """The CLI's JSON as the page renders it (an em dash for nothing)."""

    def text(v: object) -> str:
        return "\u2014" if v is None or v == "" else str(v)

    return {
        "verdict": d["verdict"].upper(),
        "facts": {
            "reason": text(d["reason"]),
            "rule": text(d["rule_id"]),
            "bound pattern": text(d["pattern"]),
            "granted QoS": text(d["granted_qos"]),
            "policy version": text(d["policy_version"]),
        },
        "trace": [
            [s["rule_id"], s["effect"], s["outcome"], text(s["detail"]), text(s["pattern"])]
            for s in d["explain"]
        ],
    }


def test_simulator_agrees_with_the_cli(
    admin_gateway: AdminGateway, page: Page, tmp_path: Path
) -> None:
    gw = admin_gateway(POLICY)
    open_simulator(page, gw)
    assert json.loads(page.eval("document.getElementById('policy').value")) == POLICY
    shown_all = []
    for request in REQUESTS:
        fill_request(page, request)
        shown = simulate(page)
        identity, client_id, action, topic, qos, retain = request
        args = ["simulate", str(gw.policy_path), "--identity", json.dumps(identity),
                "--action", action, "--topic", topic, "--qos", str(qos),
                "--json", "--explain"]  # fmt: skip
        args += ["--client-id", client_id] if client_id else []
        args += ["--retain"] if retain else []
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert shown == shown_as_cli(json.loads(out.stdout)), request
        shown_all.append(shown)
    # Allow, a deny rule, the default deny, a QoS downgrade, a QoS refused.
    assert [v["verdict"] for v in shown_all] == ["ALLOW", "DENY", "ALLOW", "DENY", "ALLOW", "DENY"]
    assert shown_all[4]["facts"]["granted QoS"] == "1"
    assert shown_all[5]["facts"]["reason"] == "qos_not_allowed"
    page.screenshot(tmp_path / "simulator.png")


def test_simulator_marks_problems_on_their_lines(
    admin_gateway: AdminGateway, page: Page, tmp_path: Path
) -> None:
    gw = admin_gateway(POLICY)
    open_simulator(page, gw)
    rules = [*POLICY["rules"],  # type: ignore[list-item]
             {"id": "shadowed", "topic": "users/{user_id}/admin/x", "action": "publish",
              "effect": "allow"},
             {"id": "broken", "topic": "a/#/b", "action": "all", "effect": "allow"}]  # fmt: skip
    text = json.dumps({**POLICY, "rules": rules}, indent=2) + "\n"
    lines = text.splitlines()
    shadowed = 1 + next(i for i, s in enumerate(lines) if '"users/{user_id}/admin/x"' in s)
    broken = 1 + next(i for i, s in enumerate(lines) if '"a/#/b"' in s)
    fixed = text.replace('"a/#/b"', '"a/+/b"')

    def marks() -> Any:
        return page.eval(
            "[...document.querySelectorAll('#problems li')].map((li) => "
            "[li.className, Number(li.dataset.line), li.dataset.code])"
        )

    def gutter() -> Any:
        return page.eval(
            "Object.fromEntries([...document.querySelectorAll('#gutter div')]"
            ".filter((d) => d.className).map((d) => [d.dataset.line, d.className]))"
        )

    def cli_lines(policy_text: str) -> list[tuple[str, int]]:
        edited = tmp_path / "edited.json"
        edited.write_text(policy_text)
        out = json.loads(cli("validate", str(edited), "--json").stdout)
        return [("error", e["line"]) for e in out["errors"]] + [
            ("warning", w["line"]) for w in out["warnings"]
        ]

    page.fill("#policy", text)
    page.wait_for("document.querySelector('#problems li.error')")
    assert marks() == [["error", broken, "topic_syntax"]]
    assert gutter() == {str(broken): "error"}
    assert cli_lines(text) == [("error", broken)]  # `mqttgate acl validate` agrees
    page.screenshot(tmp_path / "simulator-problems.png")

    # Fixed, the lint shows: the allow rule a deny rule overrides, on its own line.
    page.fill("#policy", fixed)
    page.wait_for("document.querySelector('#problems li.warning')")
    assert marks() == [["warning", shadowed, "never_effective"]]
    assert gutter() == {str(shadowed): "warning"}
    assert cli_lines(fixed) == [("warning", shadowed)]

    # The edited (valid) policy is what the page simulates.
    fill_request(page, ({"user_id": "z"}, "", "publish", "a/x/b", 0, False))
    shown = simulate(page)
    assert shown["verdict"] == "ALLOW" and shown["facts"]["rule"] == "broken"
    assert "edited" in page.text("#policy-state")


def test_case_table_runs_and_downloads_for_acl_test(
    admin_gateway: AdminGateway, page: Page, tmp_path: Path
) -> None:
    gw = admin_gateway(POLICY)
    open_simulator(page, gw)
    for request in REQUESTS[:4]:
        fill_request(page, request)
        simulate(page)
        page.click("#add-case")
    page.click("#run-cases")
    page.wait_for("document.getElementById('cases-summary').textContent.includes('passed')")
    assert page.text("#cases-summary") == "4 cases, 4 passed, 0 failed"

    # Expect the wrong verdict for case 2: the page and `acl test` both fail it.
    page.select("tr[data-case='2'] select.expect", "allow")
    page.click("#run-cases")
    page.wait_for("document.getElementById('cases-summary').textContent.includes('passed')")
    assert page.text("#cases-summary") == "4 cases, 3 passed, 1 failed"
    rows = page.eval(
        "[...document.querySelectorAll('#cases tbody tr')].map((r) => "
        "[r.className, r.querySelector('td.outcome').textContent])"
    )
    assert rows == [["pass", "allow"], ["fail", "deny"], ["pass", "allow"], ["pass", "deny"]]

    target = tmp_path / "CASES.json"
    assert page.download("#download-cases", target) == "CASES.json"
    cases = json.loads(target.read_text())
    assert cases[1] == {"identity": {"user_id": "alice"}, "client_id": "c1",
                        "action": "publish", "topic": "users/alice/admin/x", "qos": 0,
                        "retain": True, "expect": "allow"}  # fmt: skip
    out = cli("test", str(gw.policy_path), str(target), "--json")
    assert out.returncode == 1, out.stderr  # one case fails, as on the page
    results = json.loads(out.stdout)
    assert [["pass" if r["ok"] else "fail", r["verdict"]] for r in results] == rows
    page.screenshot(tmp_path / "simulator-cases.png")


def test_decisions_page_shows_a_refused_agent_within_a_second(
    admin_gateway: AdminGateway, page: Page, tmp_path: Path
) -> None:
    gw = admin_gateway(POLICY)
    u = "agent" + uuid.uuid4().hex[:8]
    assert sign_in(page, gw, "/admin/ui/decisions").endswith("/admin/ui/decisions")
    page.wait_for("document.body.dataset.live === '1'")
    page.fill("#f-client-id", f"{u}-cid")
    page.click("#apply")
    page.wait_for("document.body.dataset.live === '1'")

    noise = gw.client(sub=u, client_id=f"{u}-noise")
    noise.connect()
    noise.publish("users/elsewhere/x", b"refused too, but filtered out", 1)
    noise.disconnect()
    agent = gw.client(sub=u, client_id=f"{u}-cid", version=5)
    agent.connect()
    agent.publish(f"users/{u}/status", b"allowed", 1)
    agent.publish(f"users/{u}/out", b"allowed", 0)
    start = time.monotonic()
    agent.c.publish(f"users/{u}/admin/shutdown", b"refused", 1)
    page.wait_for("document.querySelector('#decisions tr[data-verdict=deny]')", timeout=1.0)
    assert time.monotonic() - start < 1.0
    page.wait_for("document.querySelectorAll('#decisions tbody tr').length >= 4")
    rows = page.eval(
        "[...document.querySelectorAll('#decisions tbody tr')].map((r) => "
        "[r.dataset.kind, r.dataset.verdict, r.dataset.clientId, r.dataset.topic || null])"
    )
    assert {r[2] for r in rows} == {f"{u}-cid"}, rows  # the filter let nothing else through
    assert rows[0] == ["publish", "deny", f"{u}-cid", f"users/{u}/admin/shutdown"]
    hits = page.eval(
        "Object.fromEntries([...document.querySelectorAll('#hits tbody tr')].map((r) => "
        "[r.dataset.rule, [Number(r.cells[1].textContent), Number(r.cells[2].textContent)]]))"
    )
    assert hits["own"] == [2, 0] and hits["no-admin"] == [0, 1], hits
    page.screenshot(tmp_path / "decisions.png")
    agent.disconnect()
