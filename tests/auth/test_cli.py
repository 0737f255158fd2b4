"""``mqttgate keys dev`` and ``mqttgate token``: a new user can mint a token the gateway accepts."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.auth import cli
from gateway.auth.devidp import DEV_AUDIENCE, DEV_ISSUER, parse_ttl

from .conftest import creds


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mqttgate")
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


async def test_keys_then_token_then_connect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_auth: Any
) -> None:
    out = tmp_path / "certs"
    assert run(["keys", "dev", "--out", str(out)]) == 0
    private = out / "dev-signing.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (out / "dev-signing.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    jwks = json.loads((out / "dev-jwks.json").read_text())
    assert len(jwks["keys"]) == 1 and jwks["keys"][0]["kid"] and "d" not in jwks["keys"][0]
    capsys.readouterr()

    argv = ["token", "--key", str(private), "--sub", "u1", "--claim", "email=a@b.c"]
    argv += ["--claim", "agent_id=a1", "--claim-json", 'roles=["x","y"]', "--ttl", "1h"]
    assert run(argv) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == DEV_ISSUER and claims["aud"] == DEV_AUDIENCE
    assert claims["exp"] - claims["iat"] == 3600 and claims["roles"] == ["x", "y"]
    assert jwt.get_unverified_header(token)["kid"] == jwks["keys"][0]["kid"]

    auth = await make_auth(
        {
            "issuers": [
                {
                    "issuer": DEV_ISSUER,
                    "audiences": [DEV_AUDIENCE],
                    "jwks_file": str(out / "dev-jwks.json"),
                }
            ],
            "claims": {"role": "roles"},
        }
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.as_dict() == {
        "user_id": "u1",
        "email": "a@b.c",
        "agent_id": "a1",
        "role": ["x", "y"],
        "client_id": "c1",
    }


def test_keys_dev_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "dev", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "dev-signing.pem").read_bytes()
    assert run(["keys", "dev", "--out", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "dev-signing.pem").read_bytes() == first
    assert run(["keys", "dev", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "dev-signing.pem").read_bytes() != first
    assert stat.S_IMODE((tmp_path / "dev-signing.pem").stat().st_mode) == 0o600


def test_token_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["token", "--key", str(tmp_path / "none.pem"), "--sub", "u"]) == 2
    assert run(["keys", "dev", "--out", str(tmp_path)]) == 0
    key = str(tmp_path / "dev-signing.pem")
    assert run(["token", "--key", key, "--sub", "u", "--ttl", "forever"]) == 2
    assert run(["token", "--key", key, "--sub", "u", "--claim", "novalue"]) == 2
    assert "invalid ttl" in capsys.readouterr().err


def test_custom_issuer_and_no_audience(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["keys", "dev", "--out", str(tmp_path)])
    capsys.readouterr()
    key = str(tmp_path / "dev-signing.pem")
    assert (
        run(["token", "--key", key, "--sub", "u", "--issuer", "https://x", "--audience", ""]) == 0
    )
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["iss"] == "https://x" and "aud" not in claims


@pytest.mark.parametrize(
    "text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds
