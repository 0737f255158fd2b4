"""The sealed-payload envelope, version 1, byte by byte (docs/data-protection.md).

Outer (what the broker stores)::

    0      4   magic            FF 4D 51 45  (0xFF never occurs in UTF-8 text)
    4      1   version          01
    5      1   key id length n  1..64
    6      n   key id           ASCII [A-Za-z0-9._-]
    6+n    4   topic tag        HMAC-SHA256(tag key, org || 00 || topic)[:4]
    10+n   12  nonce            random, fresh per message
    22+n   ..  ciphertext       AES-256-GCM of the inner plaintext, 16-byte tag last

The associated data is the header (bytes 0..10+n), then the org and the topic, each
behind a 2-byte big-endian length: a ciphertext opens only on the topic, org and key id
it was sealed for, and the version byte cannot be changed.

Inner (encrypted)::

    0      1   flags            bit 0: a payload format indicator was present
                                bit 1: its value was 1 (UTF-8)
                                bit 2: a content type was present
    [1     2   content type length m, big-endian     (only with bit 2)
     3     m   content type, UTF-8]
    ..     ..  the payload
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"\xffMQE"
VERSION_1: Final = 1
TOPIC_TAG_BYTES: Final = 4  # classifies a wrong-topic replay; GCM still authenticates
NONCE_BYTES: Final = 12  # NIST SP 800-38D 8.2: 96-bit IVs
GCM_TAG_BYTES: Final = 16
FLAG_PFI_PRESENT: Final = 0x01
FLAG_PFI_UTF8: Final = 0x02
FLAG_CONTENT_TYPE: Final = 0x04
_KNOWN_FLAGS: Final = FLAG_PFI_PRESENT | FLAG_PFI_UTF8 | FLAG_CONTENT_TYPE
_U16 = struct.Struct(">H")
# The smallest envelope: a one-byte key id and an inner plaintext of just the flags.
MIN_ENVELOPE_BYTES: Final = len(MAGIC) + 2 + 1 + TOPIC_TAG_BYTES + NONCE_BYTES + 1 + GCM_TAG_BYTES


@dataclass(frozen=True, slots=True)
class Header:
    """The clear part of an envelope."""

    version: int
    key_id: str
    topic_tag: bytes
    nonce: bytes
    aad_prefix: bytes  # bytes 0..10+n, authenticated as they are
    body_offset: int


class NotAnEnvelope(ValueError):
    """The bytes do not start like an envelope of a known version."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build_header(key_id: bytes, topic_tag: bytes) -> bytes:
    """Bytes 0..10+n of a version 1 envelope (without the nonce)."""
    return MAGIC + bytes((VERSION_1, len(key_id))) + key_id + topic_tag


def parse_header(data: bytes) -> Header:
    """Split the clear part; raises NotAnEnvelope with ``not_envelope`` or
    ``unsupported_version``."""
    if len(data) < MIN_ENVELOPE_BYTES or data[:4] != MAGIC:
        raise NotAnEnvelope("not_envelope")
    if data[4] != VERSION_1:
        raise NotAnEnvelope("unsupported_version")
    n = data[5]
    tag_at = 6 + n
    nonce_at = tag_at + TOPIC_TAG_BYTES
    body_at = nonce_at + NONCE_BYTES
    if n == 0 or len(data) < body_at + 1 + GCM_TAG_BYTES:
        raise NotAnEnvelope("not_envelope")
    try:
        key_id = data[6:tag_at].decode("ascii")
    except UnicodeDecodeError:
        raise NotAnEnvelope("not_envelope") from None
    return Header(
        VERSION_1, key_id, data[tag_at:nonce_at], data[nonce_at:body_at], data[:nonce_at], body_at
    )


def associated_data(aad_prefix: bytes, org: bytes, topic: bytes) -> bytes:
    return aad_prefix + _U16.pack(len(org)) + org + _U16.pack(len(topic)) + topic


def build_inner(payload: bytes, pfi: int | None, content_type: str | None) -> bytes:
    flags = 0
    if pfi is not None:
        flags |= FLAG_PFI_PRESENT | (FLAG_PFI_UTF8 if pfi == 1 else 0)
    if content_type is None:
        return bytes((flags,)) + payload
    ct = content_type.encode()
    return bytes((flags | FLAG_CONTENT_TYPE,)) + _U16.pack(len(ct)) + ct + payload


@dataclass(frozen=True, slots=True)
class Inner:
    payload: bytes
    pfi: int | None
    content_type: str | None


def parse_inner(data: bytes) -> Inner | None:
    """The inner plaintext, or None when it is malformed (only our own bug could do it:
    it was authenticated)."""
    flags = data[0]
    if flags & ~_KNOWN_FLAGS:
        return None
    pfi = (1 if flags & FLAG_PFI_UTF8 else 0) if flags & FLAG_PFI_PRESENT else None
    if not flags & FLAG_CONTENT_TYPE:
        return Inner(data[1:], pfi, None)
    if len(data) < 3:
        return None
    (m,) = _U16.unpack_from(data, 1)
    if len(data) < 3 + m:
        return None
    try:
        content_type = data[3 : 3 + m].decode()
    except UnicodeDecodeError:
        return None
    return Inner(data[3 + m :], pfi, content_type)
