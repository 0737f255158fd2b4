"""The 15 MQTT Control Packets as frozen values (v5 chapter 3, v3.1.1 chapter 3).

One class serves both protocol versions: fields that only exist in v5 (reason codes,
properties, subscription options) keep their defaults when a v3.1.1 packet is decoded and
are left out when one is encoded. Reason codes are plain ints so that values received from
a peer are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from .constants import MQTT_311, PROTOCOL_NAME, PacketType
from .properties import Properties

EMPTY = Properties.EMPTY


@dataclass(frozen=True, slots=True)
class Will:
    """The Will Message of a CONNECT (v5 3.1.2.5, 3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT (v5 3.1). ``clean_start`` is "Clean Session" in v3.1.1."""

    packet_type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str
    protocol_level: int = MQTT_311
    protocol_name: str = PROTOCOL_NAME
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK (v5 3.2). In v3.1.1 ``reason_code`` is the return code (``ConnackV3``)."""

    packet_type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH (v5 3.3). ``packet_id`` is None exactly when ``qos`` is 0.

    A v5 PUBLISH may have an empty ``topic`` plus a Topic Alias property (v5 3.3.2.3.4);
    the session resolves the alias.
    """

    packet_type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Puback:
    """PUBACK (v5 3.4)."""

    packet_type: ClassVar[PacketType] = PacketType.PUBACK
    packet_id: int
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Pubrec:
    """PUBREC (v5 3.5)."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREC
    packet_id: int
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Pubrel:
    """PUBREL (v5 3.6)."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREL
    packet_id: int
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Pubcomp:
    """PUBCOMP (v5 3.7)."""

    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP
    packet_id: int
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Subscription:
    """One Topic Filter with its Subscription Options (v5 3.8.3.1)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE (v5 3.8)."""

    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK (v5 3.9). v3.1.1 return codes are 0, 1, 2 and 0x80."""

    packet_type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE (v5 3.10)."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK (v5 3.11). v3.1.1 has no reason codes: ``reason_codes`` is then empty."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK
    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ (v5 3.12)."""

    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP (v5 3.13)."""

    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT (v5 3.14). v3.1.1 has neither reason code nor properties."""

    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT
    reason_code: int = 0
    properties: Properties = EMPTY


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (v5 3.15), v5 only."""

    packet_type: ClassVar[PacketType] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties = EMPTY


Packet: TypeAlias = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
