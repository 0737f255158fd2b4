"""Does the gateway's memory come back after connections close? (issue 9, item 5)

Opens and closes K idle authenticated connections several times against one gateway and
prints its RSS after each cycle. Flat after the first cycle: the allocator keeps a
high-water mark (fragmentation) that later connections reuse; growing every cycle: a leak.
"after return" is read RETURN_WAIT_S after the close, once the gateway has collected
garbage and trimmed its heap by itself (gateway/server/memory_return.py).

    .venv/bin/python bench/memory_cycles.py [--connections 1000] [--cycles 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from connect import GATEWAY_LIMITS, raise_file_limit
from idle import hold, tree_rss
from relay import Servers, load_average, machine, revision

from gateway.auth.devidp import mint_token
from gateway.server.memory_return import POLL_S, QUIET_S

# The gateway returns memory QUIET_S after the count fell (polled every POLL_S); hold()
# has already waited 2 s of it.
RETURN_WAIT_S = QUIET_S + 2 * POLL_S + 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--hold-s", type=float, default=120.0)
    args = ap.parse_args()
    args.paths, args.tracemalloc, args.same_token = ["gateway"], False, False
    raise_file_limit()
    servers = Servers(
        Path(tempfile.mkdtemp(prefix="mqttgate-cycles-")),
        None,
        rsa=True,
        uvloop=False,
        start_bare=False,
        gateway_limits=GATEWAY_LIMITS,
    )
    rows = []
    try:
        servers.start()
        for cycle in range(1, args.cycles + 1):
            tokens = tuple(
                mint_token(servers.signing_key, subject=f"c{cycle}-{i}", ttl_s=3600)
                for i in range(args.connections)
            )
            r = hold(servers, "gateway", tokens, args)
            time.sleep(RETURN_WAIT_S)
            returned = tree_rss(servers.procs["gateway"].pid)
            rows.append(
                (
                    cycle,
                    r.connections,
                    r.rss_before_kib,
                    r.rss_held_kib,
                    r.rss_after_close_kib,
                    returned,
                )
            )
    finally:
        servers.stop()
    print(f"machine: {machine()}; revision {revision()}; load average {load_average()}")
    print(
        f"{'cycle':>5} {'held':>6} {'RSS before MiB':>15} {'held MiB':>9} {'after close MiB':>16}"
        f" {'after return MiB':>17}"
    )
    for cycle, n, before, held, after, returned in rows:
        print(
            f"{cycle:>5} {n:>6} {before / 1024:>15.1f} {held / 1024:>9.1f} {after / 1024:>16.1f}"
            f" {returned / 1024:>17.1f}"
        )
    growth = (rows[-1][5] - rows[0][5]) / 1024 if len(rows) > 1 else 0.0
    print(f"after-return growth from cycle 1 to {len(rows)}: {growth:+.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
