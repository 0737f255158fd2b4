"""Incremental, sans-I/O MQTT 3.1.1 / 5.0 decoder.

``PacketDecoder`` takes bytes as they arrive (packets may be split across, or coalesced in,
WebSocket frames) and hands out whole packets together with their exact bytes, so the
gateway can forward a packet it does not change without encoding it again.

Error classes (each carries the v5 reason code to report, see ``errors``):

- ``MalformedPacket`` (0x81): framing and grammar, i.e. reserved fixed-header flags
  (v5 2.1.3), QoS 3, a remaining length over 4 bytes or not minimally encoded, a body
  shorter or longer than its fields, invalid UTF-8 or U+0000 (v5 1.5.4), reserved CONNECT
  or subscription-option bits, Will flags without a Will, a property that does not belong
  to the packet (v5 2.2.2.2), an invalid Topic Filter (as Mosquitto does).
- ``ProtocolError`` (0x82): well-formed but forbidden, i.e. Packet Identifier 0, no
  subscriptions, duplicate or out-of-range properties, reason codes a packet may not carry,
  a first packet that is not CONNECT.
- ``TopicNameInvalid`` (0x90, a ``ProtocolError``): a PUBLISH or Will Topic with wildcards,
  or an empty one (allowed in v5 only together with a Topic Alias).
- ``PacketTooLarge`` (0x95): raised from the fixed header alone, before the body is buffered.
- ``UnsupportedProtocolVersion`` (0x84): a CONNECT protocol name/level pair other than
  ("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5).

Remaining-length encodings that are not minimal are rejected in every version: v5 1.5.5
requires the minimum; v3.1.1 2.2.3 only ever produces it, and since the gateway forwards the
original bytes, accepting two spellings of one packet would let a client show the gateway
and the broker different framings.

After an error the decoder is finished: every further ``next_packet`` raises it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .constants import (
    AUTH_REASON_CODES,
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    MQTT_5,
    MQTT_31,
    MQTT_311,
    PROTOCOL_NAME,
    PROTOCOL_NAME_31,
    PUBACK_REASON_CODES,
    PUBCOMP_REASON_CODES,
    PUBREC_REASON_CODES,
    PUBREL_REASON_CODES,
    SUBACK_REASON_CODES,
    SUBACK_RETURN_CODES_V3,
    UNSUBACK_REASON_CODES,
    PacketType,
    PropertyId,
)
from .errors import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    TopicNameInvalid,
    UnsupportedProtocolVersion,
)
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
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from .properties import (
    EMPTY,
    WILL_PROPERTIES,
    Properties,
    decode_binary,
    decode_properties,
    decode_string,
)
from .topics import is_shared, topic_filter_problem, topic_name_problem

# v5 3.1.2.1 / 3.1.2.2 and v3.1 (IBM MQIsdp 3.1): the protocol name each level uses.
SUPPORTED_PROTOCOLS: Final = frozenset(
    {(PROTOCOL_NAME_31, MQTT_31), (PROTOCOL_NAME, MQTT_311), (PROTOCOL_NAME, MQTT_5)}
)

# v5 2.1.3: fixed-header flags of every type but PUBLISH. PUBREL, SUBSCRIBE and UNSUBSCRIBE
# carry 0b0010 (a left-over "QoS 1" from v3.1); all others 0.
_REQUIRED_FLAGS: Final = tuple(
    0b0010 if t in (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0
    for t in range(16)
)
_TYPE_NAMES: Final = ("RESERVED", *(t.name for t in PacketType))

# A decoder keeps at most this many consumed bytes in front of its buffer before it
# compacts; deleting from the front of a bytearray is cheap in CPython, so this is only to
# avoid doing it on every small feed.
_COMPACT_AFTER: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawPacket:
    """A decoded packet and the exact bytes it was decoded from (fixed header included)."""

    packet: Packet
    raw: bytes


class PacketDecoder:
    """Incremental decoder for one direction of one connection.

    ``expect_connect`` is for the client side: the first packet must be CONNECT and it sets
    ``protocol_level``. Otherwise ``protocol_level`` must be set (by the session, from the
    client's CONNECT) before anything but CONNECT can be decoded.
    """

    __slots__ = ("_awaiting_connect", "_buf", "_error", "_pos", "max_packet_size", "protocol_level")

    def __init__(
        self,
        *,
        max_packet_size: int,
        protocol_level: int | None = None,
        expect_connect: bool = False,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        # True until the first CONNECT when this decoder reads a client.
        self._awaiting_connect = expect_connect
        # Either the caller's own bytes object (nothing split yet: zero copy) or a bytearray
        # collecting a packet that arrived in pieces. ``_pos`` is where unread bytes start.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._error: MQTTError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes."""
        if not data:
            return
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif type(buf) is bytes:
            joined = bytearray(memoryview(buf)[pos:])
            joined += data
            self._buf = joined
            self._pos = 0
        else:
            assert isinstance(buf, bytearray)
            if pos > _COMPACT_AFTER:
                del buf[:pos]
                self._pos = 0
            buf += data

    def unread(self) -> tuple[bytes | bytearray, int]:
        """The buffer and where its unread bytes start, for a caller that recognises
        packets without decoding them (core/knownpackets.py); valid until the next
        ``feed``. Nothing is unread once the decoder has failed."""
        if self._error is not None:
            return b"", 0
        return self._buf, self._pos

    def skip_to(self, pos: int) -> None:
        """Mark the bytes before ``pos`` (from ``unread``) as read."""
        self._pos = pos

    def next_packet(self) -> RawPacket | None:
        """The next complete packet, or None when more bytes are needed.

        Raises an ``MQTTError`` subclass for invalid input, and nothing else.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        size = len(buf)
        try:
            if size - pos < 2:
                if size == pos:
                    # All read: let the bytes go (the caller's whole read, up to 64 KiB,
                    # or the CONNECT with its token), not keep them until the next feed
                    # of a connection that may stay idle for hours (issue 7, memory).
                    self._buf = b""
                    self._pos = 0
                elif buf[pos] < 0x10 or self._awaiting_connect:
                    self._check_first_byte(buf[pos])
                return None
            first = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:
                header = 2
            else:
                parsed = _remaining_length(buf, pos + 1, size)
                if parsed is None:
                    self._check_first_byte(first)
                    return None
                length, header = parsed
            if first < 0x10 or self._awaiting_connect:
                self._check_first_byte(first)
            total = header + length
            if total > self.max_packet_size:
                raise PacketTooLarge(
                    f"{_TYPE_NAMES[first >> 4]} of {total} bytes exceeds the maximum packet "
                    f"size {self.max_packet_size}"
                )
            end = pos + total
            if end > size:
                return None
            if type(buf) is bytes:
                raw = buf[pos:end]  # the very object when it holds exactly one packet
            else:
                with memoryview(buf) as view:
                    raw = bytes(view[pos:end])
            self._pos = end
            level = self.protocol_level
            if first >> 4 == PacketType.PUBLISH and level is not None:
                return _new_raw_packet(_decode_publish(first & 0x0F, raw, header, level), raw)
            if first >> 4 == PacketType.CONNECT:
                return _new_raw_packet(self._decode_connect(first, raw, header), raw)
            if level is None:
                raise ProtocolError(f"{_TYPE_NAMES[first >> 4]} before the protocol level is known")
            return _new_raw_packet(_decode_body(first, raw, header, level), raw)
        except MQTTError as exc:
            self._error = exc
            raise
        except (IndexError, ValueError) as exc:  # a safety net: the decoders check bounds
            self._error = MalformedPacket(f"truncated or invalid packet: {exc}")
            raise self._error from None

    def _decode_connect(self, first: int, raw: bytes, header: int) -> Connect:
        packet = _decode_body(first, raw, header, MQTT_5)  # CONNECT says its own level
        assert isinstance(packet, Connect)
        if self.protocol_level is None or self._awaiting_connect:
            self.protocol_level = packet.protocol_level
        self._awaiting_connect = False
        return packet

    def _check_first_byte(self, first: int) -> None:
        """Checks that need only the first byte, so they fail before the body arrives."""
        packet_type = first >> 4
        if packet_type == 0:
            raise MalformedPacket("packet type 0 is reserved")
        if self._awaiting_connect and packet_type != PacketType.CONNECT:
            raise ProtocolError(f"first packet is {_TYPE_NAMES[packet_type]}, not CONNECT")


# Frozen dataclasses assign each field through object.__setattr__, which doubles the cost of
# building a PUBLISH. The two values made for every message are built through their slot
# descriptors instead; the result is the same frozen object.
def _slot_setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_SET_RAW: Final = _slot_setters(RawPacket, "packet", "raw")
_SET_PUBLISH: Final = _slot_setters(
    Publish, "topic", "payload", "qos", "retain", "dup", "packet_id", "properties"
)


def _new_raw_packet(
    packet: Packet,
    raw: bytes,
    _new: Callable[[type[RawPacket]], RawPacket] = object.__new__,
    _set: tuple[Callable[[object, object], None], ...] = _SET_RAW,
) -> RawPacket:
    self = _new(RawPacket)
    _set[0](self, packet)
    _set[1](self, raw)
    return self


def _new_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Properties,
    _new: Callable[[type[Publish]], Publish] = object.__new__,
    _set: tuple[Callable[[object, object], None], ...] = _SET_PUBLISH,
) -> Publish:
    self = _new(Publish)
    _set[0](self, topic)
    _set[1](self, payload)
    _set[2](self, qos)
    _set[3](self, retain)
    _set[4](self, dup)
    _set[5](self, packet_id)
    _set[6](self, properties)
    return self


def _remaining_length(buf: bytes | bytearray, pos: int, size: int) -> tuple[int, int] | None:
    """Decode the Remaining Length at ``buf[pos]`` (v5 2.1.4, 1.5.5).

    Returns (length, fixed header size), or None if its bytes have not all arrived.
    """
    value = 0
    shift = 0
    index = pos
    while True:
        if index >= size:
            return None
        byte = buf[index]
        index += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift == 28:
            raise MalformedPacket("remaining length exceeds 4 bytes")
    if byte == 0 and index - pos > 1:
        raise MalformedPacket("remaining length is not minimally encoded")
    return value, index - pos + 1


def decode_packet(raw: bytes, protocol_level: int) -> Packet:
    """Decode one complete packet (fixed header included) for ``protocol_level``.

    A CONNECT is decoded according to its own protocol level.
    """
    raw = bytes(raw)
    if len(raw) < 2:
        raise MalformedPacket("packet shorter than a fixed header")
    parsed = _remaining_length(raw, 1, len(raw))
    if parsed is None:
        raise MalformedPacket("remaining length truncated")
    length, header = parsed
    if header + length != len(raw):
        raise MalformedPacket(
            f"remaining length {length} but {len(raw) - header} bytes follow the fixed header"
        )
    if raw[0] >> 4 == 0:
        raise MalformedPacket("packet type 0 is reserved")
    return _decode_body(raw[0], raw, header, protocol_level)


def _decode_body(first: int, data: bytes, pos: int, level: int) -> Packet:
    packet_type = first >> 4
    flags = first & 0x0F
    if packet_type != PacketType.PUBLISH and flags != _REQUIRED_FLAGS[packet_type]:
        raise MalformedPacket(
            f"{_TYPE_NAMES[packet_type]} fixed header flags 0b{flags:04b}, "
            f"expected 0b{_REQUIRED_FLAGS[packet_type]:04b}"
        )
    try:
        return _DECODERS[packet_type](flags, data, pos, level)
    except (IndexError, ValueError) as exc:  # a safety net: the decoders check bounds
        raise MalformedPacket(f"{_TYPE_NAMES[packet_type]} truncated: {exc}") from None


def _packet_id(data: bytes, pos: int, end: int, name: str) -> int:
    if pos + 2 > end:
        raise MalformedPacket(f"{name} packet identifier truncated")
    packet_id = (data[pos] << 8) | data[pos + 1]
    if packet_id == 0:
        # v5 2.2.1: a Packet Identifier is non-zero.
        raise ProtocolError(f"{name} packet identifier 0")
    return packet_id


def _expect_end(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise MalformedPacket(f"{name} has {end - pos} unexpected bytes at its end")


def _reason_code(code: int, allowed: frozenset[int], name: str) -> int:
    if code not in allowed:
        raise ProtocolError(f"reason code 0x{code:02X} not allowed in {name}")
    return code


def _decode_connect(flags: int, data: bytes, pos: int, level: int) -> Connect:
    end = len(data)
    name, pos = decode_string(data, pos, end, "CONNECT protocol name")
    if pos + 4 > end:
        raise MalformedPacket("CONNECT variable header truncated")
    level = data[pos]
    if (name, level) not in SUPPORTED_PROTOCOLS:
        raise UnsupportedProtocolVersion(
            f"protocol name {name!r} with level {level} is not supported", level
        )
    connect_flags = data[pos + 1]
    keep_alive = (data[pos + 2] << 8) | data[pos + 3]
    pos += 4
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag (bit 0) is set")  # v5 3.1.2.3
    has_will = bool(connect_flags & 0x04)
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    if will_qos == 3:
        raise MalformedPacket("CONNECT Will QoS 3")  # v5 3.1.2.6
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("CONNECT Will QoS or Will Retain set without the Will Flag")
    has_username = bool(connect_flags & 0x80)
    has_password = bool(connect_flags & 0x40)
    if has_password and not has_username and level != MQTT_5:
        # v3.1.1 3.1.2.9 [MQTT-3.1.2-22]; v5 allows a password alone.
        raise MalformedPacket("CONNECT Password Flag set without the User Name Flag")
    properties = EMPTY
    if level == MQTT_5:
        properties, pos = decode_properties(data, pos, end, PacketType.CONNECT)
        if (
            PropertyId.AUTHENTICATION_DATA in properties
            and PropertyId.AUTHENTICATION_METHOD not in properties
        ):
            raise ProtocolError("CONNECT Authentication Data without Authentication Method")
    client_id, pos = decode_string(data, pos, end, "CONNECT client identifier")
    will = None
    if has_will:
        will_properties = EMPTY
        if level == MQTT_5:
            will_properties, pos = decode_properties(data, pos, end, WILL_PROPERTIES)
        will_topic, pos = decode_string(data, pos, end, "CONNECT will topic")
        problem = topic_name_problem(will_topic)
        if problem:
            raise TopicNameInvalid(f"CONNECT will {problem}")
        will_payload, pos = decode_binary(data, pos, end, "CONNECT will payload")
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = None
    if has_username:
        username, pos = decode_string(data, pos, end, "CONNECT user name")
    password = None
    if has_password:
        password, pos = decode_binary(data, pos, end, "CONNECT password")
    _expect_end(pos, end, "CONNECT")
    return Connect(
        client_id=client_id,
        protocol_level=level,
        protocol_name=name,
        clean_start=bool(connect_flags & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will=will,
        properties=properties,
    )


def _decode_connack(flags: int, data: bytes, pos: int, level: int) -> Connack:
    end = len(data)
    if pos + 2 > end:
        raise MalformedPacket("CONNACK truncated")
    ack_flags = data[pos]
    code = data[pos + 1]
    pos += 2
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved acknowledge flags are set")  # v5 3.2.2.1
    properties = EMPTY
    if level == MQTT_5:
        _reason_code(code, CONNACK_REASON_CODES, "CONNACK")
        properties, pos = decode_properties(data, pos, end, PacketType.CONNACK)
    elif code > 5:
        raise ProtocolError(f"CONNACK return code {code} is reserved")  # v3.1.1 3.2.2.3
    _expect_end(pos, end, "CONNACK")
    if code and ack_flags:
        # v5 3.2.2.1.1 [MQTT-3.2.2-6], v3.1.1 [MQTT-3.2.2-4].
        raise ProtocolError("CONNACK refuses the connection but sets Session Present")
    return Connack(bool(ack_flags), code, properties)


def _decode_publish(flags: int, data: bytes, pos: int, level: int) -> Publish:
    end = len(data)
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH QoS 3")  # v5 3.3.1.2
    dup = bool(flags & 0x08)
    if dup and not qos:
        raise MalformedPacket("PUBLISH DUP flag set on QoS 0")  # v5 3.3.1.1 [MQTT-3.3.1-2]
    if pos + 2 > end:
        raise MalformedPacket("PUBLISH topic length truncated")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("PUBLISH topic longer than the packet")
    try:
        topic = data[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"PUBLISH topic is not valid UTF-8: {exc.reason}") from None
    if "\x00" in topic:
        raise MalformedPacket("PUBLISH topic contains U+0000")
    if "+" in topic or "#" in topic:
        raise TopicNameInvalid(f"PUBLISH topic {topic!r} contains a wildcard")
    pos = stop
    packet_id = None
    if qos:
        packet_id = _packet_id(data, pos, end, "PUBLISH")
        pos += 2
    properties = EMPTY
    if level == MQTT_5:
        if pos < end and data[pos] == 0:
            pos += 1
        else:
            properties, pos = decode_properties(data, pos, end, PacketType.PUBLISH)
        if not topic and PropertyId.TOPIC_ALIAS not in properties:
            # v5 3.3.4: an empty Topic Name needs a Topic Alias.
            raise TopicNameInvalid("PUBLISH with an empty topic and no Topic Alias")
    elif not topic:
        raise TopicNameInvalid("PUBLISH with an empty topic")  # v3.1.1 4.7.3
    return _new_publish(topic, data[pos:], qos, bool(flags & 0x01), dup, packet_id, properties)


def _ack_decoder(
    cls: type[Puback | Pubrec | Pubrel | Pubcomp], allowed: frozenset[int]
) -> Callable[[int, bytes, int, int], Packet]:
    name = cls.packet_type.name

    def decode(flags: int, data: bytes, pos: int, level: int) -> Packet:
        end = len(data)
        packet_id = _packet_id(data, pos, end, name)
        pos += 2
        code = 0
        properties = EMPTY
        if level == MQTT_5 and pos < end:
            # v5 3.4.2.1: reason code and properties may be left out; 0 then applies.
            code = _reason_code(data[pos], allowed, name)
            pos += 1
            if pos < end:
                properties, pos = decode_properties(data, pos, end, cls.packet_type)
        _expect_end(pos, end, name)
        return cls(packet_id, code, properties)

    return decode


def _decode_subscribe(flags: int, data: bytes, pos: int, level: int) -> Subscribe:
    end = len(data)
    packet_id = _packet_id(data, pos, end, "SUBSCRIBE")
    pos += 2
    properties = EMPTY
    v5 = level == MQTT_5
    if v5:
        properties, pos = decode_properties(data, pos, end, PacketType.SUBSCRIBE)
    subscriptions = []
    while pos < end:
        topic_filter, pos = decode_string(data, pos, end, "SUBSCRIBE topic filter")
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise MalformedPacket(f"SUBSCRIBE {problem}")
        if pos >= end:
            raise MalformedPacket("SUBSCRIBE subscription options missing")
        options = data[pos]
        pos += 1
        qos = options & 0x03
        if qos == 3:
            raise MalformedPacket(f"SUBSCRIBE QoS 3 for {topic_filter!r}")
        if v5:
            # v5 3.8.3.1: bits 6-7 reserved; Retain Handling 3 is not defined.
            if options & 0xC0:
                raise MalformedPacket("SUBSCRIBE reserved subscription option bits are set")
            retain_handling = (options >> 4) & 0x03
            if retain_handling == 3:
                raise MalformedPacket("SUBSCRIBE Retain Handling 3")
            no_local = bool(options & 0x04)
            if no_local and is_shared(topic_filter):
                # v5 3.8.3.1 [MQTT-3.8.3-4].
                raise ProtocolError(f"SUBSCRIBE No Local on shared subscription {topic_filter!r}")
            subscriptions.append(
                Subscription(topic_filter, qos, no_local, bool(options & 0x08), retain_handling)
            )
        else:
            if options & 0xFC:
                # v3.1.1 3.8.3.1 [MQTT-3-8.3-4].
                raise MalformedPacket("SUBSCRIBE reserved requested-QoS bits are set")
            subscriptions.append(Subscription(topic_filter, qos))
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE without subscriptions")  # v5 3.8.3 [MQTT-3.8.3-2]
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _decode_suback(flags: int, data: bytes, pos: int, level: int) -> Suback:
    end = len(data)
    packet_id = _packet_id(data, pos, end, "SUBACK")
    pos += 2
    properties = EMPTY
    allowed = SUBACK_RETURN_CODES_V3
    if level == MQTT_5:
        properties, pos = decode_properties(data, pos, end, PacketType.SUBACK)
        allowed = SUBACK_REASON_CODES
    codes = tuple(data[pos:end])
    if not codes:
        raise ProtocolError("SUBACK without reason codes")
    for code in codes:
        _reason_code(code, allowed, "SUBACK")
    return Suback(packet_id, codes, properties)


def _decode_unsubscribe(flags: int, data: bytes, pos: int, level: int) -> Unsubscribe:
    end = len(data)
    packet_id = _packet_id(data, pos, end, "UNSUBSCRIBE")
    pos += 2
    properties = EMPTY
    if level == MQTT_5:
        properties, pos = decode_properties(data, pos, end, PacketType.UNSUBSCRIBE)
    topic_filters = []
    while pos < end:
        topic_filter, pos = decode_string(data, pos, end, "UNSUBSCRIBE topic filter")
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise MalformedPacket(f"UNSUBSCRIBE {problem}")
        topic_filters.append(topic_filter)
    if not topic_filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")  # v5 3.10.3 [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _decode_unsuback(flags: int, data: bytes, pos: int, level: int) -> Unsuback:
    end = len(data)
    packet_id = _packet_id(data, pos, end, "UNSUBACK")
    pos += 2
    if level != MQTT_5:
        _expect_end(pos, end, "UNSUBACK")
        return Unsuback(packet_id)
    properties, pos = decode_properties(data, pos, end, PacketType.UNSUBACK)
    codes = tuple(data[pos:end])
    if not codes:
        raise ProtocolError("UNSUBACK without reason codes")
    for code in codes:
        _reason_code(code, UNSUBACK_REASON_CODES, "UNSUBACK")
    return Unsuback(packet_id, codes, properties)


def _decode_pingreq(flags: int, data: bytes, pos: int, level: int) -> Pingreq:
    _expect_end(pos, len(data), "PINGREQ")
    return _PINGREQ


def _decode_pingresp(flags: int, data: bytes, pos: int, level: int) -> Pingresp:
    _expect_end(pos, len(data), "PINGRESP")
    return _PINGRESP


def _decode_disconnect(flags: int, data: bytes, pos: int, level: int) -> Disconnect:
    end = len(data)
    if level != MQTT_5:
        _expect_end(pos, end, "DISCONNECT")
        return _DISCONNECT
    code = 0
    properties = EMPTY
    if pos < end:
        code = _reason_code(data[pos], DISCONNECT_REASON_CODES, "DISCONNECT")
        pos += 1
        if pos < end:
            properties, pos = decode_properties(data, pos, end, PacketType.DISCONNECT)
    _expect_end(pos, end, "DISCONNECT")
    return Disconnect(code, properties)


def _decode_auth(flags: int, data: bytes, pos: int, level: int) -> Auth:
    end = len(data)
    if level != MQTT_5:
        raise MalformedPacket("packet type 15 (AUTH) is reserved before MQTT 5")
    code = 0
    properties = EMPTY
    if pos < end:
        code = _reason_code(data[pos], AUTH_REASON_CODES, "AUTH")
        pos += 1
        if pos < end:
            properties, pos = decode_properties(data, pos, end, PacketType.AUTH)
    _expect_end(pos, end, "AUTH")
    return Auth(code, properties)


def _decode_reserved(flags: int, data: bytes, pos: int, level: int) -> Packet:
    raise MalformedPacket("packet type 0 is reserved")


_PINGREQ: Final = Pingreq()
_PINGRESP: Final = Pingresp()
_DISCONNECT: Final = Disconnect()

_DECODERS: Final[tuple[Callable[[int, bytes, int, int], Packet], ...]] = (
    _decode_reserved,
    _decode_connect,
    _decode_connack,
    _decode_publish,
    _ack_decoder(Puback, PUBACK_REASON_CODES),
    _ack_decoder(Pubrec, PUBREC_REASON_CODES),
    _ack_decoder(Pubrel, PUBREL_REASON_CODES),
    _ack_decoder(Pubcomp, PUBCOMP_REASON_CODES),
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _decode_pingreq,
    _decode_pingresp,
    _decode_disconnect,
    _decode_auth,
)

__all__ = ["PacketDecoder", "Properties", "RawPacket", "decode_packet"]
