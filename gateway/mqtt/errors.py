"""Typed decoding errors, each carrying the v5 Reason Code a peer should be told (v5 2.4).

A decoder never lets anything else escape: a malformed input is always an ``MQTTError``.
In v3.1.1 there is no reason code on the wire; the session closes the connection instead
(v3.1.1 4.8), so the code only matters for logging and for v5 peers.
"""

from __future__ import annotations

from .constants import ReasonCode


class MQTTError(Exception):
    """A packet that cannot be accepted; ``reason_code`` is the v5 code to report."""

    reason_code: int = ReasonCode.UNSPECIFIED_ERROR

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class MalformedPacket(MQTTError):
    """The bytes do not follow the packet grammar (v5 1.2 "Malformed Packet", 0x81)."""

    reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolError(MQTTError):
    """Well-formed bytes that break a protocol rule (v5 1.2 "Protocol Error", 0x82)."""

    reason_code = ReasonCode.PROTOCOL_ERROR


class TopicNameInvalid(ProtocolError):
    """A PUBLISH Topic Name with wildcards or none at all (v5 3.3.2.1, reason 0x90).

    A subclass of ``ProtocolError``: code that only knows protocol errors still closes the
    connection, while a v5 session can tell the peer the more precise 0x90.
    """

    reason_code = ReasonCode.TOPIC_NAME_INVALID


class PacketTooLarge(MQTTError):
    """The packet exceeds the configured maximum packet size (v5 3.1.2.11.4, 0x95)."""

    reason_code = ReasonCode.PACKET_TOO_LARGE


class UnsupportedProtocolVersion(MQTTError):
    """A CONNECT with a protocol name/level pair we do not speak (v5 3.1.2.2, 0x84).

    ``protocol_level`` is the level the CONNECT announced, so the session can choose the
    CONNACK format: v3.1.1 3.1.2.2 wants return code 0x01, v5 wants reason code 0x84.
    """

    reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, message: str, protocol_level: int | None = None) -> None:
        super().__init__(message)
        self.protocol_level = protocol_level
