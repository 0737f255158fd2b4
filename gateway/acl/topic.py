"""Topic names and filters as level tuples: syntax, matching, containment, overlap.

All three relations are defined over *valid topic names* only (MQTT 4.7.3: at least
one character), so the empty string is never a witness while ``/`` (two empty levels)
is. Topics beginning with ``$`` are never matched by a wildcard in the first level
(MQTT 4.7.2). Comparison is byte for byte: no case folding, no normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "/"  # MQTT 4.7.1.1
MULTI = "#"  # MQTT 4.7.1.2
SINGLE = "+"  # MQTT 4.7.1.3
# MQTT 1.5.4: a UTF-8 string is at most 65,535 bytes long.
MAX_TOPIC_BYTES = 65_535
# MQTT 5.0 4.8.2: "$share/{ShareName}/{filter}".
SHARE_PREFIX = "$share/"

Levels = tuple[str, ...]


class TopicSyntaxError(ValueError):
    """A topic name or filter that MQTT 4.7 does not allow."""


def _check_text(text: str, what: str) -> None:
    if not text:
        raise TopicSyntaxError(f"an empty {what} is not allowed (MQTT 4.7.3)")
    if "\x00" in text:
        raise TopicSyntaxError(f"a {what} may not contain U+0000 (MQTT 4.7.3)")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise TopicSyntaxError(f"a {what} must be valid UTF-8 (MQTT 1.5.4)") from None
    if size > MAX_TOPIC_BYTES:
        raise TopicSyntaxError(f"a {what} is at most {MAX_TOPIC_BYTES} bytes (MQTT 1.5.4)")


def parse_name(text: str) -> Levels:
    """Split a topic name; wildcards are not allowed in names (MQTT 4.7.1)."""
    _check_text(text, "topic name")
    if SINGLE in text or MULTI in text:
        raise TopicSyntaxError("a topic name may not contain '+' or '#' (MQTT 4.7.1)")
    return tuple(text.split(SEPARATOR))


def check_filter_levels(levels: Levels) -> None:
    """Wildcards must fill a whole level and ``#`` must be last (MQTT 4.7.1.2, 4.7.1.3)."""
    for i, level in enumerate(levels):
        if level in (SINGLE, MULTI):
            if level == MULTI and i != len(levels) - 1:
                raise TopicSyntaxError("'#' must be the last level of a filter (MQTT 4.7.1.2)")
        elif SINGLE in level or MULTI in level:
            raise TopicSyntaxError(
                f"a wildcard must fill a whole level, not share it with text: {level!r}"
                " (MQTT 4.7.1.2, 4.7.1.3)"
            )


def parse_filter(text: str) -> Levels:
    """Split and check a topic filter (not a shared subscription)."""
    _check_text(text, "topic filter")
    levels = tuple(text.split(SEPARATOR))
    check_filter_levels(levels)
    return levels


@dataclass(frozen=True, slots=True)
class Subscription:
    """A SUBSCRIBE topic filter with its shared-subscription group, if any."""

    filter: Levels
    group: str | None


def parse_subscription(text: str) -> Subscription:
    """Split ``$share/{group}/{filter}`` (MQTT 5.0 4.8.2) or a plain filter."""
    if text.startswith(SHARE_PREFIX):
        rest = text[len(SHARE_PREFIX) :]
        group, sep, inner = rest.partition(SEPARATOR)
        if not sep or not inner:
            raise TopicSyntaxError("a shared subscription needs a filter: $share/{group}/{filter}")
        if not group or any(c in group for c in (SINGLE, MULTI, "\x00")):
            raise TopicSyntaxError(
                "a share name must be non-empty without '+', '#' or '/' (MQTT 4.8.2)"
            )
        return Subscription(parse_filter(inner), group)
    if text == "$share":
        raise TopicSyntaxError("a shared subscription needs a filter: $share/{group}/{filter}")
    return Subscription(parse_filter(text), None)


def normalise(levels: Levels) -> Levels:
    """Rewrite ``#`` as ``+/#`` and ``/#`` as ``/+/#``: they match the same valid topics.

    ``#`` and ``/#`` also match a "parent" that is the empty string, which is not a
    valid topic name (MQTT 4.7.3). Without this, ``/#`` would seem to overlap ``+`` and
    ``+/#`` would seem not to contain ``#``.
    """
    if levels == (MULTI,):
        return (SINGLE, MULTI)
    if levels == ("", MULTI):
        return ("", SINGLE, MULTI)
    return levels


def _is_dollar(level: str) -> bool:
    return level.startswith("$")


def _is_wild(level: str) -> bool:
    return level in (SINGLE, MULTI)


def matches(pattern: Levels, topic: Levels) -> bool:
    """Whether filter ``pattern`` matches topic name ``topic`` (MQTT 4.7)."""
    if _is_dollar(topic[0]) and _is_wild(pattern[0]):
        return False
    for i, level in enumerate(pattern):
        if level == MULTI:
            return True  # also matches the parent level (MQTT 4.7.1.2)
        if i >= len(topic):
            return False
        if level != SINGLE and level != topic[i]:
            return False
    return len(pattern) == len(topic)


def contains(outer: Levels, inner: Levels) -> bool:
    """Whether every valid topic ``inner`` matches is also matched by ``outer``."""
    outer, inner = normalise(outer), normalise(inner)
    if _is_wild(outer[0]) and not _is_wild(inner[0]) and _is_dollar(inner[0]):
        return False
    for i, level in enumerate(outer):
        if level == MULTI:
            return True
        if i >= len(inner):
            return False
        other = inner[i]
        if other == MULTI:
            return False
        if level == SINGLE:
            continue
        if other != level:
            return False
    return len(inner) == len(outer)


def overlaps(a: Levels, b: Levels) -> bool:
    """Whether some valid topic is matched by both filters."""
    a, b = normalise(a), normalise(b)
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if i == 0 and x is not None and y is not None and (_is_wild(x) != _is_wild(y)):
            literal = y if _is_wild(x) else x
            if _is_dollar(literal):
                return False
        if x == MULTI or y == MULTI:
            return True
        if x is None or y is None:
            return False
        if x != SINGLE and y != SINGLE and x != y:
            return False
    return True
