"""``[protection]``: which topics are encrypted, with which keys, and how long retained
messages live.

```toml
[protection]
keyring_file = "keys/keyring.json"   # written by `mqttgate keys rotate`
sweeper_db = "data/retention.sqlite"

[[protection.encrypt]]
topics = ["orgs/+/records/#"]

[[protection.keys]]                  # keys from the environment or a file
id = "k1"
org = "acme"                         # omit for the shared set
key_env = "MQTTGATE_KEY_K1"          # base64 of 32 bytes; key_file: raw 32 bytes or base64

[[protection.retain]]
topics = ["sensors/#"]
retained_ttl_s = 3600
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.acl.topic import TopicSyntaxError, parse_filter

# Key ids travel in every envelope behind a one-byte length; 64 is ample for a
# readable id ("acme-2025-06") and keeps the per-message overhead small.
MAX_KEY_ID_BYTES = 64
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# MQTT 5.0 3.3.2.3.3: Message Expiry Interval is a Four Byte Integer.
MAX_TTL_S = 0xFFFF_FFFF


def key_id_problem(key_id: str) -> str | None:
    """Why ``key_id`` cannot be used, or None."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        return f"a key id is 1 to {MAX_KEY_ID_BYTES} of A-Z a-z 0-9 . _ -, got {key_id!r}"
    return None


def _filters_problem(topics: tuple[str, ...]) -> tuple[str, str] | None:
    if not topics:
        return ("topics", "give at least one topic filter")
    for i, text in enumerate(topics):
        try:
            parse_filter(text)
        except TopicSyntaxError as exc:
            return (f"topics[{i}]", str(exc))
    return None


@dataclass(frozen=True, slots=True)
class EncryptConfig:
    """``[[protection.encrypt]]``: payloads published to these topics are sealed."""

    topics: tuple[str, ...] = ()

    def validate(self) -> tuple[str, str] | None:
        return _filters_problem(self.topics)


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """``[[protection.keys]]``: one key of a keyring.

    ``org`` names the organization whose set it belongs to; without it the key is in
    the shared set. Within a set, the last key that is not retired seals.
    """

    id: str
    org: str | None = None
    key_env: str | None = None
    key_file: str | None = None
    retired: bool = False

    def validate(self) -> tuple[str, str] | None:
        problem = key_id_problem(self.id)
        if problem:
            return ("id", problem)
        if self.org is not None and not self.org:
            return ("org", "must not be empty")
        if self.key_env is not None and self.key_file is not None:
            return ("key_env", "set key_env or key_file, not both")
        if not self.retired and self.key_env is None and self.key_file is None:
            return ("key_env", "a key that is not retired needs key_env or key_file")
        return None


@dataclass(frozen=True, slots=True)
class RetainConfig:
    """``[[protection.retain]]``: retained messages on these topics live ``retained_ttl_s``."""

    topics: tuple[str, ...] = ()
    retained_ttl_s: int = 0

    def validate(self) -> tuple[str, str] | None:
        problem = _filters_problem(self.topics)
        if problem:
            return problem
        # 0 would mean "no expiry" to Mosquitto and is not a retention period.
        if not 1 <= self.retained_ttl_s <= MAX_TTL_S:
            return ("retained_ttl_s", f"must be between 1 and {MAX_TTL_S}")
        return None


@dataclass(frozen=True, slots=True)
class ProtectionConfig:
    """``[protection]``: payload encryption at rest, retention and the sweeper."""

    encrypt: tuple[EncryptConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()
    # A JSON keyring managed by `mqttgate keys rotate` / `retire` (docs/data-protection.md);
    # its keys come after those of [[protection.keys]] in each set.
    keyring_file: str | None = None
    # Refuse to seal or open for an org without its own key set, instead of using the
    # shared set (the org is bound into every ciphertext either way).
    require_org_keys: bool = False
    retain: tuple[RetainConfig, ...] = ()
    sweeper_db: str = "data/retention.sqlite"
    # How often the sweeper looks for expired retained messages. One second keeps the
    # lateness of a clear under a second for a single indexed query per tick.
    sweep_interval_s: float = 1.0

    def validate(self) -> tuple[str, str] | None:
        seen: set[tuple[str | None, str]] = set()
        for i, key in enumerate(self.keys):
            if (key.org, key.id) in seen:
                return (f"keys[{i}].id", f"key id {key.id!r} appears twice in one set")
            seen.add((key.org, key.id))
        if self.encrypt and not self.keys and self.keyring_file is None:
            return ("encrypt", "encryption needs keys: [[protection.keys]] or keyring_file")
        if not self.sweeper_db:
            return ("sweeper_db", "must not be empty")
        if self.sweep_interval_s <= 0:
            return ("sweep_interval_s", "must be positive")
        return None

    @property
    def encrypt_filters(self) -> tuple[str, ...]:
        return tuple(f for entry in self.encrypt for f in entry.topics)
