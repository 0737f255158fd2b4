"""The admin pages: a policy simulator and a live decisions view (issue 8).

Both pages are static HTML and JavaScript (``gateway/server/pages``) that call the admin
API, so a page and ``mqttgate acl simulate`` run the same code. Routes on the admin
listener:

- ``GET /admin/ui/simulator``, ``GET /admin/ui/decisions``: the pages (303 to the login
  form without credentials)
- ``GET /admin/ui/login``: the login form; ``POST /admin/ui/login`` with the credential in
  ``Authorization: Bearer`` sets the session cookie; ``POST /admin/ui/logout`` ends it
- ``GET /admin/ui/static/{name}``: the pages' scripts and style sheet
- ``POST /admin/policy/validate``: policy text checked as ``mqttgate acl validate --json``
- ``GET /admin/decisions/stream``: server-sent events of live decisions, filtered

Credentials: a browser cannot set ``Authorization`` on an ``EventSource``, so the login
form exchanges the admin token (or an admin JWT) for an opaque session cookie (HttpOnly,
SameSite=Strict, Path=/admin). The cookie never holds the token; every request re-checks
the token it stands for with the admin API's own ``AdminAuth``, so an expired JWT or a
changed admin token ends the session. Requests that change state and arrive with the cookie
must come from the admin listener's own origin. Tokens are never logged, and never travel
in a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.acl import check_text
from gateway.logs import log
from gateway.server.admin_api import ADMIN_AUTH_KEY, MAX_POLICY_BYTES, AdminAuth
from gateway.server.appkeys import GATEWAY_KEY
from gateway.server.decision_stream import VIEWER_QUEUE, Viewer
from gateway.server.fleet_admin import PEER_TIMEOUT_S, peer_urls, relay_peer_decisions
from gateway.server.websocket import bearer_token

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.admin")

PAGES_DIR = Path(__file__).parent / "pages"
COOKIE = "mqttgate_admin"
# A working day: a page left open overnight asks for the token again.
SESSION_TTL_S = 8 * 3600
# Page sessions are held in memory; past this many the oldest is forgotten.
MAX_PAGE_SESSIONS = 64
# An idle stream sends a comment this often, so proxies keep it open and a closed
# browser tab is noticed (the write fails) within this time.
HEARTBEAT_S = 10.0
# A viewer that cannot take one write for this long is disconnected: it holds one of
# DecisionStream.MAX_VIEWERS slots, and its queue is already dropping entries.
WRITE_STALL_S = 10.0
# Without news, the dropped count is repeated this often so the page shows it is alive.
STATUS_EVERY_S = 2.0
VERDICTS = frozenset({"allow", "deny", "info"})
STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:js|css)$")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
PAGES = {"simulator": "simulator.html", "decisions": "decisions.html"}
# Scripts and styles come from the page's own origin only: no inline code, no eval.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageSessions:
    """Opaque cookie values standing for an admin credential, in memory only."""

    def __init__(self) -> None:
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def open(self, token: str, now: float) -> str:
        sid = secrets.token_urlsafe(32)
        self._tokens[sid] = (token, now + SESSION_TTL_S)
        while len(self._tokens) > MAX_PAGE_SESSIONS:
            self._tokens.popitem(last=False)
        return sid

    def token(self, sid: str, now: float) -> str | None:
        entry = self._tokens.get(sid)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._tokens[sid]
            return None
        return entry[0]

    def close(self, sid: str) -> None:
        self._tokens.pop(sid, None)


class LiveStreams:
    """The open decision streams of one admin app, so that shutdown can end them."""

    def __init__(self) -> None:
        self.viewers: set[Viewer] = set()
        self.closing = asyncio.Event()

    def close_all(self) -> None:
        self.closing.set()
        for viewer in list(self.viewers):
            viewer.wake.set()


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """The query of ``/admin/decisions/stream``; an empty field matches everything."""

    client_id: str | None = None
    identity: str | None = None
    verdict: str | None = None
    topic_prefix: str | None = None
    kind: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DecisionFilter:
        def field(name: str) -> str | None:
            value = query.get(name, "").strip()
            return value or None

        verdict = field("verdict")
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}")
        return cls(field("client_id"), field("identity"), verdict, field("topic_prefix"),
                   field("kind"))  # fmt: skip

    def as_dict(self) -> dict[str, str | None]:
        return {
            "client_id": self.client_id,
            "identity": self.identity,
            "verdict": self.verdict,
            "topic_prefix": self.topic_prefix,
            "kind": self.kind,
        }

    def matches(self, entry: Mapping[str, object]) -> bool:
        if self.client_id is not None and entry.get("client_id") != self.client_id:
            return False
        if self.verdict is not None and entry.get("verdict") != self.verdict:
            return False
        if self.kind is not None and entry.get("kind") != self.kind:
            return False
        if self.topic_prefix is not None:
            topic = entry.get("topic")
            if not isinstance(topic, str) or not topic.startswith(self.topic_prefix):
                return False
        return self.identity is None or self.identity in identity_values(entry)


def identity_values(entry: Mapping[str, object]) -> set[str]:
    """Every binding value of the entry's identity, and its user id."""
    out: set[str] = set()
    user = entry.get("user_id")
    if isinstance(user, str):
        out.add(user)
    identity = entry.get("identity")
    if isinstance(identity, Mapping):
        for value in identity.values():
            if isinstance(value, str):
                out.add(value)
            elif isinstance(value, list):
                out.update(v for v in value if isinstance(v, str))
    return out


def sse_event(event: str, data: object) -> bytes:
    """One server-sent event (HTML Living Standard §9.2.6); JSON never holds a newline."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"


# -- credentials ---------------------------------------------------------------------


SESSIONS_KEY: web.AppKey[PageSessions] = web.AppKey("admin_page_sessions")
STREAMS_KEY: web.AppKey[LiveStreams] = web.AppKey("admin_page_streams")


def _with_bearer(request: web.Request, token: str) -> web.Request:
    headers = CIMultiDict(request.headers)
    headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
    return request.clone(headers=headers)


def _same_origin(request: web.Request) -> bool:
    """A state-changing request made by the admin pages themselves (or by no browser)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
    return origin == f"{request.scheme}://{request.host}"


@web.middleware
async def cookie_credentials(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn a page session cookie into the ``Authorization`` header the admin API reads."""
    sid = request.cookies.get(COOKIE)
    if (
        sid is None
        or hdrs.AUTHORIZATION in request.headers
        or not request.path.startswith("/admin/")
    ):
        return await handler(request)
    token = request.app[SESSIONS_KEY].token(sid, time.time())
    if token is None:
        return await handler(request)
    if request.method not in ("GET", "HEAD") and not _same_origin(request):
        return _json({"error": "cross-origin request refused"}, 403)
    return await handler(_with_bearer(request, token))


async def _who(request: web.Request) -> str | None:
    auth: AdminAuth = request.app[ADMIN_AUTH_KEY]
    if not auth.enabled:
        return None
    return await auth.who(request)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )


def _refusal(request: web.Request) -> web.Response:
    if not request.app[ADMIN_AUTH_KEY].enabled:
        return _json(
            {"error": "the admin API is disabled: set [admin] token_env/file or role"}, 403
        )
    return _json({"error": "admin credentials required"}, 401)


def _file(name: str) -> web.Response:
    path = PAGES_DIR / name
    return web.Response(
        body=path.read_bytes(),
        content_type=CONTENT_TYPES[path.suffix],
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def _next_page(value: str | None) -> str:
    """Only a page of this UI: the login form is no open redirect."""
    if value and value.removeprefix("/admin/ui/") in PAGES:
        return value
    return "/admin/ui/simulator"


# -- pages ---------------------------------------------------------------------------


def _page(name: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        if not request.app[ADMIN_AUTH_KEY].enabled:
            return _refusal(request)
        if await _who(request) is None:
            raise web.HTTPSeeOther(f"/admin/ui/login?next={quote(request.path)}")
        return _file(PAGES[name])

    return serve


async def login_form(request: web.Request) -> web.StreamResponse:
    return _file("login.html")


async def login(request: web.Request) -> web.StreamResponse:
    """Exchange the credential in ``Authorization: Bearer`` (sent by the login form's
    script, as the admin API expects it) for a session cookie."""
    if not _same_origin(request):
        return _json({"error": "cross-origin request refused"}, 403)
    who = await _who(request)
    token = bearer_token(request)
    if who is None or token is None:
        log(logger, logging.INFO, "admin page login refused", client_address=request.remote)
        return _refusal(request)
    sid = request.app[SESSIONS_KEY].open(token, time.time())
    log(logger, logging.INFO, "admin page login", by=who, client_address=request.remote)
    response = _json({"next": _next_page(request.query.get("next"))})
    response.set_cookie(
        COOKIE, sid, max_age=SESSION_TTL_S, path="/admin", httponly=True, samesite="Strict"
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    if not _same_origin(request):
        return _json({"error": "cross-origin request refused"}, 403)
    sid = request.cookies.get(COOKIE)
    if sid is not None:
        request.app[SESSIONS_KEY].close(sid)
    response = web.HTTPSeeOther("/admin/ui/login")
    response.del_cookie(COOKIE, path="/admin")
    raise response


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not STATIC_NAME.match(name) or not (PAGES_DIR / name).is_file():
        raise web.HTTPNotFound()
    return _file(name)


# -- API for the pages -----------------------------------------------------------------


async def validate_policy(request: web.Request) -> web.StreamResponse:
    """Policy text checked by the code of ``mqttgate acl validate --json``; lines are the
    text's own, so the simulator can mark them in its editor."""
    if await _who(request) is None:
        return _refusal(request)
    body = await request.content.read(MAX_POLICY_BYTES + 1)
    if len(body) > MAX_POLICY_BYTES:
        return _json({"error": "policy too large"}, 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _json({"error": "the body is not UTF-8"}, 400)
    document, problems = check_text(text, "policy")
    return _json(
        {
            "valid": document is not None,
            "policy_version": document.version if document else None,
            "rules": len(document.rules) if document else None,
            "errors": [p.as_dict() for p in problems if p.severity == "error"],
            "warnings": [p.as_dict() for p in problems if p.severity == "warning"],
        }
    )


async def decision_stream(request: web.Request) -> web.StreamResponse:
    """Live decisions as server-sent events: ``hello`` once, then ``decision`` per entry
    that passes the filter and ``status`` with the viewer's dropped count."""
    if await _who(request) is None:
        return _refusal(request)
    try:
        flt = DecisionFilter.from_query(request.query)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    gateway: Gateway = request.app[GATEWAY_KEY]
    viewer = gateway.decision_stream.open()
    if viewer is None:
        return _json({"error": "too many decision viewers"}, 503)
    streams = request.app[STREAMS_KEY]
    closing = streams.closing
    streams.viewers.add(viewer)
    peers = _peer_relays(request, gateway, viewer)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        # Every worker's stream is open (or has failed to open) before hello, so what
        # follows hello is complete.
        deadline = time.monotonic() + PEER_TIMEOUT_S + 1.0
        for _, joined in peers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(joined.wait(), max(0.0, deadline - time.monotonic()))
        hello = {"filter": flt.as_dict(), "policy_version": gateway.policy.version,
                 "queue": VIEWER_QUEUE,
                 "workers": 1 + len(viewer.peers_dropped)}  # fmt: skip
        await response.write(sse_event("hello", hello))
        reported, last_write = -1, time.monotonic()
        while not closing.is_set():
            batch = await viewer.next_batch(min(HEARTBEAT_S, STATUS_EVERY_S))
            if closing.is_set() or _gone(request):
                break
            chunks = [sse_event("decision", e) for e in batch if flt.matches(e)]
            now = time.monotonic()
            dropped = viewer.dropped_everywhere
            if dropped != reported or now - last_write >= STATUS_EVERY_S:
                chunks.append(sse_event("status", {"dropped": dropped}))
                reported = dropped
            if not chunks and now - last_write < HEARTBEAT_S:
                continue
            await asyncio.wait_for(response.write(b"".join(chunks) or b": \n\n"), WRITE_STALL_S)
            last_write = now
    except (ConnectionError, TimeoutError):
        pass  # the viewer went away or stalled; its slot is freed below
    finally:
        for task, _ in peers:
            task.cancel()
        streams.viewers.discard(viewer)
        gateway.decision_stream.close(viewer)
    return response


def _peer_relays(
    request: web.Request, gateway: Gateway, viewer: Viewer
) -> list[tuple[asyncio.Task[None], asyncio.Event]]:
    """On the leader of ``--workers N`` (and not for a peer's own ``local`` request): one
    task per other worker copying its stream into ``viewer`` (server/fleet_admin.py)."""
    if request.query.get("local"):
        return []
    urls = peer_urls(gateway)
    if not urls:
        return []
    query = urlencode([*((k, v) for k, v in request.query.items() if k != "local"), ("local", "1")])
    auth = request.headers.get(hdrs.AUTHORIZATION)
    headers = {"Authorization": auth} if auth else {}
    relays = []
    for worker, url in enumerate(urls, start=1):
        joined = asyncio.Event()
        task = asyncio.create_task(
            relay_peer_decisions(
                f"{url}/admin/decisions/stream?{query}", worker, headers, viewer, joined
            )
        )
        relays.append((task, joined))
    return relays


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _close_streams(app: web.Application) -> None:
    """Shutdown: end every stream now rather than after the server's grace period."""
    app[STREAMS_KEY].close_all()


def add_admin_pages(app: web.Application, gateway: Gateway) -> None:
    """Register the pages; call after ``add_admin_api`` (they use its ``AdminAuth``)."""
    app[SESSIONS_KEY] = PageSessions()
    app[STREAMS_KEY] = LiveStreams()
    app.middlewares.append(cookie_credentials)
    app.on_shutdown.append(_close_streams)
    for name in PAGES:
        app.router.add_get(f"/admin/ui/{name}", _page(name))
    app.router.add_get("/admin/ui/login", login_form)
    app.router.add_post("/admin/ui/login", login)
    app.router.add_post("/admin/ui/logout", logout)
    app.router.add_get("/admin/ui/static/{name}", static_file)
    app.router.add_post("/admin/policy/validate", validate_policy)
    app.router.add_get("/admin/decisions/stream", decision_stream)
    app.router.add_get("/admin/ui", _redirect_to_simulator)


async def _redirect_to_simulator(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/admin/ui/simulator")
