"""``POST /v1/publish``: an HTTPS caller publishes as if it were an MQTT client (issue 6, item 3).

The order of a request: the caller's bearer JWT (401), the body's size and shape
(413/415/400), the control-topic guard and the policy, exactly as a PUBLISH over MQTT
(403), an audit decision marked ``connection_id = "rest:<message id>"``, then the publish
upstream by the ``rest_publisher`` service account (502/503), with MQTT v5 user
properties naming the caller. QoS 1/2 answer 202 only after the broker acknowledged.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.audit import DecisionRecord
from gateway.auth.service_accounts import PRINCIPAL_PREFIX
from gateway.config import read_secret
from gateway.fleet.control import DEFAULT_CONTROL_TOPIC, is_control_topic
from gateway.identity import Identity
from gateway.logs import log
from gateway.rest.config import RestConfig
from gateway.rest.openapi import openapi_document
from gateway.rest.request import PublishRequest, RequestError, max_body_bytes, parse_publish
from gateway.rest.upstream import BrokerRefused, BrokerUnavailable, LinkSettings, UpstreamPool

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.rest")

PUBLISH_PATH = "/v1/publish"
OPENAPI_PATH = "/v1/openapi.json"
# Marks a decision record that came through the bridge (its connection_id prefix).
AUDIT_MARKER = "rest:"
# The user properties the bridge sets (MQTT 5.0 §3.3.2.3.7); callers cannot set these.
PROP_MESSAGE_ID = "mqttgate-message-id"
PROP_USER_ID = "mqttgate-user-id"
PROP_PRINCIPAL = "mqttgate-principal"
PROP_ISSUER = "mqttgate-issuer"
PROP_PUBLISHER = "mqttgate-publisher"
PROP_VIA = "mqttgate-via"
# Seconds a client should wait before retrying a 503 (RFC 9110 §10.2.3).
RETRY_AFTER_S = 1


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, error: str, reason: str, detail: str = "", **extra: Any) -> web.Response:
    headers: dict[str, str] = {}
    if status == 401:
        # RFC 6750 §3: the challenge names the scheme and the error.
        code = "invalid_request" if reason == "missing_token" else "invalid_token"
        headers["WWW-Authenticate"] = f'Bearer realm="mqttgate", error="{code}"'
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    body = {"error": error, "reason": reason, "detail": detail or reason, **extra}
    return _json(body, status, headers)


def _first(identity: Identity, name: str) -> str | None:
    values = identity.binding(name).values
    return values[0] if values else None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class RestBridge:
    """The bridge's routes and its pooled upstream connection."""

    def __init__(self, gateway: Gateway, config: RestConfig) -> None:
        self.gateway = gateway
        self.config = config
        instance = config.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.client_id = f"{config.client_id_prefix}{instance}"
        self.publisher_principal = PRINCIPAL_PREFIX + config.publisher
        fleet = getattr(gateway.config, "fleet", None)
        self.control_topic: str = getattr(fleet, "control_topic", DEFAULT_CONTROL_TOPIC)
        up = gateway.config.upstream
        if config.password_env or config.password_file:
            password = read_secret(
                config.password_env,
                config.password_file,
                Path(gateway.config.base_dir),
                "rest.password_env",
                "config",
            )
        else:
            pw = gateway.upstream_password
            password = pw.decode("utf-8") if pw is not None else None
        self.pool = UpstreamPool(
            LinkSettings(
                host=up.host,
                port=up.port,
                tls=gateway.upstream_ssl,
                username=config.username if config.username is not None else up.username,
                password=password,
                client_id=self.client_id,
                connect_timeout_s=config.connect_timeout_s,
                reconnect_backoff_s=config.reconnect_backoff_s,
            ),
            config.pool_size,
        )
        self._openapi = orjson.dumps(
            openapi_document(config.max_payload_bytes, config.max_user_properties)
        )
        self.published = 0
        self.refused = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PUBLISH_PATH, self.publish)
        app.router.add_get(OPENAPI_PATH, self.openapi)

    async def start(self) -> None:
        """Nothing to do eagerly: links connect on first use (a broker that is down at
        start-up must not stop the gateway)."""

    async def stop(self) -> None:
        await self.pool.close()

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    # -- POST /v1/publish -------------------------------------------------------------

    async def publish(self, request: web.Request) -> web.Response:
        token = _bearer(request)
        if token is None:
            return _error(401, "unauthorized", "missing_token", "Authorization: Bearer required")
        identity = await self.gateway.authenticator.verify_token(token, request.remote)
        if identity is None:
            return _error(401, "unauthorized", "invalid_token", "the token does not verify")
        if request.content_type != "application/json":
            return _error(415, "unsupported_media_type", "not_json", "send application/json")
        limit = max_body_bytes(self.config.max_payload_bytes)
        if request.content_length is not None and request.content_length > limit:
            return _error(413, "payload_too_large", "payload_too_large", f"body over {limit}")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return _error(413, "payload_too_large", "payload_too_large", f"body over {limit}")
        limits = self.gateway.config.limits
        try:
            req = parse_publish(
                body,
                max_payload_bytes=self.config.max_payload_bytes,
                max_user_properties=self.config.max_user_properties,
                max_topic_length=limits.max_topic_length,
                max_topic_levels=limits.max_topic_levels,
            )
        except RequestError as exc:
            error = "payload_too_large" if exc.status == 413 else "bad_request"
            return _error(exc.status, error, exc.reason, exc.detail)
        message_id = str(uuid.uuid4())
        upstream_topic, refusal = self._decide(identity, req, message_id, request.remote)
        if refusal is not None:
            return refusal
        try:
            await self.pool.publish(
                upstream_topic,
                req.payload,
                req.qos,
                req.retain,
                self._properties(identity, req, message_id),
                self.config.publish_timeout_s,
            )
        except BrokerUnavailable as exc:
            log(logger, logging.WARNING, "rest publish failed", error=str(exc), id=message_id)
            return _error(503, "broker_unavailable", "broker_unavailable", str(exc))
        except BrokerRefused as exc:
            return _error(502, "broker_refused", f"0x{exc.code:02X}", str(exc))
        self.published += 1
        return _json(
            {
                "message_id": message_id,
                "topic": req.topic,
                "qos": req.qos,
                "retain": req.retain,
                "policy_version": self.gateway.policy.version,
            },
            202,
        )

    def _decide(
        self, identity: Identity, req: PublishRequest, message_id: str, remote: str | None
    ) -> tuple[str, web.Response | None]:
        """The upstream topic, or the 403 (audited either way)."""
        started = time.perf_counter_ns()
        gw = self.gateway
        policy = gw.policy
        upstream_topic = req.topic
        reason: str | None = None
        if is_control_topic(req.topic, self.control_topic):
            reason = "control_topic"
        elif gw.tenants is not None:
            from gateway.server.tenancy import TenantRefused

            try:
                place = gw.tenants.place(identity, self.client_id, policy)
            except TenantRefused as exc:
                reason = exc.reason
            else:
                policy = place.policy
                upstream_topic = place.mount.topic_up(req.topic)
        rule_id = pattern = None
        version = policy.version
        if reason is None:
            d = policy.authorize_publish(identity, req.topic, req.qos, req.retain)
            rule_id, pattern, version = d.rule_id, d.pattern, d.policy_version
            if not d.allowed:
                reason = d.reason
        gw.audit_pipeline.decision(
            DecisionRecord(
                action="publish",
                topic=req.topic,
                verdict="allow" if reason is None else "deny",
                reason=reason or "allow_rule",
                qos=req.qos,
                retain=req.retain,
                rule_id=rule_id,
                pattern=pattern,
                policy_version=version,
                decision_ns=time.perf_counter_ns() - started,
                client_id=self.client_id,
                user_id=_first(identity, "user_id"),
                client_address=remote,
                connection_id=AUDIT_MARKER + message_id,
            )
        )
        if gw.decision_stream.viewers:
            # The live decisions page shows REST publishes beside MQTT ones.
            gw.decision_stream.publish(
                {
                    "ts": time.time(),
                    "kind": "publish",
                    "verdict": "allow" if reason is None else "deny",
                    "reason": reason or "allow_rule",
                    "client_id": self.client_id,
                    "user_id": _first(identity, "user_id"),
                    "identity": identity.as_dict(),
                    "client_address": remote,
                    "session": AUDIT_MARKER + message_id,
                    "topic": req.topic,
                    "qos": req.qos,
                    "retain": req.retain,
                    "rule_id": rule_id,
                    "pattern": pattern,
                    "policy_version": version,
                }
            )
        if reason is None:
            return upstream_topic, None
        self.refused += 1
        return upstream_topic, _error(
            403, "forbidden", reason, "the policy refuses", rule_id=rule_id
        )

    def _properties(
        self, identity: Identity, req: PublishRequest, message_id: str
    ) -> list[tuple[str, str]]:
        props = list(req.user_properties)
        props.append((PROP_MESSAGE_ID, message_id))
        props.append((PROP_VIA, "rest"))
        props.append((PROP_PUBLISHER, self.publisher_principal))
        for name, value in (
            (PROP_USER_ID, _first(identity, "user_id")),
            (PROP_PRINCIPAL, identity.principal),
            (PROP_ISSUER, identity.issuer),
        ):
            if value is not None:
                props.append((name, value))
        return props
