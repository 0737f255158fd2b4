"""Payload encryption at rest for chosen topics (issue 10, item 1). Sans-I/O.

The session calls :meth:`PayloadProtector.applies` with the broker-side topic name of
every PUBLISH; for a topic that applies it calls :meth:`seal` before the PUBLISH goes
upstream and :meth:`open` on every delivery from upstream. A failure is a value, never
an exception: the caller refuses (seal) or drops (open) the message and audits the reason.

An empty payload is passed through both ways: it carries no data, and MQTT 3.3.1.3 gives
an empty retained payload a meaning of its own (clear the retained message) that a
sealed one would lose.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection import envelope
from gateway.protection.config import ProtectionConfig
from gateway.protection.keyring import Key, Keyring
from gateway.protection.topicset import TopicSet

# Reasons, as audited.
NOT_ENVELOPE: Final = "not_envelope"
UNSUPPORTED_VERSION: Final = "unsupported_version"
UNKNOWN_KEY: Final = "unknown_key"
RETIRED_KEY: Final = "retired_key"
WRONG_TOPIC: Final = "wrong_topic"
TAMPERED: Final = "tampered"
MALFORMED: Final = "malformed_envelope"
NO_KEY: Final = "no_key"

_PFI = PropertyId.PAYLOAD_FORMAT_INDICATOR
_CONTENT_TYPE = PropertyId.CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """A delivery that must be dropped, and why."""

    reason: str
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class SealFailure:
    """A publish that cannot be sealed (no usable key): refuse it, never send plaintext."""

    reason: str


def _tag(key: Key, org: bytes, topic: bytes) -> bytes:
    digest = hmac.digest(key.tag_key, org + b"\x00" + topic, hashlib.sha256)
    return digest[: envelope.TOPIC_TAG_BYTES]


class PayloadProtector:
    """Seals and opens payloads of the configured topics with the keyring's keys."""

    __slots__ = ("_keyring", "_random", "_topics")

    def __init__(
        self,
        config: ProtectionConfig,
        keyring: Keyring,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._topics: TopicSet[bool] = TopicSet(
            ((f, True) for f in config.encrypt_filters), lambda a, b: a or b
        )
        self._keyring = keyring
        self._random = random

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def with_keyring(self, keyring: Keyring) -> PayloadProtector:
        """The same topics with another keyring (after a rotation), sharing the topic cache."""
        other = object.__new__(PayloadProtector)
        other._topics = self._topics
        other._keyring = keyring
        other._random = self._random
        return other

    def enabled(self) -> bool:
        return bool(self._topics)

    def applies(self, topic: str) -> bool:
        """Whether payloads on broker-side topic name ``topic`` are sealed."""
        return self._topics.lookup(topic) is True

    def seal(
        self, topic: str, payload: bytes, properties: Properties, org: str | None = None
    ) -> tuple[bytes, Properties] | SealFailure:
        """The envelope to send upstream, and the properties without the payload format
        indicator and content type (they travel inside)."""
        if not payload:
            return payload, properties
        keys = self._keyring.set_for(org)
        key = keys.sealing if keys is not None else None
        if key is None or key.aead is None:
            return SealFailure(NO_KEY)
        pfi = properties.get(_PFI)
        content_type = properties.get(_CONTENT_TYPE)
        inner = envelope.build_inner(
            payload,
            pfi if isinstance(pfi, int) else None,
            content_type if isinstance(content_type, str) else None,
        )
        org_b = org.encode() if org is not None else b""
        topic_b = topic.encode()
        header = envelope.build_header(key.id.encode(), _tag(key, org_b, topic_b))
        nonce = self._random(envelope.NONCE_BYTES)
        aad = envelope.associated_data(header, org_b, topic_b)
        sealed = header + nonce + key.aead.encrypt(nonce, inner, aad)
        return sealed, properties.without(_PFI).without(_CONTENT_TYPE)

    def open(
        self, topic: str, payload: bytes, properties: Properties, org: str | None = None
    ) -> tuple[bytes, Properties] | OpenFailure:
        """The plaintext and properties to deliver, with the payload format indicator and
        content type restored as they were published; or why the delivery is dropped."""
        if not payload:
            return payload, properties
        try:
            header = envelope.parse_header(payload)
        except envelope.NotAnEnvelope as exc:
            return OpenFailure(exc.reason)
        keys = self._keyring.set_for(org)
        key = keys.by_id.get(header.key_id) if keys is not None else None
        if key is None:
            return OpenFailure(UNKNOWN_KEY, header.key_id)
        if key.retired or key.aead is None:
            return OpenFailure(RETIRED_KEY, header.key_id)
        org_b = org.encode() if org is not None else b""
        topic_b = topic.encode()
        if not hmac.compare_digest(header.topic_tag, _tag(key, org_b, topic_b)):
            return OpenFailure(WRONG_TOPIC, header.key_id)
        aad = envelope.associated_data(header.aad_prefix, org_b, topic_b)
        try:
            plain = key.aead.decrypt(header.nonce, payload[header.body_offset :], aad)
        except InvalidTag:
            return OpenFailure(TAMPERED, header.key_id)
        inner = envelope.parse_inner(plain)
        if inner is None:
            return OpenFailure(MALFORMED, header.key_id)
        props = properties.without(_PFI).without(_CONTENT_TYPE)
        if inner.pfi is not None:
            props = props.with_(_PFI, inner.pfi)
        if inner.content_type is not None:
            props = props.with_(_CONTENT_TYPE, inner.content_type)
        return inner.payload, props
