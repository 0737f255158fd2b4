"""Topic Name and Topic Filter syntax (v5 4.7, shared subscriptions v5 4.8.2).

These are pure checks returning a reason (or None) so that callers choose the error class.
"""

from __future__ import annotations

from typing import Final

# v5 4.8.2: "$share/{ShareName}/{filter}". Mosquitto applies the same syntax to v3.1.1
# clients, so the gateway does too: the ACL must see the same thing the broker sees.
SHARED_PREFIX: Final = "$share/"


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid Topic Name (v5 4.7.3, 3.3.2.1), or None."""
    if not topic:
        return "topic name is empty"
    if "+" in topic or "#" in topic:
        return f"topic name {topic!r} contains a wildcard"
    return None


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid Topic Filter (v5 4.7.1, 4.8.2), or None."""
    if not topic_filter:
        return "topic filter is empty"
    if topic_filter.startswith(SHARED_PREFIX):
        share_name, sep, rest = topic_filter[len(SHARED_PREFIX) :].partition("/")
        if not share_name or "+" in share_name or "#" in share_name:
            return f"shared subscription {topic_filter!r} has an invalid share name"
        if not sep or not rest:
            return f"shared subscription {topic_filter!r} has no topic filter"
        topic_filter = rest
    if "+" not in topic_filter and "#" not in topic_filter:
        return None
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return f"topic filter {topic_filter!r}: '#' must be the whole last level"
        if "+" in level and level != "+":
            return f"topic filter {topic_filter!r}: '+' must be a whole level"
    return None


def is_shared(topic_filter: str) -> bool:
    """Whether ``topic_filter`` names a shared subscription (v5 4.8.2)."""
    return topic_filter.startswith(SHARED_PREFIX)
