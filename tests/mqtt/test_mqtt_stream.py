"""The incremental decoder: split packets, coalesced packets, size limits, the first CONNECT."""

from __future__ import annotations

import pytest

from gateway.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    MalformedPacket,
    PacketDecoder,
    PacketTooLarge,
    Pingreq,
    ProtocolError,
    Publish,
    RawPacket,
    Subscribe,
    Subscription,
    UnsupportedProtocolVersion,
    encode,
)

CONNECT_V5 = encode(Connect("c", protocol_level=MQTT_5), MQTT_5)
CONNECT_V311 = encode(Connect("c"), MQTT_311)
STREAM_V5 = [
    CONNECT_V5,
    encode(Subscribe(1, (Subscription("a/#", 1),)), MQTT_5),
    encode(Publish("a/b", b"x" * 300, qos=1, packet_id=2), MQTT_5),  # two-byte length
    encode(Pingreq(), MQTT_5),
    encode(Publish("a/c", b""), MQTT_5),
]


def drain(decoder: PacketDecoder) -> list[RawPacket]:
    out = []
    while (raw := decoder.next_packet()) is not None:
        out.append(raw)
    return out


def test_every_split_point_of_a_stream_gives_the_same_packets() -> None:
    data = b"".join(STREAM_V5)
    for cut in range(len(data) + 1):
        decoder = PacketDecoder(max_packet_size=4096, expect_connect=True)
        decoder.feed(data[:cut])
        got = drain(decoder)
        decoder.feed(data[cut:])
        got += drain(decoder)
        assert [r.raw for r in got] == STREAM_V5, cut
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    decoder = PacketDecoder(max_packet_size=4096, expect_connect=True)
    got: list[RawPacket] = []
    for byte in b"".join(STREAM_V5):
        decoder.feed(bytes((byte,)))
        got += drain(decoder)
    assert [r.raw for r in got] == STREAM_V5
    assert decoder.protocol_level == MQTT_5


def test_three_way_splits_of_a_packet() -> None:
    data = STREAM_V5[2]
    for first in range(1, len(data), 7):
        for second in range(first, len(data), 13):
            decoder = PacketDecoder(max_packet_size=4096, protocol_level=MQTT_5)
            got: list[RawPacket] = []
            for piece in (data[:first], data[first:second], data[second:]):
                decoder.feed(piece)
                got += drain(decoder)
            assert [r.raw for r in got] == [data]


def test_several_packets_in_one_feed() -> None:
    decoder = PacketDecoder(max_packet_size=4096, expect_connect=True)
    decoder.feed(b"".join(STREAM_V5))
    got = drain(decoder)
    assert [type(r.packet) for r in got] == [Connect, Subscribe, Publish, Pingreq, Publish]
    assert [r.raw for r in got] == STREAM_V5


def test_feed_accepts_bytearray_and_memoryview() -> None:
    decoder = PacketDecoder(max_packet_size=4096, protocol_level=MQTT_311)
    data = encode(Publish("t", b"abc"), MQTT_311)
    decoder.feed(bytearray(data[:3]))
    decoder.feed(memoryview(data)[3:])
    raw = decoder.next_packet()
    assert raw is not None
    assert raw.raw == data
    assert type(raw.raw) is bytes


def test_too_large_is_detected_from_the_fixed_header_alone() -> None:
    decoder = PacketDecoder(max_packet_size=1000, protocol_level=MQTT_311)
    data = encode(Publish("t", b"x" * 2000), MQTT_311)
    decoder.feed(data[:4])  # fixed header (1 + 2 bytes) and one body byte
    with pytest.raises(PacketTooLarge, match="PUBLISH of 2006 bytes exceeds the maximum") as err:
        decoder.next_packet()
    assert err.value.reason_code == 0x95


def test_packet_of_exactly_the_maximum_size_passes() -> None:
    data = encode(Publish("t", b"x" * 95), MQTT_311)
    assert len(data) == 100
    decoder = PacketDecoder(max_packet_size=100, protocol_level=MQTT_311)
    decoder.feed(data)
    assert decoder.next_packet() is not None
    decoder = PacketDecoder(max_packet_size=99, protocol_level=MQTT_311)
    decoder.feed(data)
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_remaining_length_over_four_bytes_fails_before_more_bytes_arrive() -> None:
    decoder = PacketDecoder(max_packet_size=1 << 30, protocol_level=MQTT_311)
    decoder.feed(b"\x30\xff\xff\xff\xff")
    with pytest.raises(MalformedPacket, match="remaining length exceeds 4 bytes"):
        decoder.next_packet()


def test_errors_are_sticky() -> None:
    decoder = PacketDecoder(max_packet_size=100, protocol_level=MQTT_311)
    decoder.feed(b"\x00\x00")
    with pytest.raises(MalformedPacket):
        decoder.next_packet()
    decoder.feed(encode(Pingreq(), MQTT_311))
    with pytest.raises(MalformedPacket):
        decoder.next_packet()


def test_first_packet_must_be_connect() -> None:
    decoder = PacketDecoder(max_packet_size=100, expect_connect=True)
    decoder.feed(b"\xc0")  # a PINGREQ's first byte is enough to know
    with pytest.raises(ProtocolError, match="first packet is PINGREQ, not CONNECT"):
        decoder.next_packet()


@pytest.mark.parametrize(("data", "level"), [(CONNECT_V5, 5), (CONNECT_V311, 4)])
def test_connect_sets_the_protocol_level(data: bytes, level: int) -> None:
    decoder = PacketDecoder(max_packet_size=100, expect_connect=True)
    assert decoder.protocol_level is None
    decoder.feed(data)
    assert decoder.next_packet() is not None
    assert decoder.protocol_level == level


def test_a_second_connect_is_decoded_and_keeps_the_level() -> None:
    decoder = PacketDecoder(max_packet_size=100, expect_connect=True)
    decoder.feed(CONNECT_V311 + CONNECT_V5)
    _, second = drain(decoder)
    assert isinstance(second.packet, Connect)
    assert second.packet.protocol_level == MQTT_5
    assert decoder.protocol_level == MQTT_311


def test_protocol_level_is_settable_for_the_upstream_side() -> None:
    decoder = PacketDecoder(max_packet_size=100)
    decoder.feed(b"\x20\x03\x00\x00\x00")
    with pytest.raises(ProtocolError, match="CONNACK before the protocol level is known"):
        decoder.next_packet()
    decoder = PacketDecoder(max_packet_size=100)
    decoder.protocol_level = MQTT_5
    decoder.feed(b"\x20\x03\x00\x00\x00")
    assert decoder.next_packet() is not None


@pytest.mark.parametrize(
    ("name", "level"),
    [(b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 4), (b"MQTX", 4), (b"mqtt", 5)],
)
def test_unsupported_protocol_versions(name: bytes, level: int) -> None:
    body = len(name).to_bytes(2, "big") + name + bytes((level,)) + b"\x02\x00\x3c\x00\x01c"
    decoder = PacketDecoder(max_packet_size=100, expect_connect=True)
    decoder.feed(bytes((0x10, len(body))) + body)
    with pytest.raises(UnsupportedProtocolVersion, match="is not supported") as err:
        decoder.next_packet()
    assert err.value.reason_code == 0x84
    assert err.value.protocol_level == level


def test_zero_copy_when_a_feed_holds_exactly_one_packet() -> None:
    data = encode(Publish("t", b"x" * 100), MQTT_311)
    decoder = PacketDecoder(max_packet_size=1000, protocol_level=MQTT_311)
    decoder.feed(data)
    raw = decoder.next_packet()
    assert raw is not None
    assert raw.raw is data


def test_a_large_packet_in_many_pieces_is_linear() -> None:
    data = encode(Publish("t", b"x" * (1 << 20)), MQTT_311)
    decoder = PacketDecoder(max_packet_size=2 << 20, protocol_level=MQTT_311)
    for start in range(0, len(data), 4096):
        decoder.feed(data[start : start + 4096])
        if start + 4096 < len(data):
            assert decoder.next_packet() is None
    raw = decoder.next_packet()
    assert raw is not None
    assert raw.raw == data


def test_read_bytes_are_let_go() -> None:
    """Issue 7 (memory): a decoder that has returned every packet holds no bytes, so an
    idle connection does not keep its last read (a CONNECT with a token, or 64 KiB)."""
    decoder = PacketDecoder(max_packet_size=1 << 20, expect_connect=True)
    decoder.feed(b"".join(STREAM_V5))
    assert len(drain(decoder)) == len(STREAM_V5)
    assert decoder.buffered == 0 and decoder._buf == b""
    # A packet split across feeds still decodes after the release.
    decoder.feed(STREAM_V5[2][:3])
    assert decoder.next_packet() is None and decoder.buffered == 3
    decoder.feed(STREAM_V5[2][3:])
    assert [r.raw for r in drain(decoder)] == [STREAM_V5[2]]
