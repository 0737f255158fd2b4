"""The leader worker speaks for all workers on the admin listener (server/workers.py):
metrics, sessions, policy reloads, disconnects, and the live decision stream."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

if TYPE_CHECKING:
    from gateway.server.app import Gateway
    from gateway.server.decision_stream import Viewer

# Peers are on loopback; a peer that does not answer in this time is left out.
PEER_TIMEOUT_S = 2.0


def peer_urls(gateway: Gateway) -> list[str]:
    role = gateway.role
    base = gateway.config.admin.port
    if role is None or not role.leader or role.count < 2 or base == 0:
        return []
    return [f"http://127.0.0.1:{port}" for port in role.peer_admin_ports(base)]


async def _fetch(
    session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, str]
) -> tuple[int, bytes] | None:
    try:
        async with session.request(method, url, headers=dict(headers)) as resp:
            return resp.status, await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def ask_peers(
    gateway: Gateway, method: str, path: str, headers: Mapping[str, str] | None = None
) -> list[tuple[int, bytes] | None]:
    urls = peer_urls(gateway)
    if not urls:
        return []
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(
            await asyncio.gather(*(_fetch(session, method, u + path, headers or {}) for u in urls))
        )


def label_worker(text: bytes, worker: int) -> list[tuple[str, str]]:
    """(family, line) pairs of a Prometheus exposition, samples labelled ``worker``."""
    out: list[tuple[str, str]] = []
    family = ""
    for line in text.decode().splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                family = parts[2]
            out.append((family, line))
            continue
        name_end = len(line)
        for i, ch in enumerate(line):
            if ch in "{ ":
                name_end = i
                break
        name, rest = line[:name_end], line[name_end:]
        label = f'worker="{worker}"'
        if rest.startswith("{"):
            inner = rest[1:]
            rest = "{" + label + ("," if not inner.startswith("}") else "") + inner
        else:
            rest = "{" + label + "}" + rest
        out.append((family, name + rest))
    return out


def merge_expositions(texts: list[bytes]) -> bytes:
    """One exposition from several workers': families kept together, HELP/TYPE once."""
    families: dict[str, list[str]] = {}
    for worker, text in enumerate(texts):
        for family, line in label_worker(text, worker):
            lines = families.setdefault(family, [])
            if line.startswith("#") and line in lines:
                continue
            lines.append(line)
    body = "\n".join(line for lines in families.values() for line in lines)
    return (body + "\n").encode()


async def fleet_metrics(gateway: Gateway) -> bytes:
    own = gateway.audit_pipeline.prometheus_text()
    if gateway.role is None or gateway.role.count < 2:
        return own
    answers = await ask_peers(gateway, "GET", "/metrics?local=1")
    return merge_expositions([own] + [a[1] for a in answers if a is not None and a[0] == 200])


async def fleet_sessions(gateway: Gateway, headers: Mapping[str, str]) -> list[Any]:
    out: list[Any] = []
    for answer in await ask_peers(gateway, "GET", "/admin/sessions?local=1", headers):
        if answer is not None and answer[0] == 200:
            out.extend(orjson.loads(answer[1]))
    return out


# A peer's stream that ends or cannot be opened is tried again after this long, for as
# long as the leader's viewer stays: a restarted worker rejoins the view by itself.
PEER_RETRY_S = 1.0


async def relay_peer_decisions(
    url: str,
    worker: int,
    headers: Mapping[str, str],
    viewer: Viewer,
    joined: asyncio.Event,
) -> None:
    """Copy a peer worker's live decisions (its ``/admin/decisions/stream?local=1``) into
    the leader's ``viewer``, each marked with the worker's index, until cancelled.
    ``joined`` is set once the peer has said hello, or has failed to."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=PEER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url, headers=dict(headers)) as resp:
                    if resp.status == 200:
                        await copy_peer_events(resp.content, worker, viewer, joined)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass
            joined.set()
            await asyncio.sleep(PEER_RETRY_S)


async def copy_peer_events(
    content: aiohttp.StreamReader, worker: int, viewer: Viewer, joined: asyncio.Event
) -> None:
    # Server-sent events as admin_pages.sse_event writes them: "event:" and "data:"
    # lines, a blank line after each event; the data is one line of JSON. A peer's
    # dropped count starts again with each stream: what earlier ones dropped is kept.
    event = b""
    earlier = viewer.peers_dropped.get(worker, 0)
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"event: "):
            event = line[7:]
        elif line.startswith(b"data: "):
            if event == b"hello":
                viewer.peers_dropped.setdefault(worker, earlier)
                joined.set()
            elif event == b"decision":
                entry = orjson.loads(line[6:])
                if isinstance(entry, dict):
                    entry["worker"] = worker
                    viewer.push(entry)
            elif event == b"status":
                status = orjson.loads(line[6:])
                dropped = status.get("dropped") if isinstance(status, dict) else None
                if isinstance(dropped, int) and worker in viewer.peers_dropped:
                    viewer.peers_dropped[worker] = earlier + dropped
                    viewer.wake.set()  # the leader's next status carries it
        elif not line:
            event = b""
