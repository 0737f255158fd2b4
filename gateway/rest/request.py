"""The body of ``POST /v1/publish``, checked before anything is decided (pure functions)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

# Prefix of the user properties the bridge itself sets; a caller may not forge them.
RESERVED_PROPERTY_PREFIX = "mqttgate-"
# MQTT 5.0 §1.5.4: a UTF-8 string is at most 65,535 bytes and never holds U+0000.
MAX_MQTT_STRING_BYTES = 65_535
FIELDS = frozenset({"topic", "payload", "payload_base64", "qos", "retain", "user_properties"})


@dataclass(frozen=True, slots=True)
class PublishRequest:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    user_properties: tuple[tuple[str, str], ...]


class RequestError(Exception):
    """A request the bridge refuses before deciding: HTTP ``status`` with ``reason``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def _bad(detail: str, reason: str = "bad_request") -> RequestError:
    return RequestError(400, reason, detail)


def _mqtt_string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string")
    if "\x00" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_MQTT_STRING_BYTES:
        raise _bad(f"{what} is not an MQTT UTF-8 string (MQTT 5.0 §1.5.4)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{what} is not valid UTF-8") from None
    return value


def _topic(value: object, max_length: int, max_levels: int) -> str:
    if value is None:
        raise _bad("topic is required")
    topic = _mqtt_string(value, "topic")
    # MQTT 5.0 §4.7.3: a topic name has at least one character and no wildcards.
    if not topic or "+" in topic or "#" in topic:
        raise _bad("topic must be a non-empty topic name without wildcards", "invalid_topic")
    if len(topic) > max_length or topic.count("/") + 1 > max_levels:
        raise _bad("topic is longer or deeper than the gateway allows", "topic_too_long")
    return topic


def _payload(raw: dict[str, Any], max_bytes: int) -> bytes:
    text, encoded = raw.get("payload"), raw.get("payload_base64")
    if text is not None and encoded is not None:
        raise _bad("give payload or payload_base64, not both")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise _bad("payload_base64 must be a string")
        if len(encoded) > (max_bytes + 2) // 3 * 4 + 4:
            raise RequestError(413, "payload_too_large", f"payload over {max_bytes} bytes")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("payload_base64 is not base64 (RFC 4648 §4)") from None
    elif text is not None:
        if not isinstance(text, str):
            raise _bad("payload must be a string (use payload_base64 for bytes)")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("payload is not valid UTF-8") from None
    else:
        data = b""
    if len(data) > max_bytes:
        raise RequestError(413, "payload_too_large", f"payload over {max_bytes} bytes")
    return data


def _user_properties(value: object, max_count: int) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _bad("user_properties must be an object of strings")
    if len(value) > max_count:
        raise _bad(f"at most {max_count} user_properties")
    out: list[tuple[str, str]] = []
    for key, item in value.items():
        name = _mqtt_string(key, "a user property name")
        if name.lower().startswith(RESERVED_PROPERTY_PREFIX):
            raise _bad(f"user property names starting {RESERVED_PROPERTY_PREFIX!r} are reserved")
        out.append((name, _mqtt_string(item, f"user property {name!r}")))
    return tuple(out)


def parse_publish(
    body: bytes,
    *,
    max_payload_bytes: int,
    max_user_properties: int,
    max_topic_length: int,
    max_topic_levels: int,
) -> PublishRequest:
    """The request in ``body``, or :class:`RequestError` (400, or 413 over the limit)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad("the body is not JSON") from None
    if not isinstance(raw, dict):
        raise _bad("the body must be a JSON object")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise _bad("unknown fields: " + ", ".join(unknown))
    qos = raw.get("qos", 0)
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise _bad("qos must be 0, 1 or 2 (MQTT 5.0 §4.3)")
    retain = raw.get("retain", False)
    if not isinstance(retain, bool):
        raise _bad("retain must be a boolean")
    topic = _topic(raw.get("topic"), max_topic_length, max_topic_levels)
    payload = _payload(raw, max_payload_bytes)
    props = _user_properties(raw.get("user_properties"), max_user_properties)
    return PublishRequest(topic, payload, int(qos), retain, props)


def max_body_bytes(max_payload_bytes: int) -> int:
    """The largest body worth reading: base64 grows the payload by 4/3; 128 KiB more
    holds the topic and user properties."""
    return (max_payload_bytes + 2) // 3 * 4 + 128 * 1024
