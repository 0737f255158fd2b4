"""A development identity provider for tests: a signing key made at test time, its JWKS
file, and tokens minted on demand (the same code as ``mqttgate keys dev`` / ``token``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.auth.devidp import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    load_signing_key,
    mint_token,
    write_dev_keys,
)


@dataclass
class DevIdp:
    directory: Path

    def __post_init__(self) -> None:
        self.paths = write_dev_keys(self.directory)
        self.key = load_signing_key(self.paths["private"])

    @property
    def jwks_file(self) -> Path:
        return self.paths["jwks"]

    def token(self, sub: str = "u1", ttl_s: float = 3600, **claims: Any) -> str:
        return mint_token(self.key, subject=sub, ttl_s=ttl_s, claims=claims)

    def auth_toml(self) -> str:
        return f"""
[auth]
[[auth.issuers]]
issuer = "{DEV_ISSUER}"
audiences = ["{DEV_AUDIENCE}"]
jwks_file = "{self.jwks_file}"
"""


PERMIT_ALL_POLICY = """{
  "version": "2.0",
  "default_action": "deny",
  "rules": [
    {"id": "everything", "topic": "#", "action": "all", "effect": "allow",
     "qos": [0, 1, 2], "retain": true}
  ]
}
"""
