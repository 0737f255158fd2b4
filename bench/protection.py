"""Cost of payload protection per message (issue 10): seal and open, µs per call.

    .venv/bin/python bench/protection.py [--number 100000]

Prints a table; figures are recorded in bench/README.md and docs/data-protection.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import timeit

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection.config import EncryptConfig, ProtectionConfig
from gateway.protection.keyring import Key, Keyring
from gateway.protection.protector import PayloadProtector

TOPIC, ORG = "orgs/acme/records/7", "acme"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--number", type=int, default=100_000, help="calls per timing run")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = ProtectionConfig(encrypt=(EncryptConfig(("orgs/+/records/#",)),), keyring_file="-")
    key = Key.from_material("k1", None, os.urandom(32), False)
    p = PayloadProtector(cfg, Keyring.of([key]))
    with_props = Properties(
        [(PropertyId.PAYLOAD_FORMAT_INDICATOR, 1), (PropertyId.CONTENT_TYPE, "text/plain")]
    )
    rows = []
    for label, size, props in (
        ("64 B, no properties", 64, Properties.EMPTY),
        ("64 B, PFI + content type", 64, with_props),
        ("4 KiB", 4096, Properties.EMPTY),
    ):
        payload = os.urandom(size)
        sealed = p.seal(TOPIC, payload, props, ORG)
        assert not hasattr(sealed, "reason")
        blob, sprops = sealed  # type: ignore[misc]

        def per_call(fn: object) -> float:
            runs = timeit.repeat(fn, number=args.number, repeat=args.repeat)  # type: ignore[arg-type]
            return min(runs) / args.number * 1e6

        seal_us = per_call(lambda pl=payload, pr=props: p.seal(TOPIC, pl, pr, ORG))
        open_us = per_call(lambda b=blob, pr=sprops: p.open(TOPIC, b, pr, ORG))
        rows.append((label, seal_us, open_us))
    applies_us = min(timeit.repeat(lambda: p.applies(TOPIC), number=args.number, repeat=3))
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print(f"{'payload':<28}{'seal µs':>10}{'open µs':>10}")
    for label, s, o in rows:
        print(f"{label:<28}{s:>10.2f}{o:>10.2f}")
    print(f"{'applies(topic), cached':<28}{applies_us / args.number * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
