"""Every way a packet is refused, with its error class, reason code and message."""

from __future__ import annotations

import contextlib

import pytest

from gateway.mqtt import (
    MQTT_5,
    MQTT_311,
    Auth,
    Connack,
    Connect,
    MalformedPacket,
    MQTTError,
    PacketDecoder,
    Properties,
    PropertyId,
    ProtocolError,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    TopicNameInvalid,
    Unsubscribe,
    decode_packet,
    encode,
)

P = PropertyId


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def frame(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def connect_v5(flags: int = 0x02, properties: bytes = b"\x00", rest: bytes = s("c")) -> bytes:
    return frame(0x10, s("MQTT") + bytes((5, flags)) + b"\x00\x3c" + properties + rest)


def connect_v311(flags: int = 0x02, rest: bytes = s("c")) -> bytes:
    return frame(0x10, s("MQTT") + bytes((4, flags)) + b"\x00\x3c" + rest)


def publish_v5(properties: bytes, topic: str = "t") -> bytes:
    return frame(0x30, s(topic) + bytes((len(properties),)) + properties)


M, PE, TN = MalformedPacket, ProtocolError, TopicNameInvalid
CASES: list[tuple[str, int, bytes, type[MQTTError], int, str]] = [
    # Fixed header (v5 2.1.3, 2.1.4)
    ("reserved type 0", 4, b"\x00\x00", M, 0x81, "packet type 0 is reserved"),
    ("AUTH in v3.1.1", 4, b"\xf0\x00", M, 0x81, "AUTH\\) is reserved before MQTT 5"),
    ("PUBREL flags 0", 4, b"\x60\x02\x00\x01", M, 0x81, "PUBREL fixed header flags 0b0000"),
    (
        "SUBSCRIBE flags 0",
        4,
        frame(0x80, b"\x00\x01" + s("a") + b"\x00"),
        M,
        0x81,
        "SUBSCRIBE fixed",
    ),
    ("UNSUBSCRIBE flags 0", 4, frame(0xA0, b"\x00\x01" + s("a")), M, 0x81, "UNSUBSCRIBE fixed"),
    ("PUBACK flags 2", 4, b"\x42\x02\x00\x01", M, 0x81, "PUBACK fixed header flags 0b0010"),
    ("PINGREQ flags 1", 4, b"\xc1\x00", M, 0x81, "PINGREQ fixed header flags"),
    ("CONNECT flags 1", 4, b"\x11" + connect_v311()[1:], M, 0x81, "CONNECT fixed header flags"),
    ("PUBLISH QoS 3", 4, frame(0x36, s("t") + b"\x00\x01"), M, 0x81, "PUBLISH QoS 3"),
    ("DUP on QoS 0", 4, frame(0x38, s("t")), M, 0x81, "DUP flag set on QoS 0"),
    ("5-byte length", 4, b"\x30\x80\x80\x80\x80\x01", M, 0x81, "exceeds 4 bytes"),
    ("non-minimal length", 4, b"\xc0\x80\x00", M, 0x81, "not minimally encoded"),
    # Body length
    ("PINGREQ with a body", 4, b"\xc0\x01\x00", M, 0x81, "PINGREQ has 1 unexpected bytes"),
    ("PUBACK too long v3", 4, b"\x40\x03\x00\x01\x00", M, 0x81, "PUBACK has 1 unexpected"),
    ("PUBACK too short", 4, b"\x40\x01\x00", M, 0x81, "PUBACK packet identifier truncated"),
    ("DISCONNECT v3 body", 4, b"\xe0\x01\x00", M, 0x81, "DISCONNECT has 1 unexpected"),
    ("UNSUBACK v3 body", 4, b"\xb0\x03\x00\x01\x00", M, 0x81, "UNSUBACK has 1 unexpected"),
    ("CONNECT extra bytes", 4, connect_v311(rest=s("c") + b"!"), M, 0x81, "CONNECT has 1 unexp"),
    (
        "CONNECT truncated",
        4,
        frame(0x10, s("MQTT") + b"\x04\x02"),
        M,
        0x81,
        "variable header trunc",
    ),
    ("PUBLISH topic overrun", 4, frame(0x30, b"\x00\x09ab"), M, 0x81, "topic longer than"),
    ("CONNACK truncated", 4, b"\x20\x01\x00", M, 0x81, "CONNACK truncated"),
    ("property length overrun", 5, frame(0x30, s("t") + b"\x05\x01"), M, 0x81, "property length 5"),
    (
        "property truncated",
        5,
        publish_v5(b"\x02\x00\x00"),
        M,
        0x81,
        "MESSAGE_EXPIRY_INTERVAL trunc",
    ),
    # UTF-8 (v5 1.5.4)
    ("U+0000 in topic", 4, frame(0x30, s(b"a\x00b")), M, 0x81, "topic contains U\\+0000"),
    ("surrogate in topic", 4, frame(0x30, s(b"a\xed\xa0\x80")), M, 0x81, "not valid UTF-8"),
    ("invalid UTF-8", 4, frame(0x30, s(b"\xff")), M, 0x81, "not valid UTF-8"),
    ("overlong UTF-8", 4, frame(0x30, s(b"\xc0\xaf")), M, 0x81, "not valid UTF-8"),
    (
        "U+0000 in client id",
        4,
        connect_v311(rest=s(b"\x00")),
        M,
        0x81,
        "client identifier contains",
    ),
    (
        "surrogate in filter",
        4,
        frame(0x82, b"\x00\x01" + s(b"\xed\xbf\xbf") + b"\x00"),
        M,
        0x81,
        "SUBSCRIBE topic filter is not valid UTF-8",
    ),
    (
        "U+0000 in user property",
        5,
        publish_v5(b"\x26" + s("k") + s(b"\x00")),
        M,
        0x81,
        "USER_PROPERTY value contains U\\+0000",
    ),
    # Packet identifiers (v5 2.2.1)
    ("PUBLISH id 0", 4, frame(0x32, s("t") + b"\x00\x00"), PE, 0x82, "PUBLISH packet identifier 0"),
    ("PUBACK id 0", 4, b"\x40\x02\x00\x00", PE, 0x82, "PUBACK packet identifier 0"),
    ("SUBSCRIBE id 0", 4, frame(0x82, b"\x00\x00" + s("a") + b"\x00"), PE, 0x82, "identifier 0"),
    ("UNSUBACK id 0", 4, b"\xb0\x02\x00\x00", PE, 0x82, "UNSUBACK packet identifier 0"),
    # Topic names (v5 3.3.2.1)
    ("PUBLISH +", 4, frame(0x30, s("a/+")), TN, 0x90, "contains a wildcard"),
    ("PUBLISH #", 5, frame(0x30, s("#") + b"\x00"), TN, 0x90, "contains a wildcard"),
    ("PUBLISH empty v3", 4, frame(0x30, s("")), TN, 0x90, "empty topic"),
    ("PUBLISH empty v5 no alias", 5, frame(0x30, s("") + b"\x00"), TN, 0x90, "no Topic Alias"),
    ("will topic #", 4, connect_v311(0x06, s("c") + s("a/#") + s("x")), TN, 0x90, "will topic"),
    # SUBSCRIBE / UNSUBSCRIBE (v5 3.8.3, 3.10.3)
    ("SUBSCRIBE empty", 4, b"\x82\x02\x00\x01", PE, 0x82, "SUBSCRIBE without subscriptions"),
    ("SUBSCRIBE v5 empty", 5, b"\x82\x03\x00\x01\x00", PE, 0x82, "without subscriptions"),
    ("UNSUBSCRIBE empty", 4, b"\xa2\x02\x00\x01", PE, 0x82, "UNSUBSCRIBE without topic filters"),
    ("no options byte", 4, frame(0x82, b"\x00\x01" + s("a")), M, 0x81, "options missing"),
    (
        "v3 reserved option bits",
        4,
        frame(0x82, b"\x00\x01" + s("a") + b"\x04"),
        M,
        0x81,
        "reserved requested-QoS bits",
    ),
    ("subscribe QoS 3", 4, frame(0x82, b"\x00\x01" + s("a") + b"\x03"), M, 0x81, "QoS 3"),
    (
        "v5 reserved option bits",
        5,
        frame(0x82, b"\x00\x01\x00" + s("a") + b"\x40"),
        M,
        0x81,
        "reserved subscription option bits",
    ),
    (
        "retain handling 3",
        5,
        frame(0x82, b"\x00\x01\x00" + s("a") + b"\x30"),
        M,
        0x81,
        "Retain Handling 3",
    ),
    (
        "no local on shared",
        5,
        frame(0x82, b"\x00\x01\x00" + s("$share/g/a") + b"\x04"),
        PE,
        0x82,
        "No Local on shared",
    ),
    ("filter a/#/b", 4, frame(0x82, b"\x00\x01" + s("a/#/b") + b"\x00"), M, 0x81, "'#' must be"),
    ("filter a+", 4, frame(0xA2, b"\x00\x01" + s("a+")), M, 0x81, "'\\+' must be a whole level"),
    ("empty filter", 4, frame(0x82, b"\x00\x01" + s("") + b"\x00"), M, 0x81, "filter is empty"),
    (
        "bad share name",
        5,
        frame(0x82, b"\x00\x01\x00" + s("$share/a+/b") + b"\x00"),
        M,
        0x81,
        "invalid share name",
    ),
    (
        "share without filter",
        5,
        frame(0x82, b"\x00\x01\x00" + s("$share/g") + b"\x00"),
        M,
        0x81,
        "has no topic filter",
    ),
    # CONNECT flags (v5 3.1.2.3 - 3.1.2.9)
    ("reserved connect flag", 4, connect_v311(0x03), M, 0x81, "reserved flag \\(bit 0\\)"),
    ("will QoS 3", 4, connect_v311(0x1E), M, 0x81, "Will QoS 3"),
    ("will QoS without will", 4, connect_v311(0x0A), M, 0x81, "without the Will Flag"),
    ("will retain without will", 5, connect_v5(0x22), M, 0x81, "without the Will Flag"),
    (
        "password without user v3",
        4,
        connect_v311(0x42, s("c") + s("pw")),
        M,
        0x81,
        "Password Flag set without the User Name Flag",
    ),
    (
        "auth data without method",
        5,
        connect_v5(properties=b"\x04\x16\x00\x01x"),
        PE,
        0x82,
        "Authentication Data without Authentication Method",
    ),
    # Properties (v5 2.2.2.2)
    ("unknown property", 5, publish_v5(b"\x04\x00"), M, 0x81, "unknown property identifier 0x04"),
    (
        "property not allowed",
        5,
        publish_v5(b"\x11\x00\x00\x00\x01"),
        M,
        0x81,
        "property 0x11 \\(SESSION_EXPIRY_INTERVAL\\) not allowed in PUBLISH",
    ),
    (
        "will property in CONNECT",
        5,
        connect_v5(properties=b"\x05\x18\x00\x00\x00\x01"),
        M,
        0x81,
        "not allowed in CONNECT",
    ),
    (
        "duplicate property",
        5,
        publish_v5(b"\x01\x00\x01\x01"),
        PE,
        0x82,
        "duplicate property 0x01 in PUBLISH",
    ),
    (
        "duplicate sub id in SUBSCRIBE",
        5,
        frame(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02" + s("a") + b"\x00"),
        PE,
        0x82,
        "duplicate property 0x0B in SUBSCRIBE",
    ),
    ("payload format 2", 5, publish_v5(b"\x01\x02"), PE, 0x82, "must be 0 or 1"),
    ("topic alias 0", 5, publish_v5(b"\x23\x00\x00"), PE, 0x82, "TOPIC_ALIAS must not be 0"),
    ("subscription id 0", 5, publish_v5(b"\x0b\x00"), PE, 0x82, "SUBSCRIPTION_IDENTIFIER must not"),
    (
        "receive maximum 0",
        5,
        connect_v5(properties=b"\x03\x21\x00\x00"),
        PE,
        0x82,
        "RECEIVE_MAXIMUM must not be 0",
    ),
    (
        "maximum packet size 0",
        5,
        connect_v5(properties=b"\x05\x27\x00\x00\x00\x00"),
        PE,
        0x82,
        "MAXIMUM_PACKET_SIZE must not be 0",
    ),
    ("request problem info 2", 5, connect_v5(properties=b"\x02\x17\x02"), PE, 0x82, "0 or 1"),
    ("maximum QoS 2", 5, frame(0x20, b"\x00\x00\x02\x24\x02"), PE, 0x82, "MAXIMUM_QOS must be 0"),
    ("response topic wildcard", 5, publish_v5(b"\x08" + s("a/#")), PE, 0x82, "RESPONSE_TOPIC"),
    ("sub id VBI 5 bytes", 5, publish_v5(b"\x0b\x80\x80\x80\x80\x01"), M, 0x81, "exceeds 4 bytes"),
    ("sub id VBI non-minimal", 5, publish_v5(b"\x0b\x81\x00"), M, 0x81, "not minimally encoded"),
    # Reason codes (v5 2.4 per packet; v3.1.1 3.2.2.3, 3.9.3)
    ("CONNACK v3 code 6", 4, b"\x20\x02\x00\x06", PE, 0x82, "return code 6 is reserved"),
    ("CONNACK v5 code 0x8B", 5, b"\x20\x03\x00\x8b\x00", PE, 0x82, "0x8B not allowed in CONNACK"),
    ("CONNACK reserved flags", 4, b"\x20\x02\x02\x00", M, 0x81, "reserved acknowledge flags"),
    ("CONNACK refused + present", 4, b"\x20\x02\x01\x05", PE, 0x82, "sets Session Present"),
    ("PUBACK code 0x11", 5, b"\x40\x03\x00\x01\x11", PE, 0x82, "0x11 not allowed in PUBACK"),
    ("PUBREL code 0x80", 5, b"\x62\x03\x00\x01\x80", PE, 0x82, "0x80 not allowed in PUBREL"),
    ("SUBACK v3 code 0x87", 4, b"\x90\x03\x00\x01\x87", PE, 0x82, "0x87 not allowed in SUBACK"),
    ("SUBACK v5 code 0x03", 5, b"\x90\x04\x00\x01\x00\x03", PE, 0x82, "0x03 not allowed"),
    ("SUBACK no codes", 4, b"\x90\x02\x00\x01", PE, 0x82, "SUBACK without reason codes"),
    ("UNSUBACK v5 no codes", 5, b"\xb0\x03\x00\x01\x00", PE, 0x82, "UNSUBACK without reason"),
    ("DISCONNECT code 0x01", 5, b"\xe0\x01\x01", PE, 0x82, "0x01 not allowed in DISCONNECT"),
    ("AUTH code 0x80", 5, b"\xf0\x01\x80", PE, 0x82, "0x80 not allowed in AUTH"),
]


@pytest.mark.parametrize(
    ("level", "data", "error", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decode_error(
    level: int, data: bytes, error: type[MQTTError], code: int, message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        decode_packet(data, level)
    assert caught.value.reason_code == code
    # The incremental decoder raises the same, and only MQTTError, never escapes otherwise.
    decoder = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
    decoder.feed(data)
    with pytest.raises(error, match=message):
        decoder.next_packet()


def test_topic_name_invalid_is_a_protocol_error() -> None:
    assert issubclass(TopicNameInvalid, ProtocolError)


def test_decode_packet_checks_the_remaining_length_against_the_bytes() -> None:
    with pytest.raises(MalformedPacket, match="remaining length 3 but 2 bytes follow"):
        decode_packet(b"\x40\x03\x00\x01", MQTT_311)
    with pytest.raises(MalformedPacket, match="remaining length 2 but 3 bytes follow"):
        decode_packet(b"\x40\x02\x00\x01\x00", MQTT_311)


def test_every_truncation_of_valid_packets_is_malformed_or_incomplete() -> None:
    """Cutting a valid packet's body short must give a typed error, never another exception."""
    packets = [
        (encode(Connect("c", protocol_level=5, username="u", password=b"p"), MQTT_5), MQTT_5),
        (encode(Publish("a", b"", 1, packet_id=1, properties=_props()), MQTT_5), MQTT_5),
        (encode(Subscribe(1, (Subscription("a"),)), MQTT_5), MQTT_5),
        (encode(Suback(1, (0,)), MQTT_311), MQTT_311),
        (encode(Auth(0x18, Properties([(P.AUTHENTICATION_METHOD, "m")])), MQTT_5), MQTT_5),
    ]
    for data, level in packets:
        for cut in range(2, len(data)):
            body = data[2:cut] if data[1] < 0x80 else b""
            with contextlib.suppress(MQTTError):
                decode_packet(bytes((data[0], len(body))) + body, level)


def _props() -> Properties:
    return Properties([(P.USER_PROPERTY, ("a", "b")), (P.CORRELATION_DATA, b"\x00")])


@pytest.mark.parametrize(
    ("packet", "level", "error", "message"),
    [
        (Publish("a/+", b""), MQTT_311, TopicNameInvalid, "wildcard"),
        (Publish("a", b"", qos=3, packet_id=1), MQTT_311, MalformedPacket, "QoS 3"),
        (Publish("a", b"", qos=1), MQTT_311, MalformedPacket, "identifier None"),
        (Publish("a", b"", qos=0, packet_id=3), MQTT_311, MalformedPacket, "QoS 0 with a packet"),
        (Publish("a", b"", dup=True), MQTT_311, MalformedPacket, "DUP flag on QoS 0"),
        (Publish("", b""), MQTT_311, TopicNameInvalid, "empty topic"),
        (Publish("a" * 70000, b""), MQTT_311, MalformedPacket, "more than 65535"),
        (Publish("a\x00", b""), MQTT_311, MalformedPacket, "U\\+0000"),
        (Publish("\ud800", b""), MQTT_311, MalformedPacket, "surrogate"),
        (Puback(0), MQTT_311, MalformedPacket, "not in 1..65535"),
        (Puback(70000), MQTT_311, MalformedPacket, "not in 1..65535"),
        (Subscribe(1, ()), MQTT_311, ProtocolError, "without subscriptions"),
        (Subscribe(1, (Subscription("a/#/b"),)), MQTT_311, MalformedPacket, "'#' must be"),
        (Unsubscribe(1, ()), MQTT_311, ProtocolError, "without topic filters"),
        (Connack(reason_code=0x87), MQTT_311, ProtocolError, "does not exist in v3.1.1"),
        (Auth(), MQTT_311, ProtocolError, "AUTH does not exist"),
        (
            Publish("a", b"", properties=Properties([(P.SESSION_EXPIRY_INTERVAL, 1)])),
            MQTT_5,
            MalformedPacket,
            "not allowed in PUBLISH",
        ),
        (
            Publish("a", b"", properties=Properties([(P.TOPIC_ALIAS, 1), (P.TOPIC_ALIAS, 2)])),
            MQTT_5,
            ProtocolError,
            "duplicate property 0x23 in PUBLISH",
        ),
        (
            Publish("a", b"", properties=Properties([(P.MESSAGE_EXPIRY_INTERVAL, 1 << 32)])),
            MQTT_5,
            MalformedPacket,
            "does not fit in 4 bytes",
        ),
        (
            Connect("c", protocol_level=4, password=b"p"),
            MQTT_311,
            MalformedPacket,
            "password without user name",
        ),
    ],
)
def test_encode_error(packet: object, level: int, error: type[MQTTError], message: str) -> None:
    with pytest.raises(error, match=message):
        encode(packet, level)  # type: ignore[arg-type]
