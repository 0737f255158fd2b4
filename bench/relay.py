"""Relay benchmark (issue 2 item 12, issue 7): throughput and latency, three paths side by side.

Paths, all in front of one Mosquitto started by this script:

- ``direct``: Mosquitto's own WebSocket listener, with TLS 1.3 and the same development
  certificate as the others (``--direct-ws`` adds a plain-ws column too);
- ``bare``: ``bench/bare_relay.py``, WSS in, TCP to Mosquitto, bytes copied, no parsing;
- ``gateway``: ``mqttgate serve``, TLS 1.3, an ES256 JWT in every CONNECT password, a
  permit-all policy checked on every CONNECT, PUBLISH, SUBSCRIBE and delivery.

For QoS 0 and 1 and 1 and 4 publisher/subscriber pairs (64-byte payloads) it runs
an unpaced run (publishers send as fast as the path takes: msgs/s delivered) and a
paced run (a fixed total rate, 1,000 msgs/s by default: publish-to-delivery latency
that is not queueing). QoS 1 losses (acknowledged or sent but never delivered) are
counted apart. Load comes from ``bench/loadgen.py`` worker processes (one publisher
process and one subscriber process by default; ``--procs``).

Run: .venv/bin/python bench/relay.py [--quick] [--messages N] [--pairs 1 4] [--qos 0 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from loadgen import (  # noqa: E402 - bench/ is on sys.path when run as a script
    PublishSpec,
    SubscribeSpec,
    Target,
    worker_main,
)

from gateway.auth.devidp import (  # noqa: E402
    SigningKey,
    load_signing_key,
    mint_token,
    public_jwk,
    write_dev_keys,
)
from gateway.certs import make_dev_certs  # noqa: E402

PATHS = ("direct", "bare", "gateway")
PERMIT_ALL_POLICY = """{
  "version": "2.0",
  "default_action": "deny",
  "rules": [
    {"id": "everything", "topic": "#", "action": "all", "effect": "allow",
     "qos": [0, 1, 2], "retain": true}
  ]
}
"""
# After the publishers finish, subscribers get this long to receive what is in flight
# before the scenario is cut (what is missing then is counted as lost).
DRAIN_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"{what}: nothing listens on 127.0.0.1:{port}")


# -- the servers under test ---------------------------------------------------------


def write_rsa_keys(out: Path) -> dict[str, Path]:
    """An RS256 (RSA 2048) signing key and its JWKS, like ``write_dev_keys`` does for ES256."""
    out.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = {"private": out / "rsa-signing.pem", "jwks": out / "rsa-jwks.json"}
    fd = os.open(paths["private"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    paths["jwks"].write_text(json.dumps({"keys": [public_jwk(key)]}))
    return paths


def gateway_name(workers: int, first: bool) -> str:
    """``gateway`` for the first (reference) worker count, ``gateway-wN`` for the others."""
    return "gateway" if first else f"gateway-w{workers}"


def otlp_sink() -> int:
    """An OTLP/HTTP collector on loopback that answers 200 and keeps nothing, on a thread
    of this process: the exporter's cost is the gateway's, not the collector's."""
    import asyncio
    import threading

    from aiohttp import web

    port = free_port()

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, content_type="application/x-protobuf")

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", accept)
        app.router.add_post("/v1/metrics", accept)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=serve, daemon=True, name="otlp-sink").start()
    return port


@dataclass
class Servers:
    """Mosquitto, the bare relay and the gateway(s), in one temporary directory."""

    workdir: Path
    server_cpus: tuple[int, ...] | None
    direct_ws: bool = False
    uvloop: bool = False
    # One gateway per entry (``mqttgate serve --workers N``); the first is "gateway".
    gateway_workers: tuple[int, ...] = (1,)
    rsa: bool = False  # RS256 tokens (connect.py) instead of ES256
    start_bare: bool = True
    mosquitto_tls_tcp: bool = False  # an MQTT-over-TLS listener too (connect baseline)
    gateway_limits: str = ""  # extra lines for the gateway's [limits] table
    # --audit-log: the JSON-lines audit log on, so every decision (allows included) is a
    # record, written in batches by the audit thread (issue 7: "audit on").
    audit_log: bool = False
    # --audit-spans RATIO: allow spans at this sampling ratio (denies and authentications
    # always) over OTLP/HTTP to a collector that accepts and discards (otlp_sink).
    audit_spans: float | None = None
    otlp_port: int = 0
    # Python run in the gateway process before it starts (--workers 1 only): experiments
    # such as idle.py --ssl-read-buffer, never the figures of record.
    gateway_prelude: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    @property
    def gateways(self) -> list[str]:
        return [gateway_name(n, i == 0) for i, n in enumerate(self.gateway_workers)]

    def start(self) -> None:
        make_dev_certs(self.certs)
        if self.rsa:
            self.idp = write_rsa_keys(self.workdir / "idp")
        else:
            self.idp = write_dev_keys(self.workdir / "idp")
        self.signing_key: SigningKey = load_signing_key(self.idp["private"])
        self._start_mosquitto()
        if self.start_bare:
            self._start_bare_relay()
        for i, n in enumerate(self.gateway_workers):
            self._start_gateway(gateway_name(n, i == 0), n)

    def _spawn(self, name: str, argv: list[str], log: Path, port: int) -> None:
        with log.open("ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=fh, cwd=REPO)
        self.procs[name] = proc
        if self.server_cpus:
            os.sched_setaffinity(proc.pid, self.server_cpus)
        wait_port(port, proc, name)

    def _start_mosquitto(self) -> None:
        tcp, wss = free_port(), free_port()
        self.ports.update(mosquitto_tcp=tcp, direct=wss)
        lines = [
            "user root",
            "persistence false",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "allow_anonymous true",
            # shared/notes/mosquitto-2.0.11.md: QoS 1 drops from WebSocket publishers
            # under load with the default queue; raise it and count losses apart.
            "max_queued_messages 100000",
            # Outgoing QoS 1 window per subscriber (default 20): the same for every path.
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            f"listener {tcp} 127.0.0.1",
            "protocol mqtt",
            # 2.0.11 ignores a websockets listener's address: bind by interface name.
            f"listener {wss} lo",
            "protocol websockets",
            f"certfile {self.certs / 'server.pem'}",
            f"keyfile {self.certs / 'server.key'}",
            "tls_version tlsv1.3",
        ]
        if self.direct_ws:
            ws = free_port()
            self.ports["direct-ws"] = ws
            lines += [f"listener {ws} lo", "protocol websockets"]
        if self.mosquitto_tls_tcp:
            tls = free_port()
            self.ports["mosquitto_tls"] = tls
            lines += [
                f"listener {tls} 127.0.0.1",
                "protocol mqtt",
                f"certfile {self.certs / 'server.pem'}",
                f"keyfile {self.certs / 'server.key'}",
                "tls_version tlsv1.3",
            ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._spawn("mosquitto", [binary, "-c", str(conf)], self.workdir / "mosquitto.out", tcp)
        wait_port(wss, self.procs["mosquitto"], "mosquitto websockets")

    def _start_bare_relay(self) -> None:
        port = free_port()
        self.ports["bare"] = port
        argv = [
            sys.executable,
            str(BENCH_DIR / "bare_relay.py"),
            "--port",
            str(port),
            "--upstream",
            f"127.0.0.1:{self.ports['mosquitto_tcp']}",
            "--certfile",
            str(self.certs / "server.pem"),
            "--keyfile",
            str(self.certs / "server.key"),
        ]
        if self.uvloop:
            argv.append("--uvloop")
        self._spawn("bare", argv, self.workdir / "bare.log", port)

    def gateway_config(self, port: int) -> str:
        policy = self.workdir / "policy.json"
        policy.write_text(PERMIT_ALL_POLICY)
        return f"""
[listener]
host = "127.0.0.1"
port = {port}
certfile = "{self.certs / "server.pem"}"
keyfile = "{self.certs / "server.key"}"

[upstream]
url = "mqtt://127.0.0.1:{self.ports["mosquitto_tcp"]}"

[limits]
shutdown_grace_s = 2.0
{self.gateway_limits}

[admin]
enabled = false

[logging]
level = "warning"

[auth]
[[auth.issuers]]
issuer = "https://mqttgate.dev.local"
audiences = ["mqttgate"]
jwks_file = "{self.idp["jwks"]}"

[acl]
policy = "{policy}"
watch = false
{self._audit_table()}"""

    def _audit_table(self) -> str:
        lines = []
        if self.audit_log:
            lines.append(f'log_file = "{self.workdir / "audit.jsonl"}"')
        if self.audit_spans is not None:
            lines.append(f'otlp_endpoint = "http://127.0.0.1:{self.otlp_port}"')
            lines.append(f"allow_sample_ratio = {self.audit_spans}")
        return "\n[audit]\n" + "\n".join(lines) + "\n" if lines else ""

    def _start_gateway(self, name: str, workers: int) -> None:
        port = free_port()
        self.ports[name] = port
        conf = self.workdir / f"{name}.toml"
        conf.write_text(self.gateway_config(port))
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(conf)]
        prelude = self.gateway_prelude
        if prelude:
            code = f"{prelude}\nfrom gateway.cli import main\nraise SystemExit(main())"
            argv[1:3] = ["-c", code]
        argv += ["--workers", str(workers)]
        self._spawn(name, argv, self.workdir / f"{name}.log", port)
        if workers > 1:
            # The supervisor's children bind the port one by one: wait for all of them.
            deadline = time.monotonic() + 15
            while len(process_tree(self.procs[name].pid)) < workers + 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: fewer than {workers} workers started")
                time.sleep(0.05)
            time.sleep(1.0)

    def target(self, path: str, role: str, pairs: int) -> Target:
        ca = str(self.certs / "ca.pem")
        if path == "direct-ws":
            return Target(f"ws://127.0.0.1:{self.ports[path]}/mqtt")
        if not path.startswith("gateway"):
            return Target(f"wss://127.0.0.1:{self.ports[path]}/mqtt", ca)
        tokens = tuple(
            mint_token(self.signing_key, subject=f"bench-{role}-{i}", ttl_s=3600)
            for i in range(pairs)
        )
        return Target(f"wss://127.0.0.1:{self.ports[path]}/mqtt", ca, tokens)

    def profile(self) -> list[subprocess.Popen[bytes]]:
        """py-spy on the gateway and the bare relay until they exit (``--profile``)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spies = []
        for name in [n for n in ("gateway", "bare") if n in self.procs]:
            out = self.workdir / f"{name}.pyspy.txt"
            argv = [spy, "record", "--format", "raw", "--idle", "--nonblocking", "--rate", "250"]
            argv += ["-o", str(out), "-p", str(self.procs[name].pid)]
            with (self.workdir / f"{name}.pyspy.log").open("wb") as log:
                spies.append(subprocess.Popen(argv, stdout=log, stderr=log))
        return spies

    def stop(self) -> None:
        for name in (*self.gateways, "bare", "mosquitto"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def mosquitto_drop_warnings(self) -> int:
        with contextlib.suppress(OSError):
            text = (self.workdir / "mosquitto.log").read_text(errors="replace")
            return text.count("Outgoing messages are being dropped")
        return 0

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per server, its worker processes included (``--workers N``)."""
        return {
            name: sum(cpu_seconds(p) for p in process_tree(proc.pid))
            for name, proc in self.procs.items()
        }


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc; the gateway's workers are its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (from /proc/PID/status; 0 if gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU seconds a process has used so far (from /proc; 0 if gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- load generator workers ------------------------------------------------------


@dataclass
class Workers:
    """``procs`` publisher processes and ``procs`` subscriber processes, started once."""

    procs: int
    cpus: tuple[int, ...] | None
    pubs: list[tuple[BaseProcess, Connection]] = field(default_factory=list)
    subs: list[tuple[BaseProcess, Connection]] = field(default_factory=list)

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        for group in (self.pubs, self.subs):
            for _ in range(self.procs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=worker_main, args=(child, self.cpus), daemon=True)
                proc.start()
                group.append((proc, parent))

    def cpu_seconds(self) -> dict[str, float]:
        return {
            "loadgen-pub": sum(cpu_seconds(p.pid) for p, _ in self.pubs),
            "loadgen-sub": sum(cpu_seconds(p.pid) for p, _ in self.subs),
        }

    def stop(self) -> None:
        for proc, conn in (*self.pubs, *self.subs):
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("exit",))
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


def _recv_all(conns: Sequence[Connection], timeout: float, what: str) -> list[Any]:
    """One reply from each pipe; ("error", ...) replies raise."""
    replies: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(conns):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: no reply within {timeout:.0f} s")
        for c in wait([c for i, c in enumerate(conns) if i not in replies], left):
            assert isinstance(c, Connection)
            msg = c.recv()
            if msg[0] == "error":
                raise RuntimeError(f"{what}: {msg[1]}")
            replies[conns.index(c)] = msg
    return [replies[i] for i in range(len(conns))]


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    qos: int
    pairs: int
    paced: bool
    messages: int  # per pair
    seconds: float
    rate: float  # total msgs/s for a paced run


@dataclass
class Result:
    scenario: Scenario
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    duplicates: int = 0
    frames: int = 0  # WebSocket frames the subscribers received
    rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    error: str | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    pub_s: float = 0.0  # how long the publishers took (ahead of delivery when unpaced)

    @property
    def lost(self) -> int:
        return self.sent - self.delivered


def _split(items: range, n: int) -> list[tuple[int, ...]]:
    return [tuple(items[i::n]) for i in range(n) if items[i::n]]


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def run_scenario(
    servers: Servers, workers: Workers, sc: Scenario, run_id: str, before: dict[str, float]
) -> Result:
    result = Result(sc)
    pairs = range(sc.pairs)
    groups = _split(pairs, workers.procs)
    per_pair_rate = sc.rate / sc.pairs if sc.paced else 0.0
    pub_target = servers.target(sc.path, "pub", sc.pairs)
    sub_target = servers.target(sc.path, "sub", sc.pairs)
    sub_conns = [conn for _, conn in workers.subs[: len(groups)]]
    pub_conns = [conn for _, conn in workers.pubs[: len(groups)]]
    for conn, group in zip(sub_conns, groups, strict=True):
        conn.send(("subscribe", SubscribeSpec(sub_target, run_id, group, sc.qos, sc.messages)))
    _recv_all(sub_conns, 30, f"{sc.path} subscribers")
    for conn, group in zip(pub_conns, groups, strict=True):
        spec = PublishSpec(
            pub_target, run_id, group, sc.qos, sc.messages, sc.seconds, per_pair_rate
        )
        conn.send(("publish", spec))
    pub_replies = _recv_all(pub_conns, sc.seconds + 60, f"{sc.path} publishers")
    try:
        sub_replies = _recv_all(sub_conns, DRAIN_S, f"{sc.path} subscribers")
    except TimeoutError:
        for conn in sub_conns:
            conn.send(("stop",))
        sub_replies = _recv_all(sub_conns, 30, f"{sc.path} subscribers")
    pubs = [r for reply in pub_replies for r in reply[1]]
    subs = [r for reply in sub_replies for r in reply[1]["pairs"]]
    result.sent = sum(p["sent"] for p in pubs)
    result.acked = sum(p["acked"] for p in pubs)
    result.delivered = sum(s["unique"] for s in subs)
    result.duplicates = sum(s["duplicates"] for s in subs)
    result.frames = sum(s.get("frames", 0) for s in subs)
    t0 = min(p["t0"] for p in pubs)
    t_last = max((s["last_ns"] for s in subs if s["last_ns"]), default=0)
    if t_last > t0:
        result.rate = result.delivered / ((t_last - t0) / 1e9)
    lat = array("q")
    for s in subs:
        lat.frombytes(s["latencies"])
    ordered = sorted(lat)
    result.p50_ms = percentile(ordered, 0.50) / 1e6
    result.p99_ms = percentile(ordered, 0.99) / 1e6
    after = {**servers.cpu_seconds(), **workers.cpu_seconds()}
    result.pub_s = (max(p["t_end"] for p in pubs) - t0) / 1e9
    result.wall_s = (max(t_last, max(p["t_end"] for p in pubs)) - t0) / 1e9
    result.cpu_s = {k: round(after[k] - before.get(k, 0.0), 3) for k in after}
    return result


# -- the report ------------------------------------------------------------------


def median_run(runs: list[Result], by_latency: bool = False) -> Result:
    """The median run: by rate (unpaced), by p99 (paced: the rate is fixed there)."""
    ok = sorted((r for r in runs if not r.error), key=lambda r: r.p99_ms if by_latency else r.rate)
    return ok[len(ok) // 2] if ok else runs[0]


def rate_spread(runs: list[Result]) -> float | None:
    rates = sorted(r.rate for r in runs if not r.error)
    if len(rates) < 2 or not rates[len(rates) // 2]:
        return None
    return (rates[-1] - rates[0]) / rates[len(rates) // 2]


def _fmt_rate(r: Result | None, spread: float | None = None) -> str:
    if r is None:
        return "-"
    if r.error:
        return "error"
    return f"{r.rate:,.0f}" + (f" ±{50 * spread:.0f}%" if spread is not None else "")


def _ratio(a: Result | None, b: Result | None, attr: str = "rate") -> str:
    if a is None or b is None or a.error or b.error:
        return "-"
    x, y = getattr(a, attr), getattr(b, attr)
    return f"{x / y:.2f}" if y else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def report(results: list[Result], paths: Sequence[str]) -> str:
    groups: dict[tuple[bool, int, int, str], list[Result]] = {}
    for r in results:
        key = (r.scenario.paced, r.scenario.qos, r.scenario.pairs, r.scenario.path)
        groups.setdefault(key, []).append(r)
    # With --repeat, each cell shows the median run (by rate unpaced, by p99 paced) and
    # the spread of the unpaced rates: (max - min) / median.
    by_key = {k: median_run(v, by_latency=k[0]) for k, v in groups.items()}
    spread = {k: rate_spread(v) for k, v in groups.items()}
    keys = sorted({(r.scenario.qos, r.scenario.pairs) for r in results})
    parts: list[str] = []
    unpaced = [k for k in keys if any((False, *k, p) in by_key for p in paths)]
    if unpaced:
        header = ["qos", "pairs", *(f"{p} msg/s" for p in paths)]
        ratio_cols = [("gateway", "direct"), ("bare", "direct"), ("gateway", "bare")]
        ratio_cols += [(p, "gateway") for p in paths if p.startswith("gateway-w")]
        ratio_cols = [(a, b) for a, b in ratio_cols if a in paths and b in paths]
        header += [f"{a}/{b}" for a, b in ratio_cols]
        header += [f"{p} p50/p99 ms" for p in paths]
        relays = [p for p in paths if p == "bare" or p.startswith("gateway")]
        header += [f"{p} CPU µs/msg" for p in relays]
        header += ["lost " + "/".join(_initial(p) for p in paths)]
        rows = []
        for qos, pairs in unpaced:
            rs = {p: by_key.get((False, qos, pairs, p)) for p in paths}
            row = [str(qos), str(pairs)]
            row += [_fmt_rate(rs[p], spread.get((False, qos, pairs, p))) for p in paths]
            row += [_ratio(rs[a], rs[b]) for a, b in ratio_cols]
            row += [_lat(rs[p]) for p in paths]
            row += [_cpu_per_msg(rs[p], p) for p in relays]
            row += ["/".join(str(rs[p].lost) if rs[p] else "-" for p in paths)]  # type: ignore[union-attr]
            rows.append(row)
        parts.append(
            "Throughput (unpaced; latency here is queueing, see the paced table)\n"
            + _table(header, rows)
        )
    paced = [k for k in keys if any((True, *k, p) in by_key for p in paths)]
    if paced:
        header = ["qos", "pairs", *(f"{p} msg/s" for p in paths)]
        header += [f"{p} p50/p99 ms" for p in paths]
        extra = [p for p in ("gateway", "bare") if p in paths and "direct" in paths]
        header += [f"{p}-direct p99 ms" for p in extra]
        header += ["lost " + "/".join(_initial(p) for p in paths)]
        rows = []
        for qos, pairs in paced:
            rs = {p: by_key.get((True, qos, pairs, p)) for p in paths}
            row = [str(qos), str(pairs), *(_fmt_rate(rs[p]) for p in paths)]
            row += [_lat(rs[p]) for p in paths]
            for p in extra:
                a, d = rs[p], rs["direct"]
                ok = a is not None and d is not None and not a.error and not d.error
                row.append(f"{a.p99_ms - d.p99_ms:+.2f}" if ok else "-")  # type: ignore[union-attr]
            row += ["/".join(str(rs[p].lost) if rs[p] else "-" for p in paths)]  # type: ignore[union-attr]
            rows.append(row)
        rate = next(r.scenario.rate for r in results if r.scenario.paced)
        parts.append(f"Latency (paced, {rate:,.0f} msgs/s in total)\n" + _table(header, rows))
    return "\n\n".join(parts)


def _initial(path: str) -> str:
    return path[0] + path.rpartition("-w")[2] if path.startswith("gateway-w") else path[0]


def _cpu_per_msg(r: Result | None, process: str) -> str:
    """The relay process's CPU time per delivered message: less noisy than msgs/s."""
    if r is None or r.error or not r.delivered or process not in r.cpu_s:
        return "-"
    return f"{1e6 * r.cpu_s[process] / r.delivered:.1f}"


def _lat(r: Result | None) -> str:
    if r is None or r.error:
        return "-"
    return f"{r.p50_ms:.2f}/{r.p99_ms:.2f}"


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs something else keeps busy right now (from /proc/stat, before we start).

    The figures are only comparable on an otherwise idle machine: another benchmark on
    one of two cores halves what the load generator, the broker and the relay can get.
    """

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    with contextlib.suppress(OSError, ValueError, IndexError):
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
        return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
    return float("nan")


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def uvloop_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=5,
        )
        return out.stdout.strip() or "?"
    return "?"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mosq = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5)
        mosq = (out.stdout or out.stderr).splitlines()[0]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {mosq}, "
        f"{platform.system()} {platform.release()}"
    )


# -- command line ----------------------------------------------------------------


def scenarios(args: argparse.Namespace, paths: Sequence[str]) -> Iterator[Scenario]:
    """Paths interleaved within each (qos, pairs), so drift hits all three alike."""
    for paced in (False, True):
        if (paced and args.no_paced) or (not paced and args.no_throughput):
            continue
        for qos in args.qos:
            for pairs in args.pairs:
                for path in [p for _ in range(args.repeat) for p in paths]:
                    if paced:
                        n = max(1, int(args.rate * args.paced_seconds / pairs))
                        yield Scenario(path, qos, pairs, True, n, args.paced_seconds * 3, args.rate)
                    else:
                        yield Scenario(path, qos, pairs, False, args.messages, args.seconds, 0.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relay throughput and latency: direct, bare, gateway")
    p.add_argument("--messages", type=int, default=50_000, help="per pair, unpaced (50000)")
    p.add_argument("--seconds", type=float, default=20.0, help="cap per unpaced run (20)")
    p.add_argument("--pairs", type=int, nargs="+", default=[1, 4])
    p.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    p.add_argument("--rate", type=float, default=1000.0, help="paced total msgs/s (1000)")
    p.add_argument("--paced-seconds", type=float, default=5.0)
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per cell, interleaved; median and spread"
    )
    p.add_argument("--no-paced", action="store_true")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=[*PATHS, "direct-ws"])
    p.add_argument("--direct-ws", action="store_true", help="add plain ws to Mosquitto")
    p.add_argument(
        "--gateway-workers",
        type=int,
        nargs="+",
        default=[1],
        help="mqttgate serve --workers N; several: one gateway each (gateway, gateway-wN)",
    )
    p.add_argument("--procs", type=int, default=1, help="publisher (and subscriber) processes")
    p.add_argument(
        "--pin",
        choices=["none", "split"],
        default="none",
        help="split: servers on CPU 0, load generator on the other CPUs",
    )
    p.add_argument("--uvloop", action="store_true", help="bare relay on uvloop")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the gateway and the bare relay with py-spy (collapsed stacks in the temp dir)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="20,000 msgs per pair, 4 s cap, 1 s paced: about a minute",
    )
    p.add_argument("--json", type=Path, help="write every result here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    p.add_argument(
        "--audit-spans",
        type=float,
        metavar="RATIO",
        help="the gateway exports allow spans at this sampling ratio (0..1) to a local sink",
    )
    p.add_argument(
        "--audit-log",
        action="store_true",
        help="the gateway writes the JSON-lines audit log: every decision is a record",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.messages = min(args.messages, 20_000)
        args.seconds = min(args.seconds, 4.0)
        args.paced_seconds = min(args.paced_seconds, 1.0)
    if args.direct_ws and "direct-ws" not in args.paths:
        args.paths.append("direct-ws")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    busy = busy_cpus(0.5)
    load0 = load_average()
    if busy > 0.2:
        print(
            f"warning: {busy:.1f} CPUs are busy with something else before the benchmark "
            "starts; the figures will be low and noisy",
            file=sys.stderr,
        )
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = load_cpus = None
    if args.pin == "split" and len(cpus) >= 2:
        server_cpus, load_cpus = (cpus[0],), tuple(cpus[1:])
    workdir = Path(tempfile.mkdtemp(prefix="mqttgate-bench-"))
    servers = Servers(
        workdir,
        server_cpus,
        direct_ws="direct-ws" in args.paths,
        uvloop=args.uvloop,
        gateway_workers=tuple(args.gateway_workers),
        start_bare="bare" in args.paths,
        audit_log=args.audit_log,
        audit_spans=args.audit_spans,
        otlp_port=otlp_sink() if args.audit_spans is not None else 0,
    )
    workers = Workers(args.procs, load_cpus)
    results: list[Result] = []
    spies: list[subprocess.Popen[bytes]] = []
    paths = [p for p in (*PATHS, "direct-ws") if p in args.paths]
    if "gateway" in paths:
        paths += servers.gateways[1:]
    try:
        servers.start()
        workers.start()
        if args.profile:
            spies = servers.profile()
        for i, sc in enumerate(scenarios(args, paths)):
            before = {**servers.cpu_seconds(), **workers.cpu_seconds()}
            try:
                r = run_scenario(servers, workers, sc, f"r{i}", before)
            except (RuntimeError, TimeoutError) as exc:
                r = Result(sc, error=str(exc))
            results.append(r)
            mode = "paced" if sc.paced else "unpaced"
            detail = r.error or (
                f"{r.rate:,.0f} msg/s p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} ms "
                f"pub {r.pub_s:.2f} s sent {r.sent} delivered {r.delivered} lost {r.lost} "
                f"wall {r.wall_s:.2f} s "
                f"msgs/frame down {r.delivered / max(r.frames, 1):.1f} "
                f"cpu s {r.cpu_s}"
            )
            print(f"[{mode} qos{sc.qos} x{sc.pairs} {sc.path}] {detail}", file=sys.stderr)
    finally:
        workers.stop()
        servers.stop()
        for spy in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(15)
    print(f"machine: {machine()}")
    print(
        f"gateway revision: {revision()}, CPUs busy before start: {busy:.2f}, "
        f"load average at start {load0}, gateway --workers {args.gateway_workers}, "
        f"uvloop installed: {uvloop_installed()}"
    )
    print(
        f"payload 64 B, MQTT 3.1.1, unpaced {args.messages} msgs/pair (cap {args.seconds:g} s), "
        f"load generator processes: {args.procs} pub + {args.procs} sub, pin: {args.pin}"
    )
    print()
    print(report(results, paths))
    drops = servers.mosquitto_drop_warnings()
    print()
    print(
        "lost = sent - delivered (unique). Mosquitto 'Outgoing messages are being dropped' "
        f"warnings: {drops}"
    )
    print(f"total {time.monotonic() - started:.1f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        **{k: getattr(r.scenario, k) for k in Scenario.__slots__},
                        "rate": r.rate,
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "sent": r.sent,
                        "acked": r.acked,
                        "delivered": r.delivered,
                        "duplicates": r.duplicates,
                        "frames": r.frames,
                        "error": r.error,
                        "cpu_s": r.cpu_s,
                    }
                    for r in results
                ],
                indent=1,
            )
        )
    if args.keep:
        print(f"logs and configs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not any(r.error for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
