"""A token never appears in a log line (issue 3, item 1): every logger at DEBUG, across
refused and accepted connections with tokens in the query string, the header, the
password and v5 Authentication Data, and across re-authentication."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth.devidp import mint_token, public_jwk
from gateway.logs import JsonLineFormatter
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import Auth, Connack, Connect, Disconnect, Puback, Publish
from gateway.mqtt.properties import Properties
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import Wire, auth_toml, dev_issuer_toml, payload_of, signature_of, upgrade
from tests.support.idp import DevIdp


def jwt_props(token: str) -> Properties:
    return Properties(
        (
            (PropertyId.AUTHENTICATION_METHOD, "jwt"),
            (PropertyId.AUTHENTICATION_DATA, token.encode()),
        )
    )


async def test_no_token_in_any_log_line(
    gateway_factory: GatewayFactory, idp: DevIdp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = gateway_factory(auth=auth_toml(dev_issuer_toml(idp)))
    forged_key = ec.generate_private_key(ec.SECP256R1())
    kid = public_jwk(idp.key)["kid"]

    def forged(sub: str) -> str:
        return mint_token(forged_key, subject=sub, kid=kid)

    tokens: list[str] = []

    def t(token: str) -> str:
        tokens.append(token)
        return token

    # Refused on the upgrade, in the query string and in the header.
    assert (await upgrade(gw, query={"access_token": t(forged("q-bad"))}))[0] == 401
    assert (await upgrade(gw, query={"access_token": t(idp.token("q-exp", ttl_s=-99))}))[0] == 401
    assert (await upgrade(gw, headers={"Authorization": f"Bearer {t(forged('h'))}"}))[0] == 401
    # Accepted on the upgrade, refused at CONNECT (two different tokens).
    async with Wire(gw, query={"access_token": t(idp.token("mm"))}) as c:
        got = await c.connect(
            Connect("logs", protocol_level=5, password=t(idp.token("mm")).encode())
        )
        assert isinstance(got, Connack) and got.reason_code == 0x86
    # Refused at CONNECT: bad signature, unknown issuer.
    for bad in (forged("pw"), mint_token(idp.key, issuer="https://evil.example", subject="x")):
        async with Wire(gw, level=4) as c:
            got = await c.connect(
                Connect("logs", protocol_level=4, username="u", password=t(bad).encode())
            )
            assert isinstance(got, Connack) and got.reason_code == 0x04
    # Accepted: query string, then a session that publishes and re-authenticates.
    async with Wire(gw, query={"access_token": t(idp.token("q-ok"))}) as c:
        got = await c.connect(Connect("logs", protocol_level=5))
        assert isinstance(got, Connack) and got.reason_code == 0
        await c.send(Publish("e2e-auth/logs", b"x", 1, packet_id=1))
        assert isinstance(await c.recv(), Puback)
        await c.send(Disconnect())
    async with Wire(gw) as c:
        got = await c.connect(
            Connect("logs", protocol_level=5, properties=jwt_props(t(idp.token("re"))))
        )
        assert isinstance(got, Connack) and got.reason_code == 0
        await c.send(Auth(0x19, jwt_props(t(idp.token("re")))))
        assert isinstance(await c.recv(), Auth)
        await c.send(Auth(0x19, jwt_props(t(idp.token("someone-else")))))
        assert await c.recv() == Disconnect(0x87)

    fmt = JsonLineFormatter()
    lines = [fmt.format(r) + " " + repr(r.args) + " " + repr(r.__dict__) for r in caplog.records]
    text = "\n".join(lines) + caplog.text
    # The capture works: refusals were logged.
    assert any(r.getMessage() == "upgrade refused" for r in caplog.records)
    assert any(r.getMessage().startswith("auth_failed") for r in caplog.records)
    assert len(tokens) == 11
    for token in tokens:
        for part in (token, signature_of(token), payload_of(token)):
            assert part not in text, f"token material in the logs: {part[:12]}..."
