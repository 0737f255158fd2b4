"""Against a real Mosquitto: the broker sees only ciphertext; purge clears exactly a filter."""

from __future__ import annotations

import argparse
import asyncio
import os

import pytest

from gateway.mqtt.properties import Properties
from gateway.protection.broker import BrokerParams
from gateway.protection.cli import add_purge_command
from gateway.protection.config import EncryptConfig, ProtectionConfig
from gateway.protection.keyring import Key, Keyring
from gateway.protection.protector import TAMPERED, WRONG_TOPIC, OpenFailure, PayloadProtector
from gateway.protection.purge import purge, scoped_filter
from tests.protection.conftest import retained
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

SECRET = b'{"patient": "Jane Roe", "diagnosis": "confidential"}'


def make_protector() -> PayloadProtector:
    config = ProtectionConfig(encrypt=(EncryptConfig(("records/#",)),), keyring_file="unused")
    return PayloadProtector(
        config, Keyring.of([Key.from_material("k1", None, os.urandom(32), False)])
    )


def test_broker_and_its_subscribers_see_only_ciphertext(own_broker: Mosquitto) -> None:
    p = make_protector()
    out = p.seal("records/1", SECRET, Properties.EMPTY)
    assert not isinstance(out, OpenFailure) and isinstance(out, tuple)
    sealed, props = out
    with BrokerSpy(own_broker.port) as spy:
        spy.publish("records/1", sealed, retain=True)
        seen = spy.seen()
    assert [t for t, _, _ in seen] == ["records/1"]
    for _, payload, _ in seen:
        assert b"Jane" not in payload and b"confidential" not in payload
    stored = retained(own_broker.port)["records/1"]
    assert b"Jane" not in stored
    assert p.open("records/1", stored, props) == (SECRET, Properties.EMPTY)


def test_foreign_and_tampered_messages_on_the_broker_fail_to_open(own_broker: Mosquitto) -> None:
    p = make_protector()
    out = p.seal("records/1", SECRET, Properties.EMPTY)
    assert isinstance(out, tuple)
    sealed = out[0]
    for3 = p.seal("records/3", SECRET, Properties.EMPTY)
    assert isinstance(for3, tuple)
    tampered = for3[0][:-1] + bytes((for3[0][-1] ^ 0x40,))
    with BrokerSpy(own_broker.port) as spy:
        spy.publish("records/2", sealed, retain=True)  # replayed onto another topic
        spy.publish("records/3", tampered, retain=True)
        spy.publish("records/4", b"plain text from a direct client", retain=True)
    stored = retained(own_broker.port)
    assert p.open("records/2", stored["records/2"], Properties.EMPTY) == OpenFailure(
        WRONG_TOPIC, "k1"
    )
    assert p.open("records/3", stored["records/3"], Properties.EMPTY) == OpenFailure(TAMPERED, "k1")
    assert p.open("records/4", stored["records/4"], Properties.EMPTY) == OpenFailure("not_envelope")


def seed(port: int, topics: list[str]) -> None:
    with BrokerSpy(port, "$none/never") as spy:
        for t in topics:
            spy.publish(t, f"value of {t}".encode(), retain=True)
        spy.publish("live/only", b"not retained")


TOPICS = ["a/x/1", "a/x/2/deep", "a/y/1", "b/1", "a/x"]


async def test_purge_dry_run_then_apply(own_broker: Mosquitto, service: BrokerParams) -> None:
    seed(own_broker.port, TOPICS)
    dry = await purge(service, "a/x/#", apply=False, idle_s=0.3)
    assert sorted(dry.topics) == ["a/x", "a/x/1", "a/x/2/deep"]
    assert not dry.cleared
    assert len(await asyncio.to_thread(retained, own_broker.port)) == len(TOPICS)

    done = await purge(service, "a/x/#", idle_s=0.3)
    assert sorted(done.topics) == sorted(dry.topics) and done.cleared
    left = await asyncio.to_thread(retained, own_broker.port)
    assert sorted(left) == ["a/y/1", "b/1"]


async def test_purge_within_an_org_mount(own_broker: Mosquitto, service: BrokerParams) -> None:
    seed(own_broker.port, ["org/acme/r/1", "org/acme/s", "org/globex/r/1", "org/acmex/r/1"])
    result = await purge(service, "#", "acme", mount="org/{org}/", idle_s=0.3)
    assert result.topic_filter == "org/acme/#"
    assert sorted(result.topics) == ["org/acme/r/1", "org/acme/s"]
    left = await asyncio.to_thread(retained, own_broker.port)
    assert sorted(left) == ["org/acmex/r/1", "org/globex/r/1"]


def test_scoped_filter_refuses_unusable_orgs() -> None:
    assert scoped_filter("a/#", None, None) == "a/#"
    for org in (None, "", "+", "#", "a/b", "$sys"):
        with pytest.raises(ValueError):
            scoped_filter("#", org, "org/{org}/")


def run_purge_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mqttgate")
    add_purge_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["purge", *argv])
    code: int = args.func(args)
    return code


def test_purge_command(own_broker: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    seed(own_broker.port, TOPICS)
    url = f"mqtt://127.0.0.1:{own_broker.port}"
    assert run_purge_cli("--broker", url, "--idle", "0.3", "a/y/#") == 0
    out = capsys.readouterr().out
    assert "would clear a/y/1" in out and "--apply" in out
    assert "a/y/1" in retained(own_broker.port)
    assert run_purge_cli("--broker", url, "--idle", "0.3", "--apply", "a/y/#") == 0
    assert "cleared a/y/1" in capsys.readouterr().out
    assert "a/y/1" not in retained(own_broker.port)
    assert run_purge_cli("--broker", url, "a/#/b") == 2
    assert run_purge_cli("--broker", "http://x", "a/#") == 2
