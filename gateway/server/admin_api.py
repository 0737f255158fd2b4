"""The admin API on the admin listener: policy, simulation, sessions (issue 5, item 6).

Every route here needs ``Authorization: Bearer`` with either the admin token
(``[admin] token_env``/``token_file``) or a JWT from a configured issuer whose ``role``
binding holds ``[admin] role``. Health, readiness and metrics stay open on the
(loopback by default) admin listener.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.acl import Policy, PolicyError, check_text
from gateway.acl.cases import CaseError, decide, parse_case
from gateway.audit import DecisionRecord
from gateway.config import read_secret
from gateway.logs import log
from gateway.server.appkeys import GATEWAY_KEY
from gateway.server.websocket import bearer_token

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.admin")

# A policy document is a few KiB; 4 MiB leaves room for 100,000 generated rules.
MAX_POLICY_BYTES = 4 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def policy_from_text(text: str, source: str) -> Policy:
    """Check and compile policy text; PolicyError names the line and JSON pointer."""
    document, problems = check_text(text, source)
    if document is None:
        raise PolicyError(problems)
    return Policy(document, tuple(p for p in problems if p.severity == "warning"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )


def _problem(status: int, reason: str, **extra: Any) -> web.Response:
    return _json({"error": reason, **extra}, status)


class AdminAuth:
    """Decides whether a request may use the admin API."""

    def __init__(self, gateway: Gateway) -> None:
        cfg = gateway.config.admin
        token = read_secret(
            cfg.token_env,
            cfg.token_file,
            Path(gateway.config.base_dir),
            "admin.token_env",
            "config",
        )
        self._token = token.encode() if token else None
        self._role = cfg.role
        self._gateway = gateway

    @property
    def enabled(self) -> bool:
        return self._token is not None or self._role is not None

    async def who(self, request: web.Request) -> str | None:
        """The admin's name for the audit log, or None when the request is refused."""
        presented = bearer_token(request)
        if presented is None:
            return None
        if self._token is not None and hmac.compare_digest(presented.encode(), self._token):
            return "admin-token"
        if self._role is None:
            return None
        identity = await self._gateway.authenticator.verify_token(presented, request.remote)
        if identity is None or self._role not in identity.binding("role").values:
            return None
        user = identity.binding("user_id")
        return f"jwt:{user.values[0] if user.values else '?'}"


def _guarded(handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]]) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        auth: AdminAuth = request.app[ADMIN_AUTH_KEY]
        if not auth.enabled:
            return _problem(403, "the admin API is disabled: set [admin] token_env/file or role")
        who = await auth.who(request)
        if who is None:
            return _problem(401, "admin credentials required")
        return await handler(request, who)

    return wrapped


async def get_policy(request: web.Request, who: str) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return _json(
        {
            "version": gw.policy.version,
            "source": gw.policy.source,
            "previous_version": gw.previous_policy.version if gw.previous_policy else None,
            "policy": orjson.loads(gw.policy_text) if gw.policy_text else None,
        }
    )


async def put_policy(request: web.Request, who: str) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    body = await request.content.read(MAX_POLICY_BYTES + 1)
    if len(body) > MAX_POLICY_BYTES:
        return _problem(413, "policy too large")
    try:
        text = body.decode("utf-8")
        # Off the event loop: 100,000 rules take seconds to compile (bench/README.md ACL).
        policy = await asyncio.to_thread(policy_from_text, text, "PUT /admin/policy")
    except UnicodeDecodeError:
        return _problem(400, "the body is not UTF-8")
    except PolicyError as exc:
        return _problem(422, "invalid policy", problems=[p.as_dict() for p in exc.problems])
    revoked = await gw.activate_policy(policy, text, cause=f"admin_api:{who}", persist=True)
    fleet = await _tell_peers_to_reload(gw, request, policy.version)
    revoked += fleet.revoked
    log(logger, logging.INFO, "policy updated", by=who, version=policy.version, revoked=revoked)
    return _json(
        {
            "version": policy.version,
            "revoked_subscriptions": revoked,
            "warnings": [w.as_dict() for w in policy.warnings],
            **fleet.fields(),
        }
    )


async def rollback_policy(request: web.Request, who: str) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    if gw.previous_policy is None or gw.previous_policy_text is None:
        return _problem(409, "no previous policy to roll back to")
    policy, text = gw.previous_policy, gw.previous_policy_text
    revoked = await gw.activate_policy(policy, text, cause=f"rollback:{who}", persist=True)
    fleet = await _tell_peers_to_reload(gw, request, policy.version)
    log(logger, logging.INFO, "policy rolled back", by=who, version=policy.version)
    return _json(
        {"version": policy.version, "revoked_subscriptions": revoked + fleet.revoked}
        | fleet.fields()
    )


async def simulate(request: web.Request, who: str) -> web.Response:
    """The same decision code as ``mqttgate acl simulate`` (gateway.acl.cases)."""
    gw = request.app[GATEWAY_KEY]
    try:
        raw = orjson.loads(await request.content.read(MAX_POLICY_BYTES + 1))
    except orjson.JSONDecodeError as exc:
        return _problem(400, f"the body is not JSON: {exc}")
    if not isinstance(raw, dict):
        return _problem(400, "the body is a JSON object")
    explain = bool(raw.pop("explain", False))
    policy = gw.policy
    if "policy" in raw:
        try:
            policy = policy_from_text(orjson.dumps(raw.pop("policy")).decode(), "simulate")
        except PolicyError as exc:
            return _problem(422, "invalid policy", problems=[p.as_dict() for p in exc.problems])
    try:
        case = parse_case(raw, 1, need_expect=False)
    except CaseError as exc:
        return _problem(400, str(exc))
    return _json(decide(policy, case, explain=explain).as_dict())


async def list_sessions(request: web.Request, who: str) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    own = [conn.describe() | {"worker": gw.role.index if gw.role else 0} for conn in gw.connections]
    if request.query.get("local"):
        return _json(own)
    from gateway.server.fleet_admin import fleet_sessions

    return _json(own + await fleet_sessions(gw, _auth_header(request)))


def _auth_header(request: web.Request) -> dict[str, str]:
    value = request.headers.get("Authorization")
    return {"Authorization": value} if value else {}


async def reload_policy(request: web.Request, who: str) -> web.Response:
    """Read the policy file now (the leader worker asks the others to, after a change)."""
    gw = request.app[GATEWAY_KEY]
    revoked = await gw.reload_policy(f"leader:{who}")
    body = {"version": gw.policy.version, "revoked_subscriptions": revoked or 0}
    return _json(body, 500 if revoked is None else 200)


async def _tell_peers_to_reload(gw: Gateway, request: web.Request, version: str) -> FleetReload:
    from gateway.server.fleet_admin import ask_peers

    answers = await ask_peers(gw, "POST", "/admin/policy/reload", _auth_header(request))
    fleet = FleetReload()
    for worker, answer in enumerate(answers, start=1):
        body = orjson.loads(answer[1]) if answer is not None and answer[0] == 200 else None
        if isinstance(body, dict) and body.get("version") == version:
            fleet.revoked += int(body.get("revoked_subscriptions") or 0)
        else:
            fleet.failed.append(worker)
    if fleet.failed:
        log(logger, logging.ERROR, "policy not in force on every worker", workers=fleet.failed)
    return fleet


@dataclass(slots=True)
class FleetReload:
    """What the other workers said when told to read the new policy (``--workers N``)."""

    revoked: int = 0
    # Workers that did not answer, or answered with another policy version: their
    # sessions are still under the old policy until their file watch reads it.
    failed: list[int] = field(default_factory=list)

    def fields(self) -> dict[str, object]:
        return {"workers_not_updated": self.failed} if self.failed else {}


async def delete_session(request: web.Request, who: str) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    target = request.match_info["id"]
    for conn in list(gw.connections):
        if target in (conn.id, conn.session.client_id):
            log(logger, logging.INFO, "session disconnected by admin", by=who, session=conn.id)
            await conn.kick()
            return web.Response(status=204)
    if not request.query.get("local"):
        from gateway.server.fleet_admin import ask_peers

        answers = await ask_peers(
            gw, "DELETE", f"/admin/sessions/{target}?local=1", _auth_header(request)
        )
        if any(a is not None and a[0] == 204 for a in answers):
            return web.Response(status=204)
    return _problem(404, "no such session")


async def purge_retained(request: web.Request, who: str) -> web.Response:
    """Retained messages under a prefix (issue 10, item 3): listed, cleared with apply."""
    gw = request.app[GATEWAY_KEY]
    try:
        raw = orjson.loads(await request.content.read(64 * 1024))
    except orjson.JSONDecodeError as exc:
        return _problem(400, f"the body is not JSON: {exc}")
    prefix = raw.get("prefix") if isinstance(raw, dict) else None
    if not isinstance(prefix, str) or any(c in prefix for c in "+#\x00"):
        return _problem(400, "prefix: a topic prefix without wildcards is required")
    org = raw.get("org")
    if org is not None and not isinstance(org, str):
        return _problem(400, "org must be a string")
    apply = raw.get("apply") is True
    from gateway.protection.broker import BrokerParams
    from gateway.protection.purge import purge

    up = gw.config.upstream
    pw = gw.upstream_password
    params = BrokerParams(
        host=up.host,
        port=up.port,
        username=up.username,
        password=pw.decode() if pw else None,
        tls_context=gw.upstream_ssl,
    )
    mount = gw.config.tenancy.mount if gw.config.tenancy.enabled and org else None
    flt = prefix + "#" if not prefix or prefix.endswith("/") else prefix + "/#"
    try:
        result = await purge(params, flt, org, mount=mount, apply=apply)
    except (OSError, TimeoutError) as exc:
        return _problem(503, f"broker unreachable: {exc}")
    except Exception as exc:  # aiomqtt.MqttError and friends: the broker's answer
        return _problem(503, f"broker error: {type(exc).__name__}")
    for topic in result.topics:
        gw.audit_pipeline.decision(
            DecisionRecord(
                action="purge",
                topic=topic,
                verdict="allow",
                reason="applied" if apply else "dry_run",
                client_id=who,
            )
        )
    log(
        logger,
        logging.INFO,
        "retained purge",
        by=who,
        filter=result.topic_filter,
        topics=len(result.topics),
        applied=apply,
    )
    return _json({"filter": result.topic_filter, "topics": list(result.topics), "applied": apply})


ADMIN_AUTH_KEY: web.AppKey[AdminAuth] = web.AppKey("admin_auth")


def add_admin_api(app: web.Application, gateway: Gateway) -> None:
    app[ADMIN_AUTH_KEY] = AdminAuth(gateway)
    app.router.add_get("/admin/policy", _guarded(get_policy))
    app.router.add_put("/admin/policy", _guarded(put_policy))
    app.router.add_post("/admin/policy/rollback", _guarded(rollback_policy))
    app.router.add_post("/admin/policy/reload", _guarded(reload_policy))
    app.router.add_post("/admin/retained/purge", _guarded(purge_retained))
    app.router.add_post("/admin/simulate", _guarded(simulate))
    app.router.add_get("/admin/sessions", _guarded(list_sessions))
    app.router.add_delete("/admin/sessions/{id}", _guarded(delete_session))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` so that a reader sees the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["add_admin_api", "policy_from_text", "time", "write_atomically"]
