"""Command-line commands of this package (registered by gateway.cli)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands; each sets ``func(args) -> int`` as its default."""
