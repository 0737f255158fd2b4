"""MQTT 5 properties (v5 2.2.2): an immutable ordered collection, its wire format and rules.

Which packet may carry which property, and which may repeat, comes from v5 2.2.2.2 Table 2-4
and the per-packet sections it points to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import IntEnum
from typing import ClassVar, Final, TypeAlias

from .constants import VBI_MAX, PacketType, PropertyId
from .errors import MalformedPacket, ProtocolError

PropertyValue: TypeAlias = int | str | bytes | tuple[str, str]

# Will Properties (v5 3.1.3.2) are a property set of their own with their own allowed list.
# The number is outside the packet type range (1..15) so it can share the bitmasks below.
WILL_PROPERTIES: Final = 16


class PropertyKind(IntEnum):
    """The data representation of a property value (v5 1.5).

    The fixed-size integer kinds have their size in bytes as value; the codec relies on it.
    """

    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 4
    VBI = 5
    UTF8 = 6
    BINARY = 7
    UTF8_PAIR = 8


def _mask(*contexts: int) -> int:
    bits = 0
    for context in contexts:
        bits |= 1 << context
    return bits


_P = PacketType
_ALL_WITH_PROPERTIES: Final = _mask(
    _P.CONNECT, _P.CONNACK, _P.PUBLISH, _P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP,
    _P.SUBSCRIBE, _P.SUBACK, _P.UNSUBSCRIBE, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH, WILL_PROPERTIES,
)  # fmt: skip
_ACKS: Final = _mask(_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP)
_MESSAGE: Final = _mask(_P.PUBLISH, WILL_PROPERTIES)

# Boolean-like bytes where the spec says any value other than 0 or 1 is a Protocol Error.
_ZERO_OR_ONE: Final = "zero_or_one"
# Integers where the spec says 0 is a Protocol Error.
_NON_ZERO: Final = "non_zero"


class PropertySpec:
    """How one property is encoded, where it may appear, and which values are allowed."""

    __slots__ = ("allowed", "check", "code", "kind", "name", "pid", "repeatable")

    def __init__(
        self, pid: PropertyId, kind: PropertyKind, allowed: int, repeatable: int, check: str
    ) -> None:
        self.pid = pid
        self.kind = kind
        self.allowed = allowed  # bitmask of contexts (packet types, WILL_PROPERTIES)
        self.repeatable = repeatable  # bitmask of contexts where it may appear more than once
        self.check = check
        self.name = pid.name
        self.code = int(kind)


def _spec(
    pid: PropertyId, kind: PropertyKind, allowed: int, repeatable: int = 0, check: str = ""
) -> tuple[int, PropertySpec]:
    return int(pid), PropertySpec(pid, kind, allowed, repeatable, check)


_K = PropertyKind
_I = PropertyId
SPECS: Final[dict[int, PropertySpec]] = dict(
    [
        _spec(_I.PAYLOAD_FORMAT_INDICATOR, _K.BYTE, _MESSAGE, check=_ZERO_OR_ONE),
        _spec(_I.MESSAGE_EXPIRY_INTERVAL, _K.FOUR_BYTE, _MESSAGE),
        _spec(_I.CONTENT_TYPE, _K.UTF8, _MESSAGE),
        _spec(_I.RESPONSE_TOPIC, _K.UTF8, _MESSAGE, check="topic_name"),
        _spec(_I.CORRELATION_DATA, _K.BINARY, _MESSAGE),
        # v5 3.3.2.3.8: a PUBLISH to a subscriber carries one per matching subscription;
        # v5 3.8.2.1.2: a SUBSCRIBE carries at most one.
        _spec(
            _I.SUBSCRIPTION_IDENTIFIER,
            _K.VBI,
            _mask(_P.PUBLISH, _P.SUBSCRIBE),
            repeatable=_mask(_P.PUBLISH),
            check=_NON_ZERO,
        ),
        _spec(
            _I.SESSION_EXPIRY_INTERVAL,
            _K.FOUR_BYTE,
            _mask(_P.CONNECT, _P.CONNACK, _P.DISCONNECT),
        ),
        _spec(_I.ASSIGNED_CLIENT_IDENTIFIER, _K.UTF8, _mask(_P.CONNACK)),
        _spec(_I.SERVER_KEEP_ALIVE, _K.TWO_BYTE, _mask(_P.CONNACK)),
        _spec(_I.AUTHENTICATION_METHOD, _K.UTF8, _mask(_P.CONNECT, _P.CONNACK, _P.AUTH)),
        _spec(_I.AUTHENTICATION_DATA, _K.BINARY, _mask(_P.CONNECT, _P.CONNACK, _P.AUTH)),
        _spec(_I.REQUEST_PROBLEM_INFORMATION, _K.BYTE, _mask(_P.CONNECT), check=_ZERO_OR_ONE),
        _spec(_I.WILL_DELAY_INTERVAL, _K.FOUR_BYTE, _mask(WILL_PROPERTIES)),
        _spec(_I.REQUEST_RESPONSE_INFORMATION, _K.BYTE, _mask(_P.CONNECT), check=_ZERO_OR_ONE),
        _spec(_I.RESPONSE_INFORMATION, _K.UTF8, _mask(_P.CONNACK)),
        _spec(_I.SERVER_REFERENCE, _K.UTF8, _mask(_P.CONNACK, _P.DISCONNECT)),
        _spec(
            _I.REASON_STRING,
            _K.UTF8,
            _mask(_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH) | _ACKS,
        ),
        _spec(_I.RECEIVE_MAXIMUM, _K.TWO_BYTE, _mask(_P.CONNECT, _P.CONNACK), check=_NON_ZERO),
        _spec(_I.TOPIC_ALIAS_MAXIMUM, _K.TWO_BYTE, _mask(_P.CONNECT, _P.CONNACK)),
        _spec(_I.TOPIC_ALIAS, _K.TWO_BYTE, _mask(_P.PUBLISH), check=_NON_ZERO),
        _spec(_I.MAXIMUM_QOS, _K.BYTE, _mask(_P.CONNACK), check=_ZERO_OR_ONE),
        _spec(_I.RETAIN_AVAILABLE, _K.BYTE, _mask(_P.CONNACK), check=_ZERO_OR_ONE),
        _spec(
            _I.USER_PROPERTY, _K.UTF8_PAIR, _ALL_WITH_PROPERTIES, repeatable=_ALL_WITH_PROPERTIES
        ),
        _spec(_I.MAXIMUM_PACKET_SIZE, _K.FOUR_BYTE, _mask(_P.CONNECT, _P.CONNACK), check=_NON_ZERO),
        _spec(_I.WILDCARD_SUBSCRIPTION_AVAILABLE, _K.BYTE, _mask(_P.CONNACK), check=_ZERO_OR_ONE),
        _spec(_I.SUBSCRIPTION_IDENTIFIER_AVAILABLE, _K.BYTE, _mask(_P.CONNACK), check=_ZERO_OR_ONE),
        _spec(_I.SHARED_SUBSCRIPTION_AVAILABLE, _K.BYTE, _mask(_P.CONNACK), check=_ZERO_OR_ONE),
    ]
)


def context_name(context: int) -> str:
    """The name used in error messages for a property context."""
    return "Will Properties" if context == WILL_PROPERTIES else PacketType(context).name


class Properties:
    """An immutable, ordered list of (PropertyId, value) pairs (v5 2.2.2).

    Values are ``int`` (Byte, Two/Four Byte Integer, Variable Byte Integer), ``str`` (UTF-8
    string), ``bytes`` (Binary Data) or ``tuple[str, str]`` (User Property). Order is kept
    because v5 3.3.2.3.7 requires User Properties to be forwarded in order.
    """

    __slots__ = ("_items",)
    EMPTY: ClassVar[Properties]
    _items: tuple[tuple[PropertyId, PropertyValue], ...]

    def __init__(self, items: Iterable[tuple[PropertyId | int, PropertyValue]] = ()) -> None:
        checked = []
        for pid, value in items:
            spec = SPECS.get(int(pid))
            if spec is None:
                raise ValueError(f"unknown property identifier 0x{int(pid):02X}")
            _check_type(spec, value)
            checked.append((spec.pid, value))
        object.__setattr__(self, "_items", tuple(checked))

    @classmethod
    def _trusted(cls, items: tuple[tuple[PropertyId, PropertyValue], ...]) -> Properties:
        """Build from pairs the decoder has already checked (skips the type checks)."""
        self = object.__new__(cls)
        object.__setattr__(self, "_items", items)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Properties is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Properties is immutable")

    def get(self, pid: PropertyId, default: PropertyValue | None = None) -> PropertyValue | None:
        """The first value of ``pid``, or ``default``."""
        for item_pid, value in self._items:
            if item_pid == pid:
                return value
        return default

    def get_all(self, pid: PropertyId) -> tuple[PropertyValue, ...]:
        """Every value of ``pid`` in order (User Property, Subscription Identifier repeat)."""
        return tuple(value for item_pid, value in self._items if item_pid == pid)

    def with_(self, pid: PropertyId, value: PropertyValue) -> Properties:
        """A copy where ``pid`` has the single value ``value`` (at its first position)."""
        spec = SPECS[int(pid)]
        _check_type(spec, value)
        items: list[tuple[PropertyId, PropertyValue]] = []
        placed = False
        for item in self._items:
            if item[0] == pid:
                if not placed:
                    items.append((spec.pid, value))
                    placed = True
            else:
                items.append(item)
        if not placed:
            items.append((spec.pid, value))
        return Properties._trusted(tuple(items))

    def with_added(self, pid: PropertyId, value: PropertyValue) -> Properties:
        """A copy with one more ``pid`` value at the end (for repeatable properties)."""
        spec = SPECS[int(pid)]
        _check_type(spec, value)
        return Properties._trusted((*self._items, (spec.pid, value)))

    def without(self, pid: PropertyId) -> Properties:
        """A copy with every ``pid`` value removed."""
        if not any(item_pid == pid for item_pid, _ in self._items):
            return self
        return Properties._trusted(tuple(item for item in self._items if item[0] != pid))

    def __contains__(self, pid: object) -> bool:
        return any(item_pid == pid for item_pid, _ in self._items)

    def __iter__(self) -> Iterator[tuple[PropertyId, PropertyValue]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Properties):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"({pid.name}, {value!r})" for pid, value in self._items)
        return f"Properties([{inner}])"


Properties.EMPTY = Properties()
_set_items: Final = Properties.__dict__["_items"].__set__


def _new_properties(
    items: tuple[tuple[PropertyId, PropertyValue], ...],
    _new: Callable[[type[Properties]], Properties] = object.__new__,
) -> Properties:
    """Build from pairs the decoder has checked, skipping the checks and __setattr__."""
    self = _new(Properties)
    _set_items(self, items)
    return self


EMPTY: Final = Properties.EMPTY


def _check_type(spec: PropertySpec, value: object) -> None:
    kind = spec.kind
    if kind is PropertyKind.UTF8:
        ok = isinstance(value, str)
    elif kind is PropertyKind.BINARY:
        ok = isinstance(value, bytes)
    elif kind is PropertyKind.UTF8_PAIR:
        ok = (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], str)
        )
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        raise TypeError(f"{spec.pid.name} needs a {kind.name} value, not {value!r}")


def check_value(spec: PropertySpec, value: PropertyValue, context: int) -> None:
    """The value rules of v5 3.x (0/1 flags, non-zero limits, topic names)."""
    check = spec.check
    if not check:
        return
    if check == _ZERO_OR_ONE:
        if value not in (0, 1):
            raise ProtocolError(
                f"{spec.pid.name} must be 0 or 1, not {value!r} in {context_name(context)}"
            )
    elif check == _NON_ZERO:
        if value == 0:
            raise ProtocolError(f"{spec.pid.name} must not be 0 in {context_name(context)}")
    elif check == "topic_name":
        # v5 3.3.2.3.5: the Response Topic is a Topic Name, so it has no wildcards.
        assert isinstance(value, str)
        if not value or "+" in value or "#" in value:
            raise ProtocolError(f"RESPONSE_TOPIC {value!r} is not a valid topic name")


def validate(properties: Properties, context: int) -> None:
    """Check that ``properties`` may be sent in ``context`` (v5 2.2.2.2).

    A property that does not belong to the packet makes it a Malformed Packet (v5 2.2.2.2);
    a forbidden duplicate or an out-of-range value is a Protocol Error (v5 3.x).
    """
    bit = 1 << context
    seen = 0
    for pid, value in properties:
        spec = SPECS[pid]
        _check_allowed(spec, bit, seen, context)
        seen |= 1 << pid
        check_value(spec, value, context)


def _check_allowed(spec: PropertySpec, bit: int, seen: int, context: int) -> None:
    if not spec.allowed & bit:
        raise MalformedPacket(
            f"property 0x{spec.pid:02X} ({spec.pid.name}) not allowed in {context_name(context)}"
        )
    if seen & (1 << spec.pid) and not spec.repeatable & bit:
        raise ProtocolError(f"duplicate property 0x{spec.pid:02X} in {context_name(context)}")


def decode_properties(data: bytes, pos: int, end: int, context: int) -> tuple[Properties, int]:
    """Decode the property length and properties at ``data[pos:end]`` (v5 2.2.2).

    Returns the properties and the position after them.
    """
    # Property Length: a Variable Byte Integer (v5 2.2.2.1). Inline fast path for < 128.
    if pos >= end:
        raise MalformedPacket(f"missing property length in {context_name(context)}")
    length = data[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = decode_vbi(data, pos, end, "property length")
    if length == 0:
        return EMPTY, pos
    stop = pos + length
    if stop > end:
        raise MalformedPacket(
            f"property length {length} exceeds the {end - pos} bytes left in "
            f"{context_name(context)}"
        )
    bit = 1 << context
    seen = 0
    items: list[tuple[PropertyId, PropertyValue]] = []
    while pos < stop:
        ident = data[pos]
        pos += 1
        spec = SPECS.get(ident)
        if spec is None:
            raise MalformedPacket(
                f"unknown property identifier 0x{ident:02X} in {context_name(context)}"
            )
        if not spec.allowed & bit or (seen & (1 << ident) and not spec.repeatable & bit):
            _check_allowed(spec, bit, seen, context)
        seen |= 1 << ident
        # Plain ints rather than PropertyKind members: enum attribute lookups are slow here.
        kind = spec.code
        value: PropertyValue
        if kind <= 4:  # Byte, Two Byte or Four Byte Integer: the kind is the size
            if pos + kind > stop:
                raise _truncated(spec, context)
            value = data[pos] if kind == 1 else int.from_bytes(data[pos : pos + kind], "big")
            pos += kind
        elif kind == 6:  # PropertyKind.UTF8
            value, pos = decode_string(data, pos, stop, spec.name)
        elif kind == 8:  # PropertyKind.UTF8_PAIR
            name, pos = decode_string(data, pos, stop, "USER_PROPERTY name")
            text, pos = decode_string(data, pos, stop, "USER_PROPERTY value")
            value = (name, text)
        elif kind == 7:  # PropertyKind.BINARY
            value, pos = decode_binary(data, pos, stop, spec.name)
        else:
            value, pos = decode_vbi(data, pos, stop, spec.name)
        if spec.check:
            check_value(spec, value, context)
        items.append((spec.pid, value))
    return _new_properties(tuple(items)), pos


def _truncated(spec: PropertySpec, context: int) -> MalformedPacket:
    return MalformedPacket(f"property {spec.pid.name} truncated in {context_name(context)}")


def decode_vbi(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Decode a Variable Byte Integer (v5 1.5.5): at most four bytes, minimal encoding."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise MalformedPacket(f"{what} truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift == 28:
            raise MalformedPacket(f"{what} exceeds 4 bytes")
    if byte == 0 and pos - start > 1:
        # v5 1.5.5 [MQTT-1.5.5-1]: the minimum number of bytes MUST be used.
        raise MalformedPacket(f"{what} is not minimally encoded")
    return value, pos


def decode_binary(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """Decode Binary Data: a two-byte length then that many bytes (v5 1.5.6)."""
    if pos + 2 > end:
        raise MalformedPacket(f"{what} length truncated")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what} longer than the bytes left")
    return data[pos + 2 : stop], stop


def decode_string(data: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    """Decode a UTF-8 Encoded String (v5 1.5.4).

    Python's strict UTF-8 codec rejects overlong forms and encoded surrogates
    (U+D800..U+DFFF), which [MQTT-1.5.4-1] forbids; U+0000 is checked separately
    ([MQTT-1.5.4-2]). Both make the packet malformed.
    """
    if pos + 2 > end:
        raise MalformedPacket(f"{what} length truncated")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what} longer than the bytes left")
    try:
        text = data[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not valid UTF-8: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000")
    return text, stop


def encode_vbi(value: int) -> bytes:
    """Encode a Variable Byte Integer (v5 1.5.5)."""
    if value < 0x80:
        if value < 0:
            raise MalformedPacket(f"variable byte integer {value} is negative")
        return bytes((value,))
    if value > VBI_MAX:
        raise MalformedPacket(f"variable byte integer {value} exceeds {VBI_MAX}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(text: str, what: str = "string") -> bytes:
    """Encode a UTF-8 Encoded String (v5 1.5.4)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPacket(f"{what} contains a surrogate") from None
    if len(data) > 0xFFFF:
        raise MalformedPacket(f"{what} is {len(data)} bytes, more than 65535")
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000")
    return len(data).to_bytes(2, "big") + data


def encode_binary(data: bytes, what: str = "binary data") -> bytes:
    """Encode Binary Data (v5 1.5.6)."""
    if len(data) > 0xFFFF:
        raise MalformedPacket(f"{what} is {len(data)} bytes, more than 65535")
    return len(data).to_bytes(2, "big") + data


def _encode_int(value: int, size: int, spec: PropertySpec) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise MalformedPacket(f"{spec.pid.name} value {value} does not fit in {size} bytes")
    return value.to_bytes(size, "big")


def encode_properties(properties: Properties, context: int) -> bytes:
    """Encode property length and properties for ``context``, validating them first."""
    if not properties:
        return b"\x00"
    bit = 1 << context
    seen = 0
    parts: list[bytes] = []
    for pid, value in properties:
        spec = SPECS[pid]
        if not spec.allowed & bit or (seen & (1 << pid) and not spec.repeatable & bit):
            _check_allowed(spec, bit, seen, context)
        seen |= 1 << pid
        if spec.check:
            check_value(spec, value, context)
        kind = spec.code
        if kind <= 4:  # Byte, Two Byte or Four Byte Integer: the kind is the size
            assert isinstance(value, int)
            parts.append(bytes((pid,)) + _encode_int(value, kind, spec))
        elif kind == 6:  # PropertyKind.UTF8
            assert isinstance(value, str)
            parts.append(bytes((pid,)) + encode_string(value, spec.name))
        elif kind == 8:  # PropertyKind.UTF8_PAIR
            assert isinstance(value, tuple)
            parts.append(
                b"\x26"
                + encode_string(value[0], "USER_PROPERTY name")
                + encode_string(value[1], "USER_PROPERTY value")
            )
        elif kind == 7:  # PropertyKind.BINARY
            assert isinstance(value, bytes)
            parts.append(bytes((pid,)) + encode_binary(value, spec.name))
        else:
            assert isinstance(value, int)
            parts.append(bytes((pid,)) + encode_vbi(value))
    body = b"".join(parts)
    return encode_vbi(len(body)) + body
