"""Memory per idle authenticated connection (issue 7: 10,000 connections, < 50 KB each).

Starts Mosquitto and ``mqttgate serve --workers N`` (N = ``--gateway-workers``, 1 by
default; RS256 issuer, permit-all policy, the per-address and total connection limits
lifted), warms the gateway up with a few connections that come and go, reads its VmRSS
(``/proc/PID/status``, summed over its processes), opens K connections (TLS 1.3 +
WebSocket + CONNECT with a JWT, each with its own token and client id unless
``--same-token``) and holds them idle, reads VmRSS again, and prints
(after - before) / K. The bare relay (``--paths gateway bare``) gives the transport's
own share: aiohttp, the TLS object and the upstream socket, with no session state.

RLIMIT_NOFILE is raised before anything starts (children inherit it): the gateway needs
two descriptors per connection, the clients and Mosquitto one each.

Run: .venv/bin/python bench/idle.py [--connections 10000 --gateway-workers 2] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from connect import (  # noqa: E402 - bench/ is on sys.path when run as a script
    GATEWAY_LIMITS,
    ConnectSpec,
    Endpoint,
    client_context,
    close_session,
    open_session,
    raise_file_limit,
    run_connect,
)
from relay import (  # noqa: E402
    Servers,
    load_average,
    machine,
    process_tree,
    revision,
    rss_kib,
    uvloop_installed,
)

from gateway.auth.devidp import mint_token  # noqa: E402

# SIGUSR2 writes the gateway's Python allocation sites (by line, biggest first); the
# driver sends it while the connections are held (--tracemalloc).
TRACEMALLOC_PRELUDE = """
import signal, tracemalloc
tracemalloc.start(1)
def _dump(*_):
    stats = tracemalloc.take_snapshot().statistics("lineno")
    total = sum(s.size for s in stats)
    with open("{out}", "w") as fh:
        fh.write(f"traced total {{total / 1024:.0f}} KiB\\n")
        for s in stats[:25]:
            fh.write(f"{{s.size / 1024:10.0f}} KiB {{s.count:8d}} {{s.traceback}}\\n")
signal.signal(signal.SIGUSR2, _dump)
"""
# --breakdown: SIGUSR2 makes the gateway (after a gc) dump glibc's heap counters and, in
# the "python" mode, a tracemalloc snapshot; the driver asks once before the connections
# open and once while they are held, and prints the difference per connection.
# "heap" (no tracemalloc, so the figures are those of a plain run): VmRSS, the malloc heap
# (the C side: OpenSSL, llhttp; and Python blocks > 512 bytes) and the rest (pymalloc's
# arenas of small objects, page rounding). "python": Python's allocations by file and
# line, split at 512 bytes; tracemalloc's own tables inflate the malloc and RSS rows, so
# the C side is "heap" malloc minus "python" blocks > 512 bytes.
BREAKDOWN_PRELUDE = """
import ctypes, gc, json, signal, tracemalloc
if {trace}:
    tracemalloc.start(1)
class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _MallInfo2
_dumps = [0]
def _dump(*_):
    gc.collect()
    _dumps[0] += 1
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump("{out}/snap%d.pickle" % _dumps[0])
    mi = _libc.mallinfo2()
    with open("{out}/snap%d.json" % _dumps[0], "w") as fh:
        json.dump(dict(malloc_in_use=mi.uordblks + mi.hblkhd,
                       tracemalloc_own=tracemalloc.get_tracemalloc_memory()), fh)
signal.signal(signal.SIGUSR2, _dump)
"""
PYMALLOC_SMALL = 512  # CPython's SMALL_REQUEST_THRESHOLD: bigger blocks come from malloc
TARGET_KB = 50.0  # issue 7: KB per idle authenticated connection
SETTLE_S = 2.0  # after the last CONNACK, before reading VmRSS


# -- a holder process: opens its share, holds it until told to close ----------------------


async def _hold(conn: Connection, spec: ConnectSpec) -> None:
    ctx = client_context()
    writers: list[asyncio.StreamWriter] = []
    errors: dict[str, int] = {}
    next_index = 0

    async def opener() -> None:
        nonlocal next_index
        while next_index < spec.count:
            i = next_index
            next_index += 1
            token = spec.tokens[i % len(spec.tokens)] if spec.tokens else None
            try:
                _r, w = await asyncio.wait_for(
                    open_session(spec.endpoint, ctx, f"{spec.tag}-{i}", token), 30
                )
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                key = type(exc).__name__ + ": " + str(exc)[:80]
                errors[key] = errors.get(key, 0) + 1
                continue
            writers.append(w)

    await asyncio.gather(*(opener() for _ in range(spec.concurrency)))
    conn.send(("ready", len(writers), errors))
    loop = asyncio.get_running_loop()
    released = asyncio.Event()
    loop.add_reader(conn.fileno(), released.set)
    await asyncio.wait_for(released.wait(), spec.seconds)
    loop.remove_reader(conn.fileno())
    conn.recv()
    for w in writers:
        close_session(w, spec.endpoint)
    await asyncio.sleep(0.5)
    conn.send(("closed",))


def holder_main(conn: Connection, spec: ConnectSpec) -> None:
    raise_file_limit()
    try:
        asyncio.run(_hold(conn, spec))
    except Exception as exc:  # reported to the driver, which fails the run
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


# -- the driver --------------------------------------------------------------------------


@dataclass
class IdleResult:
    path: str
    connections: int
    errors: dict[str, int]
    open_s: float
    rss_before_kib: int
    rss_held_kib: int
    rss_after_close_kib: int
    broker_rss_before_kib: int
    broker_rss_held_kib: int

    @property
    def kb_per_conn(self) -> float:
        n = self.connections or 1
        return (self.rss_held_kib - self.rss_before_kib) * 1.024 / n  # KiB -> kB

    @property
    def broker_kb_per_conn(self) -> float:
        n = self.connections or 1
        return (self.broker_rss_held_kib - self.broker_rss_before_kib) * 1.024 / n


def tree_rss(pid: int) -> int:
    return sum(rss_kib(p) for p in process_tree(pid))


def hold(
    servers: Servers, path: str, tokens: tuple[str, ...], args: argparse.Namespace
) -> IdleResult:
    ep = Endpoint(servers.ports[path], "wss")
    server = servers.procs[path].pid
    broker = servers.procs["mosquitto"].pid
    # Warm-up: lazy imports, the JWKS, the policy's first decisions, pools: not per connection.
    run_connect(ConnectSpec(ep, tokens[:1], 50, 8, 30, f"warm-{path}"))
    time.sleep(1.0)
    if getattr(args, "breakdown", False) and path == "gateway":
        _snapshot(server, 1, args.workdir)
    before, broker_before = tree_rss(server), rss_kib(broker)
    ctx = get_context("spawn")
    holders: list[tuple[Any, Connection]] = []
    per = -(-args.connections // args.procs)
    started = time.monotonic()
    for p in range(args.procs):
        count = min(per, args.connections - p * per)
        share = tokens if len(tokens) <= 1 else tokens[p * per : p * per + count]
        spec = ConnectSpec(ep, share, count, args.concurrency, args.hold_s, f"idle-{path}-{p}")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=holder_main, args=(child, spec), daemon=True)
        proc.start()
        holders.append((proc, parent))
    opened = 0
    errors: dict[str, int] = {}
    try:
        for _, c in holders:
            if not c.poll(args.hold_s):
                raise TimeoutError(f"{path}: holders did not finish opening in {args.hold_s} s")
            msg = c.recv()
            if msg[0] == "error":
                raise RuntimeError(msg[1])
            opened += msg[1]
            for k, v in msg[2].items():
                errors[k] = errors.get(k, 0) + v
        open_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        held, broker_held = tree_rss(server), rss_kib(broker)
        if args.tracemalloc and path == "gateway":
            os.kill(server, signal.SIGUSR2)
            time.sleep(3.0)
        if getattr(args, "breakdown", False) and path == "gateway":
            _snapshot(server, 2, args.workdir)
    finally:
        for _, c in holders:
            with contextlib.suppress(OSError):
                c.send(("close",))
        for proc, c in holders:
            with contextlib.suppress(OSError, EOFError):
                if c.poll(30):
                    c.recv()
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    time.sleep(SETTLE_S)
    return IdleResult(
        path, opened, errors, open_s, before, held, tree_rss(server), broker_before, broker_held
    )


def _snapshot(pid: int, n: int, workdir: Path) -> None:
    done = workdir / f"snap{n}.json"
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the JSON is written last; let it close


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/wt-idle/", "/main/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return filename


def print_breakdown(workdir: Path, r: IdleResult) -> None:
    """Per connection: where the gateway's memory went between the two snapshots."""
    import tracemalloc

    n = r.connections or 1
    m1, m2 = (json.loads((workdir / f"snap{i}.json").read_text()) for i in (1, 2))
    malloc = m2["malloc_in_use"] - m1["malloc_in_use"]
    rss = (r.rss_held_kib - r.rss_before_kib) * 1024
    if not (workdir / "snap2.pickle").exists():
        print()
        print(f"per connection, {n} held (bytes; --breakdown heap: no tracemalloc):")
        print(f"{rss / n:>10.0f}  VmRSS")
        print(f"{malloc / n:>10.0f}    malloc heap in use (C side + Python blocks > 512 B)")
        print(f"{(rss - malloc) / n:>10.0f}    rest: pymalloc arenas (objects <= 512 B), slack")
        return
    s1, s2 = (tracemalloc.Snapshot.load(str(workdir / f"snap{i}.pickle")) for i in (1, 2))

    def split(snap: tracemalloc.Snapshot) -> tuple[int, int]:
        small = sum(t.size for t in snap.traces if t.size <= PYMALLOC_SMALL)
        return small, sum(t.size for t in snap.traces) - small

    (small1, big1), (small2, big2) = split(s1), split(s2)
    own = m2["tracemalloc_own"] - m1["tracemalloc_own"]
    rows = [
        ("VmRSS", rss),
        ("  Python objects <= 512 B (pymalloc arenas)", small2 - small1),
        ("  Python blocks > 512 B (malloc)", big2 - big1),
        ("  malloc not traced: C side + tracemalloc's tables", malloc - (big2 - big1) - own),
        ("  tracemalloc's traces (absent without it)", own),
        ("  rest: arena slack, fragmentation, page rounding", rss - malloc - (small2 - small1)),
    ]
    print()
    print(f"per connection, {n} held (bytes; tracemalloc on, so RSS is above a plain run):")
    for label, v in rows:
        print(f"{v / n:>10.0f}  {label}")
    for key, top in (("filename", 25), ("lineno", 40)):
        print()
        print(f"Python allocations per connection by {key} (bytes, blocks):")
        for st in s2.compare_to(s1, key)[:top]:
            frame = st.traceback[0]
            where = _short(frame.filename) + (f":{frame.lineno}" if key == "lineno" else "")
            print(f"{st.size_diff / n:>10.0f} {st.count_diff / n:>6.1f}  {where}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=2000, help="K idle connections (2000)")
    p.add_argument("--procs", type=int, default=2, help="client processes holding them")
    p.add_argument("--concurrency", type=int, default=32, help="openers per client process")
    p.add_argument("--same-token", action="store_true", help="one token for all connections")
    p.add_argument("--paths", nargs="+", default=["gateway"], choices=["gateway", "bare"])
    p.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="mqttgate serve --workers N (RSS summed over its processes): with 2, 10,000 "
        "connections fit under a 20,000-descriptor limit (two per connection per process)",
    )
    p.add_argument(
        "--ssl-read-buffer",
        type=int,
        help="experiment: set asyncio's SSLProtocol.max_size (256 KiB in 3.11) in the gateway",
    )
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="experiment: trace Python allocations in the gateway; top sites while held",
    )
    p.add_argument(
        "--breakdown",
        nargs="?",
        const="python",
        choices=["python", "heap"],
        help="experiment: per-connection split of the gateway's memory: Python allocations "
        "by line (tracemalloc), or 'heap' (malloc vs the rest, figures of a plain run)",
    )
    p.add_argument("--hold-s", type=float, default=300.0, help="cap on opening + holding")
    p.add_argument("--json", type=Path)
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_file_limit()
    load0 = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="mqttgate-idle-"))
    prelude = ""
    if args.ssl_read_buffer:
        # CPython 3.11's asyncio.sslproto allocates bytearray(max_size), zero-filled, for
        # every TLS connection: 256 KiB of resident memory each.
        prelude = f"import asyncio.sslproto as p; p.SSLProtocol.max_size = {args.ssl_read_buffer}"
    if args.tracemalloc:
        prelude += TRACEMALLOC_PRELUDE.format(out=workdir / "tracemalloc.txt")
    args.workdir = workdir
    if args.breakdown:
        prelude += BREAKDOWN_PRELUDE.format(out=workdir, trace=args.breakdown == "python")
    servers = Servers(
        workdir,
        None,
        rsa=True,
        uvloop=uvloop_installed(),  # the bare relay on uvloop too when the gateway is
        start_bare="bare" in args.paths,
        gateway_limits=GATEWAY_LIMITS,
        gateway_prelude=prelude,
        gateway_workers=(args.gateway_workers,),
    )
    results: list[IdleResult] = []
    try:
        servers.start()
        t0 = time.monotonic()
        n_tokens = 1 if args.same_token else args.connections
        tokens = tuple(
            mint_token(servers.signing_key, subject=f"idle-{i}", ttl_s=3600)
            for i in range(n_tokens)
        )
        print(f"minted {n_tokens} RS256 tokens in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        gc.collect()
        for path in args.paths:
            r = hold(servers, path, tokens if path == "gateway" else (), args)
            print(
                f"[{path}] {r.connections} held, {r.kb_per_conn:.1f} kB/conn, errors {r.errors}",
                file=sys.stderr,
            )
            results.append(r)
    finally:
        servers.stop()
    print(f"machine: {machine()}")
    print(
        f"gateway revision: {revision()}, --workers {args.gateway_workers}, "
        f"uvloop installed: {uvloop_installed()}, "
        f"RLIMIT_NOFILE {limit}, SSLProtocol.max_size {args.ssl_read_buffer or 'default'}, "
        f"load average at start {load0}, "
        f"tokens: {'one shared' if args.same_token else 'one per connection'} (RS256)"
    )
    print()
    header = (
        f"{'path':>8} {'held':>6} {'errors':>6} {'open s':>7} {'RSS before MiB':>14} "
        f"{'RSS held MiB':>12} {'RSS after close MiB':>19} {'kB/conn':>8} {'Mosquitto kB/conn':>17}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.path:>8} {r.connections:>6} {sum(r.errors.values()):>6} {r.open_s:>7.1f} "
            f"{r.rss_before_kib / 1024:>14.1f} {r.rss_held_kib / 1024:>12.1f} "
            f"{r.rss_after_close_kib / 1024:>19.1f} {r.kb_per_conn:>8.1f} "
            f"{r.broker_kb_per_conn:>17.1f}"
        )
    for r in results:
        if r.path == "gateway":
            verdict = "met" if r.kb_per_conn < TARGET_KB else "NOT met"
            print(
                f"gateway: {r.kb_per_conn:.1f} kB per idle connection, target < {TARGET_KB:.0f} "
                f"kB: {verdict} ({r.connections} connections)"
            )
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(r), "kb_per_conn": r.kb_per_conn} for r in results], indent=1)
        )
    for r in results:
        if args.breakdown and r.path == "gateway" and (workdir / "snap2.json").exists():
            print_breakdown(workdir, r)
    trace = workdir / "tracemalloc.txt"
    if trace.exists():
        print()
        print(trace.read_text())
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if results and all(r.connections for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
