"""A fixed set of topic filters, each carrying a value, asked about topic names.

Matching is :func:`gateway.acl.topic.matches`; answers are cached per topic name
because a session asks about the same few topics for every message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from gateway.acl.topic import Levels, TopicSyntaxError, matches, parse_filter, parse_name

V = TypeVar("V")

# Bounds the memory a client can pin by publishing to ever new topic names; the
# cache is simply emptied when full (a miss costs a few microseconds).
CACHE_LIMIT = 4096


class TopicSet(Generic[V]):
    """Filters with values; :meth:`lookup` folds the values of every matching filter."""

    __slots__ = ("_cache", "_entries", "_fold")

    def __init__(self, entries: Iterable[tuple[str, V]], fold: Callable[[V, V], V]) -> None:
        self._entries: tuple[tuple[Levels, V], ...] = tuple(
            (parse_filter(text), value) for text, value in entries
        )
        self._fold = fold
        self._cache: dict[str, V | None] = {}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def lookup(self, topic: str) -> V | None:
        """The folded value of the filters matching topic name ``topic``, or None.

        A string that is not a valid topic name matches nothing.
        """
        try:
            return self._cache[topic]
        except KeyError:
            pass
        result = self._compute(topic)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = result
        return result

    def _compute(self, topic: str) -> V | None:
        if not self._entries:
            return None
        try:
            levels = parse_name(topic)
        except TopicSyntaxError:
            return None
        result: V | None = None
        for pattern, value in self._entries:
            if matches(pattern, levels):
                result = value if result is None else self._fold(result, value)
        return result
