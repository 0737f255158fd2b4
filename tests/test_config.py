"""Configuration loading: typed sections, errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return p


def test_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, '[listener]\nport = 9443\nallowed_origins = ["https://app.example.com"]\n')
    )
    assert cfg.listener.port == 9443
    assert cfg.listener.path == "/mqtt"
    assert cfg.listener.allowed_origins == ("https://app.example.com",)
    assert cfg.upstream.host == "127.0.0.1" and cfg.upstream.port == 1883
    assert cfg.path("certs/x.pem") == Path("certs/x.pem")
    assert cfg.path("/abs/x.pem") == Path("/abs/x.pem")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[listener]\nportt = 1\n", "listener.portt", "unknown key"),
        ("[listener]\nport = 'x'\n", "listener.port", "expected an integer"),
        ("[listener]\nport = 70000\n", "listener.port", "between 0 and 65535"),
        (
            "[listener]\nallowed_origins = 'https://a'\n",
            "listener.allowed_origins",
            "expected a list",
        ),
        (
            "[listener]\nallowed_origins = ['a.com']\n",
            "listener.allowed_origins[0]",
            "scheme://host",
        ),
        ("[upstream]\nurl = 'http://x:1'\n", "upstream.url", "mqtt://host:port"),
        (
            "[upstream]\npassword_env = 'MQTTGATE_TEST_UNSET_VAR'\n",
            "upstream.password_env",
            "is not set",
        ),
        ("[limits]\nmax_packet_size = true\n", "limits.max_packet_size", "expected an integer"),
        ("[nope]\n", "nope", "unknown key"),
        ("[logging]\nlevel = 'loud'\n", "logging.level", "one of"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, text: str, key: str, reason: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(p) in str(info.value)


def test_bad_toml_names_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[listener\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_config_check_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTTGATE_TEST_UPW", "hunter2")
    p = write(tmp_path, "[upstream]\nusername = 'gw'\npassword_env = 'MQTTGATE_TEST_UPW'\n")
    assert main(["config", "check", str(p)]) == 0
    out = capsys.readouterr().out
    assert '"username": "gw"' in out
    assert "hunter2" not in out


def test_config_check_bad_file_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "[limits]\nmax_connections = 0\n")
    assert main(["config", "check", str(p)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "limits.max_connections" in err[0]
