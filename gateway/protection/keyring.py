"""Keyrings: the AES-256 keys of each organization's set, which one seals, which are retired.

Keys come from ``[[protection.keys]]`` (``key_env`` / ``key_file``) and from the JSON
keyring file that ``mqttgate keys rotate`` writes (``keyring_file``). In each set the
order is: config entries, then keyring file entries, and the last key that is not
retired seals. Retired keys are kept only so that a delivery sealed under one is
reported as ``retired_key`` rather than ``unknown_key``.

Keyring file (docs/data-protection.md)::

    {"format": "mqttgate-keyring/1",
     "keys": [{"id": "k1", "org": null, "created": "2025-06-01T12:00:00Z",
               "retired": false, "key": "<base64 of 32 bytes>"}]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.configload import ConfigError
from gateway.protection.config import ProtectionConfig, key_id_problem

KEY_BYTES = 32  # AES-256
KEYRING_FORMAT = "mqttgate-keyring/1"
# Labels of the two subkeys derived from a master key (HKDF-Expand, RFC 5869 2.3, one
# block): the AEAD key and the key of the topic tag are never the same bytes.
_AEAD_LABEL = b"mqttgate/envelope/1/aes-256-gcm\x01"
_TAG_LABEL = b"mqttgate/envelope/1/topic-tag\x01"


class KeyringError(ValueError):
    """A keyring file or key that cannot be used."""


def decode_key(data: bytes, where: str) -> bytes:
    """32 raw bytes, or the base64 (standard or URL-safe, padded or not) of 32 bytes.

    32 bytes of printable ASCII are refused: that is a password or a truncated base64
    text, not a random key (a random key is all-printable with probability ~2^-46).
    """
    if len(data) == KEY_BYTES:
        if all(0x20 <= b < 0x7F for b in data):
            raise KeyringError(f"{where}: 32 printable characters are not a key; give base64")
        return bytes(data)
    text = data.strip()
    try:
        padded = text + b"=" * (-len(text) % 4)
        raw = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: not 32 raw bytes nor base64 of 32 bytes") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"{where}: the key is {len(raw)} bytes, AES-256 needs {KEY_BYTES}")
    return raw


def _subkey(master: bytes, label: bytes) -> bytes:
    return hmac.digest(master, label, hashlib.sha256)


@dataclass(frozen=True, slots=True, eq=False)
class Key:
    """One key with its derived AEAD and topic-tag keys (never printed)."""

    id: str
    org: str | None
    retired: bool
    aead: AESGCM | None = field(repr=False)
    tag_key: bytes = field(repr=False)

    @classmethod
    def from_material(
        cls, key_id: str, org: str | None, material: bytes | None, retired: bool
    ) -> Key:
        if material is None:
            return cls(key_id, org, True, None, b"")
        return cls(
            key_id,
            org,
            retired,
            AESGCM(_subkey(material, _AEAD_LABEL)),
            _subkey(material, _TAG_LABEL),
        )


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys of one organization (or the shared set), in rotation order."""

    keys: tuple[Key, ...]
    by_id: Mapping[str, Key]
    sealing: Key | None

    @classmethod
    def of(cls, keys: Iterable[Key]) -> KeySet:
        ordered = tuple(keys)
        active = [k for k in ordered if not k.retired]
        return cls(
            ordered, MappingProxyType({k.id: k for k in ordered}), active[-1] if active else None
        )


@dataclass(frozen=True, slots=True)
class Keyring:
    """Every key set; ``sets[None]`` is the shared set."""

    sets: Mapping[str | None, KeySet]
    require_org_keys: bool = False

    @classmethod
    def of(cls, keys: Iterable[Key], require_org_keys: bool = False) -> Keyring:
        grouped: dict[str | None, list[Key]] = {}
        for key in keys:
            group = grouped.setdefault(key.org, [])
            if any(k.id == key.id for k in group):
                raise KeyringError(f"key id {key.id!r} appears twice in the set of org {key.org!r}")
            group.append(key)
        return cls(
            MappingProxyType({org: KeySet.of(g) for org, g in grouped.items()}), require_org_keys
        )

    def set_for(self, org: str | None) -> KeySet | None:
        """The set an org uses: its own, else the shared one unless ``require_org_keys``."""
        own = self.sets.get(org)
        if own is not None or org is None or self.require_org_keys:
            return own
        return self.sets.get(None)


# ---------------------------------------------------------------------------------------
# The keyring file


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One key of a keyring file, as stored."""

    id: str
    org: str | None
    created: str
    retired: bool
    key: str  # base64

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "org": self.org,
            "created": self.created,
            "retired": self.retired,
            "key": self.key,
        }


def read_keyring_file(path: Path) -> tuple[KeyringEntry, ...]:
    """The entries of a keyring file; a missing file is an empty keyring."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return ()
    except orjson.JSONDecodeError as exc:
        raise KeyringError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT:
        raise KeyringError(f"{path}: not a keyring (format must be {KEYRING_FORMAT!r})")
    items = data.get("keys")
    if not isinstance(items, list):
        raise KeyringError(f"{path}: 'keys' must be a list")
    entries: list[KeyringEntry] = []
    for i, item in enumerate(items):
        where = f"{path}: keys[{i}]"
        if not isinstance(item, dict):
            raise KeyringError(f"{where}: must be an object")
        key_id, org, created = item.get("id"), item.get("org"), item.get("created", "")
        retired, material = item.get("retired", False), item.get("key")
        if not isinstance(key_id, str) or key_id_problem(key_id):
            raise KeyringError(f"{where}.id: {key_id_problem(str(key_id))}")
        if org is not None and (not isinstance(org, str) or not org):
            raise KeyringError(f"{where}.org: must be a non-empty string or null")
        if not isinstance(retired, bool) or not isinstance(created, str):
            raise KeyringError(f"{where}: 'retired' is a boolean, 'created' a string")
        if not isinstance(material, str):
            raise KeyringError(f"{where}.key: must be a base64 string")
        decode_key(material.encode(), f"{where}.key")
        entries.append(KeyringEntry(key_id, org, created, retired, material))
    return tuple(entries)


def write_keyring_file(path: Path, entries: Iterable[KeyringEntry]) -> None:
    """Replace the file atomically, readable by its owner only (mode 0600)."""
    body = {"format": KEYRING_FORMAT, "keys": [e.to_json() for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _next_id(entries: Iterable[KeyringEntry], org: str | None) -> str:
    highest = 0
    for e in entries:
        if e.org == org and e.id.startswith("k") and e.id[1:].isdigit():
            highest = max(highest, int(e.id[1:]))
    return f"k{highest + 1}"


def rotate(path: Path, org: str | None = None, key_id: str | None = None) -> KeyringEntry:
    """Append a fresh random key to the set of ``org``; it seals from the next load."""
    entries = read_keyring_file(path)
    new_id = key_id if key_id is not None else _next_id(entries, org)
    problem = key_id_problem(new_id)
    if problem:
        raise KeyringError(problem)
    if any(e.org == org and e.id == new_id for e in entries):
        raise KeyringError(f"key id {new_id!r} already exists in the set of org {org!r}")
    entry = KeyringEntry(
        new_id,
        org,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        False,
        base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
    )
    write_keyring_file(path, (*entries, entry))
    return entry


def retire(path: Path, key_id: str, org: str | None = None) -> KeyringEntry:
    """Mark a key retired: it no longer seals nor opens."""
    entries = read_keyring_file(path)
    out: list[KeyringEntry] = []
    found: KeyringEntry | None = None
    for e in entries:
        if e.org == org and e.id == key_id:
            found = KeyringEntry(e.id, e.org, e.created, True, e.key)
            out.append(found)
        else:
            out.append(e)
    if found is None:
        raise KeyringError(f"no key {key_id!r} in the set of org {org!r} in {path}")
    write_keyring_file(path, out)
    return found


# ---------------------------------------------------------------------------------------
# Loading from the configuration


def _read_config_key(env: str | None, file: str | None, base: Path, where: str, cfg: str) -> bytes:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(cfg, where, f"environment variable {env} is not set or empty")
        data = value.encode()
    else:
        assert file is not None
        p = Path(file) if Path(file).is_absolute() else base / file
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(cfg, where, f"cannot read {p}: {exc.strerror}") from None
    try:
        return decode_key(data, env or file or "")
    except KeyringError as exc:
        raise ConfigError(cfg, where, str(exc)) from None


def load_keyring(
    config: ProtectionConfig, base_dir: Path | str = ".", config_file: str = "[protection]"
) -> Keyring:
    """Read every key the configuration names; errors name the key, never the value."""
    base = Path(base_dir)
    keys: list[Key] = []
    for i, kc in enumerate(config.keys):
        where = f"protection.keys[{i}]"
        material = None
        if kc.key_env is not None or kc.key_file is not None:
            material = _read_config_key(kc.key_env, kc.key_file, base, where, config_file)
        keys.append(Key.from_material(kc.id, kc.org, material, kc.retired))
    if config.keyring_file is not None:
        p = Path(config.keyring_file)
        p = p if p.is_absolute() else base / p
        try:
            entries = read_keyring_file(p)
        except KeyringError as exc:
            raise ConfigError(config_file, "protection.keyring_file", str(exc)) from None
        for e in entries:
            keys.append(Key.from_material(e.id, e.org, decode_key(e.key.encode(), e.id), e.retired))
    try:
        return Keyring.of(keys, config.require_org_keys)
    except KeyringError as exc:
        raise ConfigError(config_file, "protection.keys", str(exc)) from None
