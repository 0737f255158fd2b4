"""Expiry and v5 re-authentication (issue 3, item 9), with raw frames through the gateway
and Mosquitto. paho-mqtt 2.2 cannot take part: it has no API to send an AUTH packet and
treats an incoming AUTH as a protocol error, so a paho client renews its token by
reconnecting with a new password (see docs/auth-e2e-notes.md)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from gateway.auth.devidp import mint_token
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Auth, Connack, Connect, Disconnect, Pingreq, Pingresp
from gateway.mqtt.properties import Properties
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import SplitRelay, Wire, auth_toml, dev_issuer_toml
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp

REAUTHENTICATE = 0x19


def exp_in(seconds: int) -> int:
    """An ``exp`` ``seconds`` whole seconds after the next second boundary (so it is between
    ``seconds`` and ``seconds + 1`` from now)."""
    return math.ceil(time.time()) + seconds


def jwt_props(token: str) -> Properties:
    return Properties(
        (
            (PropertyId.AUTHENTICATION_METHOD, "jwt"),
            (PropertyId.AUTHENTICATION_DATA, token.encode()),
        )
    )


def make(
    gateway_factory: GatewayFactory, idp: DevIdp, leeway_s: float = 0, **kw: object
) -> GatewayThread:
    """Leeway 0 unless a test says otherwise: a session lasts until exp + leeway."""
    return gateway_factory(auth=auth_toml(dev_issuer_toml(idp), leeway_s=leeway_s), **kw)


async def connected(c: Wire, token: str, *, level: int = 5, via_data: bool = True) -> None:
    if level == 5 and via_data:
        packet = Connect("exp", protocol_level=5, properties=jwt_props(token))
    else:
        packet = Connect("exp", protocol_level=level, username="u", password=token.encode())
    got = await c.connect(packet)
    assert isinstance(got, Connack) and got.reason_code == 0, got
    if not (level == 5 and via_data):
        assert PropertyId.AUTHENTICATION_METHOD not in got.properties


async def test_v5_expiry_disconnect_0xa0(gateway_factory: GatewayFactory, idp: DevIdp) -> None:
    gw = make(gateway_factory, idp)
    exp = exp_in(1)
    async with Wire(gw) as c:
        await connected(c, idp.token("short", exp=exp))
        await c.send(Pingreq())
        assert await c.recv() == Pingresp()
        got = await c.recv(timeout=exp - time.time() + 1.5)
        assert time.time() >= exp - 0.05, "disconnected before exp"
        assert got == Disconnect(0xA0)
        await c.expect_closed()


async def test_v311_expiry_closes(gateway_factory: GatewayFactory, idp: DevIdp) -> None:
    gw = make(gateway_factory, idp)
    exp = exp_in(1)
    async with Wire(gw, level=4) as c:
        await connected(c, idp.token("short", exp=exp), level=4)
        await c.expect_closed(timeout=exp - time.time() + 1.5)
        assert time.time() >= exp - 0.05, "closed before exp"


async def test_v5_reauthentication_keeps_the_session(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay
) -> None:
    """AUTH 0x19 with a fresh token before exp: AUTH 0x00 back, the session lives past the
    first exp and ends at the second; the AUTH never reaches the broker."""
    gw = make(gateway_factory, idp, upstream_port=relay.port)
    first_exp = exp_in(1)
    second_exp = first_exp + 1
    fresh = idp.token("renewing", exp=second_exp)
    async with Wire(gw) as c:
        await connected(c, idp.token("renewing", exp=first_exp))
        await c.send(Auth(REAUTHENTICATE, jwt_props(fresh)))
        got = await c.recv()
        assert isinstance(got, Auth) and got.reason_code == 0x00
        assert got.properties.get(PropertyId.AUTHENTICATION_METHOD) == "jwt"
        assert PropertyId.AUTHENTICATION_DATA not in got.properties
        await asyncio.sleep(max(0.0, first_exp - time.time() + 0.4))
        await c.send(Pingreq())
        assert await c.recv() == Pingresp(), "the session ended at the first token's exp"
        got = await c.recv(timeout=second_exp - time.time() + 1.5)
        assert time.time() >= second_exp - 0.05
        assert got == Disconnect(0xA0)
    captured = relay.received()
    assert fresh.encode() not in captured and fresh.rsplit(".", 1)[1].encode() not in captured
    packets = [p for conn in relay.packets() for p in conn]
    assert any(isinstance(p, Pingreq) for p in packets)  # the capture is of this session
    assert not any(isinstance(p, Auth) for p in packets)


async def test_v5_connack_echoes_the_authentication_method(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    """[MQTT-4.12.0-5]: a CONNECT with an Authentication Method gets a successful CONNACK
    carrying the same method (strict clients check it before they allow re-authentication)."""
    gw = make(gateway_factory, idp)
    async with Wire(gw) as c:
        got = await c.connect(
            Connect("method", protocol_level=5, properties=jwt_props(idp.token("m")))
        )
        assert isinstance(got, Connack) and got.reason_code == 0
        assert got.properties.get(PropertyId.AUTHENTICATION_METHOD) == "jwt"
        assert PropertyId.AUTHENTICATION_DATA not in got.properties


async def test_v5_no_authentication_method_in_connack_without_one_in_connect(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    """[MQTT-4.12.0-6], the other half: a password CONNECT gets no Authentication Method."""
    gw = make(gateway_factory, idp)
    async with Wire(gw) as c:
        await connected(c, idp.token("pw"), via_data=False)


async def test_v5_reauthentication_without_method_in_connect_is_a_protocol_error(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay
) -> None:
    gw = make(gateway_factory, idp, upstream_port=relay.port)
    async with Wire(gw) as c:
        await connected(c, idp.token("pw-renew", ttl_s=60), via_data=False)
        await c.send(Auth(REAUTHENTICATE, jwt_props(idp.token("pw-renew", ttl_s=120))))
        assert await c.recv() == Disconnect(0x82)


def other_issuer_token(idp: DevIdp) -> str:
    return mint_token(idp.key, issuer="https://other.example", subject="same")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("other_sub", 0x87),
        ("other_org", 0x87),
        ("expired", 0x87),
        ("forged", 0x87),
        ("other_issuer", 0x87),
    ],
)
async def test_v5_reauthentication_refused(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay, case: str, code: int
) -> None:
    gw = make(gateway_factory, idp, upstream_port=relay.port)
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.auth.devidp import public_jwk

    tokens = {
        "other_sub": idp.token("mallory", org_id="acme"),
        "other_org": idp.token("same", org_id="evil"),
        "expired": idp.token("same", ttl_s=-120, org_id="acme"),
        "forged": mint_token(
            ec.generate_private_key(ec.SECP256R1()),
            subject="same",
            kid=public_jwk(idp.key)["kid"],
            claims={"org_id": "acme"},
        ),
        "other_issuer": other_issuer_token(idp),
    }
    props = jwt_props(tokens[case])
    async with Wire(gw) as c:
        await connected(c, idp.token("same", org_id="acme"))
        await c.send(Auth(REAUTHENTICATE, props))
        assert await c.recv() == Disconnect(code)
        await c.expect_closed()
    packets = [p for conn in relay.packets() for p in conn]
    assert any(isinstance(p, Connect) for p in packets)
    assert not any(isinstance(p, Auth) for p in packets)


async def test_v5_reauthentication_with_other_method_is_a_protocol_error(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    gw = make(gateway_factory, idp)
    props = jwt_props(idp.token("same")).with_(PropertyId.AUTHENTICATION_METHOD, "SCRAM-SHA-256")
    async with Wire(gw) as c:
        await connected(c, idp.token("same"))
        await c.send(Auth(REAUTHENTICATE, props))
        # Compared as bytes: a conforming decoder (ours included) cannot even read 0x8C here.
        assert await c.recv_bytes() == encode(Disconnect(0x82), 5)
        await c.expect_closed()


async def test_token_inside_leeway_is_not_accepted_then_dropped(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    gw = make(gateway_factory, idp, leeway_s=30)
    token = idp.token("skewed", exp=int(time.time()) - 5)
    async with Wire(gw) as c:
        got = await c.connect(Connect("skew", protocol_level=5, password=token.encode()))
        assert isinstance(got, Connack)
        if got.reason_code == 0:
            await c.send(Pingreq())
            assert await c.recv() == Pingresp(), "accepted, then dropped at once"
        else:
            assert got.reason_code == 0x86


@pytest.mark.parametrize("version", [4, 5])
def test_paho_sees_the_expiry(gateway_factory: GatewayFactory, idp: DevIdp, version: int) -> None:
    """What a paho-mqtt application observes: on_disconnect with "Maximum connect time"
    (v5) or a lost connection (v3.1.1), no earlier than exp."""
    gw = make(gateway_factory, idp)
    exp = exp_in(1)
    c = gw.client(token=idp.token("paho-exp", exp=exp), version=version, client_id="paho-exp")
    c.connect()
    rc = c.disconnects.get(timeout=exp - time.time() + 2.0)
    assert time.time() >= exp - 0.05
    if version == 5:
        assert rc.value == 0xA0 and str(rc) == "Maximum connect time"
    else:
        assert rc.is_failure
    c.c.loop_stop()


@pytest.mark.parametrize(
    "path",
    [
        "connect",
        "reauth",
    ],
)
async def test_session_lasts_until_exp_plus_leeway(
    gateway_factory: GatewayFactory, idp: DevIdp, path: str
) -> None:
    """The session ends when its token stops verifying: exp + leeway (here 1 s)."""
    gw = make(gateway_factory, idp, leeway_s=1)
    exp = exp_in(1)
    async with Wire(gw) as c:
        if path == "connect":
            await connected(c, idp.token("lw", exp=exp))
        else:
            await connected(c, idp.token("lw", ttl_s=60))
            await c.send(Auth(REAUTHENTICATE, jwt_props(idp.token("lw", exp=exp))))
            assert isinstance(await c.recv(), Auth)
        got = await c.recv(timeout=exp + 1 - time.time() + 1.5)
        ended = time.time()
        assert got == Disconnect(0xA0)
        assert ended >= exp + 1 - 0.05, f"ended {exp + 1 - ended:.2f} s before exp + leeway"
