"""Packets a session has already decided, forwarded again without decoding them (issue 7).

A relay's cost is per packet. Most packets on a busy connection repeat one another: the
same client publishes to the same few topics at the same QoS, the broker delivers the
same few topics. A session's verdict on a PUBLISH depends only on its fixed header's
first byte (type, DUP, QoS, RETAIN), its topic, the identity and the policy; so once the
full path (``Session.on_client_publish`` / ``on_delivery``) has allowed a PUBLISH and
forwarded it byte for byte, ``KnownTopics`` remembers (first byte, topic bytes), and
``scan_known`` forwards later packets with the same pair as they are, checking only what
the full decoder would check about the bytes that differ (lengths, packet identifier,
an empty property section).

The session clears ``KnownTopics`` whenever the policy or the identity changes, and scans
only when nothing needs allowed decisions one by one as events (``quiet_allows``) and no
per-message rate limit applies: then a remembered topic is exactly the cached decision
of the full path, minus the cost of building a ``Publish`` to look it up. When the audit
log wants every allow, the scan appends the remembered ``LoggedAllow`` for each packet
to the session's ledger instead. Allow spans
sampled at a ratio are drawn by the scan itself: it stops at a drawn PUBLISH, which the
full path then audits.

Anything else (other packet types, QoS 2, properties, topic aliases, packets above
16,383 bytes, malformed bytes) stops a scan; the session's full path takes that packet.
"""

from __future__ import annotations

from random import random as _random
from typing import Final

from gateway.core.outputs import LoggedAllow

# MQTT 5 spec 2.1.2: fixed header first bytes.
PUBLISH_TYPE: Final = 0x30
PUBACK_FIRST: Final = 0x40  # PUBACK has no flags (v5 3.4.1)
PINGREQ_FIRST: Final = 0xC0
PINGRESP_FIRST: Final = 0xD0
# QoS bits of a PUBLISH first byte (v5 3.3.1.2); QoS 2 flows keep the full path.
_QOS_MASK: Final = 0x06
_QOS_2: Final = 0x04

# A session remembers at most this many topics per direction: enough for any client's hot
# topics; beyond it the set starts again (the full path refills it).
KNOWN_TOPICS_MAX: Final = 1024


class KnownTopics:
    """(first byte, topic bytes) of PUBLISH packets this session forwards unchanged, each
    with the allow it was forwarded on (what the audit log records for a repeat)."""

    __slots__ = ("_by_first", "_count")

    def __init__(self) -> None:
        self._by_first: dict[int, dict[bytes, LoggedAllow]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, first: int, topic: bytes, allow: LoggedAllow) -> None:
        if first & _QOS_MASK == _QOS_2:
            return  # QoS 2 needs the session's flow tracking
        if self._count >= KNOWN_TOPICS_MAX:
            self.clear()
        topics = self._by_first.get(first)
        if topics is None:
            topics = self._by_first[first] = {}
        if topic not in topics:
            self._count += 1
        topics[topic] = allow

    def clear(self) -> None:
        self._by_first.clear()
        self._count = 0

    def topics_for(self, first: int) -> dict[bytes, LoggedAllow] | None:
        return self._by_first.get(first)


def scan_known(
    buf: bytes | bytearray,
    pos: int,
    known: KnownTopics,
    mqtt5: bool,
    max_packet_size: int,
    inflight: set[int],
    receive_maximum: int | None,
    sample_ratio: float = 0.0,
    ledger: list[LoggedAllow] | None = None,
) -> tuple[int, int, int, bool]:
    """Leading packets of ``buf[pos:]`` that go on unchanged: known PUBLISHes (QoS 0/1),
    PUBACKs, and PINGREQ from a client or PINGRESP from the broker. Returns (end of the
    run, packets in it, PUBLISHes among them, whether the run ends at a PUBLISH drawn for
    a span at ``sample_ratio``: the full path must audit that one).

    From a client (``receive_maximum`` given), a QoS 1 packet identifier joins
    ``inflight``, within the Receive Maximum the gateway announced (v5 3.3.4); from the
    broker (``receive_maximum`` None), a PUBACK's identifier leaves it.
    """
    from_client = receive_maximum is not None
    ping = PINGREQ_FIRST if from_client else PINGRESP_FIRST
    size = len(buf)
    packets = publishes = 0
    while size - pos >= 2:
        first = buf[pos]
        length = buf[pos + 1]
        header = 2
        if length >= 0x80:
            # v5 1.5.5: a two-byte Remaining Length, minimally encoded; longer ones (and
            # the checks that come with them) are the full decoder's.
            if size - pos < 3 or not 0 < buf[pos + 2] < 0x80:
                break
            length = (length & 0x7F) | (buf[pos + 2] << 7)
            header = 3
        end = pos + header + length
        if end > size or header + length > max_packet_size:
            break
        if first & 0xF0 == PUBLISH_TYPE:
            topics = known.topics_for(first)
            if topics is None:
                break
            t = pos + header
            if end - t < 2:
                break
            topic_end = t + 2 + ((buf[t] << 8) | buf[t + 1])
            after = topic_end
            pid = 0
            if first & _QOS_MASK:
                if end - topic_end < 2:
                    break
                pid = (buf[topic_end] << 8) | buf[topic_end + 1]
                if pid == 0:
                    break  # v5 2.2.1: a packet identifier is never 0
                if (
                    receive_maximum is not None
                    and pid not in inflight
                    and len(inflight) >= receive_maximum
                ):
                    break  # the full path disconnects (0x93)
                after += 2
            if mqtt5 and (after >= end or buf[after] != 0):
                break  # properties (or none at all): the full path reads them
            if after > end:
                break
            allow = topics.get(bytes(buf[t + 2 : topic_end]))
            if allow is None:
                break
            if sample_ratio and (sample_ratio >= 1.0 or _random() < sample_ratio):
                return pos, packets, publishes, True
            if pid and from_client:
                inflight.add(pid)
            if ledger is not None:
                ledger.append(allow)
            publishes += 1
        elif first == PUBACK_FIRST and length == 2:
            pid = (buf[pos + 2] << 8) | buf[pos + 3]
            if not pid:
                break
            if not from_client:
                inflight.discard(pid)
        elif not (first == ping and length == 0):
            break
        pos = end
        packets += 1
    return pos, packets, publishes, False
