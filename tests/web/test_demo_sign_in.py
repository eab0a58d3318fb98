"""`gpaisec demo --serve`'s admin: credentials only in a 0600 file; they sign in to the dashboard."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gpaisec import demo
from gpaisec.access import accounts, device_keys
from gpaisec.access.passwords import HashParams
from gpaisec.api import create_app
from gpaisec.cli.app import main
from gpaisec.workspace import DB_FILE, Workspace
from tests.api.conftest import test_settings
from tests.web.conftest import form_csrf


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "HASH_PARAMS", HashParams.unsafe_fast())


def test_the_demo_admin_signs_in_with_the_file_and_the_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "demo"
    demo.prepare_home(home)
    ws = Workspace.open(home, f"sqlite:///{home / DB_FILE}", actor="demo:setup")
    path = demo.add_demo_admin(ws, home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = json.loads(path.read_text())
    assert len(creds["password"]) >= 15
    # The audit log never holds the password.
    assert creds["password"] not in (home / DB_FILE).read_bytes().decode("latin-1")

    assert main(["--workspace", str(home), "demo", "--code"]) == 0
    code = capsys.readouterr().out.strip()
    assert code.isdigit()
    assert len(code) == 6

    # The demo laptop's private key is in the workspace (0600); its public key is enrolled.
    key_file = Path(creds["device_key"])
    assert key_file.parent.parent == home / "keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = device_keys.load_signer(key_file)

    with TestClient(create_app(ws, test_settings())) as http:
        csrf = form_csrf(http.get("/login").text)
        challenge = http.post("/api/v1/session/device-challenge").json()
        proof = key.prove(
            challenge["challenge_id"], base64.b64decode(challenge["challenge"]), creds["username"]
        )
        r = http.post(
            "/login",
            data={
                "csrf_token": csrf,
                "username": creds["username"],
                "password": creds["password"],
                "totp_code": code,
                "device": creds["device"],
                "device_fingerprint": proof.fingerprint,
                "device_challenge_id": proof.challenge_id,
                "device_signature": base64.b64encode(proof.signature).decode(),
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        assert http.get("/").status_code == 200
        assert http.get("/access/reviews").status_code == 200  # admin and reviewer


def test_demo_code_refuses_a_directory_that_is_not_a_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(tmp_path), "demo", "--code"]) == 3
    assert "not a gpaisec demo workspace" in capsys.readouterr().err
    demo.prepare_home(tmp_path / "d")
    assert main(["--workspace", str(tmp_path / "d"), "demo", "--code"]) == 3
    assert "demo --serve" in capsys.readouterr().err
