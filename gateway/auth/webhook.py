"""Bring-your-own-auth webhook (issue 3 §3).

The gateway POSTs ``{client_id, username, password, remote_address, headers}`` as JSON.
200 with a JSON object: those are the claims. 401/403: denied. Anything else, a
timeout or a network error: ``webhook_unavailable`` (fail closed). Positive answers are
cached for ``cache_ttl_s`` under a SHA-256 of the credentials, never the credentials.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.auth.config import WebhookConfig, read_secret
from gateway.auth.reasons import Reason

log = logging.getLogger("gateway.auth.webhook")

# A claims answer is a small JSON object; a larger body is not one.
MAX_RESPONSE_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    client_id: str
    username: str | None
    password: bytes | None
    remote_address: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    claims: Mapping[str, Any] | None
    reason: Reason | None


def _body(req: WebhookRequest, forward: tuple[str, ...]) -> dict[str, object]:
    lower = {k.lower(): v for k, v in req.headers.items()}
    body: dict[str, object] = {
        "client_id": req.client_id,
        "username": req.username,
        "remote_address": req.remote_address,
        "headers": {h: lower[h.lower()] for h in forward if h.lower() in lower},
    }
    if req.password is None:
        body["password"] = None
    else:
        try:
            body["password"] = req.password.decode("utf-8")
        except UnicodeDecodeError:
            # MQTT passwords are binary data (MQTT 5.0 §3.1.3.6).
            body["password"] = None
            body["password_base64"] = base64.b64encode(req.password).decode()
    return body


def cache_key(name: str, body: Mapping[str, object]) -> bytes:
    return hashlib.sha256(
        name.encode() + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).digest()


class Webhook:
    """One configured webhook endpoint with its positive-answer cache."""

    def __init__(
        self,
        cfg: WebhookConfig,
        session: Callable[[], Awaitable[aiohttp.ClientSession]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._session = session
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Mapping[str, Any]]] = OrderedDict()
        self._bearer: str | None = None
        if cfg.secret_env is not None or cfg.secret_file is not None:
            self._bearer = read_secret(
                cfg.secret_env, cfg.secret_file, f"auth.webhooks[{cfg.label}].secret"
            ).decode()
        self.calls = 0
        self.cache_hits = 0

    async def ask(self, req: WebhookRequest) -> WebhookAnswer:
        body = _body(req, self.cfg.forward_headers)
        key = cache_key(self.cfg.label, body)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > now:
                self.cache_hits += 1
                return WebhookAnswer(hit[1], None)
            del self._cache[key]
        answer = await self._post(body)
        if answer.claims is not None and self.cfg.cache_ttl_s > 0:
            self._cache[key] = (now + self.cfg.cache_ttl_s, answer.claims)
            while len(self._cache) > self.cfg.cache_max_entries:
                self._cache.popitem(last=False)
        return answer

    async def _post(self, body: Mapping[str, object]) -> WebhookAnswer:
        self.calls += 1
        host = urlsplit(self.cfg.url).netloc
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._bearer is not None:
            headers["Authorization"] = f"Bearer {self._bearer}"
        try:
            session = await self._session()
            async with session.post(
                self.cfg.url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
                allow_redirects=False,
            ) as resp:
                if resp.status in (401, 403):
                    return WebhookAnswer(None, Reason.WEBHOOK_DENIED)
                if resp.status != 200:
                    log.warning(
                        "webhook_failed webhook=%s host=%s status=%d",
                        self.cfg.label,
                        host,
                        resp.status,
                    )
                    return WebhookAnswer(None, Reason.WEBHOOK_UNAVAILABLE)
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "webhook_failed webhook=%s host=%s error=%s",
                self.cfg.label,
                host,
                type(exc).__name__,
            )
            return WebhookAnswer(None, Reason.WEBHOOK_UNAVAILABLE)
        if len(raw) > MAX_RESPONSE_BYTES:
            return WebhookAnswer(None, Reason.WEBHOOK_UNAVAILABLE)
        try:
            claims = orjson.loads(raw)
        except orjson.JSONDecodeError:
            claims = None
        if not isinstance(claims, dict):
            log.warning(
                "webhook_failed webhook=%s host=%s error=not_a_json_object", self.cfg.label, host
            )
            return WebhookAnswer(None, Reason.WEBHOOK_UNAVAILABLE)
        return WebhookAnswer(claims, None)
