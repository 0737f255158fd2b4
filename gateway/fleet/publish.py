"""``mqttgate acl publish FILE --broker URL --signing-key KEY [--org ORG]``: sign and
publish a policy.

The policy is validated exactly as the admin API validates it, signed (Ed25519), and
published retained at QoS 1 on the control topic, where every instance picks it up; with
``--org``, as that org's own policy ([tenancy]) on ``<control topic>/orgs/<org>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from gateway.acl import PolicyError
from gateway.fleet.control import DEFAULT_CONTROL_TOPIC
from gateway.fleet.envelope import load_private_key, sign_policy, write_key_pair
from gateway.fleet.sync import ORGS_LEVEL
from gateway.identity import is_usable_value


async def publish_policy(
    policy_file: str | Path,
    *,
    broker: str,
    signing_key: str | Path,
    control_topic: str = DEFAULT_CONTROL_TOPIC,
    username: str | None = None,
    password: str | None = None,
    cafile: str | None = None,
    timeout_s: float = 10.0,
    issued_at: float | None = None,
    org: str | None = None,
) -> str:
    """Validate, sign and publish; returns the policy's content version.

    Raises PolicyError for an invalid policy (nothing is published), aiomqtt.MqttError
    or OSError when the broker cannot be reached or does not acknowledge.
    """
    from gateway.server.admin_api import policy_from_text

    text = Path(policy_file).read_text("utf-8")
    policy = policy_from_text(text, str(policy_file))
    if org is not None and not is_usable_value(org):
        raise ValueError(f"--org: {org!r} cannot be an org (one topic level, no wildcards)")
    key = load_private_key(signing_key)
    envelope = sign_policy(text, policy.version, key, issued_at=issued_at, org=org)
    topic = control_topic if org is None else f"{control_topic}/{ORGS_LEVEL}/{org}"
    parts = urlsplit(broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"--broker: expected mqtt://host:port or mqtts://host:port, got {broker}")
    tls = ssl.create_default_context(cafile=cafile) if parts.scheme == "mqtts" else None
    port = parts.port or (8883 if tls else 1883)
    async with aiomqtt.Client(
        parts.hostname,
        port,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls,
        timeout=timeout_s,
    ) as client:
        await client.publish(topic, envelope, qos=1, retain=True, timeout=timeout_s)
    return policy.version


def _cmd_publish(args: argparse.Namespace) -> int:
    password = os.environ.get(args.password_env) if args.password_env else None
    try:
        version = asyncio.run(
            publish_policy(
                args.file,
                broker=args.broker,
                signing_key=args.signing_key,
                control_topic=args.topic,
                username=args.username,
                password=password,
                cafile=args.cafile,
                timeout_s=args.timeout,
                org=args.org,
            )
        )
    except PolicyError as exc:
        print(f"mqttgate: {exc}", file=sys.stderr)
        return 1
    except (aiomqtt.MqttError, OSError, ValueError) as exc:
        print(f"mqttgate: cannot publish to {args.broker}: {exc}", file=sys.stderr)
        return 1
    where = args.topic if args.org is None else f"{args.topic}/{ORGS_LEVEL}/{args.org}"
    print(f"published policy {version} on {where}")
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    private, public = write_key_pair(Path(args.out), args.name)
    print(f"signing key: {private} (keep it off the gateways)\npublic key: {public}")
    return 0


def add_fleet_commands(acl_subparsers: argparse._SubParsersAction[Any]) -> None:
    """``acl publish`` and ``acl signing-key`` (the admin API's ``acl update`` is separate)."""
    p = acl_subparsers.add_parser(
        "publish", help="sign a policy and publish it to every gateway through the broker"
    )
    p.add_argument("file")
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--signing-key", required=True, help="Ed25519 private key (PEM)")
    p.add_argument("--topic", default=DEFAULT_CONTROL_TOPIC, help="the [fleet] control_topic")
    p.add_argument("--username", default=None)
    p.add_argument("--password-env", default=None, help="environment variable with the password")
    p.add_argument("--cafile", default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--org", default=None, help="publish as this org's own policy ([tenancy])")
    p.set_defaults(func=_cmd_publish)
    k = acl_subparsers.add_parser("signing-key", help="make an Ed25519 key pair for acl publish")
    k.add_argument("--out", default="keys")
    k.add_argument("--name", default="fleet")
    k.set_defaults(func=_cmd_keygen)
