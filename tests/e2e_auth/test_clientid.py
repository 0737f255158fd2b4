"""Client ids cannot be hijacked (issue 3, item 7): two identities using the same client id
never meet on one broker session; ``require`` mode refuses an id that is not theirs."""

from __future__ import annotations

import time
import uuid

import pytest
from paho.mqtt.packettypes import PacketTypes

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import Connack, Connect
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import SplitRelay, Wire, auth_toml, dev_issuer_toml
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp
from tests.support.paho import Client, v5_props

LEVELS = [pytest.param(4, id="v3.1.1"), pytest.param(5, id="v5")]


def persistent(gw: GatewayThread, sub: str, version: int) -> tuple[Client, dict[str, object]]:
    c = gw.client(sub=sub, client_id="shared", version=version, clean=False)
    kw: dict[str, object] = {}
    if version == 5:
        kw["properties"] = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    return c, kw


@pytest.mark.parametrize("version", LEVELS)
def test_client_id_takeover_between_identities(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay, version: int
) -> None:
    gw = gateway_factory(auth=auth_toml(dev_issuer_toml(idp)), upstream_port=relay.port)
    run = uuid.uuid4().hex[:8]
    alice, mallory = f"alice-{run}", f"mallory-{run}"
    topic = f"e2e-auth/takeover/{run}"

    a, kw = persistent(gw, alice, version)
    a.connect(**kw)  # type: ignore[arg-type]
    assert a.connack_flags.session_present is False
    a.subscribe(topic, qos=1)

    # Mallory uses the same client id while Alice is connected.
    m, kw = persistent(gw, mallory, version)
    m.connect(**kw)  # type: ignore[arg-type]
    assert m.connack_flags.session_present is False, "Mallory got Alice's session"
    if version == 5:
        # The client sees its own id: nothing is assigned.
        assert not hasattr(m.connack_props, "AssignedClientIdentifier")
    m.publish(topic, b"live", qos=1)
    assert a.expect().payload == b"live", "Alice was kicked off by Mallory's CONNECT"
    assert a.disconnects.empty()
    m.expect_none()

    # Alice goes away; a message is queued in her persistent session.
    a.disconnect()
    m.publish(topic, b"queued", qos=1)
    m.disconnect()
    m2, kw = persistent(gw, mallory, version)
    m2.connect(**kw)  # type: ignore[arg-type]
    assert m2.connack_flags.session_present is True  # Mallory's own session, empty
    m2.expect_none(0.7)
    m2.disconnect()

    # The control: the message was queued, for Alice.
    a2, kw = persistent(gw, alice, version)
    a2.connect(**kw)  # type: ignore[arg-type]
    assert a2.connack_flags.session_present is True
    assert a2.expect().payload == b"queued"
    a2.disconnect()

    time.sleep(0.1)
    upstream_ids = {conn[0].client_id for conn in relay.packets() if conn}  # type: ignore[union-attr]
    assert upstream_ids == {f"{alice}:shared", f"{mallory}:shared"}


@pytest.mark.parametrize("level", LEVELS)
async def test_empty_client_id_keeps_working_derive(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = gateway_factory(auth=auth_toml(dev_issuer_toml(idp)))
    async with Wire(gw, level=level) as c:
        got = await c.connect(
            Connect("", protocol_level=level, username="u", password=idp.token("e").encode())
        )
        assert isinstance(got, Connack) and got.reason_code == 0
        if level == 5:
            assigned = got.properties.get(PropertyId.ASSIGNED_CLIENT_IDENTIFIER)
            assert isinstance(assigned, str) and assigned and ":" not in assigned


REQUIRE = """
[auth.client_id]
mode = "require"
template = "{user_id}:{client_id}"
"""


def require_gateway(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay | None = None
) -> GatewayThread:
    kw: dict[str, object] = {} if relay is None else {"upstream_port": relay.port}
    return gateway_factory(auth=auth_toml(dev_issuer_toml(idp), tables=REQUIRE), **kw)


@pytest.mark.parametrize(("level", "code"), [(4, 0x02), (5, 0x85)])
async def test_require_mode_refuses_a_foreign_client_id(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay, level: int, code: int
) -> None:
    gw = require_gateway(gateway_factory, idp, relay)
    probes = relay.settled_connections(at_least=1)
    token = idp.token("alice").encode()
    for foreign in ("bob:phone", "alice", "xalice:phone", "phone"):
        async with Wire(gw, level=level) as c:
            got = await c.connect(
                Connect(foreign, protocol_level=level, username="u", password=token)
            )
            assert isinstance(got, Connack) and got.reason_code == code, foreign
            await c.expect_closed()
    assert relay.settled_connections() == probes  # refused before any upstream connection
    async with Wire(gw, level=level) as c:
        got = await c.connect(
            Connect("alice:phone", protocol_level=level, username="u", password=token)
        )
        assert isinstance(got, Connack) and got.reason_code == 0
    relay.settled_connections(at_least=probes + 1)
    first = relay.packets()[-1][0]
    assert isinstance(first, Connect) and first.client_id == "alice:phone"  # used unchanged


@pytest.mark.parametrize("level", LEVELS)
async def test_require_mode_empty_client_id_keeps_working(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = require_gateway(gateway_factory, idp)
    async with Wire(gw, level=level) as c:
        got = await c.connect(
            Connect("", protocol_level=level, username="u", password=idp.token("alice").encode())
        )
        assert isinstance(got, Connack) and got.reason_code == 0
