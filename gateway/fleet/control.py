"""Control topics are unreachable for clients, whatever the policy says (issue 6, item 4).

The session calls :func:`is_control_topic` on every client PUBLISH topic, SUBSCRIBE and
UNSUBSCRIBE filter (the inner filter of ``$share``), will topic and v5 response topic,
before the policy, and refuses a hit. A hit is: anything in the gateway's own ``$mqttgate``
namespace; the configured control topic or a topic below it; a filter that would match
the control topic (``#``, ``+/policy``, ...), by the matching rules of MQTT 5.0 §4.7,
including §4.7.2 (a wildcard in the first level does not match a ``$`` topic).
"""

from __future__ import annotations

from collections.abc import Callable

# MQTT 5.0 §4.7.2: topics starting with "$" are the server's; Mosquitto 2.0 still lets
# a client publish and retain there, so the gateway's control topic sits in "$mqttgate",
# which no "#" subscriber sees and which this module keeps clients out of entirely.
RESERVED_NAMESPACE = "$mqttgate"
DEFAULT_CONTROL_TOPIC = "$mqttgate/policy"
# MQTT 5.0 §4.8.2.
SHARE_PREFIX = "$share/"


def _inner(topic_or_filter: str) -> str:
    if topic_or_filter.startswith(SHARE_PREFIX):
        rest = topic_or_filter[len(SHARE_PREFIX) :]
        _, sep, inner = rest.partition("/")
        return inner if sep else rest
    return topic_or_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic_filter`` matches the topic name ``topic`` (MQTT 5.0 §4.7)."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False  # §4.7.2
    for i, level in enumerate(f_levels):
        if level == "#":
            return True  # also matches the parent level (§4.7.1.2)
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def is_control_topic(topic_or_filter: str, control_topic: str = DEFAULT_CONTROL_TOPIC) -> bool:
    """True when a client's topic or filter touches the control topic (refuse it)."""
    inner = _inner(topic_or_filter)
    first = inner.split("/", 1)[0]
    if first == RESERVED_NAMESPACE or inner.startswith(RESERVED_NAMESPACE + "/"):
        return True
    if inner == control_topic or inner.startswith(control_topic + "/"):
        return True
    return ("+" in inner or "#" in inner) and filter_matches(inner, control_topic)


def control_topic_predicate(control_topic: str = DEFAULT_CONTROL_TOPIC) -> Callable[[str], bool]:
    """``is_control_topic`` bound to the configured control topic, for the session."""

    def predicate(topic_or_filter: str) -> bool:
        return is_control_topic(topic_or_filter, control_topic)

    return predicate
