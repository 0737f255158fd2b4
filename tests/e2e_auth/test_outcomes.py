"""Outcomes of an authentication (issue 3, item 8): HTTP 401 on the upgrade, exact CONNACK
codes, no upstream connection for a failure, and the broker never sees the user's token."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth.devidp import mint_token, public_jwk
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from gateway.mqtt.properties import Properties
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import (
    SplitRelay,
    Wire,
    auth_toml,
    dev_issuer_toml,
    payload_of,
    signature_of,
    upgrade,
)
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp


def forged(idp: DevIdp, sub: str = "forged") -> str:
    """Signed by another key under the development key's kid: a bad signature."""
    other = ec.generate_private_key(ec.SECP256R1())
    return mint_token(other, subject=sub, kid=public_jwk(idp.key)["kid"])


def bad_tokens(idp: DevIdp) -> dict[str, str]:
    return {
        "bad_signature": forged(idp),
        "expired": idp.token("late", ttl_s=-120),
        "unknown_issuer": mint_token(idp.key, issuer="https://evil.example", subject="x"),
        "audience": mint_token(idp.key, audience="someone-else", subject="x"),
        "malformed": "not-a-jwt",
    }


def make(gateway_factory: GatewayFactory, idp: DevIdp, **kw: object) -> GatewayThread:
    return gateway_factory(auth=auth_toml(dev_issuer_toml(idp)), **kw)


@pytest.mark.parametrize("carrier", ["header", "query"])
@pytest.mark.parametrize(
    "reason", ["bad_signature", "expired", "unknown_issuer", "audience", "malformed"]
)
async def test_invalid_upgrade_token_gets_401(
    gateway_factory: GatewayFactory, idp: DevIdp, carrier: str, reason: str
) -> None:
    gw = make(gateway_factory, idp)
    token = bad_tokens(idp)[reason]
    where = (
        {"headers": {"Authorization": f"Bearer {token}"}}
        if carrier == "header"
        else {"query": {"access_token": token}}
    )
    status, body = await upgrade(gw, **where)
    assert status == 401
    assert body == reason + "\n"  # the reason only: nothing of the request is echoed


@pytest.mark.parametrize("carrier", ["header", "query"])
async def test_valid_upgrade_token_opens(
    gateway_factory: GatewayFactory, idp: DevIdp, carrier: str
) -> None:
    gw = make(gateway_factory, idp)
    token = idp.token("ok")
    where: dict[str, object] = (
        {"headers": {"Authorization": f"Bearer {token}"}}
        if carrier == "header"
        else {"query": {"access_token": token}}
    )
    assert await upgrade(gw, **where) == (101, "")  # type: ignore[arg-type]
    async with Wire(gw, **where) as c:  # type: ignore[arg-type]
        assert c.ws is not None and c.ws.protocol == "mqtt"


# (protocol level, what the CONNECT carries, expected CONNACK code)
CONNACK_CASES = [
    (4, "bad_signature", 0x04),
    (4, "expired", 0x04),
    (4, "unknown_issuer", 0x04),
    (4, "audience", 0x04),
    (4, "malformed", 0x04),
    (4, "none", 0x05),
    (5, "bad_signature", 0x86),
    (5, "expired", 0x86),
    (5, "unknown_issuer", 0x86),
    (5, "audience", 0x86),
    (5, "malformed", 0x86),
    (5, "none", 0x87),
]


@pytest.mark.parametrize(("level", "case", "code"), CONNACK_CASES)
async def test_connack_codes(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int, case: str, code: int
) -> None:
    gw = make(gateway_factory, idp)
    token = None if case == "none" else bad_tokens(idp)[case]
    packet = Connect(
        "codes",
        protocol_level=level,
        username="u" if token is not None else None,
        password=token.encode() if token is not None else None,
    )
    async with Wire(gw, level=level) as c:
        got = await c.connect(packet)
        assert isinstance(got, Connack)
        assert (got.session_present, got.reason_code) == (False, code)
        if token is not None:
            assert token.encode() not in repr(got.properties).encode()
        await c.expect_closed()


@pytest.mark.parametrize("method", ["SCRAM-SHA-1", "JWT", "jwt2", ""])
async def test_v5_other_authentication_method_0x8c(
    gateway_factory: GatewayFactory, idp: DevIdp, method: str
) -> None:
    """An Authentication Method other than "jwt" (exactly) is refused, even with a valid
    token in the password."""
    gw = make(gateway_factory, idp)
    packet = Connect(
        "method",
        protocol_level=5,
        password=idp.token("m").encode(),
        properties=Properties(
            (
                (PropertyId.AUTHENTICATION_METHOD, method),
                (PropertyId.AUTHENTICATION_DATA, b"\x00\x01"),
            )
        ),
    )
    async with Wire(gw) as c:
        got = await c.connect(packet)
        assert isinstance(got, Connack) and got.reason_code == 0x8C
        await c.expect_closed()


async def test_failed_authentication_never_opens_upstream(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay
) -> None:
    gw = make(gateway_factory, idp, upstream_port=relay.port)
    # The gateway's start-up reachability probe opens (and closes) one empty connection.
    probes = relay.settled_connections(at_least=1)
    tokens = bad_tokens(idp)
    for level in (4, 5):
        for token in [*tokens.values(), None]:
            pw = token.encode() if token is not None else None
            async with Wire(gw, level=level) as c:
                got = await c.connect(
                    Connect("fail", protocol_level=level, username="u", password=pw)
                )
                assert isinstance(got, Connack) and got.reason_code != 0
                await c.expect_closed()
    # Two valid tokens that differ.
    async with Wire(gw, headers={"Authorization": f"Bearer {idp.token('a')}"}) as c:
        got = await c.connect(Connect("fail", protocol_level=5, password=idp.token("a").encode()))
        assert isinstance(got, Connack) and got.reason_code == 0x86
    # A bad authentication method.
    props = Properties(((PropertyId.AUTHENTICATION_METHOD, "SCRAM-SHA-1"),))
    async with Wire(gw) as c:
        got = await c.connect(Connect("fail", protocol_level=5, properties=props))
        assert isinstance(got, Connack) and got.reason_code == 0x8C
    # A refused upgrade.
    assert (await upgrade(gw, query={"access_token": tokens["expired"]}))[0] == 401
    assert relay.settled_connections() == probes and relay.received() == b""
    # The control: the relay is on the path, and a success does reach the broker.
    async with Wire(gw) as c:
        got = await c.connect(Connect("ok", protocol_level=5, password=idp.token("a").encode()))
        assert isinstance(got, Connack) and got.reason_code == 0
    assert relay.settled_connections() == probes + 1
    assert relay.received().startswith(b"\x10")  # a CONNECT


async def test_broker_never_sees_the_token(
    gateway_factory: GatewayFactory, idp: DevIdp, relay: SplitRelay
) -> None:
    """Every carrier, both versions: the broker gets the gateway's own (here: no) credentials,
    no Authentication Method/Data, and no byte of the token anywhere in the stream."""
    gw = make(gateway_factory, idp, upstream_port=relay.port)
    probes = relay.settled_connections(at_least=1)
    topic = f"e2e-auth/secret/{secrets.token_hex(4)}"
    tokens: list[str] = []

    async def session(level: int, packet_kw: dict[str, object], **wire: object) -> None:
        async with Wire(gw, level=level, **wire) as c:  # type: ignore[arg-type]
            client_id = f"tok-{len(tokens) - 1}"
            got = await c.connect(Connect(client_id, protocol_level=level, **packet_kw))  # type: ignore[arg-type]
            assert isinstance(got, Connack) and got.reason_code == 0, got
            await c.send(Subscribe(1, (Subscription(topic, 1),)))
            assert isinstance(await c.recv(), Suback)
            await c.send(Publish(topic, b"payload", 1, packet_id=2))
            seen = {type(await c.recv()), type(await c.recv())}
            assert seen == {Puback, Publish}
            await c.send(Disconnect())

    for level in (4, 5):
        t = idp.token(f"pw-{level}")
        tokens.append(t)
        await session(level, {"username": "someone", "password": t.encode()})
        t = idp.token(f"hdr-{level}")
        tokens.append(t)
        await session(level, {}, headers={"Authorization": f"Bearer {t}"})
        t = idp.token(f"query-{level}")
        tokens.append(t)
        await session(level, {}, query={"access_token": t})
    t = idp.token("data-5")
    tokens.append(t)
    jwt_props = Properties(
        ((PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, t.encode()))
    )
    await session(5, {"properties": jwt_props})

    captured = relay.received()
    subs = [f"{c}-{lv}" for lv in (4, 5) for c in ("pw", "hdr", "query")] + ["data-5"]
    assert relay.settled_connections() - probes == len(tokens) == 7
    for t in tokens:
        for part in (t, signature_of(t), payload_of(t)):
            assert part.encode() not in captured
    for i, packets in enumerate(relay.packets()[probes:]):
        first = packets[0]
        assert isinstance(first, Connect)
        assert first.username is None and first.password is None
        assert PropertyId.AUTHENTICATION_METHOD not in first.properties
        assert PropertyId.AUTHENTICATION_DATA not in first.properties
        # The upstream client id is derived from the identity (issue 3, item 7).
        assert first.client_id == f"{subs[i]}:tok-{i}"
