"""Keys from config and from the keyring file; `mqttgate keys rotate|retire|list`."""

from __future__ import annotations

import argparse
import base64
import os
import stat
import tomllib
from pathlib import Path

import pytest

from gateway.configload import ConfigError, load_dataclass
from gateway.mqtt.properties import Properties
from gateway.protection import envelope
from gateway.protection.cli import add_protection_commands
from gateway.protection.config import ProtectionConfig
from gateway.protection.keyring import (
    KeyringError,
    load_keyring,
    read_keyring_file,
    retire,
    rotate,
)
from gateway.protection.protector import RETIRED_KEY, OpenFailure, PayloadProtector, SealFailure

TOPIC = "records/1"


def config(text: str) -> ProtectionConfig:
    return load_dataclass(ProtectionConfig, tomllib.loads(text), "test.toml", "protection")


def keys_main(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mqttgate keys")
    add_protection_commands(parser.add_subparsers(dest="keys_command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_config_shape_and_defaults() -> None:
    c = config(
        """
        keyring_file = "ring.json"
        [[encrypt]]
        topics = ["orgs/+/records/#", "secrets/#"]
        [[keys]]
        id = "k1"
        org = "acme"
        key_env = "K1"
        [[retain]]
        topics = ["sensors/#"]
        retained_ttl_s = 60
        """
    )
    assert c.encrypt_filters == ("orgs/+/records/#", "secrets/#")
    assert c.keys[0].org == "acme" and not c.keys[0].retired
    assert c.retain[0].retained_ttl_s == 60
    assert c.sweep_interval_s == 1.0 and c.sweeper_db == "data/retention.sqlite"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            '[[encrypt]]\ntopics = ["a/#/b"]\n[[keys]]\nid="k"\nkey_env="E"',
            "protection.encrypt[0].topics[0]",
        ),
        ('[[encrypt]]\ntopics = []\n[[keys]]\nid="k"\nkey_env="E"', "protection.encrypt[0].topics"),
        ('[[encrypt]]\ntopics = ["a/#"]', "protection.encrypt"),
        ('[[keys]]\nid = "bad id"\nkey_env = "E"', "protection.keys[0].id"),
        ('[[keys]]\nid = "k1"', "protection.keys[0].key_env"),
        ('[[keys]]\nid = "k1"\nkey_env = "E"\nkey_file = "f"', "protection.keys[0].key_env"),
        ('[[keys]]\nid="k1"\nkey_env="E"\n[[keys]]\nid="k1"\nkey_env="F"', "protection.keys[1].id"),
        ('[[retain]]\ntopics = ["a"]\nretained_ttl_s = 0', "protection.retain[0].retained_ttl_s"),
        ("sweep_interval_s = 0", "protection.sweep_interval_s"),
        ("unknown = 1", "protection.unknown"),
    ],
)
def test_config_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config(text)
    assert exc.value.key == key


def test_keys_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    (tmp_path / "raw.key").write_bytes(raw)
    (tmp_path / "b64.key").write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    monkeypatch.setenv("K_ENV", base64.b64encode(os.urandom(32)).decode())
    c = config(
        """
        [[encrypt]]
        topics = ["records/#"]
        [[keys]]
        id = "a"
        key_file = "raw.key"
        [[keys]]
        id = "b"
        key_file = "b64.key"
        [[keys]]
        id = "c"
        key_env = "K_ENV"
        [[keys]]
        id = "old"
        retired = true
        """
    )
    ring = load_keyring(c, tmp_path)
    shared = ring.set_for(None)
    assert shared is not None and shared.sealing is not None
    assert [k.id for k in shared.keys] == ["a", "b", "c", "old"]
    assert shared.sealing.id == "c"  # the last key that is not retired


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("unset", "K_MISSING is not set"),
        ("short", "AES-256 needs 32"),
        ("junk", "not 32 raw bytes nor base64"),
        ("password", "32 printable characters are not a key"),
    ],
)
def test_bad_key_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, reason: str
) -> None:
    if setup == "short":
        monkeypatch.setenv("K_MISSING", base64.b64encode(b"x" * 16).decode())
    if setup == "password":
        monkeypatch.setenv("K_MISSING", "correct horse battery staple 123")
    if setup == "junk":
        monkeypatch.setenv("K_MISSING", "not base64 at all!!")
    c = config('[[keys]]\nid = "k1"\nkey_env = "K_MISSING"')
    with pytest.raises(ConfigError) as exc:
        load_keyring(c, tmp_path)
    assert exc.value.key == "protection.keys[0]"
    assert reason in exc.value.reason


def test_rotate_and_retire_through_the_file(tmp_path: Path) -> None:
    ring_path = tmp_path / "keys" / "ring.json"
    c = config(f'keyring_file = "{ring_path}"\n[[encrypt]]\ntopics = ["records/#"]')
    assert keys_main("rotate", "--keyring", str(ring_path)) == 0
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600
    p1 = PayloadProtector(c, load_keyring(c))
    old = p1.seal(TOPIC, b"old", Properties.EMPTY)
    assert not isinstance(old, SealFailure)

    assert keys_main("rotate", "--keyring", str(ring_path)) == 0
    p2 = p1.with_keyring(load_keyring(c))
    new = p2.seal(TOPIC, b"new", Properties.EMPTY)
    assert not isinstance(new, SealFailure)
    assert envelope.parse_header(new[0]).key_id == "k2"
    assert p2.open(TOPIC, *old) == (b"old", Properties.EMPTY)

    assert keys_main("retire", "k1", "--keyring", str(ring_path)) == 0
    p3 = p1.with_keyring(load_keyring(c))
    assert p3.open(TOPIC, *old) == OpenFailure(RETIRED_KEY, "k1")
    assert p3.open(TOPIC, *new) == (b"new", Properties.EMPTY)
    assert [(e.id, e.retired) for e in read_keyring_file(ring_path)] == [
        ("k1", True),
        ("k2", False),
    ]


def test_per_org_sets_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring_path = tmp_path / "ring.json"
    rotate(ring_path, "acme")
    rotate(ring_path, "globex")
    rotate(ring_path, "acme")
    assert [(e.org, e.id) for e in read_keyring_file(ring_path)] == [
        ("acme", "k1"),
        ("globex", "k1"),
        ("acme", "k2"),
    ]
    assert keys_main("list", "--keyring", str(ring_path)) == 0
    out = capsys.readouterr().out
    assert "k2" in out and "sealing" in out
    for e in read_keyring_file(ring_path):
        assert e.key not in out  # never the material
    with pytest.raises(KeyringError):
        rotate(ring_path, "acme", "k1")
    with pytest.raises(KeyringError):
        retire(ring_path, "k9", "acme")


def test_retire_last_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring_path = tmp_path / "ring.json"
    rotate(ring_path)
    assert keys_main("retire", "k1", "--keyring", str(ring_path)) == 0
    assert "no active key left" in capsys.readouterr().err
    assert keys_main("retire", "nope", "--keyring", str(ring_path)) == 1


def test_keyring_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    short_key = b'{"format": "mqttgate-keyring/1", "keys": [{"id": "k1", "key": "AAAA"}]}'
    for body in (b"[]", b"{", b'{"format": "other", "keys": []}', short_key):
        bad.write_bytes(body)
        with pytest.raises(KeyringError):
            read_keyring_file(bad)
    c = config(f'keyring_file = "{bad}"')
    with pytest.raises(ConfigError) as exc:
        load_keyring(c)
    assert exc.value.key == "protection.keyring_file"


def test_duplicate_id_between_config_and_file(tmp_path: Path) -> None:
    ring_path = tmp_path / "ring.json"
    rotate(ring_path)
    (tmp_path / "k.key").write_bytes(os.urandom(32))
    c = config(f'keyring_file = "{ring_path}"\n[[keys]]\nid = "k1"\nkey_file = "k.key"')
    with pytest.raises(ConfigError) as exc:
        load_keyring(c, tmp_path)
    assert "twice" in exc.value.reason
