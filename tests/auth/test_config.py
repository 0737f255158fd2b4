"""The [auth] table: loading, cross-field rules and secret resolution, with errors naming keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.auth import AuthConfig, Authenticator
from gateway.configload import ConfigError

from .conftest import auth_config


def error_of(table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        auth_config(table)
    return info.value


def test_defaults() -> None:
    cfg = auth_config({})
    assert cfg == AuthConfig()
    assert cfg.token_sources == ("password", "header", "query")
    assert cfg.leeway_s == 30.0
    assert cfg.client_id.template == "{user_id}:{client_id}"
    assert cfg.effective_claims()["session_id"] == ("session_id", "sid")


@pytest.mark.parametrize(
    "table,key,words",
    [
        ({"bogus": 1}, "auth.bogus", "unknown key"),
        ({"token_sources": ["cookie"]}, "auth.token_sources[0]", "one of"),
        ({"token_sources": []}, "auth.token_sources", "at least one"),
        ({"leeway_s": 3600}, "auth.leeway_s", "between"),
        ({"claims": {"client_id": "cid"}}, "auth.claims.client_id", "MQTT CONNECT"),
        (
            {"issuers": [{"issuer": "https://a", "audiences": ["x"]}]},
            "auth.issuers[0].jwks_url",
            "one key source",
        ),
        (
            {
                "issuers": [
                    {
                        "issuer": "https://a",
                        "audiences": ["x"],
                        "jwks_url": "https://a/j",
                        "jwks_file": "f",
                    }
                ]
            },
            "auth.issuers[0].jwks_url",
            "exactly one",
        ),
        (
            {
                "issuers": [
                    {"issuer": "https://a", "audiences": ["x"], "jwks_url": "http://a.example/j"}
                ]
            },
            "auth.issuers[0].jwks_url",
            "https",
        ),
        (
            {"issuers": [{"issuer": "https://a", "jwks_url": "https://a/j"}]},
            "auth.issuers[0].audiences",
            "audience",
        ),
        (
            {
                "issuers": [
                    {
                        "issuer": "https://a",
                        "audiences": ["x"],
                        "jwks_url": "https://a/j",
                        "algorithms": ["HS256"],
                    }
                ]
            },
            "auth.issuers[0].algorithms",
            "shared secret",
        ),
        (
            {
                "issuers": [
                    {
                        "issuer": "https://a",
                        "audiences": ["x"],
                        "secret_env": "S",
                        "algorithms": ["RS256"],
                    }
                ]
            },
            "auth.issuers[0].algorithms",
            "only HS",
        ),
        (
            {
                "issuers": [
                    {
                        "issuer": "https://a",
                        "audiences": ["x"],
                        "jwks_url": "https://a/j",
                        "algorithms": ["none"],
                    }
                ]
            },
            "auth.issuers[0].algorithms",
            "refused",
        ),
        ({"issuers": [{"preset": "firebase"}]}, "auth.issuers[0].project", "project"),
        (
            {"issuers": [{"preset": "auth0", "domain": "t.auth0.com"}]},
            "auth.issuers[0].audiences",
            "API",
        ),
        ({"issuers": [{"preset": "okta"}]}, "auth.issuers[0].preset", "one of"),
        ({"webhooks": [{"url": "http://hooks.example.com/a"}]}, "auth.webhooks[0].url", "https"),
        (
            {"webhooks": [{"url": "https://h/a", "forward_headers": ["Cookie"]}]},
            "auth.webhooks[0].forward_headers",
            "cookies",
        ),
        ({"client_id": {"template": "{user_id}"}}, "auth.client_id.template", "client_id"),
        ({"client_id": {"mode": "steal"}}, "auth.client_id.mode", "one of"),
        ({"rate_limit": {"burst": 0}}, "auth.rate_limit.burst", "at least 1"),
        (
            {"jwks": {"min_refresh_s": 10, "max_refresh_s": 5}},
            "auth.jwks.min_refresh_s",
            "max_refresh_s",
        ),
    ],
)
def test_errors_name_the_key(table: dict[str, Any], key: str, words: str) -> None:
    err = error_of(table)
    assert err.key == key, str(err)
    assert words in err.reason
    assert err.file == "test.toml"


def test_secret_env_missing_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    cfg = auth_config(
        {"issuers": [{"issuer": "https://a", "audiences": ["x"], "secret_env": "NOPE_SECRET"}]}
    )
    with pytest.raises(ConfigError, match="NOPE_SECRET is not set"):
        Authenticator(cfg)


def test_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_SECRET", "tooshort-secret-value")
    cfg = auth_config(
        {"issuers": [{"issuer": "https://a", "audiences": ["x"], "secret_env": "SHORT_SECRET"}]}
    )
    with pytest.raises(ConfigError) as info:
        Authenticator(cfg)
    assert "shorter than 32 bytes" in str(info.value)
    assert "tooshort-secret-value" not in str(info.value)


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("f" * 40 + "\n")
    cfg = auth_config(
        {"issuers": [{"issuer": "https://a", "audiences": ["x"], "secret_file": str(path)}]}
    )
    auth = Authenticator(cfg)
    assert auth.readiness()["ready"] is True
    with pytest.raises(ConfigError, match="cannot read"):
        Authenticator(
            auth_config(
                {
                    "issuers": [
                        {
                            "issuer": "https://a",
                            "audiences": ["x"],
                            "secret_file": str(tmp_path / "no"),
                        }
                    ]
                }
            )
        )


def test_bad_key_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="no usable signing keys"):
        Authenticator(
            auth_config(
                {"issuers": [{"issuer": "https://a", "audiences": ["x"], "jwks_file": str(bad)}]}
            )
        )
    pem = tmp_path / "bad.pem"
    pem.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM"):
        Authenticator(
            auth_config(
                {
                    "issuers": [
                        {"issuer": "https://a", "audiences": ["x"], "public_key_file": str(pem)}
                    ]
                }
            )
        )


def test_toml_round_trip() -> None:
    import tomllib

    text = """
    token_sources = ["header", "password"]
    leeway_s = 10
    [claims]
    org = "app_metadata.org_id"
    session_id = ["sid", "session_id"]
    [[issuers]]
    preset = "supabase"
    project = "abcd"
    [[issuers]]
    preset = "oidc"
    issuer = "https://login.example.com/realms/x"
    audiences = ["mqtt"]
    [[webhooks]]
    url = "https://auth.example.com/mqtt"
    forward_headers = ["X-Device"]
    [client_id]
    mode = "require"
    [rate_limit]
    burst = 5
    """
    cfg = auth_config(tomllib.loads(text))
    assert cfg.token_sources == ("header", "password")
    assert cfg.issuers[0].preset == "supabase" and cfg.issuers[1].audiences == ("mqtt",)
    assert cfg.effective_claims()["session_id"] == ("sid", "session_id")
    assert cfg.effective_claims()["user_id"] == "sub"
    assert cfg.webhooks[0].forward_headers == ("X-Device",)
    assert cfg.client_id.mode == "require" and cfg.rate_limit.burst == 5
