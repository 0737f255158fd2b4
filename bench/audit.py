"""Cost of auditing one decision (gateway/audit), spans on and off.

Two numbers per configuration:
- "caller": what the event loop pays per ``pipe.decision()`` (count, sample, enqueue);
- "end to end": records per second until the writer thread has written the log line
  and built the span, and the BatchSpanProcessor has exported it (to a discarding
  exporter: the network is not measured). On one core both threads share the GIL, so
  this is the ceiling the data path plus audit can reach together.

Run: .venv/bin/python bench/audit.py
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.audit import AuditConfig, AuditPipeline, DecisionRecord
from tests.audit.otlp_receiver import OtlpReceiver

N = 50_000


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def record(i: int) -> DecisionRecord:
    return DecisionRecord(
        action="publish",
        topic=f"users/alice/telemetry/{i % 100}",
        verdict="allow",
        reason="allow_rule",
        qos=1,
        retain=False,
        rule_id="own-topics",
        pattern="users/{user_id}/#",
        policy_version="v7",
        decision_ns=4_000,
        client_id="c1",
        user_id="alice",
        client_address="127.0.0.1",
        connection_id="conn-1",
    )


def run(label: str, log: bool, spans: bool, ratio: float, otlp: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exporter = CountingExporter()
        config = AuditConfig(
            log_file=str(Path(tmp) / "audit.log") if log else None,
            allow_sample_ratio=ratio,
            otlp_endpoint=otlp,
            otlp_metrics=False,
        )
        pipe = AuditPipeline(config, span_exporters=[exporter] if spans else [])
        pipe.start()
        records = [record(i) for i in range(N)]
        start = time.perf_counter()
        for rec in records:
            pipe.decision(rec)
        caller = time.perf_counter() - start
        pipe.shutdown_sync()
        total = time.perf_counter() - start
        print(
            f"{label:<34} caller {caller / N * 1e6:6.2f} µs/decision   "
            f"end to end {N / total:>9,.0f}/s   spans {exporter.count:>6}   dropped {pipe.dropped}"
        )


def main() -> None:
    print(f"Python {platform.python_version()} on {platform.machine()}, {N:,} allow decisions")
    run("metrics only", log=False, spans=False, ratio=1.0)
    run("log", log=True, spans=False, ratio=1.0)
    run("log + spans, allows at 0", log=True, spans=True, ratio=0.0)
    run("log + spans, allows at 0.1", log=True, spans=True, ratio=0.1)
    run("log + spans, allows at 1.0", log=True, spans=True, ratio=1.0)
    receiver = OtlpReceiver().start()
    try:
        run("log + OTLP/HTTP loopback, at 1.0", log=True, spans=False, ratio=1.0, otlp=receiver.url)
        print(f"{'':<34} receiver got {len(receiver.spans()):,} spans")
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
