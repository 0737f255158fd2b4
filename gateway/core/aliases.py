"""MQTT v5 topic aliases (spec 3.3.2.3.4), resolved by the gateway on both sides.

The gateway authorizes the topic an alias stands for, so it must know every mapping.
It forwards PUBLISH packets without aliases, which keeps the broker's alias map empty:
a refused PUBLISH can then never leave a mapping behind at the broker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AliasError:
    """Why an alias cannot be resolved, with the v5 reason code to disconnect with."""

    reason_code: int
    reason: str


# MQTT 5 spec 3.3.2.3.4: "Topic Alias ... greater than Topic Alias Maximum" and alias 0
# are Topic Alias invalid (0x94); an alias never set with an empty topic is a Protocol
# Error (0x82).
TOPIC_ALIAS_INVALID = 0x94
PROTOCOL_ERROR = 0x82


class TopicAliases:
    """One direction's alias map, bounded by the maximum negotiated for it."""

    __slots__ = ("_map", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._map: dict[int, str] = {}

    def resolve(self, topic: str, alias: int) -> str | AliasError:
        """The topic of a PUBLISH carrying ``alias``; a non-empty topic (re)sets it."""
        if alias == 0 or alias > self.maximum:
            return AliasError(TOPIC_ALIAS_INVALID, "topic_alias_invalid")
        if topic:
            self._map[alias] = topic
            return topic
        known = self._map.get(alias)
        if known is None:
            return AliasError(PROTOCOL_ERROR, "topic_alias_unknown")
        return known

    def __len__(self) -> int:
        return len(self._map)
