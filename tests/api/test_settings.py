"""Settings refuse default and weak secrets and insecure cookies off loopback."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gpaisec.api import Settings
from gpaisec.api.settings import SECRET_FILE, is_loopback
from gpaisec.errors import ConfigError


def test_the_secret_is_generated_once_into_the_workspace(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = Settings.load(keys, environ={})
    assert stat.S_IMODE((keys / SECRET_FILE).stat().st_mode) == 0o600
    assert Settings.load(keys, environ={}).session_secret == first.session_secret
    assert len(first.session_secret) >= 32
    assert first.secure_cookies
    assert "session_secret" not in repr(first)


def test_a_readable_secret_file_is_refused(tmp_path: Path) -> None:
    Settings.load(tmp_path, environ={})
    (tmp_path / SECRET_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        Settings.load(tmp_path, environ={})


@pytest.mark.parametrize(
    "value",
    ["", "00" * 16, "6368616e676574686973" * 4, "ab" * 40],  # too short, all zeros, "changethis"..., one byte
)
def test_weak_or_placeholder_secrets_are_refused(tmp_path: Path, value: str) -> None:
    env = {"GPAISEC_SESSION_SECRET": value} if value else {}
    if not value:
        with pytest.raises(ConfigError):
            Settings(session_secret=b"short")
        return
    with pytest.raises(ConfigError):
        Settings.load(tmp_path, environ=env)


def test_a_good_secret_from_the_environment(tmp_path: Path) -> None:
    value = bytes(range(40)).hex()
    assert Settings.load(tmp_path, environ={"GPAISEC_SESSION_SECRET": value}).session_secret == bytes(
        range(40)
    )
    assert not (tmp_path / SECRET_FILE).exists()


def test_development_cookies_only_on_loopback(tmp_path: Path) -> None:
    assert not Settings.load(tmp_path, dev=True, host="127.0.0.1", environ={}).secure_cookies
    assert not Settings.load(tmp_path, host="::1", environ={"GPAISEC_API_DEV": "1"}).secure_cookies
    with pytest.raises(ConfigError, match="loopback"):
        Settings.load(tmp_path, dev=True, host="0.0.0.0", environ={})
    assert is_loopback("localhost")
    assert not is_loopback("10.0.0.1")
