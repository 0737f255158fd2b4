"""The gateway's metrics: plain counters on the data path, two views of them.

Hooks are called on the event loop thread and only add to ints in dicts (no lock, no
I/O). The Prometheus ``/metrics`` body is rendered from these counters
(:meth:`AuditMetrics.prometheus_text`), and OpenTelemetry reads the same counters
through observable instruments when a metric reader collects, so both views agree. The
decision latency histogram is kept here too; it is also recorded into an OpenTelemetry
histogram when OTLP metrics are exported, since the SDK has no observable histogram.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Literal

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from gateway.audit.prometheus import family, histogram_samples, sample

Direction = Literal["client_to_upstream", "upstream_to_client"]
CLIENT_TO_UPSTREAM: Direction = "client_to_upstream"
UPSTREAM_TO_CLIENT: Direction = "upstream_to_client"

# Decisions take microseconds (the ACL level index); the buckets resolve 1 µs .. 10 ms,
# past which a decision is a bug worth seeing as +Inf.
LATENCY_BOUNDS_S: tuple[float, ...] = (
    1e-6,
    2.5e-6,
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    1e-2,
)

PREFIX = "mqttgate_"


class LatencyHistogram:
    """Per-bucket counts (not cumulative) over LATENCY_BOUNDS_S, plus +Inf, sum, count."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BOUNDS_S, seconds)] += 1
        self.total += seconds
        self.count += 1


class AuditMetrics:
    """Counters for connections, authentication, decisions, traffic and revocations."""

    def __init__(self) -> None:
        self.connections_active = 0
        self.connections_opened = 0
        self.connection_attempts: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.decisions: dict[tuple[str, str], int] = {}
        self.latency: dict[str, LatencyHistogram] = {}
        self.packets_by_direction: dict[str, int] = {}
        self.bytes_by_direction: dict[str, int] = {}
        self.revocations = 0
        self.audit_dropped = 0
        self._otel_latency: Histogram | None = None

    # -- hooks (data path) -------------------------------------------------------------

    def connection_opened(self) -> None:
        self.connections_active += 1
        self.connections_opened += 1

    def connection_closed(self) -> None:
        self.connections_active -= 1

    def connection_attempt(self, outcome: str) -> None:
        self.connection_attempts[outcome] = self.connection_attempts.get(outcome, 0) + 1

    def auth_failure(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def packets(self, direction: Direction, n: int, nbytes: int) -> None:
        self.packets_by_direction[direction] = self.packets_by_direction.get(direction, 0) + n
        self.bytes_by_direction[direction] = self.bytes_by_direction.get(direction, 0) + nbytes

    def revocation(self, n: int = 1) -> None:
        self.revocations += n

    def decision(self, action: str, verdict: str, seconds: float) -> None:
        key = (action, verdict)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        hist = self.latency.get(action)
        if hist is None:
            hist = self.latency[action] = LatencyHistogram()
        hist.observe(seconds)
        if self._otel_latency is not None:
            self._otel_latency.record(seconds, {"action": action})

    def decisions_counted(self, action: str, verdict: str, n: int) -> None:
        """Decisions counted in bulk, without latency (the session's quiet allows)."""
        key = (action, verdict)
        self.decisions[key] = self.decisions.get(key, 0) + n

    def audit_records_dropped(self, n: int) -> None:
        self.audit_dropped += n

    # -- Prometheus --------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        """The ``/metrics`` body (text exposition format 0.0.4)."""
        p = PREFIX
        parts = [
            family(
                p + "connections_active",
                "gauge",
                "Client connections open now.",
                [sample(p + "connections_active", (), self.connections_active)],
            ),
            family(
                p + "connections_opened_total",
                "counter",
                "Client connections opened since start.",
                [sample(p + "connections_opened_total", (), self.connections_opened)],
            ),
            family(
                p + "connection_attempts_total",
                "counter",
                "Connection attempts (CONNECT, re-authentication) by outcome.",
                [
                    sample(p + "connection_attempts_total", (("outcome", k),), v)
                    for k, v in sorted(self.connection_attempts.copy().items())
                ],
            ),
            family(
                p + "auth_failures_total",
                "counter",
                "Authentication failures by reason.",
                [
                    sample(p + "auth_failures_total", (("reason", k),), v)
                    for k, v in sorted(self.auth_failures.copy().items())
                ],
            ),
            family(
                p + "decisions_total",
                "counter",
                "Authorization decisions by action and verdict.",
                [
                    sample(p + "decisions_total", (("action", a), ("verdict", vd)), v)
                    for (a, vd), v in sorted(self.decisions.copy().items())
                ],
            ),
            family(
                p + "decision_duration_seconds",
                "histogram",
                "Time to make one authorization decision, by action.",
                [
                    line
                    for action, h in sorted(self.latency.copy().items())
                    for line in histogram_samples(
                        p + "decision_duration_seconds",
                        (("action", action),),
                        LATENCY_BOUNDS_S,
                        list(h.buckets),
                        h.total,
                        h.count,
                    )
                ],
            ),
            family(
                p + "packets_total",
                "counter",
                "MQTT packets relayed, by direction.",
                [
                    sample(p + "packets_total", (("direction", k),), v)
                    for k, v in sorted(self.packets_by_direction.copy().items())
                ],
            ),
            family(
                p + "bytes_total",
                "counter",
                "MQTT bytes relayed, by direction.",
                [
                    sample(p + "bytes_total", (("direction", k),), v)
                    for k, v in sorted(self.bytes_by_direction.copy().items())
                ],
            ),
            family(
                p + "revocations_total",
                "counter",
                "Subscriptions revoked by a policy change.",
                [sample(p + "revocations_total", (), self.revocations)],
            ),
            family(
                p + "audit_records_dropped_total",
                "counter",
                "Audit records dropped because the audit queue was full or the log failed.",
                [sample(p + "audit_records_dropped_total", (), self.audit_dropped)],
            ),
        ]
        return "".join(parts).encode()

    # -- OpenTelemetry -----------------------------------------------------------------

    def register(self, meter: Meter, record_latency: bool) -> None:
        """Expose the counters as observable instruments on ``meter`` (read at collection)."""

        def gauge(value: int) -> Iterable[Observation]:
            return [Observation(value)]

        def by(d: dict[str, int], label: str) -> list[Observation]:
            return [Observation(v, {label: k}) for k, v in d.copy().items()]

        meter.create_observable_up_down_counter(
            "mqttgate.connections.active",
            [lambda _o: gauge(self.connections_active)],
            unit="{connection}",
            description="Client connections open now.",
        )
        meter.create_observable_counter(
            "mqttgate.connections.opened",
            [lambda _o: gauge(self.connections_opened)],
            unit="{connection}",
            description="Client connections opened since start.",
        )
        meter.create_observable_counter(
            "mqttgate.connection.attempts",
            [lambda _o: by(self.connection_attempts, "outcome")],
            unit="{attempt}",
            description="Connection attempts by outcome.",
        )
        meter.create_observable_counter(
            "mqttgate.auth.failures",
            [lambda _o: by(self.auth_failures, "reason")],
            unit="{failure}",
            description="Authentication failures by reason.",
        )

        def decisions(_o: CallbackOptions) -> list[Observation]:
            return [
                Observation(v, {"action": a, "verdict": vd})
                for (a, vd), v in self.decisions.copy().items()
            ]

        meter.create_observable_counter(
            "mqttgate.decisions",
            [decisions],
            unit="{decision}",
            description="Authorization decisions by action and verdict.",
        )
        meter.create_observable_counter(
            "mqttgate.packets",
            [lambda _o: by(self.packets_by_direction, "direction")],
            unit="{packet}",
            description="MQTT packets relayed, by direction.",
        )
        meter.create_observable_counter(
            "mqttgate.bytes",
            [lambda _o: by(self.bytes_by_direction, "direction")],
            unit="By",
            description="MQTT bytes relayed, by direction.",
        )
        meter.create_observable_counter(
            "mqttgate.revocations",
            [lambda _o: gauge(self.revocations)],
            unit="{subscription}",
            description="Subscriptions revoked by a policy change.",
        )
        meter.create_observable_counter(
            "mqttgate.audit.records_dropped",
            [lambda _o: gauge(self.audit_dropped)],
            unit="{record}",
            description="Audit records dropped.",
        )
        if record_latency:
            self._otel_latency = meter.create_histogram(
                "mqttgate.decision.duration",
                unit="s",
                description="Time to make one authorization decision, by action.",
                explicit_bucket_boundaries_advisory=list(LATENCY_BOUNDS_S),
            )
