"""Byte-level decoding and encoding of every packet type, from hand-written bytes.

The CONNECT variable headers are the examples of v5 3.1.2.11 (Figure 3-8) and v3.1.1
3.1.2.10 (Figure 3.6); the rest are written field by field from chapter 3 of each spec.
"""

from __future__ import annotations

import pytest

from gateway.mqtt import (
    MQTT_5,
    MQTT_31,
    MQTT_311,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    Pingreq,
    Pingresp,
    Properties,
    PropertyId,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    decode_packet,
    encode,
)

P = PropertyId


def s(text: str) -> bytes:
    """A UTF-8 Encoded String: two-byte length and the bytes (v5 1.5.4)."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def frame(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


# v5 Figure 3-8: name "MQTT", version 5, flags 0b11001110 (user name, password, Will QoS 1,
# Will Flag, Clean Start), Keep Alive 10, properties: Session Expiry Interval 10.
V5_CONNECT_VARIABLE_HEADER = (
    b"\x00\x04MQTT" + b"\x05" + b"\xce" + b"\x00\x0a" + b"\x05" + b"\x11\x00\x00\x00\x0a"
)
V5_CONNECT = frame(
    0x10,
    V5_CONNECT_VARIABLE_HEADER
    + s("client-1")
    + b"\x05\x18\x00\x00\x00\x1e"  # Will Properties: Will Delay Interval 30
    + s("clients/client-1/status")
    + b"\x00\x07offline"
    + s("alice")
    + b"\x00\x06secret",
)
# v3.1.1 Figure 3.6: the same flags, level 4, no properties.
V311_CONNECT = frame(
    0x10,
    b"\x00\x04MQTT\x04\xce\x00\x0a"
    + s("client-1")
    + s("clients/client-1/status")
    + b"\x00\x07offline"
    + s("alice")
    + b"\x00\x06secret",
)

CASES: list[tuple[str, int, bytes, Packet]] = [
    (
        "connect-v5-spec-example",
        MQTT_5,
        V5_CONNECT,
        Connect(
            client_id="client-1",
            protocol_level=5,
            clean_start=True,
            keep_alive=10,
            username="alice",
            password=b"secret",
            will=Will(
                "clients/client-1/status",
                b"offline",
                qos=1,
                retain=False,
                properties=Properties([(P.WILL_DELAY_INTERVAL, 30)]),
            ),
            properties=Properties([(P.SESSION_EXPIRY_INTERVAL, 10)]),
        ),
    ),
    (
        "connect-v311-spec-example",
        MQTT_311,
        V311_CONNECT,
        Connect(
            client_id="client-1",
            keep_alive=10,
            username="alice",
            password=b"secret",
            will=Will("clients/client-1/status", b"offline", qos=1),
        ),
    ),
    (
        "connect-v31-mqisdp",
        MQTT_31,
        frame(0x10, b"\x00\x06MQIsdp\x03\x02\x00\x3c" + s("old")),
        Connect(client_id="old", protocol_level=3, protocol_name="MQIsdp"),
    ),
    (
        "connect-v5-password-without-user-name",
        MQTT_5,
        frame(0x10, b"\x00\x04MQTT\x05\x40\x00\x00\x00" + s("") + b"\x00\x02pw"),
        Connect(client_id="", protocol_level=5, clean_start=False, keep_alive=0, password=b"pw"),
    ),
    ("connack-v311", MQTT_311, b"\x20\x02\x01\x00", Connack(session_present=True)),
    ("connack-v311-refused", MQTT_311, b"\x20\x02\x00\x05", Connack(reason_code=5)),
    (
        "connack-v5-properties",
        MQTT_5,
        frame(0x20, b"\x00\x00" + b"\x07" + b"\x24\x01" + b"\x21\x00\x0a" + b"\x25\x00"),
        Connack(
            properties=Properties(
                [(P.MAXIMUM_QOS, 1), (P.RECEIVE_MAXIMUM, 10), (P.RETAIN_AVAILABLE, 0)]
            )
        ),
    ),
    ("connack-v5-refused", MQTT_5, b"\x20\x03\x00\x87\x00", Connack(reason_code=0x87)),
    (
        "publish-v311-qos0",
        MQTT_311,
        frame(0x30, s("a/b") + b"hello"),
        Publish("a/b", b"hello"),
    ),
    (
        "publish-v311-qos2-dup-retain",
        MQTT_311,
        frame(0x3D, s("a/b") + b"\x12\x34" + b"x"),
        Publish("a/b", b"x", qos=2, retain=True, dup=True, packet_id=0x1234),
    ),
    (
        "publish-v5-qos1-properties",
        MQTT_5,
        frame(
            0x32,
            s("a/b")
            + b"\x00\x01"
            + b"\x0f"
            + b"\x01\x01"  # Payload Format Indicator 1
            + b"\x02\x00\x00\x00\x3c"  # Message Expiry Interval 60
            + b"\x0b\x81\x01"  # Subscription Identifier 129 (a two-byte VBI)
            + b"\x0b\x02"  # a second Subscription Identifier (a PUBLISH may repeat it)
            + b"\x23\x00\x01"  # Topic Alias 1
            + b"{}",
        ),
        Publish(
            "a/b",
            b"{}",
            qos=1,
            packet_id=1,
            properties=Properties(
                [
                    (P.PAYLOAD_FORMAT_INDICATOR, 1),
                    (P.MESSAGE_EXPIRY_INTERVAL, 60),
                    (P.SUBSCRIPTION_IDENTIFIER, 129),
                    (P.SUBSCRIPTION_IDENTIFIER, 2),
                    (P.TOPIC_ALIAS, 1),
                ]
            ),
        ),
    ),
    (
        "publish-v5-empty-topic-with-alias",
        MQTT_5,
        frame(0x30, s("") + b"\x03\x23\x00\x07" + b"p"),
        Publish("", b"p", properties=Properties([(P.TOPIC_ALIAS, 7)])),
    ),
    ("puback-v311", MQTT_311, b"\x40\x02\x00\x07", Puback(7)),
    ("puback-v5-short", MQTT_5, b"\x40\x02\x00\x07", Puback(7)),
    ("puback-v5-reason", MQTT_5, b"\x40\x03\x00\x07\x10", Puback(7, 0x10)),
    (
        "puback-v5-reason-string",
        MQTT_5,
        frame(0x40, b"\x00\x07\x87" + b"\x06\x1f" + s("nop")),
        Puback(7, 0x87, Properties([(P.REASON_STRING, "nop")])),
    ),
    ("pubrec", MQTT_311, b"\x50\x02\xff\xff", Pubrec(0xFFFF)),
    ("pubrel", MQTT_311, b"\x62\x02\x00\x01", Pubrel(1)),
    ("pubrel-v5-not-found", MQTT_5, b"\x62\x03\x00\x01\x92", Pubrel(1, 0x92)),
    ("pubcomp", MQTT_5, b"\x70\x02\x00\x01", Pubcomp(1)),
    (
        "subscribe-v311",
        MQTT_311,
        frame(0x82, b"\x00\x0a" + s("a/+") + b"\x01" + s("b/#") + b"\x02"),
        Subscribe(10, (Subscription("a/+", 1), Subscription("b/#", 2))),
    ),
    (
        "subscribe-v5-options",
        MQTT_5,
        # options 0b00101101: Retain Handling 2, Retain As Published, No Local, QoS 1
        frame(0x82, b"\x00\x0a" + b"\x02\x0b\x05" + s("a/+") + b"\x2d"),
        Subscribe(
            10,
            (Subscription("a/+", 1, no_local=True, retain_as_published=True, retain_handling=2),),
            Properties([(P.SUBSCRIPTION_IDENTIFIER, 5)]),
        ),
    ),
    (
        "subscribe-v5-shared",
        MQTT_5,
        frame(0x82, b"\x00\x01\x00" + s("$share/g/a/#") + b"\x00"),
        Subscribe(1, (Subscription("$share/g/a/#"),)),
    ),
    ("suback-v311", MQTT_311, b"\x90\x04\x00\x0a\x01\x80", Suback(10, (1, 0x80))),
    (
        "suback-v5",
        MQTT_5,
        b"\x90\x06\x00\x0a\x00\x02\x87\xa2",
        Suback(10, (2, 0x87, 0xA2)),
    ),
    (
        "unsubscribe-v311",
        MQTT_311,
        frame(0xA2, b"\x00\x0b" + s("a/+") + s("b")),
        Unsubscribe(11, ("a/+", "b")),
    ),
    (
        "unsubscribe-v5",
        MQTT_5,
        frame(0xA2, b"\x00\x0b\x00" + s("a")),
        Unsubscribe(11, ("a",)),
    ),
    ("unsuback-v311", MQTT_311, b"\xb0\x02\x00\x0b", Unsuback(11)),
    ("unsuback-v5", MQTT_5, b"\xb0\x05\x00\x0b\x00\x00\x11", Unsuback(11, (0, 0x11))),
    ("pingreq", MQTT_311, b"\xc0\x00", Pingreq()),
    ("pingresp", MQTT_5, b"\xd0\x00", Pingresp()),
    ("disconnect-v311", MQTT_311, b"\xe0\x00", Disconnect()),
    ("disconnect-v5-short", MQTT_5, b"\xe0\x00", Disconnect()),
    (
        "disconnect-v5-shutting-down",
        MQTT_5,
        frame(0xE0, b"\x8b" + b"\x05\x11\x00\x00\x00\x00"),
        Disconnect(0x8B, Properties([(P.SESSION_EXPIRY_INTERVAL, 0)])),
    ),
    ("auth-v5-short", MQTT_5, b"\xf0\x00", Auth()),
    (
        "auth-v5-continue",
        MQTT_5,
        frame(0xF0, b"\x18" + b"\x0d" + b"\x15" + s("SCRAM") + b"\x16\x00\x02\x01\x02"),
        Auth(
            0x18,
            Properties([(P.AUTHENTICATION_METHOD, "SCRAM"), (P.AUTHENTICATION_DATA, b"\x01\x02")]),
        ),
    ),
]

# Packets whose bytes above are not what the encoder writes (it omits what may be omitted).
NOT_CANONICAL = {"connack-v5-refused"}


@pytest.mark.parametrize(
    ("level", "data", "packet"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decode_packet(level: int, data: bytes, packet: Packet) -> None:
    assert decode_packet(data, level) == packet


@pytest.mark.parametrize(
    ("level", "data", "packet"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decoder_returns_packet_and_its_exact_bytes(
    level: int, data: bytes, packet: Packet
) -> None:
    decoder = PacketDecoder(max_packet_size=1024, protocol_level=level)
    decoder.feed(data)
    raw = decoder.next_packet()
    assert raw is not None
    assert raw.packet == packet
    assert raw.raw == data
    assert decoder.next_packet() is None
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("level", "data", "packet"),
    [c[1:] for c in CASES if c[0] not in NOT_CANONICAL],
    ids=[c[0] for c in CASES if c[0] not in NOT_CANONICAL],
)
def test_encode(level: int, data: bytes, packet: Packet) -> None:
    assert encode(packet, level) == data


def test_connack_v5_refused_encodes_an_empty_property_length() -> None:
    assert encode(Connack(reason_code=0x87), MQTT_5) == b"\x20\x03\x00\x87\x00"


def test_v311_encoding_drops_v5_only_fields() -> None:
    props = Properties([(P.REASON_STRING, "why")])
    assert encode(Puback(7, 0x10, props), MQTT_311) == b"\x40\x02\x00\x07"
    assert encode(Disconnect(0x8B), MQTT_311) == b"\xe0\x00"
    assert encode(Unsuback(11, (0x11,)), MQTT_311) == b"\xb0\x02\x00\x0b"
    sub = Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=2)
    assert encode(Subscribe(1, (sub,)), MQTT_311) == frame(0x82, b"\x00\x01" + s("a") + b"\x01")
    publish = Publish("t", b"", properties=Properties([(P.CONTENT_TYPE, "x")]))
    assert encode(publish, MQTT_311) == frame(0x30, s("t"))


def test_v311_suback_failure_codes_become_0x80() -> None:
    assert encode(Suback(1, (0, 0x87, 0x8F)), MQTT_311) == b"\x90\x05\x00\x01\x00\x80\x80"


def test_large_remaining_length_uses_a_multi_byte_integer() -> None:
    packet = Publish("t", b"x" * 200_000)
    data = encode(packet, MQTT_311)
    # 2 + 1 + 200000 = 200003 = 0x30D43 -> 0xC3 0x9A 0x0C (v5 1.5.5)
    assert data[:4] == b"\x30\xc3\x9a\x0c"
    assert decode_packet(data, MQTT_311) == packet


def test_user_properties_keep_their_order_and_repeat() -> None:
    props = Properties([(P.USER_PROPERTY, ("k", "2")), (P.USER_PROPERTY, ("k", "1"))])
    data = frame(0x30, s("t") + b"\x0e" + b"\x26" + s("k") + s("2") + b"\x26" + s("k") + s("1"))
    assert encode(Publish("t", b"", properties=props), MQTT_5) == data
    packet = decode_packet(data, MQTT_5)
    assert isinstance(packet, Publish)
    assert packet.properties.get_all(P.USER_PROPERTY) == (("k", "2"), ("k", "1"))
