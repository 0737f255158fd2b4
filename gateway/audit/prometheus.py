"""The Prometheus text exposition format, version 0.0.4.

Rendered by hand from the gateway's own counters: no global registry, so several
gateways in one process (the tests) each expose exactly their own numbers.
Reference: prometheus.io/docs/instrumenting/exposition_formats ("Text-based format").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Sequence[tuple[str, str]]


def escape_label_value(value: str) -> str:
    """Label values escape backslash, double quote and line feed (exposition format)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def sample(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {format_value(value)}\n"
    return f"{name} {format_value(value)}\n"


def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> str:
    """One metric family: HELP, TYPE and its samples (already rendered)."""
    return f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} {kind}\n" + "".join(samples)


def histogram_samples(
    name: str,
    labels: Labels,
    bounds: Sequence[float],
    bucket_counts: Sequence[int],
    total: float,
    count: int,
) -> list[str]:
    """``bucket_counts`` are per bucket (len(bounds) + 1, the last one +Inf); the text
    format wants cumulative counts."""
    out: list[str] = []
    running = 0
    for bound, n in zip(bounds, bucket_counts, strict=False):
        running += n
        out.append(sample(f"{name}_bucket", (*labels, ("le", format_value(bound))), running))
    out.append(sample(f"{name}_bucket", (*labels, ("le", "+Inf")), count))
    out.append(sample(f"{name}_sum", labels, total))
    out.append(sample(f"{name}_count", labels, count))
    return out
