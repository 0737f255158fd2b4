"""Failed-authentication limiter: a token bucket per source address (issue 3 §10).

A source may fail ``burst`` times in a row; after that it regains one attempt every
``1 / refill_per_s`` seconds. Successes cost nothing. Only failures are counted, so a
busy NAT of honest clients is not throttled by its own traffic.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.auth.config import RateLimitConfig


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


def source_key(remote_address: str, ipv6_prefix: int) -> str:
    """The bucket key: the IPv4 address, or the IPv6 prefix (one host owns a whole /64)."""
    host = remote_address
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]  # "1.2.3.4:5678"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return remote_address
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


class FailureLimiter:
    """Token buckets keyed by source; bounded to ``max_sources`` (least recently used evicted)."""

    def __init__(self, cfg: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.limited_total = 0

    def _bucket(self, key: str) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(
            float(self._cfg.burst), bucket.tokens + (now - bucket.updated) * self._cfg.refill_per_s
        )
        bucket.updated = now
        self._buckets.move_to_end(key)
        return bucket

    def allowed(self, remote_address: str) -> bool:
        """Whether this source may attempt an authentication now."""
        if not self._cfg.enabled:
            return True
        bucket = self._bucket(source_key(remote_address, self._cfg.ipv6_prefix))
        if bucket is None or bucket.tokens >= 1.0:
            return True
        self.limited_total += 1
        return False

    def record_failure(self, remote_address: str) -> None:
        if not self._cfg.enabled:
            return
        key = source_key(remote_address, self._cfg.ipv6_prefix)
        bucket = self._bucket(key)
        if bucket is None:
            bucket = _Bucket(float(self._cfg.burst), self._clock())
            self._buckets[key] = bucket
            while len(self._buckets) > self._cfg.max_sources:
                self._buckets.popitem(last=False)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)

    @property
    def tracked_sources(self) -> int:
        return len(self._buckets)
