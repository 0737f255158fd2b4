"""DataProtection on PUBLISH packets: what the session sends upstream and delivers."""

from __future__ import annotations

import os

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import Publish
from gateway.mqtt.properties import Properties
from gateway.protection import envelope
from gateway.protection.config import EncryptConfig, ProtectionConfig, RetainConfig
from gateway.protection.keyring import Key, Keyring
from gateway.protection.protector import NO_KEY, NOT_ENVELOPE, OpenFailure, SealFailure
from gateway.protection.publish import DataProtection, Upstream

EXPIRY = PropertyId.MESSAGE_EXPIRY_INTERVAL
PFI = PropertyId.PAYLOAD_FORMAT_INDICATOR
CONFIG = ProtectionConfig(
    encrypt=(EncryptConfig(("org/+/records/#",)),),
    keyring_file="-",
    retain=(RetainConfig(("org/+/records/#", "org/+/sensors/#"), 60),),
)
KEY = Key.from_material("k1", "acme", os.urandom(32), False)
DP = DataProtection(CONFIG, Keyring.of([KEY]))


def up(publish: Publish, level: int = 5, org: str | None = "acme") -> Upstream:
    out = DP.to_upstream(publish, org, level)
    assert isinstance(out, Upstream)
    return out


def test_encrypted_retained_v5_round_trip() -> None:
    p = Publish(
        "org/acme/records/1", b"plain", qos=1, retain=True, packet_id=3,
        properties=Properties([(PFI, 1), (EXPIRY, 3600)]),
    )  # fmt: skip
    u = up(p)
    assert u.retained_ttl_s == 60 and not u.clears_retained
    assert u.publish.payload.startswith(envelope.MAGIC)
    assert u.publish.properties.get(EXPIRY) == 60  # lowered to the TTL
    assert PFI not in u.publish.properties
    assert (u.publish.qos, u.publish.retain, u.publish.packet_id) == (1, True, 3)
    back = DP.to_client(u.publish, "acme")
    assert isinstance(back, Publish)
    assert back.payload == b"plain" and back.properties.get(PFI) == 1


def test_v311_retained_gets_a_sweeper_ttl_and_no_properties() -> None:
    u = up(Publish("org/acme/sensors/1", b"21", retain=True), level=4)
    assert u.publish == Publish("org/acme/sensors/1", b"21", retain=True)  # not encrypted
    assert u.retained_ttl_s == 60


def test_not_retained_no_ttl_and_clear_is_forgotten() -> None:
    assert up(Publish("org/acme/sensors/1", b"21")).retained_ttl_s is None
    clear = up(Publish("org/acme/records/1", b"", retain=True))
    assert clear.clears_retained and clear.publish.payload == b""
    assert clear.retained_ttl_s is None


def test_other_topics_pass_untouched() -> None:
    p = Publish("org/acme/chat", b"hi", properties=Properties([(PFI, 1)]))
    assert up(p).publish is p
    assert DP.to_client(p, "acme") is p


def test_failures_are_values() -> None:
    assert DP.to_upstream(Publish("org/globex/records/1", b"x"), "globex", 5) == SealFailure(NO_KEY)
    assert DP.to_client(Publish("org/acme/records/1", b"plaintext!"), "acme") == OpenFailure(
        NOT_ENVELOPE
    )


def test_with_keyring_rotates() -> None:
    k2 = Key.from_material("k2", "acme", os.urandom(32), False)
    rotated = DP.with_keyring(Keyring.of([KEY, k2]))
    old = up(Publish("org/acme/records/1", b"old"))
    new = rotated.to_upstream(Publish("org/acme/records/1", b"new"), "acme", 5)
    assert isinstance(new, Upstream)
    assert envelope.parse_header(new.publish.payload).key_id == "k2"
    opened = rotated.to_client(old.publish, "acme")
    assert isinstance(opened, Publish) and opened.payload == b"old"
