"""Verified tokens, remembered until they expire (issue 7, item 4).

A reconnect storm presents the same tokens again; a signature check (RS256: ~50 µs,
ES256: ~100 µs) is the most expensive step of a CONNECT. A token is remembered by the
SHA-256 of its text together with the key object that verified it: a hit counts only
while that very key is still in the issuer's key set, so a rotated-out or removed key
stops its tokens at once, and only until ``exp`` plus the leeway.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Bounded: 10,000 entries of a few hundred bytes each. Past it the oldest go first.
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Verified:
    issuer: str
    claims: dict[str, Any]
    valid_until: float  # exp + leeway, wall clock
    key: object  # the VerificationKey's key object that verified the signature


class VerifiedTokenCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, digest: bytes, now: float, live: Callable[[Verified], bool]) -> Verified | None:
        """The remembered verification, if still valid and its key still ``live``."""
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        if now >= entry.valid_until or not live(entry):
            del self._entries[digest]
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, digest: bytes, entry: Verified) -> None:
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
