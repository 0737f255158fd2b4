"""Command-line commands of this package (registered by gateway.cli).

``mqttgate keys dev --out certs/`` and ``mqttgate token --sub u1 ...`` (issue 3 §11).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from gateway.auth.devidp import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    load_signing_key,
    mint_token,
    parse_ttl,
    write_dev_keys,
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands; each sets ``func(args) -> int`` as its default."""
    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    dev = keys_sub.add_parser("dev", help="write a development signing key pair and JWKS")
    dev.add_argument("--out", default="certs", help="output directory (default: certs)")
    dev.add_argument("--force", action="store_true", help="replace an existing key")
    dev.set_defaults(func=_keys_dev)

    tok = sub.add_parser("token", help="print a development JWT signed with a local key")
    tok.add_argument("--key", default="certs/dev-signing.pem", help="PEM private key")
    tok.add_argument("--issuer", default=DEV_ISSUER, help=f"iss (default {DEV_ISSUER})")
    tok.add_argument(
        "--audience", default=DEV_AUDIENCE, help=f"aud (default {DEV_AUDIENCE}); '' for none"
    )
    tok.add_argument("--sub", required=True, help="sub: the user id")
    tok.add_argument(
        "--claim", action="append", default=[], metavar="NAME=VALUE", help="string claim"
    )
    tok.add_argument(
        "--claim-json",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='claim with a JSON value, e.g. roles=["admin","ops"]',
    )
    tok.add_argument("--ttl", default="1h", help="lifetime: 3600, 30m, 1h, 1d (default 1h)")
    tok.add_argument("--kid", default=None, help="kid header (default: the key's thumbprint)")
    tok.set_defaults(func=_token)


def _keys_dev(args: argparse.Namespace) -> int:
    try:
        paths = write_dev_keys(args.out, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"mqttgate keys dev: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {paths['private']} (mode 0600, keep it out of version control)")
    print(f"public key:  {paths['public']}")
    print(f"JWKS:        {paths['jwks']}")
    print("trust it with:")
    print("  [[auth.issuers]]")
    print(f'  issuer = "{DEV_ISSUER}"')
    print(f'  audiences = ["{DEV_AUDIENCE}"]')
    print(f'  jwks_file = "{paths["jwks"]}"')
    return 0


def _pairs(items: list[str], as_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        out[name] = orjson.loads(value) if as_json else value
    return out


def _token(args: argparse.Namespace) -> int:
    try:
        ttl = parse_ttl(args.ttl)
        claims = _pairs(args.claim, False)
        claims.update(_pairs(args.claim_json, True))
        key = load_signing_key(args.key)
    except (ValueError, OSError, orjson.JSONDecodeError) as exc:
        print(f"mqttgate token: {exc}", file=sys.stderr)
        return 2
    token = mint_token(
        key,
        issuer=args.issuer,
        audience=args.audience or None,
        subject=args.sub,
        ttl_s=ttl,
        claims=claims,
        kid=args.kid,
    )
    print(token)
    return 0
