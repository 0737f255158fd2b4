"""Sealing and opening payloads: round trip, tampering, replay, keys, rotation, properties."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection import envelope
from gateway.protection.config import EncryptConfig, ProtectionConfig
from gateway.protection.keyring import Key, Keyring
from gateway.protection.protector import (
    NO_KEY,
    NOT_ENVELOPE,
    RETIRED_KEY,
    TAMPERED,
    UNKNOWN_KEY,
    UNSUPPORTED_VERSION,
    WRONG_TOPIC,
    OpenFailure,
    PayloadProtector,
    SealFailure,
)

TOPIC = "orgs/acme/records/7"
CONFIG = ProtectionConfig(encrypt=(EncryptConfig(("orgs/+/records/#",)),), keyring_file="x")
PFI = PropertyId.PAYLOAD_FORMAT_INDICATOR
CT = PropertyId.CONTENT_TYPE


def key(key_id: str, org: str | None = None, retired: bool = False) -> Key:
    return Key.from_material(key_id, org, os.urandom(32), retired)


def protector(*keys: Key, require_org_keys: bool = False) -> PayloadProtector:
    return PayloadProtector(CONFIG, Keyring.of(keys, require_org_keys))


def sealed(p: PayloadProtector, payload: bytes, props: Properties = Properties.EMPTY,
           topic: str = TOPIC, org: str | None = None) -> tuple[bytes, Properties]:  # fmt: skip
    out = p.seal(topic, payload, props, org)
    assert not isinstance(out, SealFailure)
    return out


def test_applies_only_to_configured_filters() -> None:
    p = protector(key("k1"))
    assert p.applies("orgs/acme/records/7")
    assert p.applies("orgs/acme/records")  # '#' matches the parent level (MQTT 4.7.1.2)
    assert not p.applies("orgs/acme/other")
    assert not p.applies("$SYS/orgs/acme/records")
    assert not p.applies("bad/+/name")


@given(payload=st.binary(min_size=1, max_size=300), org=st.sampled_from([None, "acme"]))
@settings(max_examples=50)
def test_round_trip(payload: bytes, org: str | None) -> None:
    p = protector(key("k1"), key("k1", "acme"))
    data, props = sealed(p, payload, org=org)
    body = data[envelope.parse_header(data).body_offset :]
    assert payload not in body or len(payload) < 8  # the body is random-looking
    assert data.startswith(envelope.MAGIC)
    assert p.open(TOPIC, data, props, org) == (payload, Properties.EMPTY)


def test_fresh_nonce_per_message() -> None:
    p = protector(key("k1"))
    a, _ = sealed(p, b"same")
    b, _ = sealed(p, b"same")
    assert a != b


def test_every_flipped_byte_fails() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"x" * 64)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            out = p.open(TOPIC, bytes(bad), props)
            assert isinstance(out, OpenFailure), (i, bit)


def test_tampered_ciphertext_is_reported_as_tampered() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"secret value")
    bad = data[:-1] + bytes((data[-1] ^ 1,))
    assert p.open(TOPIC, bad, props) == OpenFailure(TAMPERED, "k1")
    bad = data[:-20] + bytes((data[-20] ^ 1,)) + data[-19:]
    assert p.open(TOPIC, bad, props) == OpenFailure(TAMPERED, "k1")


def test_truncated_envelopes_fail() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"hello")
    for n in range(len(data)):
        assert isinstance(p.open(TOPIC, data[:n] or b"\xff", props), OpenFailure)


def test_replay_onto_another_topic_fails() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"hello")
    assert p.open("orgs/acme/records/8", data, props) == OpenFailure(WRONG_TOPIC, "k1")


def test_replay_into_another_org_fails_even_with_the_shared_set() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"hello", org="acme")
    assert p.open(TOPIC, data, props, "globex") == OpenFailure(WRONG_TOPIC, "k1")
    assert isinstance(p.open(TOPIC, data, props, None), OpenFailure)


def test_per_org_keys_do_not_open_each_other() -> None:
    p = protector(key("k1", "acme"), key("k1", "globex"))
    data, props = sealed(p, b"hello", org="acme")
    assert isinstance(p.open(TOPIC, data, props, "globex"), OpenFailure)
    assert p.open(TOPIC, data, props, "acme") == (b"hello", props)


def test_not_an_envelope() -> None:
    p = protector(key("k1"))
    for junk in (b"plain text", b'{"a": 1}', b"\xffMQ", os.urandom(80)):
        assert p.open(TOPIC, junk, Properties.EMPTY) == OpenFailure(NOT_ENVELOPE)


def test_unsupported_version() -> None:
    p = protector(key("k1"))
    data, props = sealed(p, b"hello")
    bad = data[:4] + b"\x02" + data[5:]
    assert p.open(TOPIC, bad, props) == OpenFailure(UNSUPPORTED_VERSION)


def test_unknown_key() -> None:
    data, props = sealed(protector(key("k1")), b"hello")
    assert protector(key("k2")).open(TOPIC, data, props) == OpenFailure(UNKNOWN_KEY, "k1")


def test_same_id_different_material_is_tampered_or_wrong_topic() -> None:
    data, props = sealed(protector(key("k1")), b"hello")
    out = protector(key("k1")).open(TOPIC, data, props)
    assert isinstance(out, OpenFailure)
    assert out.reason in (WRONG_TOPIC, TAMPERED)


def test_rotation_old_messages_still_open_new_use_newest() -> None:
    k1, k2 = key("k1"), key("k2")
    old, props = sealed(protector(k1), b"old")
    rotated = protector(k1, k2)
    new, _ = sealed(rotated, b"new")
    assert envelope.parse_header(new).key_id == "k2"
    assert rotated.open(TOPIC, old, props) == (b"old", props)
    assert rotated.open(TOPIC, new, props) == (b"new", props)


def test_retired_key_neither_seals_nor_opens() -> None:
    k1 = key("k1")
    old, props = sealed(protector(k1), b"old")
    retired = Key(k1.id, None, True, k1.aead, k1.tag_key)
    p = protector(retired, key("k2"))
    assert p.open(TOPIC, old, props) == OpenFailure(RETIRED_KEY, "k1")
    new, _ = sealed(p, b"new")
    assert envelope.parse_header(new).key_id == "k2"


def test_no_active_key_refuses_to_seal() -> None:
    assert protector(key("k1", retired=True)).seal(TOPIC, b"x", Properties.EMPTY) == SealFailure(
        NO_KEY
    )
    assert protector().seal(TOPIC, b"x", Properties.EMPTY) == SealFailure(NO_KEY)


def test_require_org_keys() -> None:
    shared = protector(key("k1"))
    assert not isinstance(shared.seal(TOPIC, b"x", Properties.EMPTY, "acme"), SealFailure)
    strict = protector(key("k1"), require_org_keys=True)
    assert strict.seal(TOPIC, b"x", Properties.EMPTY, "acme") == SealFailure(NO_KEY)
    data, props = sealed(shared, b"x", org="acme")
    assert strict.open(TOPIC, data, props, "acme") == OpenFailure(UNKNOWN_KEY, "k1")


@pytest.mark.parametrize("pfi", [None, 0, 1])
@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain; ü"])
def test_pfi_and_content_type_travel_inside(pfi: int | None, content_type: str | None) -> None:
    p = protector(key("k1"))
    items: list[tuple[PropertyId, int | str | tuple[str, str]]] = [
        (PropertyId.USER_PROPERTY, ("a", "b"))
    ]
    if pfi is not None:
        items.append((PFI, pfi))
    if content_type is not None:
        items.append((CT, content_type))
    items.append((PropertyId.MESSAGE_EXPIRY_INTERVAL, 60))
    props = Properties(items)
    data, up = sealed(p, "héllo".encode(), props)
    assert PFI not in up and CT not in up  # the broker must not see "UTF-8" nor the type
    assert up.get_all(PropertyId.USER_PROPERTY) == (("a", "b"),)
    assert up.get(PropertyId.MESSAGE_EXPIRY_INTERVAL) == 60
    out = p.open(TOPIC, data, up)
    assert not isinstance(out, OpenFailure)
    payload, restored = out
    assert payload == "héllo".encode()
    assert restored.get(PFI) == pfi
    assert restored.get(CT) == content_type
    assert restored.get_all(PropertyId.USER_PROPERTY) == (("a", "b"),)


def test_broker_side_pfi_is_replaced_by_the_sealed_one() -> None:
    p = protector(key("k1"))
    data, up = sealed(p, b"\x00\x01binary")
    forged = up.with_(PFI, 1).with_(CT, "text/forged")
    out = p.open(TOPIC, data, forged)
    assert not isinstance(out, OpenFailure)
    assert PFI not in out[1] and CT not in out[1]


def test_empty_payload_passes_both_ways() -> None:
    """An empty retained payload clears a retained message (MQTT 3.3.1.3)."""
    p = protector(key("k1"))
    assert p.seal(TOPIC, b"", Properties.EMPTY) == (b"", Properties.EMPTY)
    assert p.open(TOPIC, b"", Properties.EMPTY) == (b"", Properties.EMPTY)


def test_with_keyring_swaps_keys() -> None:
    k1, k2 = key("k1"), key("k2")
    p = protector(k1)
    q = p.with_keyring(Keyring.of([k1, k2]))
    data, _ = sealed(q, b"x")
    assert envelope.parse_header(data).key_id == "k2"
    assert q.applies(TOPIC)


def test_overhead_is_small() -> None:
    data, _ = sealed(protector(key("k1")), b"x" * 64)
    assert len(data) - 64 == 4 + 1 + 1 + 2 + 4 + 12 + 1 + 16
