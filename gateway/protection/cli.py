"""``mqttgate keys rotate|retire|list`` and ``mqttgate purge`` (issue 10).

Registered by the top-level command: :func:`add_protection_commands` on the ``keys``
sub-command table (beside ``keys dev``), :func:`add_purge_command` on the top level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import aiomqtt

from gateway.acl.topic import TopicSyntaxError
from gateway.protection.broker import BrokerParams
from gateway.protection.keyring import KeyringError, read_keyring_file, retire, rotate
from gateway.protection.purge import purge

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_protection_commands(keys_sub: Subparsers) -> None:
    """Add ``rotate``, ``retire`` and ``list`` to the ``keys`` command group."""
    rot = keys_sub.add_parser("rotate", help="add a new payload encryption key (it seals next)")
    rot.add_argument("--keyring", required=True, help="keyring file ([protection] keyring_file)")
    rot.add_argument("--org", default=None, help="the organization's key set (default: shared)")
    rot.add_argument("--id", default=None, help="key id (default: k<n+1>)")
    rot.set_defaults(func=_keys_rotate)

    ret = keys_sub.add_parser("retire", help="retire a payload encryption key (no longer opens)")
    ret.add_argument("id", help="key id")
    ret.add_argument("--keyring", required=True, help="keyring file ([protection] keyring_file)")
    ret.add_argument("--org", default=None, help="the organization's key set (default: shared)")
    ret.set_defaults(func=_keys_retire)

    lst = keys_sub.add_parser("list", help="list the keys of a keyring (never their material)")
    lst.add_argument("--keyring", required=True, help="keyring file ([protection] keyring_file)")
    lst.set_defaults(func=_keys_list)


def add_purge_command(sub: Subparsers) -> None:
    """Add ``mqttgate purge``."""
    p = sub.add_parser(
        "purge", help="clear the retained messages under a topic filter (dry run by default)"
    )
    p.add_argument("filter", help="topic filter, e.g. orgs/acme/#")
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--username", default=None, help="service account user name")
    p.add_argument("--password-env", default=None, help="environment variable with the password")
    p.add_argument("--cafile", default=None, help="CA bundle for mqtts://")
    p.add_argument("--org", default=None, help="organization (with --mount)")
    p.add_argument("--mount", default=None, help='tenancy mount, e.g. "org/{org}/"')
    p.add_argument("--idle", type=float, default=0.5, help="seconds of silence that end the scan")
    p.add_argument("--apply", action="store_true", help="clear them (default: only list them)")
    p.set_defaults(func=_purge)


def _keys_rotate(args: argparse.Namespace) -> int:
    try:
        entry = rotate(Path(args.keyring), args.org, args.id)
    except (KeyringError, OSError) as exc:
        print(f"mqttgate keys rotate: {exc}", file=sys.stderr)
        return 1
    where = f"org {entry.org}" if entry.org else "the shared set"
    print(f"added key {entry.id} to {where} in {args.keyring} (mode 0600)")
    print("it seals new messages once the gateways reload the keyring; older keys still open")
    return 0


def _keys_retire(args: argparse.Namespace) -> int:
    path = Path(args.keyring)
    try:
        entry = retire(path, args.id, args.org)
        entries = read_keyring_file(path)
    except (KeyringError, OSError) as exc:
        print(f"mqttgate keys retire: {exc}", file=sys.stderr)
        return 1
    print(f"retired key {entry.id}: messages sealed with it can no longer be opened")
    if not any(e.org == entry.org and not e.retired for e in entries):
        print(
            "warning: this set has no active key left; publishes to encrypted topics will be"
            " refused until `mqttgate keys rotate` adds one",
            file=sys.stderr,
        )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    try:
        entries = read_keyring_file(Path(args.keyring))
    except (KeyringError, OSError) as exc:
        print(f"mqttgate keys list: {exc}", file=sys.stderr)
        return 1
    sealing: dict[str | None, str] = {}
    for e in entries:
        if not e.retired:
            sealing[e.org] = e.id
    for e in entries:
        state = "retired" if e.retired else ("sealing" if sealing.get(e.org) == e.id else "opens")
        print(f"{e.org or '-':<16} {e.id:<20} {state:<8} {e.created}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            print(f"mqttgate purge: {args.password_env} is not set", file=sys.stderr)
            return 2
    try:
        tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
        broker = BrokerParams.from_url(args.broker, args.username, password, tls)
        result = asyncio.run(
            purge(
                broker, args.filter, args.org, mount=args.mount, apply=args.apply, idle_s=args.idle
            )
        )
    except (ValueError, TopicSyntaxError, OSError) as exc:
        print(f"mqttgate purge: {exc}", file=sys.stderr)
        return 2
    except aiomqtt.MqttError as exc:
        print(f"mqttgate purge: broker: {exc}", file=sys.stderr)
        return 1
    verb = "cleared" if result.cleared else "would clear"
    for topic in result.topics:
        print(f"{verb} {topic}")
    print(f"{len(result.topics)} retained message(s) under {result.topic_filter}")
    if not result.cleared and result.topics:
        print("dry run: add --apply to clear them")
    return 0
