"""`gpaisec audit …` through the real CLI entry point, on each backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpaisec.cli.app import main
from gpaisec.workspace import Workspace


@pytest.fixture
def home(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated workspace with a small log: 3 transactions of 1, 2 and 3 entries."""
    from gpaisec.audit.service import record

    monkeypatch.setenv("GPAISEC_DATABASE_URL", database_url)
    monkeypatch.setenv("GPAISEC_ACTOR", "test:cli")
    ws = Workspace.open(tmp_path / "ws")
    try:
        for n in (1, 2, 3):
            with ws.transaction() as s:
                for i in range(n):
                    record(s, actor=ws.actor, action="device.add", object=f"device:d{n}{i}", details={"n": n})
    finally:
        ws.close()
    return tmp_path / "ws"


def run(home: Path, *args: str) -> int:
    return main(["--workspace", str(home), "audit", *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_verify(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "verify") == 0
    assert "6 entries, 3 signed checkpoints" in capsys.readouterr().out
    assert run(home, "verify", "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, dict)
    assert (data["verified"], data["tree_size"], data["checkpoints"]) == (True, 6, 3)


def test_log(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "log", "--format", "json", "--limit", "2") == 0
    data = out_json(capsys)
    assert isinstance(data, list)
    assert [d["seq"] for d in data] == [4, 5]
    assert run(home, "log", "--object", "device:d21", "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, list)
    assert [d["seq"] for d in data] == [2]
    assert run(home, "log", "--actor", "test:cli", "--action", "device.*", "--since", "2000-01-01") == 0
    assert "device:d30" in capsys.readouterr().out
    assert run(home, "log", "--since", "yesterday") == 2


def test_prove_and_check_proof(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proof = tmp_path / "proof.json"
    assert run(home, "prove", "2", "--checkpoint", "3", "--output", str(proof)) == 0
    assert json.loads(proof.read_text())["tree_size"] == 3
    key = home / "keys" / "audit-ed25519.pub.pem"
    assert run(home, "check-proof", str(proof), "--public-key", str(key), "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, dict)
    assert (data["verified"], data["seq"]) == (True, 2)
    assert run(home, "prove", "5", "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, dict)
    assert data["format"] == "gpaisec-audit-inclusion-proof/1"
    assert run(home, "prove", "5", "--checkpoint", "3") == 2  # not covered: bad input
    assert run(home, "prove", "0", "--checkpoint", "4") == 5  # no such checkpoint


def test_consistency(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "consistency", "1", "6", "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, dict)
    assert (data["old_size"], data["new_size"]) == (1, 6)
    out = tmp_path / "cons.json"
    assert run(home, "consistency", "3", "6", "-o", str(out)) == 0
    key = home / "keys" / "audit-ed25519.pub.pem"
    assert run(home, "check-proof", str(out), "--public-key", str(key)) == 0


def test_export_and_verify_export(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "audit-export"
    assert run(home, "export", str(dest), "--format", "json") == 0
    data = out_json(capsys)
    assert isinstance(data, dict)
    assert data["tree_size"] == 6
    key = home / "keys" / "audit-ed25519.pub.pem"
    assert run(home, "verify", "--export", str(dest), "--public-key", str(key)) == 0
    assert run(home, "export", str(dest)) == 2  # exists
    entries = dest / "entries.jsonl"
    entries.write_bytes(entries.read_bytes().replace(b"device:d31", b"device:d99"))
    capsys.readouterr()
    assert run(home, "verify", "--export", str(dest)) == 4
    err = capsys.readouterr().err
    assert "entry 4 (entries.jsonl line 5)" in err
    assert "Traceback" not in err


def test_tampered_database_is_exit_4(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import text

    ws = Workspace.open(home)
    try:
        with ws.engine.begin() as conn:
            conn.execute(text("UPDATE audit_entry SET actor = 'test:mallory' WHERE seq = 3"))
    finally:
        ws.close()
    capsys.readouterr()
    assert run(home, "verify") == 4
    err = capsys.readouterr().err
    assert "entry 3" in err
    assert "Traceback" not in err
