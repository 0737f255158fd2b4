"""Connection setup rate (issue 7): TCP + TLS 1.3 + WebSocket upgrade + CONNECT (RS256 JWT).

One connection is set up when its CONNACK arrives: TCP connect, a full TLS 1.3 handshake
(no session resumption), the HTTP/1.1 WebSocket upgrade, CONNECT with an RS256 JWT in the
password, the gateway's upstream TCP connect and CONNECT/CONNACK with Mosquitto, and the
CONNACK back. Then the client sends DISCONNECT and closes, so the rate is sustainable
(teardown is paid inside the measured time too). Paths, side by side in one run:

- ``mosquitto-tcp``: Mosquitto's plain TCP listener, CONNECT without a password (the floor);
- ``mosquitto-tls``: Mosquitto's TCP listener with TLS 1.3 (same certificate);
- ``bare``: ``bench/bare_relay.py`` (WSS in, TCP to Mosquitto, no token);
- ``gateway-same``: ``mqttgate serve --workers 1``, every connection with the same token
  (after the first, the verified-token cache answers);
- ``gateway-fresh``: a different token per connection (every CONNECT verifies a signature).

Mosquitto's WebSocket listener is not a baseline: its upgrade waits about 200 ms
(shared/notes/mosquitto-2.0.11.md). Tokens are minted before the timed part. The client
is hand-written asyncio (raw TLS stream, a fixed HTTP upgrade, one masked frame), so that
it costs less than what it measures; it does not verify the server certificate (the
server's handshake work is the same either way).

Printed per path: connections/s (completed / elapsed), p50/p99 setup latency (connect
start to CONNACK), and server CPU per connection (the relay or gateway process tree, from
/proc) with the rate one fully busy core would give at that cost.

Run: .venv/bin/python bench/connect.py [--count 2000] [--concurrency 32] [--procs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import shutil
import ssl
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from relay import (  # noqa: E402 - bench/ is on sys.path when run as a script
    Servers,
    busy_cpus,
    load_average,
    machine,
    percentile,
    revision,
    uvloop_installed,
)

from gateway.auth.devidp import mint_token  # noqa: E402

PATHS = ("mosquitto-tcp", "mosquitto-tls", "bare", "gateway-same", "gateway-fresh")
# Every connection comes from 127.0.0.1: lift the per-address bound (default 1,000) and the
# total bound (default 10,000) so that the benchmark measures setup, not the limits.
GATEWAY_LIMITS = "max_connections = 100000\nmax_connections_per_address = 100000"
# Clients connect and disconnect; a generous keep-alive so idle.py's held connections
# never need a PINGREQ during a measurement (MQTT 3.1.1 section 3.1.2.10).
KEEPALIVE_S = 1800
TARGET_PER_WORKER = 500.0  # issue 7: connections/s per worker
DISCONNECT = b"\xe0\x00"
FILE_LIMIT = 200_000


def raise_file_limit(want: int = FILE_LIMIT) -> int:
    """Raise RLIMIT_NOFILE (children inherit it: Mosquitto, the gateway, the clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(want, hard), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
    return soft


# -- MQTT 3.1.1 and WebSocket framing, by hand (MQTT 3.1.1 sections 3.1, 3.2; RFC 6455 5.2) --


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, token: str | None, keepalive: int = KEEPALIVE_S) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if token is not None:
        flags |= 0xC0  # user name + password (3.1.2.8, 3.1.2.9)
        payload += _utf8("bench") + _utf8(token)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + payload
    return b"\x10" + _varint(len(body)) + body


def ws_client_frame(payload: bytes) -> bytes:
    """One binary frame, masked as RFC 6455 5.3 requires of clients."""
    n = len(payload)
    if n < 126:
        header = bytes([0x82, 0x80 | n])
    elif n < 65536:
        header = bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
    else:
        header = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return header + mask + masked


async def read_ws_payload(reader: asyncio.StreamReader) -> bytes:
    """The payload of one unmasked server frame (binary or continuation)."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    data = await reader.readexactly(n)
    if head[0] & 0x0F == 0x8:
        raise ConnectionError(f"WebSocket close {data[:2].hex()}")
    return data


def upgrade_request(port: int, path: str = "/mqtt") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client connects and how: ``tcp``, ``tls`` (MQTT over TLS) or ``wss``."""

    port: int
    kind: str


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def open_session(
    ep: Endpoint, ctx: ssl.SSLContext | None, client_id: str, token: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (+ TLS) (+ WebSocket upgrade) + CONNECT; returns once CONNACK 0 arrived."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", ep.port, ssl=ctx if ep.kind != "tcp" else None, limit=1 << 16
    )
    packet = connect_packet(client_id, token)
    try:
        if ep.kind == "wss":
            writer.write(upgrade_request(ep.port))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.write(ws_client_frame(packet))
            data = b""
            while len(data) < 4:
                data += await read_ws_payload(reader)
        else:
            writer.write(packet)
            data = await reader.readexactly(4)
        if data[0] != 0x20 or data[3] != 0:
            raise ConnectionError(f"CONNACK {data[:4].hex()}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


def close_session(writer: asyncio.StreamWriter, ep: Endpoint) -> None:
    with contextlib.suppress(Exception):
        writer.write(ws_client_frame(DISCONNECT) if ep.kind == "wss" else DISCONNECT)
        writer.close()


# -- one load-generator process -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectSpec:
    endpoint: Endpoint
    tokens: tuple[str, ...]  # one per connection (cycled); empty: no password
    count: int  # connections this process opens
    concurrency: int
    seconds: float  # cap
    tag: str  # client id prefix


async def _connect_loop(spec: ConnectSpec) -> dict[str, Any]:
    ctx = client_context()
    latencies: list[int] = []
    errors: dict[str, int] = {}
    next_index = 0
    deadline = time.monotonic() + spec.seconds

    async def connector() -> None:
        nonlocal next_index
        while next_index < spec.count and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            token = spec.tokens[i % len(spec.tokens)] if spec.tokens else None
            t0 = time.perf_counter_ns()
            try:
                _reader, writer = await asyncio.wait_for(
                    open_session(spec.endpoint, ctx, f"{spec.tag}-{i}", token), 10
                )
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                key = type(exc).__name__ + ": " + str(exc)[:80]
                errors[key] = errors.get(key, 0) + 1
                continue
            latencies.append(time.perf_counter_ns() - t0)
            close_session(writer, spec.endpoint)

    t0 = time.perf_counter()
    await asyncio.gather(*(connector() for _ in range(spec.concurrency)))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.2)  # let the last closes leave
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def run_connect(spec: ConnectSpec) -> dict[str, Any]:
    raise_file_limit()
    return asyncio.run(_connect_loop(spec))


# -- the driver -------------------------------------------------------------------------


@dataclass
class ConnectResult:
    path: str
    connections: int
    errors: dict[str, int]
    elapsed_s: float
    rate: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # per connection, the path's own process (tree)
    broker_cpu_ms: float  # per connection, Mosquitto

    @property
    def cpu_bound_rate(self) -> float:
        return 1000.0 / self.server_cpu_ms if self.server_cpu_ms > 0 else float("nan")


def endpoint_for(servers: Servers, path: str) -> Endpoint:
    if path == "mosquitto-tcp":
        return Endpoint(servers.ports["mosquitto_tcp"], "tcp")
    if path == "mosquitto-tls":
        return Endpoint(servers.ports["mosquitto_tls"], "tls")
    if path == "bare":
        return Endpoint(servers.ports["bare"], "wss")
    return Endpoint(servers.ports["gateway"], "wss")


def tokens_for(servers: Servers, path: str, count: int) -> tuple[str, ...]:
    if path == "gateway-same":
        return (mint_token(servers.signing_key, subject="bench-same", ttl_s=3600),)
    if path == "gateway-fresh":
        return tuple(
            mint_token(servers.signing_key, subject=f"bench-{i}", ttl_s=3600) for i in range(count)
        )
    return ()


def server_of(path: str) -> str:
    return "gateway" if path.startswith("gateway") else "bare" if path == "bare" else "mosquitto"


def measure(
    servers: Servers,
    pool: ProcessPoolExecutor,
    path: str,
    args: argparse.Namespace,
    round_no: int,
) -> ConnectResult:
    per_proc = max(1, args.count // args.procs)
    all_tokens = tokens_for(servers, path, per_proc * args.procs)  # minted outside the timing
    ep = endpoint_for(servers, path)
    specs = []
    for p in range(args.procs):
        tokens = all_tokens if len(all_tokens) <= 1 else all_tokens[p :: args.procs]
        specs.append(
            ConnectSpec(
                ep, tokens, per_proc, args.concurrency, args.seconds, f"c{round_no}{path}{p}"
            )
        )
    before = servers.cpu_seconds()
    futures = [pool.submit(run_connect, s) for s in specs]
    replies = [f.result(timeout=args.seconds + 60) for f in futures]
    time.sleep(0.3)  # teardown the server is still doing counts too
    after = servers.cpu_seconds()
    lat = sorted(x for r in replies for x in r["latencies"])
    errors: dict[str, int] = {}
    for r in replies:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    elapsed = max(r["elapsed"] for r in replies)
    n = len(lat)
    name = server_of(path)
    server_cpu = after.get(name, 0.0) - before.get(name, 0.0)
    broker_cpu = after.get("mosquitto", 0.0) - before.get("mosquitto", 0.0)
    return ConnectResult(
        path=path,
        connections=n,
        errors=errors,
        elapsed_s=elapsed,
        rate=n / elapsed if elapsed else 0.0,
        p50_ms=percentile(lat, 0.5) / 1e6,
        p99_ms=percentile(lat, 0.99) / 1e6,
        server_cpu_ms=1000 * server_cpu / n if n else float("nan"),
        broker_cpu_ms=1000 * broker_cpu / n if n else float("nan"),
    )


def report(results: Sequence[ConnectResult]) -> str:
    header = (
        f"{'path':>14} {'conns':>6} {'errors':>6} {'conn/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'server CPU ms/conn':>18} {'conn/s per busy core':>20} {'broker CPU ms/conn':>18}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.path:>14} {r.connections:>6} {sum(r.errors.values()):>6} {r.rate:>8,.0f}"
            f" {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.server_cpu_ms:>18.2f}"
            f" {r.cpu_bound_rate:>20,.0f} {r.broker_cpu_ms:>18.2f}"
        )
    return "\n".join(lines)


def best_by_path(results: Sequence[ConnectResult]) -> dict[str, ConnectResult]:
    """Per path, the round with the median rate (rounds are interleaved)."""
    by: dict[str, list[ConnectResult]] = {}
    for r in results:
        by.setdefault(r.path, []).append(r)
    return {p: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for p, rs in by.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2000, help="connections per path and round")
    p.add_argument("--concurrency", type=int, default=32, help="connectors per process")
    p.add_argument("--procs", type=int, default=1, help="load-generator processes")
    p.add_argument("--seconds", type=float, default=20.0, help="cap per path and round")
    p.add_argument("--repeat", type=int, default=1, help="interleaved rounds (median shown)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_file_limit()
    load0 = load_average()
    busy = busy_cpus(0.5)
    workdir = Path(tempfile.mkdtemp(prefix="mqttgate-connect-"))
    servers = Servers(
        workdir,
        None,
        rsa=True,
        uvloop=uvloop_installed(),  # the bare relay on uvloop too when the gateway is
        start_bare="bare" in args.paths,
        mosquitto_tls_tcp="mosquitto-tls" in args.paths,
        gateway_limits=GATEWAY_LIMITS,
    )
    results: list[ConnectResult] = []
    try:
        servers.start()
        with ProcessPoolExecutor(args.procs, mp_context=get_context("spawn")) as pool:
            # Warm-up: imports, the JWKS parse, first handshakes (not measured).
            for path in args.paths:
                pool.submit(
                    run_connect,
                    ConnectSpec(
                        endpoint_for(servers, path),
                        tokens_for(servers, path, 1),
                        20,
                        4,
                        10,
                        f"warm{path}",
                    ),
                ).result(60)
            for round_no in range(args.repeat):
                for path in args.paths:
                    r = measure(servers, pool, path, args, round_no)
                    print(
                        f"[{path}] {r.connections} conns {r.rate:,.0f}/s p50 {r.p50_ms:.2f} "
                        f"p99 {r.p99_ms:.2f} ms server {r.server_cpu_ms:.2f} ms/conn "
                        f"errors {r.errors}",
                        file=sys.stderr,
                    )
                    results.append(r)
    finally:
        servers.stop()
    shown = best_by_path(results)
    print(f"machine: {machine()}")
    print(
        f"gateway revision: {revision()}, gateway --workers 1, RS256 tokens, "
        f"uvloop installed: {uvloop_installed()}, load average at start {load0}, "
        f"CPUs busy before start {busy:.2f}"
    )
    print(
        f"{args.count} connections per path, {args.procs} client process(es) x "
        f"{args.concurrency} concurrent connectors, rounds: {args.repeat}"
    )
    print()
    print(report([shown[p] for p in args.paths if p in shown]))
    for p in ("gateway-same", "gateway-fresh"):
        if p in shown:
            r = shown[p]
            print(
                f"{p}: {r.rate:,.0f} conn/s measured = {r.rate / TARGET_PER_WORKER:.2f}x the "
                f"target of {TARGET_PER_WORKER:.0f}/worker; CPU-bound "
                f"{r.cpu_bound_rate:,.0f}/s per core"
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r.connections for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
