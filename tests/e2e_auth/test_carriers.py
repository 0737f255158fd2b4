"""Where the token travels (issue 3, item 1), through the real gateway and Mosquitto: the
CONNECT password, ``Authorization: Bearer`` and ``access_token`` on the upgrade, v5
Authentication Data; copies must agree; ``[auth] token_sources`` limits the carriers;
a cookie is never a credential."""

from __future__ import annotations

import pytest

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import Connack, Connect
from gateway.mqtt.properties import Properties
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import Wire, auth_toml, dev_issuer_toml, upgrade
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp

LEVELS = [pytest.param(4, id="v3.1.1"), pytest.param(5, id="v5")]
# CONNACK codes: accepted; no token at all (v5 0x87 / v3.1.1 0x05); a token that is
# refused, including two tokens that differ (v5 0x86 / v3.1.1 0x04).
NO_TOKEN = {4: 0x05, 5: 0x87}
BAD_TOKEN = {4: 0x04, 5: 0x86}


def connect(level: int, password: str | None = None, *, username: str | None = "anyone") -> Connect:
    return Connect(
        "carrier",
        protocol_level=level,
        username=username,
        password=password.encode() if password is not None else None,
    )


def jwt_data(token: str) -> Properties:
    return Properties(
        (
            (PropertyId.AUTHENTICATION_METHOD, "jwt"),
            (PropertyId.AUTHENTICATION_DATA, token.encode()),
        )
    )


def make(gateway_factory: GatewayFactory, idp: DevIdp, *sources: str) -> GatewayThread:
    return gateway_factory(auth=auth_toml(dev_issuer_toml(idp), token_sources=sources or None))


async def connack(gw: GatewayThread, packet: Connect, **wire: object) -> int:
    async with Wire(gw, level=packet.protocol_level, **wire) as c:  # type: ignore[arg-type]
        got = await c.connect(packet)
        assert isinstance(got, Connack), got
        if got.reason_code != 0:
            await c.expect_closed()
        return got.reason_code


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("username", ["anyone", "", "not-the-sub@example.com"])
async def test_password_carrier_with_any_user_name(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int, username: str
) -> None:
    gw = make(gateway_factory, idp)
    assert await connack(gw, connect(level, idp.token("pw-user"), username=username)) == 0
    assert await connack(gw, connect(level, "wrong", username=username)) == BAD_TOKEN[level]


async def test_password_without_user_name_v5(gateway_factory: GatewayFactory, idp: DevIdp) -> None:
    gw = make(gateway_factory, idp)
    assert await connack(gw, connect(5, idp.token("pw-user"), username=None)) == 0


@pytest.mark.parametrize("level", LEVELS)
async def test_bearer_header_carrier(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp)
    headers = {"Authorization": f"Bearer {idp.token('hdr-user')}"}
    assert await connack(gw, connect(level, username=None), headers=headers) == 0
    # The control: the same CONNECT without the header has no credential.
    assert await connack(gw, connect(level, username=None)) == NO_TOKEN[level]


@pytest.mark.parametrize("level", LEVELS)
async def test_query_parameter_carrier(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp)
    query = {"access_token": idp.token("query-user")}
    assert await connack(gw, connect(level, username=None), query=query) == 0


async def test_v5_authentication_data_carrier(gateway_factory: GatewayFactory, idp: DevIdp) -> None:
    gw = make(gateway_factory, idp)
    packet = Connect("carrier", protocol_level=5, properties=jwt_data(idp.token("data-user")))
    assert await connack(gw, packet) == 0


@pytest.mark.parametrize("level", LEVELS)
async def test_same_token_in_every_place_is_accepted(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp)
    token = idp.token("everywhere")
    assert (
        await connack(
            gw,
            connect(level, token),
            headers={"Authorization": f"Bearer {token}"},
            query={"access_token": token},
        )
        == 0
    )


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("other_place", ["header", "query"])
async def test_password_and_upgrade_token_differ(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int, other_place: str
) -> None:
    """Both tokens are valid (even the same user): the upgrade opens, the CONNECT is refused
    with token_mismatch."""
    gw = make(gateway_factory, idp)
    a, b = idp.token("same-user"), idp.token("same-user")
    assert a != b
    wire: dict[str, object] = (
        {"headers": {"Authorization": f"Bearer {b}"}}
        if other_place == "header"
        else {"query": {"access_token": b}}
    )
    assert await connack(gw, connect(level, a), **wire) == BAD_TOKEN[level]
    assert gw.gateway is not None
    failures = gw.gateway.authenticator.auth.stats.failures  # type: ignore[attr-defined]
    assert failures["token_mismatch"] == 1


async def test_header_and_query_differ_refused_at_upgrade(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    gw = make(gateway_factory, idp)
    status, body = await upgrade(
        gw,
        headers={"Authorization": f"Bearer {idp.token('x')}"},
        query={"access_token": idp.token("x")},
    )
    assert (status, body) == (401, "token_mismatch\n")


async def test_authentication_data_and_password_differ(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    gw = make(gateway_factory, idp)
    packet = Connect(
        "carrier",
        protocol_level=5,
        password=idp.token("u").encode(),
        properties=jwt_data(idp.token("u")),
    )
    assert await connack(gw, packet) == 0x86


@pytest.mark.parametrize("level", LEVELS)
async def test_token_sources_password_only(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp, "password")
    header = {"Authorization": f"Bearer {idp.token('h')}"}
    query = {"access_token": idp.token("q")}
    # Upgrade tokens are not credentials here: no 401 for a bad one, no login with a good one.
    assert await upgrade(gw, headers={"Authorization": "Bearer not.a.jwt"}) == (101, "")
    assert await upgrade(gw, query={"access_token": "garbage"}) == (101, "")
    assert await connack(gw, connect(level, username=None), headers=header) == NO_TOKEN[level]
    assert await connack(gw, connect(level, username=None), query=query) == NO_TOKEN[level]
    # ...and they do not conflict with the password either.
    assert await connack(gw, connect(level, idp.token("p")), headers=header, query=query) == 0


@pytest.mark.parametrize("level", LEVELS)
async def test_token_sources_query_only(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp, "query")
    assert await connack(gw, connect(level, idp.token("p"))) == NO_TOKEN[level]
    header = {"Authorization": f"Bearer {idp.token('h')}"}
    assert await connack(gw, connect(level, username=None), headers=header) == NO_TOKEN[level]
    assert await upgrade(gw, headers={"Authorization": "Bearer not.a.jwt"}) == (101, "")
    query = {"access_token": idp.token("q")}
    assert await connack(gw, connect(level, idp.token("p")), query=query) == 0


@pytest.mark.parametrize("level", LEVELS)
async def test_token_sources_upgrade_only(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    """The order given (query before header) does not make a mismatch acceptable."""
    gw = make(gateway_factory, idp, "query", "header")
    assert await connack(gw, connect(level, idp.token("p"))) == NO_TOKEN[level]
    header = {"Authorization": f"Bearer {idp.token('h')}"}
    assert await connack(gw, connect(level, username=None), headers=header) == 0
    status, _ = await upgrade(gw, headers=header, query={"access_token": idp.token("h")})
    assert status == 401


@pytest.mark.parametrize("level", LEVELS)
async def test_cookie_is_never_a_credential(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp)
    token = idp.token("cookie-user")
    cookie = f"access_token={token}; token={token}; jwt={token}; Authorization=Bearer%20{token}"
    # A cookie with a bad token is not looked at either: the upgrade opens.
    assert await upgrade(gw, headers={"Cookie": "access_token=bad"}) == (101, "")
    got = await connack(gw, connect(level, username=None), headers={"Cookie": cookie})
    assert got == NO_TOKEN[level]
