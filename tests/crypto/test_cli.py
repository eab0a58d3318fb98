"""`gpaisec keys` and `gpaisec weights seal | unseal | open` end to end (local key provider)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from gpaisec.audit.models import AuditEntry
from gpaisec.cli.app import main
from gpaisec.crypto.memory import is_memory_backed
from gpaisec.weights.sample import write_sample_model
from gpaisec.workspace import Workspace
from tests.access.test_accounts import fast_hashes  # noqa: F401
from tests.access.test_decide import active_grant
from tests.access.test_grants import make_world

SHM = Path("/dev/shm")  # noqa: S108 - the memory-backed file system under test


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[str, Path]:
    monkeypatch.setenv("GPAISEC_KEK_PASSPHRASE", "a long test passphrase for the key file")
    home = str(tmp_path / "ws")
    rc, _, err = run(capsys, "-w", home, "keys", "init", "--provider", "local", "--label", "weights-kek")
    assert rc == 0, err
    model = tmp_path / "atlas-v3"
    write_sample_model(model, seed=4, layers=1, dim=64, shards=2)
    rc, out, err = run(capsys, "-w", home, "weights", "seal", str(model), "-f", "json")
    assert rc == 0, err
    out_dir = Path(json.loads(out)["output"])
    assert json.loads(out)["files"] == 3
    return home, out_dir


def test_seal_leaves_no_plaintext_and_unseal_goes_to_memory_only(
    sealed: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, out_dir = sealed
    model = tmp_path / "atlas-v3"
    for f in out_dir.iterdir():
        assert f.read_bytes()[:8] == b"GPAISEAL"
        assert model.joinpath(f.name.removesuffix(".sealed")).read_bytes()[:64] not in f.read_bytes()
    assert (Path(home) / "keys" / "kek.json").stat().st_mode & 0o077 == 0
    # A disk file system is refused; nothing is written.
    rc, _, err = run(capsys, "-w", home, "weights", "unseal", str(out_dir), "--into", str(tmp_path / "plain"))
    assert rc == 3
    assert "memory-backed" in err
    assert not (tmp_path / "plain").exists()
    if not is_memory_backed(SHM):
        pytest.skip("/dev/shm is not tmpfs here")
    target = SHM / f"gpaisec-test-{os.getpid()}"
    try:
        rc, _, err = run(capsys, "-w", home, "weights", "unseal", str(out_dir), "--into", str(target))
        assert rc == 0, err
        for f in model.iterdir():
            assert (target / f.name).read_bytes() == f.read_bytes()
    finally:
        for f in target.glob("*"):
            f.unlink()
        target.rmdir()
    ws = Workspace.open(home)
    with ws.reader() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    ws.close()
    assert "key.create" in actions
    assert "key.wrap" in actions
    assert "key.unwrap" in actions
    assert actions.count("weights.unseal") == 1


def test_open_needs_an_allow_and_leaves_nothing_behind(
    sealed: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not is_memory_backed(SHM):
        pytest.skip("/dev/shm is not tmpfs here")
    home, out_dir = sealed
    ws = Workspace.open(home)
    world = make_world(ws)
    ws.close()
    (Path(home) / "session").write_text(json.dumps({"username": "alice", "token": world.tokens["alice"]}))
    seen = tmp_path / "seen.json"
    probe = (
        "import json, os, sys; d = sys.argv[1]; "
        f"json.dump({{'dir': d, 'files': sorted(os.listdir(d))}}, open({str(seen)!r}, 'w'))"
    )
    cmd = [
        "-w",
        home,
        "weights",
        "open",
        str(out_dir),
        "--version",
        "atlas:v3",
        "--",
        sys.executable,
        "-c",
        probe,
        "{dir}",
    ]
    rc, _, err = run(capsys, *cmd)
    assert rc == 6  # no grant yet: denied, and the command never ran
    assert "forbid-no-grant" in err or "grant" in err
    assert not seen.exists()
    ws = Workspace.open(home)
    active_grant(ws, world.tokens)
    ws.close()
    rc, _, err = run(capsys, *cmd)
    assert rc == 0, err
    got = json.loads(seen.read_text())
    assert got["files"] == sorted(p.name for p in (tmp_path / "atlas-v3").iterdir())
    assert not Path(got["dir"]).exists()  # wiped when the command exited


def test_checks_for_4_2_3_and_4_2_4(
    sealed: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpaisec.compliance import assessment
    from gpaisec.compliance.verdicts import Verdict
    from gpaisec.weights import registry

    home, out_dir = sealed
    ws = Workspace.open(home)
    try:
        registry.add_model(ws, "atlas")
        with ws.transaction() as s:
            registry.create_version(s, ws, "atlas", "v3")
        registry.add_device(ws, "gpu-1", managed=True)  # no disk encryption
        registry.add_location(ws, "gpu-1:/srv/atlas", approve=["atlas:v3"])
        got = {r.item_id: r for r in assessment.assess(ws).results}
        assert got["A4.2(3)"].verdict is Verdict.not_met
        assert any("gpu-1:/srv/atlas" in r and "plaintext" in r for r in got["A4.2(3)"].reasons)
        assert any("local key file" in r for r in got["A4.2(3)"].reasons)
        registry.add_location(ws, "gpu-1:/srv/sealed", storage="sealed", approve=["atlas:v3"])
        registry.revoke_location(ws, "gpu-1:/srv/atlas", "atlas:v3")
        got = {r.item_id: r for r in assessment.assess(ws).results}
        assert got["A4.2(3)"].verdict is Verdict.partly_met  # sealed, but the KEK is only a local key file
        assert got["A4.2(4)"].verdict is Verdict.no_evidence
    finally:
        ws.close()
    rc, _, err = run(
        capsys,
        "-w",
        home,
        "weights",
        "unseal",
        str(out_dir),
        "--into",
        str(tmp_path / "disk"),
        "--unsafe-persistent",
    )
    assert rc == 0, err
    ws = Workspace.open(home)
    try:
        got = {r.item_id: r for r in assessment.assess(ws).results}
        assert got["A4.2(4)"].verdict is Verdict.not_met
        assert any("Unsafe" in r for r in got["A4.2(4)"].reasons)
    finally:
        ws.close()


def test_serve_config_is_audited_and_refuses_missing_limits(
    sealed: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    home, out_dir = sealed
    base = ["-w", home, "weights", "serve-config", "atlas:v3", "--sealed-dir", str(out_dir)]
    rc, _, err = run(capsys, *base, "--bytes-per-second", "0", "--max-bytes-per-grant", "100")
    assert rc == 2, err
    rc, out, err = run(
        capsys, *base, "--bytes-per-second", "1000000", "--max-bytes-per-grant", "5000000", "-f", "json"
    )
    assert rc == 0, err
    assert json.loads(out)["max_bytes_per_grant"] == 5000000
    assert (Path(home) / "serving.json").stat().st_mode & 0o077 == 0
    ws = Workspace.open(home)
    with ws.reader() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    ws.close()
    assert actions.count("serving.configure") == 1
