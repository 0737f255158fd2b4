"""``mqttgate acl update|get|rollback``: the admin API's command-line client."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.acl import PolicyError, load_policy

DEFAULT_GATEWAY = "http://127.0.0.1:8081"
DEFAULT_TOKEN_ENV = "MQTTGATE_ADMIN_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    return os.environ.get(args.token_env)


async def _request(
    args: argparse.Namespace, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any]:
    token = _token(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = args.gateway.rstrip("/") + path
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, data=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = {"error": raw.decode(errors="replace")}
        return resp.status, data


def _call(args: argparse.Namespace, method: str, path: str, body: bytes | None = None) -> Any:
    try:
        status, data = asyncio.run(_request(args, method, path, body))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(
            f"mqttgate: cannot reach {args.gateway}: {exc or type(exc).__name__}", file=sys.stderr
        )
        raise SystemExit(1) from None
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) else data
        print(f"mqttgate: {args.gateway} answered {status}: {message}", file=sys.stderr)
        for p in (data or {}).get("problems", []) if isinstance(data, dict) else []:
            where = f"{p.get('source')}:{p.get('line')}" if p.get("line") else p.get("source")
            print(f"  {where} {p.get('pointer') or '/'}: {p.get('message')}", file=sys.stderr)
        raise SystemExit(1)
    return data


def cmd_update(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text("utf-8")
    try:
        load_policy(args.file)  # the same checks the gateway makes, with this file's lines
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"mqttgate: {problem}", file=sys.stderr)
        return 1
    data = _call(args, "PUT", "/admin/policy", text.encode())
    print(
        f"policy {data['version']} active on {args.gateway}; "
        f"{data['revoked_subscriptions']} subscription(s) revoked"
    )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/admin/policy")
    out = orjson.dumps(data["policy"], option=orjson.OPT_INDENT_2) + b"\n"
    if args.output:
        Path(args.output).write_bytes(out)
        print(f"policy {data['version']} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out.decode())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    data = _call(args, "POST", "/admin/policy/rollback")
    print(f"policy {data['version']} active again on {args.gateway}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    body = orjson.dumps({"prefix": args.prefix, "org": args.org, "apply": args.apply})
    data = _call(args, "POST", "/admin/retained/purge", body)
    verb = "cleared" if data["applied"] else "would clear (dry run; --apply to clear)"
    print(f"{len(data['topics'])} retained message(s) under {data['filter']} {verb}:")
    for topic in data["topics"]:
        print(f"  {topic}")
    return 0


def add_retained_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retained = sub.add_parser("retained", help="retained messages at the broker")
    rsub = retained.add_subparsers(dest="retained_command", metavar="SUBCOMMAND", required=True)
    purge = rsub.add_parser("purge", help="clear the retained messages under a prefix")
    purge.add_argument("--prefix", required=True, help="topic prefix, e.g. orgs/acme/")
    purge.add_argument("--org", help="with tenancy: the org whose mount the prefix is in")
    purge.add_argument("--apply", action="store_true", help="clear them (default: dry run)")
    _common(purge)
    purge.set_defaults(func=cmd_purge)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway", default=DEFAULT_GATEWAY, help="the admin listener's URL")
    p.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        help=f"environment variable with the admin token or JWT (default {DEFAULT_TOKEN_ENV})",
    )
    p.add_argument("--token-file", help="file with the admin token or JWT")
    p.add_argument("--timeout", type=float, default=10.0)


def add_admin_client_commands(acl_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = acl_sub.add_parser("update", help="validate FILE, then put it in force on a gateway")
    update.add_argument("file")
    _common(update)
    update.set_defaults(func=cmd_update)
    get = acl_sub.add_parser("get", help="print the policy in force on a gateway")
    get.add_argument("-o", "--output", help="write it to this file")
    _common(get)
    get.set_defaults(func=cmd_get)
    rollback = acl_sub.add_parser("rollback", help="put a gateway's previous policy back")
    _common(rollback)
    rollback.set_defaults(func=cmd_rollback)
