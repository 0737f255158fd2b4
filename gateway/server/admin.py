"""The admin listener: liveness, readiness (and, later, metrics and the admin API)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.audit import PROMETHEUS_CONTENT_TYPE
from gateway.server.appkeys import GATEWAY_KEY

if TYPE_CHECKING:
    from gateway.server.app import Gateway


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the broker accepts connections and the certificate is loaded."""
    gateway: Gateway = request.app[GATEWAY_KEY]
    upstream_ok = await gateway.probe_upstream()
    cert = gateway.config.path(gateway.config.listener.certfile)
    checks: dict[str, object] = {
        "upstream": "ok" if upstream_ok else "unreachable",
        "certificates": "ok" if os.path.exists(cert) else "missing",
        "certificates_loaded_at": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(gateway.certs_loaded_at)
        ),
        "accepting": gateway.accepting,
        "connections": len(gateway.connections),
        "policy_version": gateway.policy.version,
    }
    auth = gateway.authenticator.readiness()
    checks["auth"] = auth
    log_failing = gateway.audit_pipeline.log_failing
    checks["audit_log"] = "failing" if log_failing else "ok"
    fail_closed = gateway.config.audit.on_log_failure == "fail_closed"
    if gateway.fleet is not None:
        # Reported, not a readiness condition: a broker blip must not take every
        # instance out of the load balancer at once.
        checks["fleet"] = gateway.fleet.status()
    ready = (
        upstream_ok
        and checks["certificates"] == "ok"
        and gateway.accepting
        and bool(auth.get("ready", True))
        and not (log_failing and fail_closed)
    )
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the gateway's metrics."""
    gateway = request.app[GATEWAY_KEY]
    if request.query.get("local"):
        body = gateway.audit_pipeline.prometheus_text()
    else:
        from gateway.server.fleet_admin import fleet_metrics

        body = await fleet_metrics(gateway)
    if gateway.fleet is not None:
        body += gateway.fleet.prometheus_text().encode()
    return web.Response(
        body=body,
        headers={"Content-Type": PROMETHEUS_CONTENT_TYPE},
    )


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
