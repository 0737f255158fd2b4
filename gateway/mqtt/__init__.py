"""MQTT 3.1.1 and 5.0 codec, sans-I/O.

``PacketDecoder`` turns bytes into ``RawPacket`` (packet value plus its exact bytes);
``encode`` turns a packet value into bytes. No I/O, no clocks, no global state.
"""

from .constants import MQTT_5, MQTT_31, MQTT_311, ConnackV3, PacketType, PropertyId, ReasonCode
from .decoder import PacketDecoder, RawPacket, decode_packet
from .encoder import encode
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
from .properties import Properties

__all__ = [
    "MQTT_5",
    "MQTT_31",
    "MQTT_311",
    "Auth",
    "Connack",
    "ConnackV3",
    "Connect",
    "Disconnect",
    "MQTTError",
    "MalformedPacket",
    "Packet",
    "PacketDecoder",
    "PacketTooLarge",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "PropertyId",
    "ProtocolError",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "RawPacket",
    "ReasonCode",
    "Suback",
    "Subscribe",
    "Subscription",
    "TopicNameInvalid",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "decode_packet",
    "encode",
]
