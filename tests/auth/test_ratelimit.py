"""Failed authentications are rate-limited per source address (token bucket)."""

from __future__ import annotations

from typing import Any

from gateway.auth import RateLimitConfig, Reason
from gateway.auth.ratelimit import FailureLimiter, source_key

from .conftest import AUDIENCE, Keys, LocalIdP, creds


class FakeClock:
    """A settable monotonic clock (a real clock would make the test slow or flaky)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_refills() -> None:
    clock = FakeClock()
    lim = FailureLimiter(RateLimitConfig(burst=3, refill_per_s=0.5), clock)
    for _ in range(3):
        assert lim.allowed("10.0.0.1")
        lim.record_failure("10.0.0.1")
    assert not lim.allowed("10.0.0.1")
    assert lim.allowed("10.0.0.2")  # other sources are unaffected
    clock.t += 1.9
    assert not lim.allowed("10.0.0.1")
    clock.t += 0.2  # 2.1 s → one attempt regained
    assert lim.allowed("10.0.0.1")
    lim.record_failure("10.0.0.1")
    assert not lim.allowed("10.0.0.1")
    assert lim.limited_total == 3


def test_bounded_memory() -> None:
    lim = FailureLimiter(RateLimitConfig(burst=1, max_sources=10), FakeClock())
    for i in range(100):
        lim.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert lim.tracked_sources == 10


def test_disabled() -> None:
    lim = FailureLimiter(RateLimitConfig(enabled=False, burst=1))
    lim.record_failure("1.2.3.4")
    lim.record_failure("1.2.3.4")
    assert lim.allowed("1.2.3.4")


def test_source_keys() -> None:
    assert source_key("192.0.2.7", 64) == "192.0.2.7"
    assert source_key("192.0.2.7:5555", 64) == "192.0.2.7"
    assert source_key("2001:db8::1", 64) == "2001:db8::/64"
    assert source_key("[2001:db8::ffff:1]:443", 64) == "2001:db8::/64"
    assert source_key("::ffff:192.0.2.7", 64) == "192.0.2.7"
    assert source_key("unix-socket", 64) == "unix-socket"


async def test_authenticator_limits_failures_only(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ec)
    clock = FakeClock()
    auth = await make_auth(
        {
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
            "rate_limit": {"burst": 3, "refill_per_s": 1.0},
        },
        clock=clock,
    )
    good = idp.token(keys.ec)
    for _ in range(10):  # successes cost nothing
        assert (await auth.authenticate(creds(good, remote="198.51.100.1"))).ok
    for _ in range(3):
        r = await auth.authenticate(creds("bad.bad.bad", remote="198.51.100.1"))
        assert r.reason is Reason.MALFORMED
    r = await auth.authenticate(creds(good, remote="198.51.100.1"))
    assert r.reason is Reason.RATE_LIMITED and r.connack_v5 == 0x9F and r.connack_v3 == 0x05
    assert r.http_status == 429
    hits = sum(idp.hits.values())
    # A limited source costs no verification work and no IdP request.
    assert (await auth.authenticate(creds(idp.token(keys.rsa), remote="198.51.100.1"))).reason is (
        Reason.RATE_LIMITED
    )
    assert sum(idp.hits.values()) == hits
    assert (await auth.authenticate(creds(good, remote="198.51.100.2"))).ok
    # Upgrade checks share the bucket.
    up = await auth.check_upgrade_token(good, None, "198.51.100.1")
    assert up is not None and up.reason is Reason.RATE_LIMITED
    clock.t += 1.0
    assert (await auth.authenticate(creds(good, remote="198.51.100.1"))).ok
    # Visible to metrics.
    assert auth.stats.rate_limited == 3
    assert auth.stats.failures["rate_limited"] == 2
    assert auth.stats.failures["malformed"] == 3
    assert auth.limiter.limited_total == 3
    assert auth.stats.successes == 12
