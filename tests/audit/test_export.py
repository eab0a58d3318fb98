"""Export and the offline verifier: round trip, and every kind of damage to an export is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gpaisec.audit import offline, service
from gpaisec.audit._keys import LocalSigner, PublicKey
from gpaisec.errors import AuditIntegrityError, GpaisecError, InputError
from gpaisec.workspace import Workspace

from .conftest import make_engine
from .helpers import batch_start, build_log

BATCHES = [1, 4, 1, 2, 7, 1, 3]  # 19 entries, 7 checkpoints
SIZE = sum(BATCHES)
EXAMPLES = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, PublicKey]]:
    """One SQLite log, exported once; tests damage copies of it."""
    from gpaisec.audit.models import AUDIT_TABLES

    home = tmp_path_factory.mktemp("export-ws")
    url = f"sqlite:///{home / 'gpaisec.db'}"
    engine = make_engine(url, AUDIT_TABLES)
    ws = Workspace(home=home, database_url=url, engine=engine, actor="test:alice")
    build_log(ws, BATCHES)
    dest = home / "export"
    service.export(ws, dest)
    key = service.trusted_key(ws)
    assert key is not None
    yield dest, key
    engine.dispose()


def damaged(src: Path, change: Callable[[Path], None], key: PublicKey | None = None) -> GpaisecError:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "export"
        shutil.copytree(src, copy)
        change(copy)
        with pytest.raises(GpaisecError) as caught:
            offline.verify_export(copy, public_key=key)
        return caught.value


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_export_round_trip_on_each_backend(audit_ws: Workspace, tmp_path: Path) -> None:
    build_log(audit_ws, [3, 1, 5], bulk=True)
    result = service.export(audit_ws, tmp_path / "out")
    assert sorted(p.name for p in result.path.iterdir()) == [
        "checkpoints.jsonl",
        "entries.jsonl",
        "leaf-hashes.txt",
        "manifest.json",
        "manifest.sig",
        "public-key.pem",
    ]
    check = offline.verify_export(result.path, public_key=service.trusted_key(audit_ws))
    db = service.verify(audit_ws)
    assert (check.result.tree_size, check.result.root, check.result.checkpoints) == (9, db.root, 3)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["vkey"].startswith(manifest["origin"] + "+")
    assert not list(tmp_path.glob(".out.tmp-*"))  # the temporary directory was renamed, not left over


def test_export_refuses_an_existing_directory(audit_ws: Workspace, tmp_path: Path) -> None:
    build_log(audit_ws, [1])
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="already exists"):
        service.export(audit_ws, tmp_path / "out")


def test_export_of_an_empty_log(audit_ws: Workspace, tmp_path: Path) -> None:
    audit_ws.audit_signer()
    service.export(audit_ws, tmp_path / "out")
    assert offline.verify_export(tmp_path / "out").result.tree_size == 0


def test_pinned_key_must_match(exported: tuple[Path, PublicKey]) -> None:
    path, key = exported
    offline.verify_export(path, public_key=key)
    other = LocalSigner.generate().public_key
    with pytest.raises(AuditIntegrityError, match="not signed by the pinned key"):
        offline.verify_export(path, public_key=other)


def test_offline_verifier_imports_no_database_code() -> None:
    code = (
        "import sys, gpaisec.audit.offline, gpaisec.audit.merkle\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'psycopg')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_offline_main_and_module(
    exported: tuple[Path, PublicKey], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = exported
    (tmp_path / "key.pem").write_bytes(key.pem())
    assert offline.main([str(path), "--public-key", str(tmp_path / "key.pem")]) == 0
    assert f"{SIZE} entries" in capsys.readouterr().out
    assert offline.main([str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["tree_size"] == SIZE
    run = subprocess.run(
        [sys.executable, "-m", "gpaisec.audit.offline", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_truncated_export_is_one_clear_line(exported: tuple[Path, PublicKey], tmp_path: Path) -> None:
    path, _ = exported
    copy = tmp_path / "export"
    shutil.copytree(path, copy)
    data = (copy / "entries.jsonl").read_bytes()
    cut = len(b"".join(lines(copy / "entries.jsonl")[:11])) + 17  # inside entry 11
    (copy / "entries.jsonl").write_bytes(data[:cut])
    run = subprocess.run(
        [sys.executable, "-m", "gpaisec.audit.offline", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 4
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert "entry 11 (entries.jsonl line 12): truncated" in run.stderr


@EXAMPLES
@given(pos=st.integers(0, 10**6), value=st.integers(0, 255))
def test_any_changed_entry_byte_is_named(exported: tuple[Path, PublicKey], pos: int, value: int) -> None:
    path, _ = exported
    data = (path / "entries.jsonl").read_bytes()
    i = pos % len(data)
    new = value if value != data[i] else (value + 1) % 256
    expected = data[:i].count(b"\n")

    def change(copy: Path) -> None:
        (copy / "entries.jsonl").write_bytes(data[:i] + bytes([new]) + data[i + 1 :])

    err = damaged(path, change)
    assert isinstance(err, AuditIntegrityError)
    assert err.first_bad == expected, err.message
    assert f"entry {expected} " in err.message


@EXAMPLES
@given(cut=st.integers(0, 10**6))
def test_any_truncation_is_named(exported: tuple[Path, PublicKey], cut: int) -> None:
    path, _ = exported
    data = (path / "entries.jsonl").read_bytes()
    cut %= len(data)  # strictly shorter
    expected = data[:cut].count(b"\n")
    err = damaged(path, lambda c: (c / "entries.jsonl").write_bytes(data[:cut]))
    assert isinstance(err, AuditIntegrityError)
    assert err.first_bad == expected, err.message


@EXAMPLES
@given(
    op=st.sampled_from(["swap", "delete", "duplicate", "insert", "move"]),
    i=st.integers(0, SIZE - 1),
    j=st.integers(0, SIZE - 1),
)
def test_any_reordering_is_named(exported: tuple[Path, PublicKey], op: str, i: int, j: int) -> None:
    path, _ = exported
    rows = lines(path / "entries.jsonl")
    new = list(rows)
    if op == "swap":
        if i == j:
            return
        a, b = sorted((i, j))
        new[a], new[b] = new[b], new[a]
        expected = a
    elif op == "delete":
        del new[i]
        expected = i
    elif op == "duplicate":
        new.insert(i + 1, rows[i])
        expected = i + 1
    elif op == "insert":  # a copy of entry j placed at position i
        new.insert(i, rows[j])
        expected = i if i != j else i + 1
    else:  # entry i moved to position j
        if i == j:
            return
        item = new.pop(i)
        new.insert(j, item)
        expected = min(i, j)
    err = damaged(path, lambda c: (c / "entries.jsonl").write_bytes(b"".join(new)))
    assert isinstance(err, AuditIntegrityError)
    assert err.first_bad == expected, err.message


@EXAMPLES
@given(
    name=st.sampled_from(
        ["leaf-hashes.txt", "checkpoints.jsonl", "manifest.json", "manifest.sig", "public-key.pem"]
    ),
    pos=st.integers(0, 10**6),
    value=st.integers(0, 255),
)
@example(name="public-key.pem", pos=148, value=47)  # once made cryptography raise UnsupportedAlgorithm
def test_any_changed_byte_elsewhere_fails(
    exported: tuple[Path, PublicKey], name: str, pos: int, value: int
) -> None:
    path, _ = exported
    data = (path / name).read_bytes()
    i = pos % len(data)
    new = value if value != data[i] else (value + 1) % 256

    err = damaged(path, lambda c: (c / name).write_bytes(data[:i] + bytes([new]) + data[i + 1 :]))
    assert isinstance(err, AuditIntegrityError), err.message
    if name == "leaf-hashes.txt" and err.first_bad is not None:
        assert err.first_bad == data[:i].count(b"\n")


@pytest.mark.parametrize(
    "name",
    [
        "entries.jsonl",
        "leaf-hashes.txt",
        "checkpoints.jsonl",
        "manifest.json",
        "manifest.sig",
        "public-key.pem",
    ],
)
def test_missing_file(exported: tuple[Path, PublicKey], name: str) -> None:
    path, key = exported
    err = damaged(path, lambda c: (c / name).unlink(), key=key)
    assert isinstance(err, AuditIntegrityError)
    assert name in err.message


def test_forged_entry_with_its_leaf_hash_is_caught_by_its_checkpoint(
    exported: tuple[Path, PublicKey],
) -> None:
    """Rewriting an entry and its leaf hash together: the signed root names the batch's first entry."""
    from gpaisec.audit import merkle

    path, _ = exported
    seq = 10  # in the batch of 7 that starts at entry 8
    rows = lines(path / "entries.jsonl")
    leaves = lines(path / "leaf-hashes.txt")
    forged = rows[seq].replace(b"test:user", b"test:ghost")
    rows[seq] = forged
    leaves[seq] = merkle.leaf_hash(forged[:-1]).hex().encode() + b"\n"

    def change(copy: Path) -> None:
        (copy / "entries.jsonl").write_bytes(b"".join(rows))
        (copy / "leaf-hashes.txt").write_bytes(b"".join(leaves))

    err = damaged(path, change)
    assert isinstance(err, AuditIntegrityError)
    assert err.first_bad == batch_start(BATCHES, seq) == 8


def test_dropped_latest_checkpoint(exported: tuple[Path, PublicKey]) -> None:
    path, _ = exported
    cps = lines(path / "checkpoints.jsonl")
    err = damaged(path, lambda c: (c / "checkpoints.jsonl").write_bytes(b"".join(cps[:-1])))
    assert isinstance(err, AuditIntegrityError)
    assert err.first_bad == SIZE - BATCHES[-1]


def test_proof_files_verify_offline(
    audit_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(audit_ws, [2, 3, 4])
    key = service.trusted_key(audit_ws)
    assert key is not None
    (tmp_path / "key.pem").write_bytes(key.pem())
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(service.prove(audit_ws, 3).to_json()))
    assert offline.verify_proof_file(proof, key)["seq"] == 3
    assert offline.main(["--proof", str(proof), "--public-key", str(tmp_path / "key.pem")]) == 0
    cons = tmp_path / "cons.json"
    cons.write_text(json.dumps(service.consistency(audit_ws, 2, 9).to_json()))
    assert offline.verify_proof_file(cons, key)["new_size"] == 9
    # A tampered proof: another entry's bytes, or a proof checked with the wrong key.
    data = json.loads(proof.read_text())
    data["entry"] = data["entry"].replace("thing:3", "thing:4")
    proof.write_text(json.dumps(data))
    with pytest.raises(AuditIntegrityError, match="entry 3"):
        offline.verify_proof_file(proof, key)
    assert offline.main(["--proof", str(proof), "--public-key", str(tmp_path / "key.pem")]) == 4
    with pytest.raises(AuditIntegrityError, match="not signed by the trusted key"):
        offline.verify_proof_file(cons, LocalSigner.generate().public_key)
