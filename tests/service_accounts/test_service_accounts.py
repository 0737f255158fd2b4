"""Service accounts: API keys, client-credentials JWTs, fixed bindings, principal rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.acl import compile_policy
from gateway.auth import AuthConfig, Authenticator, Credentials
from gateway.auth.devidp import DEV_ISSUER
from gateway.auth.service_accounts import (
    API_KEY_REFUSED,
    RESERVED_USER_ID,
    UNKNOWN_SERVICE_ACCOUNT,
    ServiceAccountConfig,
    ServiceAccounts,
    api_key_digest,
    generate_api_key,
)
from gateway.config import load_config
from gateway.configload import ConfigError, load_dataclass
from gateway.server.app import Gateway
from tests.service_accounts.wiring import ServiceAwareAuthenticator
from tests.support.gateway_thread import GatewayThread, write_config
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {
            "id": "ingest-writes",
            "topic": "ingest/{org}/#",
            "action": "publish",
            "effect": "allow",
            "principal": "service:ingest",
        },
        {"id": "own", "topic": "users/{user_id}/#", "action": "all", "effect": "allow"},
    ],
}


def accounts(key_digest: str) -> ServiceAccounts:
    return ServiceAccounts(
        [
            load_dataclass(
                ServiceAccountConfig,
                {"id": "ingest", "api_key_sha256": key_digest, "bindings": {"org": "acme"}},
                "t",
            ),
            load_dataclass(
                ServiceAccountConfig,
                {
                    "id": "reporter",
                    "jwt_issuer": DEV_ISSUER,
                    "jwt_subject": "client-reporter",
                    "bindings": {"org": "acme"},
                },
                "t",
            ),
        ]
    )


def test_api_key_accepts_only_the_right_key() -> None:
    key, digest = generate_api_key()
    sa = accounts(digest)
    ok = sa.check_api_key("service:ingest", key.encode())
    assert ok is not None and ok.ok and ok.identity is not None
    assert ok.identity.principal == "service:ingest"
    assert ok.identity.binding("org").values == ("acme",)
    assert ok.identity.binding("user_id").values == ("service:ingest",)
    wrong = sa.check_api_key("service:ingest", (key + "x").encode())
    assert wrong is not None and wrong.reason == API_KEY_REFUSED and wrong.identity is None
    assert wrong.connack_v5 == 0x86 and wrong.connack_v3 == 0x04
    empty = sa.check_api_key("service:ingest", None)
    assert empty is not None and empty.reason == API_KEY_REFUSED
    unknown = sa.check_api_key("service:nobody", key.encode())
    assert unknown is not None and unknown.reason == UNKNOWN_SERVICE_ACCOUNT
    # Not an API-key login: the JWT path decides.
    assert sa.check_api_key("alice", key.encode()) is None
    assert sa.check_api_key(None, key.encode()) is None
    assert sa.check_api_key("service:reporter", b"eyJ...") is None


def test_digest_is_sha256_hex_and_keys_are_long() -> None:
    key, digest = generate_api_key()
    assert key.startswith("mqttgate_sk_") and len(key) >= 12 + 43
    assert digest == api_key_digest(key) and len(digest) == 64
    assert generate_api_key()[0] != key


async def test_client_credentials_jwt_becomes_the_service(idp: DevIdp) -> None:
    sa = accounts(api_key_digest("unused"))
    auth = Authenticator(
        load_dataclass(AuthConfig, _auth_table(idp), "t"),
    )
    async with auth:
        creds = Credentials(
            password=idp.token("client-reporter", org_id="other").encode(),
            username=None,
            header_token=None,
            query_token=None,
            client_id="c1",
            remote_address="127.0.0.1",
        )
        result = await auth.authenticate(creds)
        assert result.ok and result.identity is not None
        mapped = sa.for_jwt(result.identity)
        assert mapped.ok and mapped.identity is not None and mapped.account_id == "reporter"
        assert mapped.identity.principal == "service:reporter"
        # Fixed bindings, never the token's claims.
        assert mapped.identity.binding("org").values == ("acme",)
        assert mapped.identity.binding("client_id").values == ("c1",)
        assert mapped.identity.expires_at == result.identity.expires_at
        # An end user passes unchanged; one whose user_id claims "service:" is refused.
        user = await auth.authenticate(
            Credentials(
                password=idp.token("alice").encode(),
                username=None,
                header_token=None,
                query_token=None,
                client_id="c2",
                remote_address="127.0.0.1",
            )
        )
        assert user.identity is not None
        passed = sa.for_jwt(user.identity)
        assert passed.identity is user.identity and passed.account_id is None
        squatter = await auth.authenticate(
            Credentials(
                password=idp.token("service:ingest").encode(),
                username=None,
                header_token=None,
                query_token=None,
                client_id="c3",
                remote_address="127.0.0.1",
            )
        )
        assert squatter.identity is not None
        assert sa.for_jwt(squatter.identity).reason == RESERVED_USER_ID


def test_principal_rules_see_the_service() -> None:
    key, digest = generate_api_key()
    sa = accounts(digest)
    policy = compile_policy(POLICY, source="t")
    service = sa.check_api_key("service:ingest", key.encode())
    assert service is not None and service.identity is not None
    assert policy.authorize_publish(service.identity, "ingest/acme/x", 1, False).allowed
    # Its fixed org binds the pattern: another org's topics are not its to write.
    assert not policy.authorize_publish(service.identity, "ingest/other/x", 1, False).allowed


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"id": "Bad Id", "api_key_sha256": "0" * 64}, "id"),
        ({"id": "x"}, "api_key_sha256"),
        ({"id": "x", "api_key_sha256": "abc"}, "api_key_sha256"),
        ({"id": "x", "jwt_issuer": "https://i"}, "jwt_issuer"),
        ({"id": "x", "api_key_sha256": "0" * 64, "bindings": {"user_id": "u"}}, "bindings.user_id"),
        ({"id": "x", "api_key_sha256": "0" * 64, "bindings": {"org": "a/b"}}, "bindings.org"),
        ({"id": "x", "api_key": "secret"}, "api_key"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_dataclass(ServiceAccountConfig, table, "gw.toml", "service_accounts[0]")
    assert err.value.key == f"service_accounts[0].{key}"


def test_duplicate_ids_refused() -> None:
    one = ServiceAccountConfig(id="x", api_key_sha256="0" * 64)
    with pytest.raises(ConfigError, match="duplicate id"):
        ServiceAccounts([one, one])


def _auth_table(idp: DevIdp) -> dict[str, Any]:
    from gateway.auth.devidp import DEV_AUDIENCE

    return {
        "issuers": [
            {"issuer": DEV_ISSUER, "audiences": [DEV_AUDIENCE], "jwks_file": str(idp.jwks_file)}
        ]
    }


# -- end to end: a service connects like any client and is audited like any client ------


@pytest.fixture
def wired(
    tmp_path: Path, certs: Path, broker: Mosquitto, idp: DevIdp
) -> Iterator[tuple[GatewayThread, str, Path]]:
    key, digest = generate_api_key()
    policy_path = tmp_path / "policy.json"
    policy_path.write_text(json.dumps(POLICY))
    audit_log = tmp_path / "audit.jsonl"
    cfg = write_config(
        tmp_path / "gw.toml",
        certs=certs,
        upstream_port=broker.port,
        extra=idp.auth_toml()
        + f'\n[acl]\npolicy = "{policy_path}"\n\n[audit]\nlog_file = "{audit_log}"\n',
    )
    config = load_config(cfg)
    sa = accounts(digest)
    gt = GatewayThread(config, idp=idp, certs=certs, policy_path=policy_path)
    gt._thread.start()

    async def boot() -> Gateway:
        from gateway.server.authn_factory import build_authenticator

        gw = Gateway(config, ServiceAwareAuthenticator(build_authenticator(config).auth, sa))
        await gw.start()
        return gw

    gt.gateway = gt.call(boot())
    yield gt, key, audit_log
    gt.stop()


def _audit(gt: GatewayThread, path: Path) -> list[dict[str, Any]]:
    assert gt.gateway is not None
    gt.gateway.audit_pipeline.flush()
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_service_connects_with_api_key_and_publishes_under_principal_rule(
    wired: tuple[GatewayThread, str, Path], broker: Mosquitto
) -> None:
    gt, key, audit_log = wired
    with BrokerSpy(broker.port, "ingest/#") as spy:
        svc = gt.client(version=5, username="service:ingest", password=key, client_id="ing-1")
        svc.connect()
        svc.publish("ingest/acme/readings", b"42", qos=1)
        assert spy.seen() == [("ingest/acme/readings", b"42", False)]
        # An end user is not the service: the principal rule does not apply to them.
        user = gt.client(version=5, sub="alice", client_id="a-1")
        user.connect()
        user.publish("ingest/acme/readings", b"forged", qos=1)
        assert spy.seen() == []
        user.disconnect()
        svc.disconnect()
    bad = gt.client(
        version=5,
        username="service:ingest",
        password=key[:-1] + ("B" if key.endswith("A") else "A"),
    )
    rc = bad.connect(expect_ok=False)
    assert rc.value == 0x86
    time.sleep(0.2)
    records = _audit(gt, audit_log)
    connects = [r for r in records if r["type"] == "connection"]
    ok = [r for r in connects if r["identity"].get("principal") == "service:ingest"]
    assert ok and ok[0]["outcome"] == "allow" and ok[0]["identity"]["org"] == "acme"
    assert any(r["outcome"] == "deny" and r["reason"] == API_KEY_REFUSED for r in connects)
    decisions = [r for r in records if r["type"] == "decision" and r["action"] == "publish"]
    assert any(
        r["rule_id"] == "ingest-writes"
        and r["verdict"] == "allow"
        and r["user_id"] == "service:ingest"
        for r in decisions
    )
    assert any(r["verdict"] == "deny" and r["user_id"] == "alice" for r in decisions)


def test_service_connects_with_client_credentials_jwt(
    wired: tuple[GatewayThread, str, Path], broker: Mosquitto, idp: DevIdp
) -> None:
    gt, _, _ = wired
    # "reporter" has no principal rule for ingest/: the JWT service is itself, not "ingest".
    svc = gt.client(version=5, token=idp.token("client-reporter"), client_id="rep-1")
    svc.connect()
    assert gt.gateway is not None
    [conn] = [c for c in gt.gateway.connections]
    assert conn.session.identity is not None
    assert conn.session.identity.principal == "service:reporter"
    svc.disconnect()
