"""Soak (issue 9 item 5): a thousand clients, a policy update and a broker restart, bounded.

The script starts its own Mosquitto (TCP listener, persistence on, in a temporary
directory) and ``mqttgate serve --workers 1`` in front of it (loopback only), connects
``--connections`` WSS clients through the gateway from one asyncio process, and runs
QoS 1 traffic for ``--minutes``:

- publishers send a fixed cycle to their group's topics: ``soak/data/{g}`` (allowed),
  ``soak/rev/{g}`` (allowed; its subscriptions are revoked by the policy update) and
  ``soak/secret/{g}`` (refused: v5 PUBACK 0x87, v3.1.1 acknowledged without forwarding);
- subscribers hold ``soak/data/{g}``, some also ``soak/rev/{g}`` (revoked later) or
  ``soak/secret/{g}`` (refused at SUBSCRIBE); two hold ``soak/data/+``;
- a spy straight on the broker subscribes to ``soak/secret/#``: nothing may reach it.

One third of the clients speak MQTT 3.1.1 (Clean Session 0), the rest MQTT 5 (Clean
Start 0, Session Expiry 1 h): after a reconnect the broker still holds their
subscriptions and the QoS 1 messages queued meanwhile.

At 35 % of the run the policy is replaced through ``PUT /admin/policy`` (without the
``soak/rev`` subscribe rule). Before it, REV publishing pauses and the script waits
until every acknowledged REV message has reached its subscribers, so that the
accounting is exact: REV messages before the update must all arrive, those after
(kind ``rev-after-revoke``) must never arrive. At 60 % Mosquitto is stopped (SIGTERM,
it saves its sessions), left down for ``--broker-down-s``, and started again on the same
port; every client is disconnected and reconnects with jittered backoff; ``/readyz`` is
polled throughout.

Before the traffic, a warm-up: the same clients connect (all at once), subscribe and
leave with sessions that end with them; the gateway's RSS after it (and after its own
memory return) is the *warm baseline*. CPython keeps a pymalloc arena as long as one block
in it is live, so a process that has held a thousand connections never returns to its
cold-start RSS; what a soak must show is that nothing grows beyond the footprint of having
served the population once (``--no-warm-up`` judges against the cold start instead; both
figures are printed).

At the end: sent, acknowledged, delivered, lost (acknowledged but missing at a
subscriber that should have it), duplicates (explained by the DUP flag, a reconnect, or
the publisher's own retransmission; any other is a failure), refusals, leaks, the
readiness timeline, and the gateway's RSS at start, after the warm-up, at peak and at the
end (after every client disconnected and ``--settle-s``). Exit status 1 if anything was
lost or leaked, a duplicate is unexplained, or the memory is not back within the
tolerance of the warm baseline.

Run: .venv/bin/python bench/soak.py [--quick] [--minutes 10] [--connections 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from relay import (  # noqa: E402 - bench/ is on sys.path when run as a script
    UVLOOP_BOUND_PORT_WORKAROUND,
    busy_cpus,
    free_port,
    load_average,
    machine,
    process_tree,
    revision,
    rss_kib,
    uvloop_installed,
    wait_port,
)
from soak_support import (  # noqa: E402
    DATA,
    DISCONNECT,
    KIND_NAMES,
    MQTT_5,
    MQTT_311,
    REV,
    REV_AFTER,
    SECRET,
    Client,
    Phase,
    Publisher,
    Spy,
    StreamParser,
    Subscriber,
    connect_packet,
    subscribe_packet,
)

from gateway.auth.devidp import load_signing_key, mint_token, write_dev_keys  # noqa: E402
from gateway.certs import make_dev_certs  # noqa: E402

ADMIN_TOKEN_ENV = "MQTTGATE_SOAK_ADMIN_TOKEN"
# --tracemalloc: SIGUSR2 makes the gateway write its traced Python memory (total and
# the biggest allocation sites), to tell a leak of objects from memory the allocator
# keeps after they are freed (RSS alone cannot).
# SIGUSR1 makes the gateway call glibc's malloc_trim(0): what RSS keeps after it is memory
# in use; what it gives back was free memory glibc had kept (its arenas do not shrink on
# their own). The soak reads RSS before and after, and judges "back to baseline" on both.
#
# It also reports where the RSS sits (/proc/self/smaps): glibc's main heap, pymalloc's
# 1 MiB arenas (sys._debugmallocstats: arenas, bytes in live blocks, free pools) and the
# rest; the gateway returns free heap by itself (gateway/server/memory_return.py), but
# CPython 3.11 frees a pymalloc arena only when every block in it is free.
TRIM_PRELUDE = """
import ctypes, gc, json, os, re, signal, ssl, sys, tempfile
def _where():
    rss, cur = {{"heap": 0, "anon": 0, "file": 0}}, "file"
    for line in open("/proc/self/smaps"):
        f = line.split()
        if not f[0].endswith(":"):
            path = f[5] if len(f) > 5 else ""
            cur = "heap" if path == "[heap]" else ("file" if path else "anon")
        elif f[0] == "Rss:":
            rss[cur] += int(f[1])
    with tempfile.TemporaryFile("w+") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    def num(pattern):
        m = re.search(pattern, text)
        return int(m.group(1).replace(",", "")) // 1024 if m else 0
    rss["pymalloc_arenas"] = num(r"arenas \\* \\d+ bytes/arena\\s+=\\s+([\\d,]+)")
    rss["pymalloc_used"] = num(r"# bytes in allocated blocks\\s+=\\s+([\\d,]+)")
    rss["pymalloc_free_pools"] = num(r"unused pools \\* \\d+ bytes\\s+=\\s+([\\d,]+)")
    return rss
def _trim(*_):
    objs = gc.get_objects()
    stats = [c.session_stats() for c in objs if isinstance(c, ssl.SSLContext)]
    names = ("SSLObject", "SSLProtocol", "WebSocketResponse", "Connection", "Session")
    live = dict.fromkeys(names, 0)
    for o in objs:
        n = type(o).__name__
        if n in live:
            live[n] += 1
    del objs
    # Last, so that the RSS read next is not raised by the counting above. No gc.collect:
    # garbage the gateway has not collected by itself is part of what it holds.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    where = _where()
    with open("{out}", "w") as fh:
        json.dump({{"ssl": stats, "live": live, "where": where}}, fh)
signal.signal(signal.SIGUSR1, _trim)
"""
TRACEMALLOC_PRELUDE = """
import gc, signal, tracemalloc
tracemalloc.start(1)
def _dump(*_):
    gc.collect()
    stats = tracemalloc.take_snapshot().statistics("lineno")
    total = sum(s.size for s in stats)
    with open("{out}", "a") as fh:
        fh.write(f"traced total {{total / 1024:.0f}} KiB\\n")
        for s in stats[:12]:
            fh.write(f"{{s.size / 1024:10.0f}} KiB {{s.count:8d}} {{s.traceback}}\\n")
signal.signal(signal.SIGUSR2, _dump)
"""


def where_text(start: dict[str, int], end: dict[str, int]) -> str:
    """The trimmed RSS by kind (TRIM_PRELUDE), start -> end: what holds a difference."""
    if not start or not end:
        return "?"
    names = (
        ("heap", "glibc main heap"),
        ("pymalloc_arenas", "pymalloc arenas"),
        ("pymalloc_used", "of them live blocks"),
        ("pymalloc_free_pools", "free pools"),
        ("anon", "all anonymous maps"),
        ("file", "files"),
    )
    return "; ".join(
        f"{label} {start.get(k, 0) / 1024:.1f} -> {end.get(k, 0) / 1024:.1f}" for k, label in names
    )


def policy_text(with_rev_subscribe: bool) -> str:
    rules = [
        {"id": "data-publish", "topic": "soak/data/#", "action": "publish", "effect": "allow",
         "qos": [0, 1]},
        {"id": "data-subscribe", "topic": "soak/data/#", "action": "subscribe",
         "effect": "allow", "qos": [0, 1]},
        {"id": "rev-publish", "topic": "soak/rev/#", "action": "publish", "effect": "allow",
         "qos": [0, 1]},
    ]  # fmt: skip
    if with_rev_subscribe:
        rules.append(
            {"id": "rev-subscribe", "topic": "soak/rev/#", "action": "subscribe",
             "effect": "allow", "qos": [0, 1]}
        )  # fmt: skip
    # soak/secret/# matches no rule: refused both ways by the default.
    return json.dumps({"version": "2.0", "default_action": "deny", "rules": rules}, indent=1)


# -- the servers -----------------------------------------------------------------------


@dataclass
class SoakServers:
    """Mosquitto (restartable, persistent) and one gateway with its admin listener."""

    workdir: Path
    connections: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    tracemalloc: bool = False
    ssl_sessions: int = 0  # sessions in the gateway's TLS server session cache (last read)
    live_objects: dict[str, int] = field(default_factory=dict)  # by type name (last read)
    where_kib: dict[str, int] = field(default_factory=dict)  # RSS by kind (last read)

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    def start(self) -> None:
        make_dev_certs(self.certs)
        self.idp = write_dev_keys(self.workdir / "idp")
        self.signing_key = load_signing_key(self.idp["private"])
        self.ports["mosquitto"] = free_port()
        self._write_mosquitto_conf()
        self.start_mosquitto()
        self._start_gateway()

    def _write_mosquitto_conf(self) -> None:
        data = self.workdir / "mosquitto-data"
        data.mkdir(exist_ok=True)
        conf_lines = [
            "user root",
            # Sessions and queued QoS 1 messages survive the restart in the middle.
            "persistence true",
            f"persistence_location {data}/",
            "persistence_file mosquitto.db",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "allow_anonymous true",
            # shared/notes/mosquitto-2.0.11.md: the default queue drops QoS 1 under load;
            # here it must also hold what offline persistent sessions miss.
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            f"listener {self.ports['mosquitto']} 127.0.0.1",
            "protocol mqtt",
        ]
        (self.workdir / "mosquitto.conf").write_text("\n".join(conf_lines) + "\n")

    def start_mosquitto(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        with (self.workdir / "mosquitto.out").open("ab") as fh:
            proc = subprocess.Popen([binary, "-c", str(conf)], stdout=fh, stderr=fh, cwd=REPO)
        self.procs["mosquitto"] = proc
        # SO_REUSEADDR on Mosquitto's listener: the same port binds again at once.
        wait_port(self.ports["mosquitto"], proc, "mosquitto", timeout=30)

    def stop_mosquitto(self) -> None:
        proc = self.procs.pop("mosquitto")
        proc.send_signal(signal.SIGTERM)  # saves the persistence file on the way out
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _gateway_config(self) -> str:
        policy = self.workdir / "policy.json"
        policy.write_text(policy_text(True))
        return f"""
[listener]
host = "127.0.0.1"
port = {self.ports["gateway"]}
certfile = "{self.certs / "server.pem"}"
keyfile = "{self.certs / "server.key"}"

[upstream]
url = "mqtt://127.0.0.1:{self.ports["mosquitto"]}"
connect_timeout_s = 2.0

[limits]
shutdown_grace_s = 2.0
# Every client comes from 127.0.0.1; reconnecting clients may overlap their old
# connection for a moment.
max_connections_per_address = {4 * self.connections + 100}

[admin]
host = "127.0.0.1"
port = {self.ports["admin"]}
token_env = "{ADMIN_TOKEN_ENV}"

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
"""

    def _start_gateway(self) -> None:
        self.ports["gateway"] = free_port()
        self.ports["admin"] = free_port()
        conf = self.workdir / "gateway.toml"
        conf.write_text(self._gateway_config())
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(conf)]
        prelude = UVLOOP_BOUND_PORT_WORKAROUND if uvloop_installed() else ""
        prelude += TRIM_PRELUDE.format(out=self.workdir / "ssl-sessions.json")
        if self.tracemalloc:
            prelude += TRACEMALLOC_PRELUDE.format(out=self.workdir / "tracemalloc.txt")
        code = "\nfrom gateway.cli import main\nraise SystemExit(main())"
        argv[1:3] = ["-c", prelude + code]
        argv += ["--workers", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env[ADMIN_TOKEN_ENV] = self.admin_token
        with (self.workdir / "gateway.log").open("ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=fh, cwd=REPO, env=env)
        self.procs["gateway"] = proc
        wait_port(self.ports["gateway"], proc, "gateway", timeout=30)
        wait_port(self.ports["admin"], proc, "gateway admin", timeout=30)

    def gateway_rss_kib(self) -> int:
        proc = self.procs.get("gateway")
        return sum(rss_kib(p) for p in process_tree(proc.pid)) if proc else 0

    async def traced(self, label: str) -> str:
        """--tracemalloc: the gateway's traced total now (after a gc), or ''."""
        if not self.tracemalloc:
            return ""
        out = self.workdir / "tracemalloc.txt"
        with out.open("a") as fh:
            fh.write(f"== {label}\n")
        os.kill(self.procs["gateway"].pid, signal.SIGUSR2)
        await asyncio.sleep(3.0)
        lines = out.read_text().splitlines()
        totals = [ln for ln in lines if ln.startswith("traced total")]
        return totals[-1] if totals else "?"

    async def trimmed_rss_kib(self) -> int:
        """RSS after the gateway's malloc_trim(0) (TRIM_PRELUDE)."""
        os.kill(self.procs["gateway"].pid, signal.SIGUSR1)
        await asyncio.sleep(1.0)
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((self.workdir / "ssl-sessions.json").read_text())
            self.ssl_sessions = max((st.get("number", 0) for st in info["ssl"]), default=0)
            self.live_objects = info["live"]
            self.where_kib = info["where"]
        return self.gateway_rss_kib()

    def token(self, name: str) -> str:
        token: str = mint_token(self.signing_key, subject=name, ttl_s=6 * 3600)
        return token

    def stop(self) -> None:
        for name in ("gateway", "mosquitto"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def mosquitto_log_count(self, needle: str) -> int:
        with contextlib.suppress(OSError):
            return (self.workdir / "mosquitto.log").read_text(errors="replace").count(needle)
        return 0


# -- monitors --------------------------------------------------------------------------


@dataclass
class Readiness:
    """``/readyz`` polled every ``interval_s``: the transitions, with times."""

    samples: int = 0
    transitions: list[tuple[float, bool, str]] = field(default_factory=list)
    errors: int = 0

    @property
    def ready(self) -> bool | None:
        return self.transitions[-1][1] if self.transitions else None

    def not_ready_spans(self, end: float) -> list[tuple[float, float]]:
        spans, start = [], None
        for t, ok, _ in self.transitions:
            if not ok and start is None:
                start = t
            elif ok and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, end))
        return spans


async def poll_readyz(
    http: aiohttp.ClientSession, url: str, phase: Phase, out: Readiness, interval_s: float
) -> None:
    while not phase.stopping:
        t = phase.now()
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.json()
                ok = resp.status == 200
                upstream = str(body.get("checks", {}).get("upstream", "?"))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            out.errors += 1
            ok, upstream = False, "no answer"
        out.samples += 1
        if out.ready is not ok:
            out.transitions.append((t, ok, upstream))
        await asyncio.sleep(interval_s)


@dataclass
class Memory:
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max((kib for _, kib in self.samples), default=0)


async def sample_rss(servers: SoakServers, phase: Phase, out: Memory, interval_s: float) -> None:
    while not phase.stopping:
        out.samples.append((phase.now(), servers.gateway_rss_kib()))
        await asyncio.sleep(interval_s)


async def ping_all(clients: list[Client], phase: Phase) -> None:
    """PINGREQ every 20 s (keep-alive 60 s): quiet subscribers stay within 1.5 x keep-alive."""
    from soak_support import PINGREQ

    while not phase.stopping:
        await asyncio.sleep(20)
        for c in clients:
            if c.ws is not None:
                await c.send(PINGREQ)


# -- the population --------------------------------------------------------------------


@dataclass
class Population:
    publishers: list[Publisher]
    subscribers: list[Subscriber]
    groups: int

    @property
    def clients(self) -> list[Client]:
        return [*self.subscribers, *self.publishers]

    def group_subscribers(self, g: int) -> list[Subscriber]:
        return [s for s in self.subscribers if s.group == g]


def build(
    n: int,
    rate: float,
    servers: SoakServers,
    phase: Phase,
    http: aiohttp.ClientSession,
    ssl_ctx: ssl.SSLContext,
) -> Population:
    """A quarter publishers (five per group), two wildcard subscribers, the rest per group.

    Per group, subscriber kinds cycle plain, plain, plain, rev (data + rev), refused
    (data + secret); every third client speaks MQTT 3.1.1, the others MQTT 5.
    """
    n_pub = max(1, n // 4)
    n_wild = 2 if n >= 100 else 0
    n_sub = max(1, n - n_pub - n_wild)
    groups = max(1, n_pub // 5)
    url = f"wss://127.0.0.1:{servers.ports['gateway']}/mqtt"
    interval = n_pub / rate
    index = 0

    def common(name: str) -> dict[str, Any]:
        nonlocal index
        level = MQTT_311 if index % 3 == 0 else MQTT_5
        index += 1
        return {
            "phase": phase,
            "session": http,
            "url": url,
            "ssl_ctx": ssl_ctx,
            "level": level,
            "client_id": name,
            "token": servers.token(name),
        }

    subs: list[Subscriber] = []
    for i in range(n_sub):
        g = i % groups
        role = ("plain", "plain", "plain", "rev", "refused")[(i // groups) % 5]
        filters = [f"soak/data/{g}"]
        if role == "rev":
            filters.append(f"soak/rev/{g}")
        elif role == "refused":
            filters.append(f"soak/secret/{g}")
        subs.append(Subscriber(i, g, filters, **common(f"soak-sub-{i}")))
    for i in range(n_wild):
        subs.append(Subscriber(n_sub + i, None, ["soak/data/+"], **common(f"soak-wild-{i}")))
    pubs = [Publisher(i, i % groups, interval, **common(f"soak-pub-{i}")) for i in range(n_pub)]
    return Population(pubs, subs, groups)


# -- accounting ------------------------------------------------------------------------


@dataclass
class Accounts:
    sent: Counter[int] = field(default_factory=Counter)  # by kind
    acked: Counter[int] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    unacked: int = 0
    expected: int = 0  # (subscriber, message) pairs that must arrive
    delivered: int = 0  # unique (subscriber, message) pairs that arrived
    lost: int = 0
    lost_messages: int = 0  # distinct messages missing at one subscriber at least
    lost_examples: list[str] = field(default_factory=list)
    delivered_unacked: int = 0  # arrived though the publisher never saw the PUBACK
    dup_flag: int = 0
    dup_reconnect: int = 0
    dup_retransmit: int = 0
    dup_unexplained: int = 0
    leaks: Counter[str] = field(default_factory=Counter)
    withheld: int = 0  # (rev subscriber, rev-after-revoke message) pairs not delivered


def account(pop: Population) -> Accounts:
    acc = Accounts()
    for p in pop.publishers:
        for kind, sq in enumerate(p.seqs):
            acc.sent[kind] += sq.sent
            acc.acked[kind] += sum(sq.acked)
            acc.refused[kind] += sum(sq.refused.values())
        acc.unacked += len(p.inflight)
    wild = [s for s in pop.subscribers if s.group is None]
    for p in pop.publishers:
        receivers: list[tuple[Subscriber, int]] = []
        for s in pop.group_subscribers(p.group):
            receivers.append((s, DATA))
            if any(f.startswith("soak/rev/") for f in s.filters):
                receivers.append((s, REV))
                acc.withheld += p.seqs[REV_AFTER].sent
        receivers += [(s, DATA) for s in wild]
        for kind in (DATA, REV):
            acked = p.seqs[kind].acked
            missing_here: set[int] = set()
            for s, k in receivers:
                if k != kind:
                    continue
                seen = s.seen.get((p.index, kind), bytearray())
                for seq, a in enumerate(acked):
                    got = seq < len(seen) and seen[seq] != 0
                    if a:
                        acc.expected += 1
                        if got:
                            acc.delivered += 1
                        else:
                            acc.lost += 1
                            missing_here.add(seq)
                            if len(acc.lost_examples) < 10:
                                acc.lost_examples.append(
                                    f"{p.client_id} {KIND_NAMES[kind]} #{seq} -> {s.client_id}"
                                )
                    elif got:
                        acc.delivered_unacked += 1
            acc.lost_messages += len(missing_here)
    by_index = {p.index: p for p in pop.publishers}
    for s in pop.subscribers:
        for d in s.duplicates:
            pub = by_index.get(d.publisher)
            if d.dup_flag:
                acc.dup_flag += 1
            elif d.other_connection:
                acc.dup_reconnect += 1
            elif pub is not None and d.seq in pub.seqs[d.kind].retransmitted:
                acc.dup_retransmit += 1
            else:
                acc.dup_unexplained += 1
        for what, n in s.unexpected.items():
            acc.leaks[f"{s.client_id} got {what}"] += n
    return acc


def rev_complete(pop: Population) -> bool:
    """Every acknowledged REV message has reached every REV subscriber of its group."""
    for p in pop.publishers:
        acked = p.seqs[REV].acked
        for s in pop.group_subscribers(p.group):
            if not any(f.startswith("soak/rev/") for f in s.filters):
                continue
            seen = s.seen.get((p.index, REV), bytearray())
            for seq, a in enumerate(acked):
                if a and (seq >= len(seen) or not seen[seq]):
                    return False
    return True


# -- the run ---------------------------------------------------------------------------


@dataclass
class Events:
    log: list[tuple[float, str]] = field(default_factory=list)
    policy_response: dict[str, Any] = field(default_factory=dict)
    policy_status: int = 0
    policy_ms: float = 0.0
    rev_subscribers_connected: int = 0
    quiesce_s: float = 0.0
    broker_down_at: float = 0.0
    broker_up_at: float = 0.0
    all_back_at: float | None = None
    connect_s: float = 0.0
    drain_s: float = 0.0
    final_readyz: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    traced: list[tuple[str, str]] = field(default_factory=list)  # --tracemalloc
    rss_start_trimmed: int = 0
    rss_end_trimmed: int = 0
    rss_warm: int = 0  # after the warm-up (0: none)
    rss_warm_trimmed: int = 0
    warm_s: float = 0.0
    ssl_sessions: int = 0  # the gateway's TLS session cache at the end
    where_start: dict[str, int] = field(default_factory=dict)  # trimmed RSS by kind
    where_end: dict[str, int] = field(default_factory=dict)

    def note(self, phase: Phase, what: str) -> None:
        t = phase.now()
        self.log.append((t, what))
        print(f"  [{t:7.1f} s] {what}", flush=True)


class SetupError(RuntimeError):
    """The clients could not all connect and subscribe: the soak cannot start."""


async def warm_up(
    servers: SoakServers,
    cfg: Settings,
    phase: Phase,
    ev: Events,
    http: aiohttp.ClientSession,
    ssl_ctx: ssl.SSLContext,
) -> None:
    """The baseline the end is judged against: the same clients (names, tokens, protocol
    levels, filters) connect, subscribe, are all connected at once (the allocators'
    high-water mark comes with the number of connections held together), and leave, with
    sessions that end with them, so the broker keeps nothing of it. What the gateway
    holds afterwards is its idle footprint having served this population: the
    allocators' high-water mark (CPython frees a pymalloc arena only when every block in
    it is free) and bounded caches (verified tokens, ACL decisions). Growth beyond it by
    the end is a leak.
    """
    pop = build(cfg.connections, cfg.rate, servers, phase, http, ssl_ctx)
    gate = asyncio.Semaphore(64)
    t0 = time.monotonic()
    up = 0
    all_up = asyncio.Event()

    async def one(c: Client) -> bool:
        nonlocal up
        async with gate:
            try:
                ws = await http.ws_connect(
                    c.url, protocols=("mqtt",), ssl=ssl_ctx, compress=0, max_msg_size=0
                )
            except (aiohttp.ClientError, OSError, TimeoutError):
                all_up.set()
                return False
        try:
            try:
                connect = connect_packet(c.level, c.client_id, c.token, True, keep_session=False)
                await ws.send_bytes(connect)
                parser = StreamParser()
                want = {2} if not isinstance(c, Subscriber) else {2, 9}
                if isinstance(c, Subscriber):
                    await ws.send_bytes(subscribe_packet(c.level, 1, c.filters))
                while want:
                    msg = await ws.receive(timeout=10)
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        return False
                    for first, _ in parser.feed(msg.data):
                        want.discard(first >> 4)
            finally:
                up += 1
                if up == len(pop.clients):
                    all_up.set()
            await asyncio.wait_for(all_up.wait(), 120)
            await ws.send_bytes(DISCONNECT)
            return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            all_up.set()
            return False
        finally:
            await ws.close()

    done = await asyncio.gather(*(one(c) for c in pop.clients))
    ev.warm_s = time.monotonic() - t0
    # Long enough for the gateway's own memory return (3 s quiet after a drop, then a
    # collection and malloc_trim), as at the end.
    await asyncio.sleep(cfg.settle_s)
    ev.rss_warm = servers.gateway_rss_kib()
    ev.rss_warm_trimmed = await servers.trimmed_rss_kib()
    ev.note(
        phase,
        f"warm-up: {sum(done)} of {len(done)} clients connected, subscribed and left in "
        f"{ev.warm_s:.1f} s; gateway RSS {ev.rss_warm / 1024:.1f} MiB "
        f"({ev.rss_warm_trimmed / 1024:.1f} after malloc_trim)",
    )
    if sum(done) != len(done):
        raise SetupError(f"warm-up: {len(done) - sum(done)} clients failed")


def stragglers(clients: list[Client]) -> str:
    failures: Counter[str] = Counter()
    for c in clients:
        failures.update(c.link.failures)
        failures.update(c.link.closes)
    names = ", ".join(f"{c.client_id} (v{c.level}, up {c.ws is not None})" for c in clients[:5])
    return f"{len(clients)} clients not ready, e.g. {names}; failures: {dict(failures)}"


async def wait_until(cond: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


async def update_policy(
    http: aiohttp.ClientSession,
    servers: SoakServers,
    pop: Population,
    phase: Phase,
    ev: Events,
) -> None:
    ev.note(phase, "policy update: pausing REV publishing, waiting for REV to drain")
    phase.rev_paused = True
    t0 = time.monotonic()
    await wait_until(lambda: all(p.unacked(REV) == 0 for p in pop.publishers), 20)
    drained = await wait_until(lambda: rev_complete(pop), 30)
    ev.quiesce_s = time.monotonic() - t0
    if not drained:
        ev.note(phase, "REV did not drain within 30 s: proceeding (missing ones count as lost)")
    ev.rev_subscribers_connected = sum(
        1
        for s in pop.subscribers
        if s.ws is not None and any(f.startswith("soak/rev/") for f in s.filters)
    )
    url = f"http://127.0.0.1:{servers.ports['admin']}/admin/policy"
    headers = {"Authorization": f"Bearer {servers.admin_token}"}
    t1 = time.monotonic()
    async with http.put(url, data=policy_text(False).encode(), headers=headers) as resp:
        ev.policy_status = resp.status
        with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
            ev.policy_response = await resp.json()
    ev.policy_ms = 1000 * (time.monotonic() - t1)
    phase.revoked = True
    phase.rev_paused = False
    revoked = ev.policy_response.get("revoked_subscriptions")
    ev.note(
        phase,
        f"PUT /admin/policy -> {ev.policy_status} in {ev.policy_ms:.0f} ms, "
        f"revoked {revoked} (REV subscribers connected: {ev.rev_subscribers_connected})",
    )


async def restart_broker(
    servers: SoakServers, pop: Population, phase: Phase, ev: Events, down_s: float
) -> None:
    ev.note(phase, "broker restart: SIGTERM to Mosquitto")
    await asyncio.to_thread(servers.stop_mosquitto)
    ev.broker_down_at = phase.now()
    ev.note(phase, f"Mosquitto exited; down for {down_s:.0f} s")
    await asyncio.sleep(down_s)
    await asyncio.to_thread(servers.start_mosquitto)
    ev.broker_up_at = phase.now()
    ev.note(phase, "Mosquitto listening again on the same port")

    def all_back() -> bool:
        return all(
            c.ws is not None and c.link.last_connected >= ev.broker_down_at for c in pop.clients
        )

    if await wait_until(all_back, 120):
        ev.all_back_at = phase.now()
        ev.note(phase, f"all {len(pop.clients)} clients reconnected")
    else:
        missing = sum(1 for c in pop.clients if c.ws is None)
        ev.note(phase, f"not all clients back within 120 s ({missing} still away)")


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith("mqttgate_"):
            continue
        name, _, value = line.rpartition(" ")
        if "_bucket" in name or name.endswith(("_sum", "_count")):
            continue
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


@dataclass
class Settings:
    connections: int
    traffic_s: float
    rate: float
    broker_down_s: float
    settle_s: float
    rss_tolerance_kib: int
    drain_timeout_s: float
    warm_up: bool = True


async def soak(
    servers: SoakServers, cfg: Settings
) -> tuple[Population, Events, Readiness, Memory, int, int, Spy]:
    phase = Phase()
    ev = Events()
    ready = Readiness()
    mem = Memory()
    ssl_ctx = ssl.create_default_context(cafile=str(servers.certs / "ca.pem"))
    ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    admin = f"http://127.0.0.1:{servers.ports['admin']}"
    async with aiohttp.ClientSession(connector=connector) as http, aiohttp.ClientSession() as adm:
        await wait_until(lambda: True, 0)
        await asyncio.sleep(2.0)
        ev.traced.append(("start", await servers.traced("start")))
        rss_start = servers.gateway_rss_kib()
        ev.rss_start_trimmed = await servers.trimmed_rss_kib()
        ev.where_start = dict(servers.where_kib)
        ev.note(phase, f"gateway RSS at start: {rss_start / 1024:.1f} MiB")
        if cfg.warm_up:
            await warm_up(servers, cfg, phase, ev, http, ssl_ctx)
        monitors = [
            asyncio.create_task(poll_readyz(adm, admin + "/readyz", phase, ready, 0.25)),
            asyncio.create_task(sample_rss(servers, phase, mem, 0.5)),
        ]
        spy = Spy(phase, servers.ports["mosquitto"], "soak/secret/#")
        spy_task = asyncio.create_task(spy.run())
        await asyncio.wait_for(spy.subscribed.wait(), 10)
        pop = build(cfg.connections, cfg.rate, servers, phase, http, ssl_ctx)
        gate = asyncio.Semaphore(64)
        t0 = time.monotonic()
        tasks = [asyncio.create_task(c.run(gate)) for c in pop.subscribers]
        if not await wait_until(lambda: all(s.subscribed.is_set() for s in pop.subscribers), 120):
            raise SetupError(stragglers([s for s in pop.subscribers if not s.subscribed.is_set()]))
        tasks += [asyncio.create_task(c.run(gate)) for c in pop.publishers]
        if not await wait_until(lambda: all(p.ever_up.is_set() for p in pop.publishers), 120):
            raise SetupError(stragglers([p for p in pop.publishers if not p.ever_up.is_set()]))
        ev.connect_s = time.monotonic() - t0
        rss_connected = servers.gateway_rss_kib()
        ev.note(
            phase,
            f"{len(pop.clients)} clients connected and subscribed in {ev.connect_s:.1f} s; "
            f"gateway RSS {rss_connected / 1024:.1f} MiB",
        )
        tasks += [asyncio.create_task(p.pace()) for p in pop.publishers]
        tasks.append(asyncio.create_task(ping_all(pop.clients, phase)))
        phase.publishing = True
        start = time.monotonic()
        ev.note(phase, f"publishing {cfg.rate:,.0f} msgs/s for {cfg.traffic_s:.0f} s")

        async def at(fraction: float) -> None:
            delay = start + fraction * cfg.traffic_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

        await at(0.35)
        await update_policy(adm, servers, pop, phase, ev)
        await at(0.60)
        await restart_broker(servers, pop, phase, ev, cfg.broker_down_s)
        await at(1.0)
        phase.publishing = False
        ev.note(phase, "publishing stopped; waiting for PUBACKs and deliveries")
        t_drain = time.monotonic()
        await wait_until(lambda: all(not p.inflight for p in pop.publishers), 30)
        last = (-1, time.monotonic())

        def drained() -> bool:
            nonlocal last
            acc = account(pop)
            if acc.delivered >= acc.expected:
                return True
            if acc.delivered != last[0]:
                last = (acc.delivered, time.monotonic())
            return time.monotonic() - last[1] > 10  # no progress for 10 s

        await wait_until(drained, cfg.drain_timeout_s, step=1.0)
        ev.drain_s = time.monotonic() - t_drain
        ev.note(phase, f"drained in {ev.drain_s:.1f} s; disconnecting every client")
        phase.stopping = True
        await asyncio.gather(*(c.close() for c in pop.clients), return_exceptions=True)
        spy.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, spy_task, return_exceptions=True)
        for m in monitors:
            m.cancel()
        await asyncio.gather(*monitors, return_exceptions=True)
        ev.note(phase, f"all clients gone; settling {cfg.settle_s:.0f} s")
        await asyncio.sleep(cfg.settle_s)
        mem.samples.append((phase.now(), servers.gateway_rss_kib()))
        rss_end = servers.gateway_rss_kib()
        ev.rss_end_trimmed = await servers.trimmed_rss_kib()
        ev.where_end = dict(servers.where_kib)
        ev.ssl_sessions = servers.ssl_sessions
        ev.traced.append(("end", await servers.traced("end")))
        async with adm.get(admin + "/readyz") as resp:
            ev.final_readyz = await resp.json()
        async with adm.get(admin + "/metrics") as resp:
            ev.metrics = parse_metrics(await resp.text())
        ev.note(phase, f"gateway RSS at end: {rss_end / 1024:.1f} MiB")
    return pop, ev, ready, mem, rss_start, rss_end, spy


# -- the report ------------------------------------------------------------------------


def report(
    cfg: Settings,
    pop: Population,
    ev: Events,
    ready: Readiness,
    mem: Memory,
    rss_start: int,
    rss_end: int,
    spy: Spy,
    servers: SoakServers,
) -> tuple[str, bool, dict[str, Any]]:
    acc = account(pop)
    v5 = [p for p in pop.publishers if p.level == MQTT_5]
    v3 = [p for p in pop.publishers if p.level == MQTT_311]
    refused_v5 = sum(sum(p.seqs[SECRET].refused.values()) for p in v5)
    refused_v5_codes = Counter[int]()
    for p in v5:
        refused_v5_codes.update(p.seqs[SECRET].refused)
    acked_secret_v3 = sum(sum(p.seqs[SECRET].acked) for p in v3)
    acked_secret_v5 = sum(sum(p.seqs[SECRET].acked) for p in v5)
    unexpected_refusals = sum(acc.refused[k] for k in (DATA, REV, REV_AFTER))
    sub_codes: Counter[str] = Counter()
    for s in pop.subscribers:
        for t, f, code in s.suback:
            part = f.split("/")[1]
            after = "after update" if (part == "rev" and t >= _update_time(ev)) else ""
            outcome = "refused" if code >= 0x80 else "granted"
            sub_codes[f"{part} {after} {outcome}".replace("  ", " ")] += 1
    granted_secret = sub_codes.get("secret granted", 0)
    spy_total = sum(spy.received.values())
    reconnects = sum(c.link.connects - 1 for c in pop.clients)
    sess_present = sum(c.link.session_present for c in pop.clients)
    sess_lost = sum(c.link.session_lost for c in pop.clients)
    failures: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for c in pop.clients:
        failures.update(c.link.failures)
        closes.update(c.link.closes)
    retransmissions = sum(p.retransmissions for p in pop.publishers)
    skipped = sum(p.skipped for p in pop.publishers)
    end = mem.samples[-1][0] if mem.samples else 0.0
    spans = ready.not_ready_spans(end)
    # Mosquitto's port answers a moment before the script notes it: one poll of slack.
    down_covered = any(
        a <= ev.broker_down_at + 1.0 and b >= ev.broker_up_at - 0.5 for a, b in spans
    )
    tolerance = cfg.rss_tolerance_kib
    # Judged after malloc_trim(0) on both sides: free memory glibc keeps is not a leak.
    # Against the warm baseline when there is one (see warm_up), else the cold start.
    base_trimmed = ev.rss_warm_trimmed if cfg.warm_up else ev.rss_start_trimmed
    base_raw = ev.rss_warm if cfg.warm_up else rss_start
    mem_ok = ev.rss_end_trimmed <= base_trimmed + tolerance
    raw_ok = rss_end <= base_raw + tolerance
    cold_ok = ev.rss_end_trimmed <= ev.rss_start_trimmed + tolerance
    failed = {
        "lost": acc.lost > 0,
        "leaks": bool(acc.leaks) or spy_total > 0 or granted_secret > 0 or acked_secret_v5 > 0,
        "unexplained duplicates": acc.dup_unexplained > 0,
        "memory": not mem_ok,
    }

    final_checks: dict[str, Any] = ev.final_readyz.get("checks", {})
    codes_v5 = ", ".join(f"0x{c:02x} x{k}" for c, k in sorted(refused_v5_codes.items()))

    def n(x: int | float) -> str:
        return f"{x:,}"

    total_sent = sum(acc.sent.values())
    total_acked = sum(acc.acked.values())
    rows = [
        ("connections", f"{len(pop.clients):,} ({len(pop.publishers)} publishers, "
         f"{len(pop.subscribers)} subscribers, {pop.groups} groups; v5 "
         f"{sum(1 for c in pop.clients if c.level == MQTT_5)}, v3.1.1 "
         f"{sum(1 for c in pop.clients if c.level == MQTT_311)}) + 1 spy on the broker"),
        ("sent (unique PUBLISH, QoS 1)", f"{n(total_sent)}: " + ", ".join(
            f"{KIND_NAMES[k]} {n(acc.sent[k])}" for k in range(4))),
        ("  sent again after a reconnect (DUP)", n(retransmissions)),
        ("  ticks skipped (window full / offline)", n(skipped)),
        ("acknowledged (PUBACK < 0x80)", f"{n(total_acked)}: " + ", ".join(
            f"{KIND_NAMES[k]} {n(acc.acked[k])}" for k in range(4))),
        ("never acknowledged", n(acc.unacked)),
        ("expected deliveries (subscriber x message)", n(acc.expected)),
        ("delivered (unique)", n(acc.delivered)),
        ("LOST (acknowledged, never delivered)",
         f"{n(acc.lost)} ({n(acc.lost_messages)} distinct messages)"),
        ("delivered without a PUBACK seen", n(acc.delivered_unacked)),
        ("duplicates: DUP flag set", n(acc.dup_flag)),
        ("duplicates: first copy on an earlier connection", n(acc.dup_reconnect)),
        ("duplicates: the publisher sent it twice", n(acc.dup_retransmit)),
        ("duplicates: unexplained", n(acc.dup_unexplained)),
        ("refused as expected: PUBLISH secret (v5)", f"{n(refused_v5)} ({codes_v5})"),
        ("refused as expected: PUBLISH secret (v3.1.1)",
         f"{n(acked_secret_v3)} acknowledged, not forwarded (on_publish_deny = ack)"),
        ("refused unexpectedly (data/rev PUBLISH)", n(unexpected_refusals)),
        ("SUBSCRIBE outcomes", ", ".join(f"{k} {v}" for k, v in sorted(sub_codes.items()))),
        ("withheld by the revocation (rev subscriber x msg)", n(acc.withheld)),
        ("LEAKS (refused or revoked traffic delivered)",
         f"{sum(acc.leaks.values())} at clients, {spy_total} at the broker spy"),
        ("policy update",
         f"t={_update_time(ev):.1f} s: {ev.policy_status} in {ev.policy_ms:.0f} ms, revoked "
         f"{ev.policy_response.get('revoked_subscriptions')} of "
         f"{ev.rev_subscribers_connected} rev subscriptions (quiesce {ev.quiesce_s:.1f} s)"),
        ("broker restart",
         f"down t={ev.broker_down_at:.1f} s, up t={ev.broker_up_at:.1f} s, all clients back "
         + (f"t={ev.all_back_at:.1f} s" if ev.all_back_at is not None else "NEVER")),
        ("reconnects", f"{n(reconnects)} (session present {sess_present}, "
         f"session lost {sess_lost})"),
        ("failed connection attempts", ", ".join(f"{k} x{v}" for k, v in failures.most_common())
         or "0"),
        ("connections ended by the server", ", ".join(f"{k} x{v}" for k, v in closes.most_common())
         or "0"),
        ("/readyz not ready", "; ".join(f"t={a:.1f}-{b:.1f} s ({b - a:.1f} s)" for a, b in spans)
         + f" (covers the broker outage: {'yes' if down_covered else 'NO'}); "
         f"{ready.samples} polls"),
        ("gateway RSS (MiB): start / warm / peak / end",
         f"{rss_start / 1024:.1f} / {ev.rss_warm / 1024:.1f} / {mem.peak / 1024:.1f} / "
         f"{rss_end / 1024:.1f} (end {cfg.settle_s:.0f} s after the last client left): "
         f"{(rss_end - base_raw) / 1024:+.1f} MiB against the "
         f"{'warm baseline' if cfg.warm_up else 'start'}, "
         f"{'within' if raw_ok else 'NOT within'} {tolerance / 1024:.0f} MiB"),
        ("gateway RSS after malloc_trim(0): start / warm / end",
         f"{ev.rss_start_trimmed / 1024:.1f} / {ev.rss_warm_trimmed / 1024:.1f} / "
         f"{ev.rss_end_trimmed / 1024:.1f}: "
         f"{(ev.rss_end_trimmed - base_trimmed) / 1024:+.1f} MiB against the "
         f"{'warm baseline' if cfg.warm_up else 'start'}: "
         f"{'back to baseline' if mem_ok else 'NOT back'} (tolerance {tolerance / 1024:.0f} MiB)"),
        ("  against the cold start (before any client)",
         f"{(ev.rss_end_trimmed - ev.rss_start_trimmed) / 1024:+.1f} MiB "
         f"({'within' if cold_ok else 'NOT within'} {tolerance / 1024:.0f} MiB; "
         f"the warm-up alone: {(ev.rss_warm_trimmed - ev.rss_start_trimmed) / 1024:+.1f} MiB)"),
        ("  where it sits, start -> end (MiB)", where_text(ev.where_start, ev.where_end)),
        ("gateway TLS session cache at end (sessions)", n(ev.ssl_sessions)),
        ("gateway live objects at end (gc)", str(servers.live_objects)),
        ("gateway connections at end (/readyz)", str(final_checks.get("connections"))),
        ("Mosquitto 'Outgoing messages are being dropped'",
         str(servers.mosquitto_log_count("Outgoing messages are being dropped"))),
    ]  # fmt: skip
    if servers.tracemalloc:
        rows.append(("gateway traced Python memory", "; ".join(f"{k}: {v}" for k, v in ev.traced)))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if acc.lost_examples:
        lines.append("lost, first ones: " + "; ".join(acc.lost_examples))
    if acc.leaks:
        lines.append("leaks: " + "; ".join(f"{k} x{v}" for k, v in acc.leaks.most_common(10)))
    decisions = {k: v for k, v in ev.metrics.items() if "decision" in k or "revocation" in k}
    if decisions:
        lines.append(
            "gateway metrics: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(decisions.items()))
        )
    verdict = [k for k, bad in failed.items() if bad]
    lines.append(
        "VERDICT: "
        + ("OK (nothing lost, nothing leaked)" if not verdict else "FAILED: " + ", ".join(verdict))
    )
    data = {
        "settings": cfg.__dict__,
        "sent": dict(acc.sent),
        "acked": dict(acc.acked),
        "expected": acc.expected,
        "delivered": acc.delivered,
        "lost": acc.lost,
        "duplicates": {
            "dup_flag": acc.dup_flag,
            "reconnect": acc.dup_reconnect,
            "retransmit": acc.dup_retransmit,
            "unexplained": acc.dup_unexplained,
        },
        "leaks": sum(acc.leaks.values()) + spy_total,
        "rss_kib": {
            "start": rss_start,
            "peak": mem.peak,
            "end": rss_end,
            "start_trimmed": ev.rss_start_trimmed,
            "warm": ev.rss_warm,
            "warm_trimmed": ev.rss_warm_trimmed,
            "end_trimmed": ev.rss_end_trimmed,
            "where_start_trimmed": ev.where_start,
            "where_end_trimmed": ev.where_end,
        },
        "readyz_not_ready": spans,
        "rss_samples": mem.samples[::10],
        "events": ev.log,
        "failed": verdict,
    }
    return "\n".join(lines), not verdict, data


def _update_time(ev: Events) -> float:
    return next((t for t, w in ev.log if w.startswith("PUT /admin/policy")), float("inf"))


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="traffic time (default 10)")
    ap.add_argument("--quick", action="store_true", help="30 s of traffic, about a minute in all")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=250.0, help="PUBLISHes per second in total")
    ap.add_argument("--broker-down-s", type=float, default=None, help="5 (quick: 3)")
    ap.add_argument("--settle-s", type=float, default=None, help="after disconnect: 10 (quick: 5)")
    ap.add_argument("--rss-tolerance-mib", type=float, default=16.0)
    ap.add_argument(
        "--no-warm-up",
        action="store_true",
        help="judge memory against the cold start, not after a warm-up round",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--tracemalloc", action="store_true", help="trace the gateway's memory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    quick = args.quick
    cfg = Settings(
        connections=args.connections,
        traffic_s=30.0 if quick else args.minutes * 60,
        rate=args.rate,
        broker_down_s=args.broker_down_s if args.broker_down_s is not None else (3 if quick else 5),
        settle_s=args.settle_s if args.settle_s is not None else (5 if quick else 10),
        rss_tolerance_kib=int(args.rss_tolerance_mib * 1024),
        drain_timeout_s=60.0,
        warm_up=not args.no_warm_up,
    )
    nofile = raise_nofile()
    random.seed(9)
    print(
        f"soak: {cfg.connections} connections, {cfg.traffic_s:.0f} s at {cfg.rate:,.0f} msgs/s, "
        f"gateway {revision()}, {machine()}, load average {load_average()}, "
        f"{busy_cpus():.2f} CPUs busy before, RLIMIT_NOFILE {nofile}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="mqttgate-soak-"))
    servers = SoakServers(workdir, cfg.connections, tracemalloc=args.tracemalloc)
    t0 = time.monotonic()
    try:
        servers.start()
        pop, ev, ready, mem, rss_start, rss_end, spy = asyncio.run(soak(servers, cfg))
        text, ok, data = report(cfg, pop, ev, ready, mem, rss_start, rss_end, spy, servers)
    finally:
        servers.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(text)
    print(f"wall time {time.monotonic() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
