"""MQTT framing attacks: each is refused with the spec's reason code and nothing reaches the
broker (issue 9, item 2). v5 gets a DISCONNECT with the code (after CONNACK) or a CONNACK
with it (for a CONNECT); v3.1.1 has no codes and is closed."""

from __future__ import annotations

import pytest

from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connack, Connect, Pingreq, Pingresp, Puback, Publish
from tests.security.conftest import (
    MAX_PACKET,
    Attacker,
    Witness,
    closed_with,
    marker,
    session,
    user,
)
from tests.support.gateway_thread import GatewayThread

LEVELS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]
MALFORMED, PROTOCOL, TOO_LARGE = 0x81, 0x82, 0x95


def publish_bytes(topic: str, payload: bytes, level: int, qos: int = 1) -> bytes:
    return encode(Publish(topic, payload, qos, packet_id=1 if qos else None), level)


@pytest.mark.parametrize("level", LEVELS)
async def test_remaining_length_over_four_bytes(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send_raw(b"\x30\xff\xff\xff\xff\x01" + m)
        await closed_with(w, level, MALFORMED)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_remaining_length_not_minimal(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    m = marker()
    async with session(gw, level) as w:
        body = b"\x00\x03a/b" + m
        await w.send_raw(bytes([0x30, 0x80 | len(body), 0x00]) + body)
        await closed_with(w, level, MALFORMED)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_oversize_remaining_length(gw: GatewayThread, witness: Witness, level: int) -> None:
    """Refused from the fixed header alone: the body is never buffered."""
    m = marker()
    async with session(gw, level) as w:
        await w.send_raw(publish_bytes(f"sec/{w.sub}/own/big", m + b"x" * MAX_PACKET, level)[:16])
        await closed_with(w, level, TOO_LARGE)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_length_mismatch_topic_longer_than_packet(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    m = marker()
    async with session(gw, level) as w:
        # Remaining length 12, but the topic claims 200 bytes.
        body = b"\x00\xc8" + m[:10]
        await w.send_raw(bytes([0x30, len(body)]) + body)
        await closed_with(w, level, MALFORMED)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_length_mismatch_subscribe_trailing_byte(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    async with session(gw, level) as w:
        flt = f"sec/{w.sub}/own/trail".encode()
        props = b"\x00" if level == 5 else b""
        # A filter and its options, then one stray length byte.
        body = b"\x00\x07" + props + len(flt).to_bytes(2, "big") + flt + b"\x01" + b"\x00"
        await w.send_raw(bytes([0x82, len(body)]) + body)
        await closed_with(w, level, MALFORMED)
    witness.nothing(flt)


@pytest.mark.parametrize("level", LEVELS)
async def test_packets_split_at_every_byte(gw: GatewayThread, witness: Witness, level: int) -> None:
    """The control: a packet arriving one byte per frame is relayed exactly once."""
    m = marker()
    async with session(gw, level) as w:
        data = publish_bytes(f"sec/{w.sub}/own/split", m, level)
        for i in range(len(data)):
            await w.send_raw(data[i : i + 1])
        assert await w.recv() == Puback(1)
    assert witness.delivered(m) == [f"sec/{w.sub}/own/split"]


@pytest.mark.parametrize("level", LEVELS)
async def test_several_packets_per_frame_checked_one_by_one(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    """An allowed and a refused PUBLISH in one frame: each gets its own decision."""
    ok, bad = marker(), marker()
    async with session(gw, level) as w:
        frame = (
            encode(Publish(f"sec/{w.sub}/own/a", ok, 1, packet_id=1), level)
            + encode(Publish(f"sec/{w.sub}/nope", bad, 1, packet_id=2), level)
            + encode(Pingreq(), level)
        )
        await w.send_raw(frame)
        got = [await w.recv(), await w.recv(), await w.recv()]
    assert Puback(2, 0x87 if level == 5 else 0) in got and Pingresp() in got
    assert witness.delivered(ok) == [f"sec/{w.sub}/own/a"]
    witness.nothing(bad)


@pytest.mark.parametrize(
    ("first", "name"),
    [
        (0x82 | 0x01, "subscribe_flags_0011"),
        (0xC1, "pingreq_flags_0001"),
        (0x40 | 0x02, "puback_flags"),
    ],
)
@pytest.mark.parametrize("level", LEVELS)
async def test_reserved_fixed_header_bits(
    gw: GatewayThread, witness: Witness, level: int, first: int, name: str
) -> None:
    async with session(gw, level) as w:
        body = (
            b"\x00\x01"
            if first >> 4 == 4
            else (b"\x00\x01\x00\x01a\x00" if first >> 4 == 8 else b"")
        )
        await w.send_raw(bytes([first, len(body)]) + body)
        await closed_with(w, level, MALFORMED)
    assert witness.new_connections() == 1  # only the session's own connection


@pytest.mark.parametrize("level", LEVELS)
async def test_qos_3(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        data = bytearray(publish_bytes(f"sec/{w.sub}/own/q3", m, level))
        data[0] |= 0x06  # QoS bits 11
        await w.send_raw(bytes(data))
        await closed_with(w, level, MALFORMED)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_packet_id_zero(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        data = bytearray(publish_bytes(f"sec/{w.sub}/own/pid0", m, level))
        topic_len = int.from_bytes(data[2:4], "big")
        data[4 + topic_len : 6 + topic_len] = b"\x00\x00"
        await w.send_raw(bytes(data))
        await closed_with(w, level, PROTOCOL)
    witness.nothing(m)


async def test_duplicate_v5_property(gw: GatewayThread, witness: Witness) -> None:
    """Payload Format Indicator twice (v5 3.3.2.3.2: "more than once is a Protocol Error")."""
    m = marker()
    async with session(gw, 5) as w:
        topic = f"sec/{w.sub}/own/dup".encode()
        props = b"\x01\x00\x01\x00"
        body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01" + bytes([len(props)]) + props + m
        await w.send_raw(bytes([0x32, len(body)]) + body)
        await closed_with(w, 5, PROTOCOL)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_connect_not_first(gw: GatewayThread, witness: Witness, level: int) -> None:
    """A PUBLISH before CONNECT: closed, no CONNACK to v3.1.1, no broker connection."""
    m = marker()
    async with Attacker(gw, level=level) as w:
        await w.send_raw(publish_bytes("sec/x/own/first", m, level, qos=0))
        await w.expect_closed()
    witness.no_upstream_connection()
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_second_connect(gw: GatewayThread, witness: Witness, level: int) -> None:
    """MQTT 5 spec 3.1.0-2 / 3.1.1 spec 3.1.0-2: a second CONNECT is a Protocol Error."""
    other = user()
    async with session(gw, level) as w:
        await w.send(
            Connect(
                "c-" + other,
                protocol_level=level,
                username="u",
                password=gw.idp.token(other).encode(),
            )
        )
        await closed_with(w, level, PROTOCOL)
    witness.nothing(other)


@pytest.mark.parametrize("level", LEVELS)
async def test_malformed_connect_never_opens_upstream(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    token = gw.idp.token(user()).encode()
    data = bytearray(
        encode(Connect("c-x", protocol_level=level, username="u", password=token), level)
    )
    header = 1 + next(i for i in range(1, 5) if data[i] < 0x80)  # fixed header length
    data[header + 6 + 1] |= 0x01  # after "MQTT" and the level: the reserved flag (3.1.2.3)
    async with Attacker(gw, level=level) as w:
        await w.send_raw(bytes(data))
        if level == 5:
            assert await w.recv() == Connack(False, MALFORMED)
        await w.expect_closed()
    witness.no_upstream_connection()
