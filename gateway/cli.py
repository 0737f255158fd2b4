"""The ``mqttgate`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from gateway import __version__
from gateway.acl import cli as acl_cli
from gateway.admin_client import add_admin_client_commands, add_retained_commands
from gateway.auth import cli as auth_cli
from gateway.auth.service_accounts import add_service_account_commands
from gateway.config import ConfigError, effective_config, load_config
from gateway.fleet.publish import add_fleet_commands
from gateway.protection.cli import add_protection_commands, add_purge_command


def _cmd_config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"mqttgate: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(effective_config(config), option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    return 0


def _cmd_certs_dev(args: argparse.Namespace) -> int:
    from gateway.certs import make_dev_certs

    paths = make_dev_certs(Path(args.out))
    print(f"wrote {paths.ca_cert} (trust this CA), {paths.server_cert} and {paths.server_key}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server.app import serve

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mqttgate: {exc}", file=sys.stderr)
        return 1
    from gateway.server.workers import role_from_env, supervise

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers > 1 and role_from_env() is None:
        from gateway.server.app import preflight

        problem = preflight(config)
        if problem is not None:
            # Found once, said once, before N workers would each say it.
            print(f"mqttgate: {problem}", file=sys.stderr)
            return 1
        argv = ["serve", "--config", args.config]
        if args.log_level:
            argv += ["--log-level", args.log_level]
        return supervise(argv, workers)
    return serve(config, log_level=args.log_level)


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-command table of ``parser`` (to add commands beside another module's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no sub-commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqttgate",
        description="Security gateway for MQTT brokers: WSS in, JWT auth, topic policy, audit.",
    )
    parser.add_argument("--version", action="version", version=f"mqttgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default="config/gateway.toml", help="the TOML configuration")
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides [logging] level",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port (SO_REUSEPORT); default: the number of cores",
    )
    serve.set_defaults(func=_cmd_serve)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = config_sub.add_parser("check", help="validate a file and print the effective config")
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)

    certs = sub.add_parser("certs", help="certificate tools")
    certs_sub = certs.add_subparsers(dest="certs_command", metavar="SUBCOMMAND", required=True)
    dev = certs_sub.add_parser("dev", help="make a development CA and server certificate")
    dev.add_argument("--out", default="certs")
    dev.set_defaults(func=_cmd_certs_dev)

    acl_cli.add_commands(sub)
    add_admin_client_commands(_subcommands(sub.choices["acl"]))
    add_fleet_commands(_subcommands(sub.choices["acl"]))
    auth_cli.add_commands(sub)
    add_protection_commands(_subcommands(sub.choices["keys"]))
    add_purge_command(sub)
    add_retained_commands(sub)
    add_service_account_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result = func(args)
    return int(result)


if __name__ == "__main__":
    raise SystemExit(main())
