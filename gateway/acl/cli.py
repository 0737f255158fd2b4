"""``mqttgate acl``: validate, simulate, test, diff, templates, init.

Exit codes (all subcommands): 0 success, 1 the input is invalid or a check failed
(an invalid policy, a case that does not hold), 2 a usage error (bad arguments, a
file that cannot be read, an unknown template).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.acl.cases import CaseError, identity_from_json, parse_cases, run_cases
from gateway.acl.decision import PolicyDecision
from gateway.acl.document import PolicyError, Problem, check_text
from gateway.acl.policy import Policy, load_policy
from gateway.acl.policy_templates import TEMPLATE_NAMES, all_templates, get_template

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    pass


def _err(msg: str) -> None:
    print(f"mqttgate acl: {msg}", file=sys.stderr)


def _dump(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _read(path: str) -> str:
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _UsageError(f"cannot read {path}: {e}") from None


def _read_json(path: str) -> Any:
    text = _read(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(f"{path}:{e.lineno}: {e.msg}") from None
    except RecursionError:
        raise CaseError(f"{path}: nested too deeply") from None


def _load(path: str) -> Policy:
    _read(path)  # an unreadable file is a usage error, not an invalid policy
    return load_policy(path)


def _print_problems(problems: list[Problem] | tuple[Problem, ...]) -> None:
    for p in problems:
        print(p, file=sys.stderr if p.severity == "error" else sys.stdout)


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = fn(args)
            return result
        except _UsageError as e:
            _err(str(e))
            return EXIT_USAGE
        except PolicyError as e:
            if getattr(args, "json", False):
                _dump({"valid": False, "errors": [p.as_dict() for p in e.problems]})
            else:
                _print_problems([p for p in e.problems if p.severity == "error"])
            return EXIT_INVALID
        except CaseError as e:
            _err(str(e))
            return EXIT_INVALID

    return run


# -- validate ------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    text = _read(args.file)
    document, problems = check_text(text, args.file)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    if args.json:
        _dump(
            {
                "valid": document is not None,
                "file": args.file,
                "policy_version": document.version if document else None,
                "rules": len(document.rules) if document else None,
                "errors": [p.as_dict() for p in errors],
                "warnings": [p.as_dict() for p in warnings],
            }
        )
    else:
        _print_problems(problems)
        if document is None:
            print(f"{args.file}: invalid ({len(errors)} errors, {len(warnings)} warnings)")
        else:
            print(
                f"{args.file}: valid, {len(document.rules)} rules, version {document.version}"
                f" ({len(warnings)} warnings)"
            )
    return EXIT_OK if document is not None else EXIT_INVALID


# -- simulate ------------------------------------------------------------------------


def _describe(d: PolicyDecision) -> str:
    parts = [d.verdict.upper(), f"reason={d.reason}"]
    if d.rule_id is not None:
        parts.append(f"rule={d.rule_id}")
    if d.pattern is not None:
        parts.append(f"pattern={d.pattern}")
    if d.granted_qos is not None:
        parts.append(f"granted_qos={d.granted_qos}")
    parts.append(f"policy={d.policy_version}")
    return " ".join(parts)


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        raw = json.loads(args.identity)
        identity = identity_from_json(raw, args.client_id, args.principal)
    except (json.JSONDecodeError, ValueError) as e:
        raise _UsageError(f"--identity: {e}") from None
    policy = _load(args.file)
    if args.action == "publish":
        d = policy.authorize_publish(identity, args.topic, args.qos, args.retain, explain=True)
    else:
        d = policy.authorize_subscribe(identity, args.topic, args.qos, explain=True)
    if args.json:
        out = d.as_dict()
        if not args.explain:
            out.pop("explain", None)
        _dump(out)
        return EXIT_OK
    print(_describe(d))
    if args.explain and d.explain is not None:
        print("rules considered:")
        for s in d.explain:
            line = f"  {s.rule_id} ({s.effect}): {s.outcome}"
            if s.detail:
                line += f", {s.detail}"
            if s.pattern:
                line += f" [{s.pattern}]"
            print(line)
    return EXIT_OK


# -- test ------------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    cases = parse_cases(_read_json(args.cases))
    policy = _load(args.file)
    results = run_cases(policy, cases)
    failed = [r for r in results if not r.ok]
    if args.json:
        _dump([r.as_dict() for r in results])
    else:
        for r in failed:
            print(r.mismatch())
        print(f"{len(results)} cases, {len(results) - len(failed)} passed, {len(failed)} failed")
    return EXIT_INVALID if failed else EXIT_OK


# -- diff ------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    cases = parse_cases(_read_json(args.cases), need_expect=False)
    old, new = _load(args.old), _load(args.new)
    old_ids = {r.id: r for r in old.rules}
    new_ids = {r.id: r for r in new.rules}
    added = sorted(set(new_ids) - set(old_ids))
    removed = sorted(set(old_ids) - set(new_ids))
    changed_rules = sorted(
        i
        for i in set(old_ids) & set(new_ids)
        if _rule_fields(old_ids[i]) != _rule_fields(new_ids[i])
    )
    changes = []
    for a, b in zip(run_cases(old, cases), run_cases(new, cases), strict=True):
        da, db = a.decision, b.decision
        if (da.verdict, da.granted_qos) != (db.verdict, db.granted_qos):
            changes.append((a.case, da, db))
    if args.json:
        _dump(
            {
                "old_version": old.version,
                "new_version": new.version,
                "rules_added": added,
                "rules_removed": removed,
                "rules_changed": changed_rules,
                "cases": len(cases),
                "changed": [
                    {"case": c.number, "action": c.action, "topic": c.topic,
                     "old": da.as_dict(), "new": db.as_dict()}
                    for c, da, db in changes
                ],
            }
        )  # fmt: skip
    else:
        print(f"--- {args.old} ({old.version})\n+++ {args.new} ({new.version})")
        for label, ids in (("added", added), ("removed", removed), ("changed", changed_rules)):
            if ids:
                print(f"rules {label}: {', '.join(ids)}")
        for c, da, db in changes:
            print(
                f"case {c.number}: {c.action} {c.topic!r} qos {c.qos}: {_short(da)} -> {_short(db)}"
            )
        print(f"{len(changes)} of {len(cases)} cases change verdict")
    return EXIT_INVALID if (changes and args.fail_on_change) else EXIT_OK


def _short(d: PolicyDecision) -> str:
    s: str = d.verdict
    if d.granted_qos is not None:
        s += f" qos {d.granted_qos}"
    return s + f" [{d.reason}{', ' + d.rule_id if d.rule_id else ''}]"


def _rule_fields(rule: Any) -> tuple[Any, ...]:
    return (
        rule.effect, rule.actions, rule.topic, rule.qos, rule.retain, rule.when, rule.principal,
        rule.share_group.source if rule.share_group else None,
    )  # fmt: skip


# -- templates / init --------------------------------------------------------------------


def cmd_templates(args: argparse.Namespace) -> int:
    templates = all_templates()
    if args.json:
        _dump(
            [
                {"name": t.name, "summary": t.summary, "description": t.policy["description"]}
                for t in templates
            ]
        )
        return EXIT_OK
    width = max(len(t.name) for t in templates)
    for t in templates:
        print(f"{t.name:<{width}}  {t.summary}")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    try:
        template = get_template(args.template)
    except KeyError:
        raise _UsageError(
            f"unknown template {args.template!r}; one of: {', '.join(TEMPLATE_NAMES)}"
        ) from None
    outputs = [(args.output, template.policy_text), (args.cases, template.cases_text)]
    for path, _ in outputs:
        if path and path != "-" and Path(path).exists() and not args.force:
            raise _UsageError(f"{path} exists; use --force to overwrite it")
    for path, text in outputs:
        if path is None:
            continue
        if path == "-":
            sys.stdout.write(text)
        else:
            try:
                Path(path).write_text(text, "utf-8")
            except OSError as e:
                raise _UsageError(f"cannot write {path}: {e}") from None
            print(f"wrote {path} (template {template.name})", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(template.policy_text)
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands; each sets ``func(args) -> int`` as its default."""
    acl = sub.add_parser(
        "acl",
        help="topic policies: validate, simulate, test, diff, templates, init",
        description="ACL v2 policy tools. Exit 0 success, 1 invalid/failed, 2 usage error.",
    )
    acl_sub = acl.add_subparsers(dest="acl_command", metavar="SUBCOMMAND", required=True)

    p = acl_sub.add_parser("validate", help="check a policy: schema, topics, variables, lints")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_guarded(cmd_validate))

    p = acl_sub.add_parser("simulate", help="decide one request and say why")
    p.add_argument("file")
    p.add_argument("--identity", default="{}", help='bindings as JSON, e.g. \'{"user_id": "u1"}\'')
    p.add_argument("--client-id", default=None, help="the client id in force after CONNECT")
    p.add_argument("--principal", default=None, help="a service account, e.g. service:x")
    p.add_argument("--action", choices=["publish", "subscribe"], required=True)
    p.add_argument("--topic", required=True, help="topic name (publish) or filter (subscribe)")
    p.add_argument("--qos", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--retain", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", action="store_true", help="list every rule considered")
    p.set_defaults(func=_guarded(cmd_simulate))

    p = acl_sub.add_parser("test", help="run a table of expected verdicts (for CI)")
    p.add_argument("file")
    p.add_argument("cases", metavar="CASES.json")
    p.add_argument("--json", action="store_true", help="a JSON list, one result per case")
    p.set_defaults(func=_guarded(cmd_test))

    p = acl_sub.add_parser("diff", help="which cases change verdict between two policies")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--cases", required=True, metavar="CASES.json")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 if any case changes")
    p.set_defaults(func=_guarded(cmd_diff))

    p = acl_sub.add_parser("templates", help="list the shipped policy templates")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(cmd_templates))

    p = acl_sub.add_parser("init", help="write a policy from a template")
    p.add_argument("--template", required=True, metavar="NAME", help=", ".join(TEMPLATE_NAMES))
    p.add_argument("-o", "--output", default=None, help="policy file (default: stdout)")
    p.add_argument("--cases", default=None, help="also write the template's case table here")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=_guarded(cmd_init))
