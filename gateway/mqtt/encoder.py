"""MQTT 3.1.1 / 5.0 encoder: one function from a packet value to its bytes.

For a v3.1.1 (or v3.1) peer, properties and the other v5-only fields are left out: reason
codes of acknowledgements, UNSUBACK reason codes, DISCONNECT reason, subscription options
beyond QoS. A v3 SUBACK carries the codes as given, except that every failure code
(>= 0x80) becomes 0x80, the only failure v3.1.1 knows (3.9.3). A CONNECT is always encoded
for its own ``protocol_level``.

Values that cannot be represented (a string over 65535 bytes, QoS 3, packet id 0) raise
``MalformedPacket``; properties a packet may not carry raise as in the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .constants import (
    MQTT_5,
    SUBACK_FAILURE_V3,
    PacketType,
)
from .errors import MalformedPacket, ProtocolError, TopicNameInvalid
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .properties import (
    WILL_PROPERTIES,
    encode_binary,
    encode_properties,
    encode_string,
    encode_vbi,
)
from .topics import topic_filter_problem, topic_name_problem


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The bytes of ``packet`` for a peer speaking ``protocol_level``."""
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    result: bytes = encoder(packet, protocol_level)
    return result


def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    if length < 0x80:
        return bytes((first, length)) + body
    return bytes((first,)) + encode_vbi(length) + body


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise MalformedPacket(f"{what} {value} does not fit in two bytes")
    return value.to_bytes(2, "big")


def _packet_id(value: int | None, name: str) -> bytes:
    if value is None or not 1 <= value <= 0xFFFF:
        raise MalformedPacket(f"{name} packet identifier {value!r} is not in 1..65535")
    return value.to_bytes(2, "big")


def _byte(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise MalformedPacket(f"{what} {value} does not fit in a byte")
    return bytes((value,))


def _encode_connect(packet: Connect, protocol_level: int) -> bytes:
    level = packet.protocol_level
    v5 = level == MQTT_5
    flags = 0
    if packet.clean_start:
        flags |= 0x02
    will = packet.will
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise MalformedPacket(f"CONNECT Will QoS {will.qos}")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.username is not None:
        flags |= 0x80
    if packet.password is not None:
        if packet.username is None and not v5:
            raise MalformedPacket("CONNECT password without user name before MQTT 5")
        flags |= 0x40
    parts = [
        encode_string(packet.protocol_name, "protocol name"),
        _byte(level, "protocol level"),
        bytes((flags,)),
        _u16(packet.keep_alive, "keep alive"),
    ]
    if v5:
        parts.append(encode_properties(packet.properties, PacketType.CONNECT))
    parts.append(encode_string(packet.client_id, "client identifier"))
    if will is not None:
        if v5:
            parts.append(encode_properties(will.properties, WILL_PROPERTIES))
        problem = topic_name_problem(will.topic)
        if problem:
            raise TopicNameInvalid(f"CONNECT will {problem}")
        parts.append(encode_string(will.topic, "will topic"))
        parts.append(encode_binary(will.payload, "will payload"))
    if packet.username is not None:
        parts.append(encode_string(packet.username, "user name"))
    if packet.password is not None:
        parts.append(encode_binary(packet.password, "password"))
    return _frame(0x10, b"".join(parts))


def _encode_connack(packet: Connack, protocol_level: int) -> bytes:
    head = bytes((1 if packet.session_present else 0,)) + _byte(packet.reason_code, "reason code")
    if protocol_level == MQTT_5:
        return _frame(0x20, head + encode_properties(packet.properties, PacketType.CONNACK))
    if packet.reason_code > 5:
        raise ProtocolError(f"CONNACK return code {packet.reason_code} does not exist in v3.1.1")
    return _frame(0x20, head)


def _encode_publish(packet: Publish, protocol_level: int) -> bytes:
    qos = packet.qos
    if qos not in (0, 1, 2):
        raise MalformedPacket(f"PUBLISH QoS {qos}")
    topic = packet.topic
    if "+" in topic or "#" in topic:
        raise TopicNameInvalid(f"PUBLISH topic {topic!r} contains a wildcard")
    first = 0x30 | (qos << 1)
    if packet.retain:
        first |= 0x01
    if packet.dup:
        if not qos:
            raise MalformedPacket("PUBLISH DUP flag on QoS 0")
        first |= 0x08
    parts = [encode_string(topic, "topic")]
    if qos:
        parts.append(_packet_id(packet.packet_id, "PUBLISH"))
    elif packet.packet_id is not None:
        raise MalformedPacket("PUBLISH QoS 0 with a packet identifier")
    if protocol_level == MQTT_5:
        parts.append(encode_properties(packet.properties, PacketType.PUBLISH))
    elif not topic:
        raise TopicNameInvalid("PUBLISH with an empty topic")
    parts.append(packet.payload)
    return _frame(first, b"".join(parts))


def _encode_ack(packet: Puback | Pubrec | Pubrel | Pubcomp, protocol_level: int) -> bytes:
    packet_type = packet.packet_type
    first = (packet_type << 4) | (0b0010 if packet_type == PacketType.PUBREL else 0)
    body = _packet_id(packet.packet_id, packet_type.name)
    if protocol_level == MQTT_5 and (packet.reason_code or packet.properties):
        # v5 3.4.2.1: both may be left out when the code is Success with no properties.
        body += _byte(packet.reason_code, "reason code")
        if packet.properties:
            body += encode_properties(packet.properties, packet_type)
    return _frame(first, body)


def _encode_subscribe(packet: Subscribe, protocol_level: int) -> bytes:
    if not packet.subscriptions:
        raise ProtocolError("SUBSCRIBE without subscriptions")
    v5 = protocol_level == MQTT_5
    parts = [_packet_id(packet.packet_id, "SUBSCRIBE")]
    if v5:
        parts.append(encode_properties(packet.properties, PacketType.SUBSCRIBE))
    for sub in packet.subscriptions:
        problem = topic_filter_problem(sub.topic_filter)
        if problem:
            raise MalformedPacket(f"SUBSCRIBE {problem}")
        if sub.qos not in (0, 1, 2):
            raise MalformedPacket(f"SUBSCRIBE QoS {sub.qos}")
        options = sub.qos
        if v5:
            if sub.retain_handling not in (0, 1, 2):
                raise MalformedPacket(f"SUBSCRIBE Retain Handling {sub.retain_handling}")
            options |= sub.retain_handling << 4
            if sub.no_local:
                options |= 0x04
            if sub.retain_as_published:
                options |= 0x08
        parts.append(encode_string(sub.topic_filter, "topic filter"))
        parts.append(bytes((options,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(packet: Suback, protocol_level: int) -> bytes:
    parts = [_packet_id(packet.packet_id, "SUBACK")]
    codes = packet.reason_codes
    if protocol_level == MQTT_5:
        parts.append(encode_properties(packet.properties, PacketType.SUBACK))
    else:
        codes = tuple(SUBACK_FAILURE_V3 if code >= 0x80 else code for code in codes)
    for code in codes:
        parts.append(_byte(code, "SUBACK reason code"))
    return _frame(0x90, b"".join(parts))


def _encode_unsubscribe(packet: Unsubscribe, protocol_level: int) -> bytes:
    if not packet.topic_filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")
    parts = [_packet_id(packet.packet_id, "UNSUBSCRIBE")]
    if protocol_level == MQTT_5:
        parts.append(encode_properties(packet.properties, PacketType.UNSUBSCRIBE))
    for topic_filter in packet.topic_filters:
        parts.append(encode_string(topic_filter, "topic filter"))
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(packet: Unsuback, protocol_level: int) -> bytes:
    body = _packet_id(packet.packet_id, "UNSUBACK")
    if protocol_level == MQTT_5:
        body += encode_properties(packet.properties, PacketType.UNSUBACK)
        body += b"".join(_byte(code, "UNSUBACK reason code") for code in packet.reason_codes)
    return _frame(0xB0, body)


def _encode_pingreq(packet: Pingreq, protocol_level: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(packet: Pingresp, protocol_level: int) -> bytes:
    return b"\xd0\x00"


def _encode_disconnect(packet: Disconnect, protocol_level: int) -> bytes:
    if protocol_level != MQTT_5 or not (packet.reason_code or packet.properties):
        return b"\xe0\x00"  # v5 3.14.2.1: Remaining Length 0 means Normal disconnection
    body = _byte(packet.reason_code, "reason code")
    if packet.properties:
        body += encode_properties(packet.properties, PacketType.DISCONNECT)
    return _frame(0xE0, body)


def _encode_auth(packet: Auth, protocol_level: int) -> bytes:
    if protocol_level != MQTT_5:
        raise ProtocolError("AUTH does not exist before MQTT 5")
    if not (packet.reason_code or packet.properties):
        return b"\xf0\x00"
    body = _byte(packet.reason_code, "reason code")
    body += encode_properties(packet.properties, PacketType.AUTH)
    return _frame(0xF0, body)


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Puback: _encode_ack,
    Pubrec: _encode_ack,
    Pubrel: _encode_ack,
    Pubcomp: _encode_ack,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}
