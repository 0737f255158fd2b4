"""Span names and attributes, after the OpenTelemetry semantic conventions.

Names come from the conventions where one exists (messaging, client, enduser, network,
tls: semconv 1.26+); everything the gateway adds lives under ``mqttgate.*``. A deny is
an attribute (``mqttgate.verdict``), never an ERROR status: a deny is the system working.
"""

from __future__ import annotations

from gateway.audit.records import ConnectionRecord, DecisionRecord, safe_identity

# semconv "Messaging attributes".
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
# semconv "General client attributes", "End user", "Network", "TLS".
ENDUSER_ID = "enduser.id"
CLIENT_ADDRESS = "client.address"
CLIENT_PORT = "client.port"
NETWORK_PROTOCOL_NAME = "network.protocol.name"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
TLS_PROTOCOL_NAME = "tls.protocol.name"
TLS_PROTOCOL_VERSION = "tls.protocol.version"
# The gateway's own.
VERDICT = "mqttgate.verdict"
REASON = "mqttgate.reason"
RULE_ID = "mqttgate.rule_id"
PATTERN = "mqttgate.pattern"
POLICY_VERSION = "mqttgate.policy_version"
QOS = "mqttgate.qos"
GRANTED_QOS = "mqttgate.granted_qos"
RETAIN = "mqttgate.retain"
DECISION_NS = "mqttgate.decision_ns"
CLIENT_ID = "mqttgate.client_id"
ISSUER = "mqttgate.issuer"
ACTION = "mqttgate.action"
CONNECTION_ID = "mqttgate.connection_id"
IDENTITY_PREFIX = "mqttgate.identity."

SPAN_CONNECT = "mqttgate.connect"
SPAN_AUTHORIZE_PREFIX = "mqttgate.authorize "

# MQTT 5 §3.1.2.2: the CONNECT protocol level and the version it names.
PROTOCOL_VERSIONS: dict[int, str] = {3: "3.1", 4: "3.1.1", 5: "5.0"}

# semconv messaging.operation.type well-known values; actions with no counterpart
# (subscribe, unsubscribe, reauth) carry only messaging.operation.name.
OPERATION_TYPES: dict[str, str] = {"publish": "send", "will": "send", "delivery": "receive"}

AttributeValue = str | bool | int | float | list[str]


def connection_span_name(rec: ConnectionRecord) -> str:
    return SPAN_CONNECT if rec.kind == "connect" else f"mqttgate.{rec.kind}"


def decision_span_name(rec: DecisionRecord) -> str:
    return SPAN_AUTHORIZE_PREFIX + rec.action


def connection_attributes(rec: ConnectionRecord) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        MESSAGING_SYSTEM: "mqtt",
        NETWORK_PROTOCOL_NAME: "mqtt",
        ACTION: rec.kind,
        VERDICT: rec.outcome,
        REASON: rec.reason,
    }
    if rec.protocol_level is not None:
        attrs[NETWORK_PROTOCOL_VERSION] = PROTOCOL_VERSIONS.get(
            rec.protocol_level, str(rec.protocol_level)
        )
    if rec.user_id is not None:
        attrs[ENDUSER_ID] = rec.user_id
    if rec.client_id is not None:
        attrs[CLIENT_ID] = rec.client_id
    if rec.issuer is not None:
        attrs[ISSUER] = rec.issuer
    if rec.client_address is not None:
        attrs[CLIENT_ADDRESS] = rec.client_address
    if rec.client_port is not None:
        attrs[CLIENT_PORT] = rec.client_port
    if rec.tls_version is not None:
        attrs[TLS_PROTOCOL_NAME] = "tls"
        attrs[TLS_PROTOCOL_VERSION] = rec.tls_version
    if rec.duration_ns:
        attrs[DECISION_NS] = rec.duration_ns
    if rec.connection_id is not None:
        attrs[CONNECTION_ID] = rec.connection_id
    for name, value in safe_identity(rec.identity).items():
        if isinstance(value, str):
            attrs[IDENTITY_PREFIX + name] = value
        elif isinstance(value, list | tuple):
            attrs[IDENTITY_PREFIX + name] = [str(v) for v in value]
    return attrs


def decision_attributes(rec: DecisionRecord) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        MESSAGING_SYSTEM: "mqtt",
        MESSAGING_DESTINATION_NAME: rec.topic,
        MESSAGING_OPERATION_NAME: rec.action,
        ACTION: rec.action,
        VERDICT: rec.verdict,
        REASON: rec.reason,
        DECISION_NS: rec.decision_ns,
    }
    op_type = OPERATION_TYPES.get(rec.action)
    if op_type is not None:
        attrs[MESSAGING_OPERATION_TYPE] = op_type
    if rec.qos is not None:
        attrs[QOS] = rec.qos
    if rec.granted_qos is not None:
        attrs[GRANTED_QOS] = rec.granted_qos
    if rec.retain is not None:
        attrs[RETAIN] = rec.retain
    if rec.rule_id is not None:
        attrs[RULE_ID] = rec.rule_id
    if rec.pattern is not None:
        attrs[PATTERN] = rec.pattern
    if rec.policy_version is not None:
        attrs[POLICY_VERSION] = rec.policy_version
    if rec.client_id is not None:
        attrs[CLIENT_ID] = rec.client_id
    if rec.user_id is not None:
        attrs[ENDUSER_ID] = rec.user_id
    if rec.client_address is not None:
        attrs[CLIENT_ADDRESS] = rec.client_address
    if rec.connection_id is not None:
        attrs[CONNECTION_ID] = rec.connection_id
    return attrs
