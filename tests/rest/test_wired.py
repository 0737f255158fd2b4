"""The REST bridge as `[rest] enabled = true` wires it: on the client TLS listener."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path

import aiohttp

from tests.conftest import GatewayFactory
from tests.rest.conftest import POLICY, V5Subscriber
from tests.support.mosquitto import Mosquitto


async def test_publish_over_the_tls_listener(
    gateway_factory: GatewayFactory, broker: Mosquitto, certs: Path
) -> None:
    gw = gateway_factory(policy=json.dumps(POLICY), extra="[rest]\nenabled = true\n")
    topic = f"rest/alice/{uuid.uuid4().hex[:8]}"
    sub = V5Subscriber(broker.port, topic)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    url = f"https://localhost:{gw.port}/v1/publish"
    token = gw.idp.token("alice")
    async with aiohttp.ClientSession() as s:
        async with s.post(
            url,
            json={"topic": topic, "payload": "hi", "qos": 1},
            ssl=ctx,
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            body = await r.json()
            assert r.status == 202, body
            assert body["message_id"]
        async with s.post(url, json={"topic": topic, "payload": "hi"}, ssl=ctx) as r:
            assert r.status == 401
        async with s.get(f"https://localhost:{gw.port}/v1/openapi.json", ssl=ctx) as r:
            assert r.status == 200 and (await r.json())["openapi"].startswith("3.")
    msg = sub.messages.get(timeout=5)
    assert msg.payload == b"hi"
    sub.close()


async def test_rest_decisions_reach_the_live_view(
    gateway_factory: GatewayFactory, certs: Path
) -> None:
    gw = gateway_factory(policy=json.dumps(POLICY), extra="[rest]\nenabled = true\n")
    assert gw.gateway is not None

    async def open_viewer() -> object:
        return gw.gateway.decision_stream.open()  # type: ignore[union-attr]

    viewer = gw.call(open_viewer())
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    token = gw.idp.token("alice")
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"https://localhost:{gw.port}/v1/publish",
            ssl=ctx,
            json={"topic": "elsewhere/x", "payload": "no"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 403
    entries = list(viewer.entries)  # type: ignore[attr-defined]
    assert any(e["topic"] == "elsewhere/x" and e["verdict"] == "deny" for e in entries)
