"""The commands fit beside `mqttgate keys dev`; junk never raises; MQTT 5 expiry on Mosquitto."""

from __future__ import annotations

import argparse
import os
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from gateway.auth import cli as auth_cli
from gateway.cli import _subcommands
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection import envelope
from gateway.protection.cli import add_protection_commands, add_purge_command
from gateway.protection.config import EncryptConfig, ProtectionConfig, RetainConfig
from gateway.protection.keyring import Key, Keyring, read_keyring_file
from gateway.protection.protector import OpenFailure, PayloadProtector
from gateway.protection.retention import RetentionPolicy
from tests.protection.conftest import retained
from tests.support.mosquitto import Mosquitto


def test_commands_register_beside_keys_dev(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="mqttgate")
    sub = parser.add_subparsers(dest="command")
    auth_cli.add_commands(sub)
    add_protection_commands(_subcommands(sub.choices["keys"]))
    add_purge_command(sub)
    ring = tmp_path / "ring.json"
    args = parser.parse_args(["keys", "rotate", "--keyring", str(ring), "--org", "acme"])
    assert args.func(args) == 0
    assert [(e.org, e.id) for e in read_keyring_file(ring)] == [("acme", "k1")]
    assert parser.parse_args(["keys", "dev", "--out", str(tmp_path)]).func is not None
    assert parser.parse_args(["purge", "--broker", "mqtt://h", "#"]).apply is False


PROTECTOR = PayloadProtector(
    ProtectionConfig(encrypt=(EncryptConfig(("#",)),), keyring_file="-"),
    Keyring.of([Key.from_material("k1", None, os.urandom(32), False)]),
)


@given(st.binary(min_size=1, max_size=200))
@settings(max_examples=300)
def test_junk_never_raises(data: bytes) -> None:
    assert isinstance(PROTECTOR.open("t", data, Properties.EMPTY), OpenFailure)


@given(st.integers(0, 70), st.binary(max_size=60))
@settings(max_examples=300)
def test_junk_behind_a_valid_header_never_raises(n: int, rest: bytes) -> None:
    data = envelope.MAGIC + bytes((1, n)) + b"k" * n + rest
    assert isinstance(PROTECTOR.open("t", data, Properties.EMPTY), OpenFailure)


def test_v5_retained_publish_expires_at_the_broker(own_broker: Mosquitto) -> None:
    """The Message Expiry Interval expiry_for_publish sets makes Mosquitto drop the message."""
    policy = RetentionPolicy([RetainConfig(("sensors/#",), 1)])
    ours = policy.expiry_for_publish(
        "sensors/1", True, Properties([(PropertyId.MESSAGE_EXPIRY_INTERVAL, 3600)]), 5
    )
    expiry = ours.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
    assert expiry == 1
    props = PahoProperties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = expiry
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)  # type: ignore[attr-defined]
    connected: queue.Queue[bool] = queue.Queue()
    c.on_connect = lambda *a: connected.put(True)
    c.connect("127.0.0.1", own_broker.port)
    c.loop_start()
    try:
        connected.get(timeout=5)
        c.publish("sensors/1", b"21.5", 1, True, props).wait_for_publish(5)
        c.publish("sensors/2", b"kept", 1, True).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert retained(own_broker.port, settle=0.2)["sensors/1"] == b"21.5"
    time.sleep(1.6)
    assert retained(own_broker.port, settle=0.2) == {"sensors/2": b"kept"}
