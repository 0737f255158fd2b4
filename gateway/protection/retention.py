"""Retention by policy (issue 10, item 2): how long a retained message may live.

A TTL comes from ``[[protection.retain]]`` and may also come from a policy rule; where
several apply, the shortest wins (retention is a maximum). For MQTT 5 the broker is told
through the Message Expiry Interval (v5 3.3.2.3.3); for every protocol level the
:class:`~gateway.protection.sweeper.RetentionSweeper` clears the message when it is due.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection.config import RetainConfig
from gateway.protection.topicset import TopicSet

MQTT_5 = 5  # protocol level of MQTT 5.0 (v5 3.1.2.2)
_EXPIRY = PropertyId.MESSAGE_EXPIRY_INTERVAL


def shortest(a: int | None, b: int | None) -> int | None:
    """Merge two TTLs: the shorter one, None meaning "no limit"."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class RetentionPolicy:
    """TTLs of retained messages by broker-side topic name."""

    __slots__ = ("_ttls",)

    def __init__(self, entries: Iterable[RetainConfig]) -> None:
        self._ttls: TopicSet[int] = TopicSet(
            ((f, e.retained_ttl_s) for e in entries for f in e.topics), min
        )

    def __bool__(self) -> bool:
        return bool(self._ttls)

    def ttl_for(self, topic: str, rule_ttl: int | None = None) -> int | None:
        """The TTL for ``topic``: the shortest of the configured ones and ``rule_ttl``
        (a policy rule's ``retained_ttl_s``, when the rule that allowed the publish has one)."""
        return shortest(self._ttls.lookup(topic), rule_ttl)

    def expiry_for_publish(
        self,
        topic: str,
        retain: bool,
        properties: Properties,
        protocol_level: int,
        rule_ttl: int | None = None,
    ) -> Properties:
        """The properties to send upstream: for an MQTT 5 retained publish with a TTL, a
        Message Expiry Interval no longer than the TTL (set when absent, lowered when
        longer). Anything else is returned unchanged."""
        if not retain or protocol_level != MQTT_5:
            return properties
        ttl = self.ttl_for(topic, rule_ttl)
        if ttl is None:
            return properties
        return lower_expiry(properties, ttl)


def lower_expiry(properties: Properties, ttl: int) -> Properties:
    """Set the Message Expiry Interval to ``ttl`` unless it is already shorter.

    0 is treated as absent: v5 3.3.2.3.3 gives it no meaning of its own and Mosquitto
    reads it as "never expires".
    """
    current = properties.get(_EXPIRY)
    if isinstance(current, int) and 0 < current <= ttl:
        return properties
    return properties.with_(_EXPIRY, ttl)
