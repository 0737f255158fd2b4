"""Numbers defined by the MQTT 3.1.1 and 5.0 specifications.

Every name cites the section that defines it; the values are not ours to choose.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# Protocol levels (v5 3.1.2.2, v3.1.1 3.1.2.2; level 3 is MQTT 3.1 with the name "MQIsdp").
MQTT_31: Final = 3
MQTT_311: Final = 4
MQTT_5: Final = 5

# Protocol names (v5 3.1.2.1). Level 3 used "MQIsdp"; levels 4 and 5 use "MQTT".
PROTOCOL_NAME_31: Final = "MQIsdp"
PROTOCOL_NAME: Final = "MQTT"

# v3.1.1 3.9.3: the only failure return code a v3 SUBACK can carry.
SUBACK_FAILURE_V3: Final = 0x80

# v5 1.5.5: a Variable Byte Integer is at most four bytes, so at most 268,435,455.
VBI_MAX: Final = 268_435_455
# v5 1.5.4 / 1.5.6: strings and binary data carry a two-byte length.
TWO_BYTE_MAX: Final = 0xFFFF
FOUR_BYTE_MAX: Final = 0xFFFF_FFFF


class PacketType(IntEnum):
    """MQTT Control Packet type, the high nibble of the first byte (v5 2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(IntEnum):
    """MQTT 5 Reason Codes (v5 2.4). 0x00 has three names, as in the spec."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    REAUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_ID_IN_USE = 0x91
    PACKET_ID_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnackV3(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (v3.1.1 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (v5 2.2.2.2, Table 2-4)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


# Reason codes each v5 packet may carry (v5 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1,
# 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1). A code outside its packet's list is a Protocol Error.
_RC = ReasonCode
CONNACK_REASON_CODES: Final = frozenset(
    {
        _RC.SUCCESS,
        *(
            _RC(c)
            for c in (
                0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
                0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            )
        ),
    }
)  # fmt: skip
PUBACK_REASON_CODES: Final = frozenset(
    {
        _RC.SUCCESS, _RC.NO_MATCHING_SUBSCRIBERS,
        *(_RC(c) for c in (0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)),
    }
)  # fmt: skip
PUBREC_REASON_CODES: Final = PUBACK_REASON_CODES
PUBREL_REASON_CODES: Final = frozenset({_RC.SUCCESS, _RC.PACKET_ID_NOT_FOUND})
PUBCOMP_REASON_CODES: Final = PUBREL_REASON_CODES
SUBACK_REASON_CODES: Final = frozenset(
    {
        _RC.GRANTED_QOS_0, _RC.GRANTED_QOS_1, _RC.GRANTED_QOS_2,
        *(_RC(c) for c in (0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)),
    }
)  # fmt: skip
UNSUBACK_REASON_CODES: Final = frozenset(
    {_RC.SUCCESS, _RC.NO_SUBSCRIPTION_EXISTED, *(_RC(c) for c in (0x80, 0x83, 0x87, 0x8F, 0x91))}
)  # fmt: skip
DISCONNECT_REASON_CODES: Final = frozenset(
    {
        _RC.NORMAL_DISCONNECTION, _RC.DISCONNECT_WITH_WILL,
        *(
            _RC(c)
            for c in (
                0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
                0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
            )
        ),
    }
)  # fmt: skip
AUTH_REASON_CODES: Final = frozenset({_RC.SUCCESS, _RC.CONTINUE_AUTHENTICATION, _RC.REAUTHENTICATE})
# v3.1.1 3.9.3: SUBACK return codes.
SUBACK_RETURN_CODES_V3: Final = frozenset({0x00, 0x01, 0x02, SUBACK_FAILURE_V3})

# v5 has no table that maps its CONNACK reason codes onto v3.1.1 return codes; this is the
# closest meaning for each, and anything else is "not authorized" (fail closed: refused).
_CONNACK_V5_TO_V3: Final[dict[int, ConnackV3]] = {
    _RC.SUCCESS: ConnackV3.ACCEPTED,
    _RC.UNSUPPORTED_PROTOCOL_VERSION: ConnackV3.UNACCEPTABLE_PROTOCOL_VERSION,
    _RC.CLIENT_IDENTIFIER_NOT_VALID: ConnackV3.IDENTIFIER_REJECTED,
    _RC.SERVER_UNAVAILABLE: ConnackV3.SERVER_UNAVAILABLE,
    _RC.SERVER_BUSY: ConnackV3.SERVER_UNAVAILABLE,
    _RC.SERVER_SHUTTING_DOWN: ConnackV3.SERVER_UNAVAILABLE,
    _RC.USE_ANOTHER_SERVER: ConnackV3.SERVER_UNAVAILABLE,
    _RC.SERVER_MOVED: ConnackV3.SERVER_UNAVAILABLE,
    _RC.BAD_USER_NAME_OR_PASSWORD: ConnackV3.BAD_USER_NAME_OR_PASSWORD,
    _RC.BAD_AUTHENTICATION_METHOD: ConnackV3.BAD_USER_NAME_OR_PASSWORD,
    _RC.NOT_AUTHORIZED: ConnackV3.NOT_AUTHORIZED,
}


def connack_v3_code(reason_code: int) -> ConnackV3:
    """The v3.1.1 CONNACK return code closest to a v5 CONNACK reason code."""
    return _CONNACK_V5_TO_V3.get(reason_code, ConnackV3.NOT_AUTHORIZED)
