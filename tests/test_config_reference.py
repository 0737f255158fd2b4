"""config/README.md lists every key the loader accepts, so the reference cannot drift."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from gateway.config import GatewayConfig

README = Path(__file__).resolve().parents[1] / "config" / "README.md"


def keys(cls: type, prefix: str = "") -> list[str]:
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        args = typing.get_args(tp)
        inner = args[0] if typing.get_origin(tp) is tuple and args else tp
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            if prefix:
                out.append(name)
            out += keys(inner, name + ".")
        else:
            out.append(name)
    return out


def test_every_key_is_documented() -> None:
    text = README.read_text()
    listed = keys(GatewayConfig)
    assert len(listed) > 30
    missing = [k for k in listed if f"`{k}`" not in text]
    assert missing == [], f"config/README.md does not document: {missing}"


def test_sample_config_is_valid() -> None:
    from gateway.config import load_config

    cfg = load_config(README.parent / "gateway.toml")
    assert cfg.acl.policy == "config/policy.json"
    assert cfg.auth.issuers[0].jwks_file == "certs/dev-jwks.json"
