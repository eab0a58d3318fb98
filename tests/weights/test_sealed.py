"""Sealed copies: recognised by their bytes, matched by the plaintext digest in their header (never
decrypted), judged like plaintext copies at the same severity (the header is only a claim); hostile
headers are problems."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import struct
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gpaisec.crypto.files import open_file, seal_file
from gpaisec.crypto.keys import secret_from_env
from gpaisec.crypto.local import Argon2Params, LocalKeyProvider
from gpaisec.integrity import HashParams
from gpaisec.weights import registry
from gpaisec.weights.artifacts import register_version
from gpaisec.weights.discovery import discover
from gpaisec.weights.fingerprint import FileDigests, digest_file, fingerprint_file
from gpaisec.weights.formats import (
    Format,
    SealedHeaderError,
    SealedProblem,
    parse_sealed_header,
    read_sealed_header,
    sniff,
)
from gpaisec.weights.matching import Evidence, MatchIndex, MatchKind, RegisteredArtifact, RegisteredFile
from gpaisec.weights.models import ArtifactFile, Finding, Sighting
from gpaisec.weights.walk import ProblemKind, scan
from gpaisec.workspace import Workspace
from tests.weights.conftest import make_model, reshard, write_shards

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "weights"
FAST_ARGON = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)


def _load_make_sealed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sealed", FIXTURES / "make_sealed.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_sealed = _load_make_sealed()
HOSTILE = sorted(make_sealed.EXPECTED.items())


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalKeyProvider:
    monkeypatch.setenv("GPAISEC_TEST_PASSPHRASE", "correct horse battery staple")
    p = LocalKeyProvider(tmp_path / "keys", secret_from_env("GPAISEC_TEST_PASSPHRASE"), params=FAST_ARGON)
    p.create("weights")
    return p


# --------------------------------------------------------------------------------------------------
# The header parser


def test_committed_fixtures_are_what_the_script_builds() -> None:
    assert make_sealed.main(["--check"]) == 0


@pytest.mark.parametrize(("name", "problem"), HOSTILE)
def test_hostile_headers_are_refused_with_their_problem(name: str, problem: str) -> None:
    path = FIXTURES / "sealed" / name
    assert sniff(path) is Format.SEALED  # recognised by the magic, whatever the rest says
    tracemalloc.start()
    try:
        with pytest.raises(SealedHeaderError) as caught:
            read_sealed_header(path)
        with pytest.raises(SealedHeaderError):
            fingerprint_file(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.problem is SealedProblem(problem)
    assert name in caught.value.message
    assert peak < 4 << 20  # nothing sized by the header's lengths was allocated


def test_a_real_sealed_file_parses_to_its_plaintext_digest(
    tmp_path: Path, provider: LocalKeyProvider
) -> None:
    plain = tmp_path / "w.bin"
    plain.write_bytes(bytes(range(256)) * 300)
    for algorithm, digest in (
        ("blake3", blake3(plain.read_bytes()).hexdigest()),
        ("sha256", hashlib.sha256(plain.read_bytes()).hexdigest()),
    ):
        out = tmp_path / f"w.{algorithm}.sealed"
        seal_file(plain, out, provider, "weights", digest=algorithm, chunk_size=4096)
        header = read_sealed_header(out)
        assert (header.digest_algorithm, header.plaintext_digest) == (algorithm, digest)
        assert header.plaintext_length == plain.stat().st_size
        assert header.sealed_size == out.stat().st_size
        assert fingerprint_file(out).sealed == header


@pytest.fixture(scope="module")
def sealed_sample(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("sealed-sample")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPAISEC_TEST_PASSPHRASE", "correct horse battery staple")
        p = LocalKeyProvider(d / "keys", secret_from_env("GPAISEC_TEST_PASSPHRASE"), params=FAST_ARGON)
        p.create("weights")
        (d / "p").write_bytes(bytes(range(256)) * 40)
        seal_file(d / "p", d / "p.sealed", p, "weights", chunk_size=4096)
    return (d / "p.sealed").read_bytes()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_mutation_of_a_header_is_parsed_or_refused_cleanly(
    sealed_sample: bytes, data: st.DataObject
) -> None:
    """Flip bytes of the core, then cut or extend the file: never anything but SealedHeaderError,
    and what parses is self-consistent with the file's size."""
    buf = bytearray(sealed_sample)
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        at = data.draw(st.integers(0, 95), label="at")
        buf[at] ^= data.draw(st.integers(1, 255), label="xor")
    size = data.draw(st.sampled_from([len(buf), 0, 8, 95, 96, len(buf) - 1, len(buf) + 1]), label="size")
    size = data.draw(st.one_of(st.just(size), st.integers(0, 2 * len(buf))), label="size2")
    try:
        header = parse_sealed_header(bytes(buf[:size]), size)
    except SealedHeaderError as exc:
        problem: SealedProblem | None = exc.problem
    else:
        problem = None
        assert header.sealed_size == size
        assert header.plaintext_length <= size
    if bytes(buf[:96]) == sealed_sample[:96] and size == len(sealed_sample):
        assert problem is None  # an intact header of a whole file always parses


def test_a_scan_reports_hostile_sealed_files_and_goes_on(tmp_path: Path, provider: LocalKeyProvider) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "sealed", tree / "hostile")
    model = tmp_path / "model"
    (shard,) = write_shards(model, reshard(make_model(5), 1), "model.safetensors")
    registered = RegisteredFile(str(shard), digest_file(shard, sha256=True))
    index = MatchIndex([RegisteredArtifact("atlas", "v3", (registered,))])
    (tree / "zz").mkdir()
    seal_file(shard, tree / "zz" / "copy.sealed", provider, "weights")
    report = scan(tree, index, min_size=0)
    malformed = {Path(p.path).name for p in report.problems if p.kind is ProblemKind.MALFORMED_WEIGHTS}
    assert malformed == set(make_sealed.EXPECTED)
    (match,) = report.discovery.matches
    assert (Path(match.path).name, match.kind, match.evidence) == (
        "copy.sealed",
        MatchKind.SEALED_COPY,
        Evidence.HEADER,
    )


# --------------------------------------------------------------------------------------------------
# Matching (pure)


def test_matching_needs_the_same_algorithm_digest_and_length(
    tmp_path: Path, provider: LocalKeyProvider
) -> None:
    model = tmp_path / "model"
    shards = write_shards(model, reshard(make_model(6), 2), "m{i}.safetensors")
    digests = [digest_file(p, sha256=True) for p in shards]
    for p, d in zip(shards, digests, strict=True):
        assert d.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert d.digest == blake3(p.read_bytes()).hexdigest()
    with_sha = MatchIndex(
        [
            RegisteredArtifact(
                "atlas", "v3", tuple(RegisteredFile(str(p), d) for p, d in zip(shards, digests, strict=True))
            )
        ]
    )
    without_sha = MatchIndex(
        [
            RegisteredArtifact(
                "atlas",
                "v3",
                tuple(
                    RegisteredFile(str(p), FileDigests(d.fingerprint, d.digest, d.tensors))
                    for p, d in zip(shards, digests, strict=True)
                ),
            )
        ]
    )
    out = tmp_path / "out"
    out.mkdir()
    seal_file(shards[0], out / "a.b3", provider, "weights", digest="blake3")
    seal_file(shards[1], out / "b.sha", provider, "weights", digest="sha256")
    found = {Path(m.path).name: m for m in scan(out, with_sha, min_size=0).discovery.matches}
    assert set(found) == {"a.b3", "b.sha"}
    assert found["a.b3"].registered_path == str(shards[0])
    assert found["b.sha"].registered_path == str(shards[1])
    assert all(m.format is Format.SEALED and m.sealed for m in found.values())
    # Both shards sealed: the version is found, as it would be from plaintext copies.
    (version,) = scan(out, with_sha, min_size=0).discovery.findings
    assert version.found
    assert version.evidence is Evidence.HEADER
    # Without the registered file's SHA-256 the SHA-256-sealed copy cannot be recognised.
    assert {Path(m.path).name for m in scan(out, without_sha, min_size=0).discovery.matches} == {"a.b3"}
    # Another file's plaintext, sealed, matches nothing.
    other = write_shards(tmp_path / "other", reshard(make_model(7), 1), "x.safetensors")[0]
    (tmp_path / "lone").mkdir()
    seal_file(other, tmp_path / "lone" / "x.sealed", provider, "weights")
    assert scan(tmp_path / "lone", with_sha, min_size=0).discovery.matches == ()


# --------------------------------------------------------------------------------------------------
# Discovery in the registry (SQLite and PostgreSQL)


@pytest.fixture
def world(workspace: Workspace, tmp_path: Path) -> tuple[Workspace, Path, Path]:
    """atlas:v3 (unreleased) registered on managed gpu-node-17, approved at .../ckpt/atlas."""
    node = tmp_path / "gpu-node-17"
    v3 = node / "srv" / "ckpt" / "atlas" / "v3"
    write_shards(v3, reshard(make_model(3, layers=4, dim=128), 2), "model-{i:05d}-of-{n:05d}.safetensors")
    registry.add_model(workspace, "atlas", training_flop=3.2e25)
    registry.add_site(workspace, "dc-frankfurt-1")
    registry.add_device(workspace, "gpu-node-17", site="dc-frankfurt-1", managed=True, disk_encrypted=True)
    registry.add_device(workspace, "laptop-9", managed=False)
    register_version(workspace, "atlas", "v3", source=v3)
    registry.add_location(workspace, f"gpu-node-17:{node / 'srv' / 'ckpt' / 'atlas'}", approve=["atlas:v3"])
    registry.add_location(workspace, f"gpu-node-17:{node / 'scratch'}")
    return workspace, tmp_path, v3


def _sightings(ws: Workspace, scan_id: str) -> list[Sighting]:
    with ws.reader() as s:
        return list(s.scalars(select(Sighting).where(Sighting.scan_id == scan_id).order_by(Sighting.path)))


def test_registration_keeps_both_whole_file_digests(world: tuple[Workspace, Path, Path]) -> None:
    ws, _root, v3 = world
    with ws.reader() as s:
        files = [f for f in s.scalars(select(ArtifactFile)) if f.fingerprint is not None]
    assert len(files) == 2
    for f in files:
        data = (v3 / f.path).read_bytes()
        digests = FileDigests.from_json(f.fingerprint)
        assert f.digest == "blake3:" + blake3(data).hexdigest()  # the manifest's own digest
        assert digests.digest == blake3(data).hexdigest()
        assert digests.sha256 == hashlib.sha256(data).hexdigest()


def test_a_sha256_manifest_is_reused_for_the_sha256(workspace: Workspace, tmp_path: Path) -> None:
    registry.add_model(workspace, "atlas")
    (shard,) = write_shards(tmp_path / "v1", reshard(make_model(9), 1), "m.safetensors")
    register_version(workspace, "atlas", "v1", source=tmp_path / "v1", params=HashParams(algorithm="sha256"))
    with workspace.reader() as s:
        (f,) = s.scalars(select(ArtifactFile))
    assert f.digest == "sha256:" + hashlib.sha256(shard.read_bytes()).hexdigest()
    assert f.fingerprint is not None
    assert f.fingerprint["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()


def test_sealed_copies_at_the_approved_location_are_no_finding(
    world: tuple[Workspace, Path, Path], provider: LocalKeyProvider
) -> None:
    ws, root, v3 = world
    sealed_dir = v3.parent / "v3-sealed"
    sealed_dir.mkdir()
    for i, shard in enumerate(sorted(v3.glob("*.safetensors"))):
        seal_file(
            shard, sealed_dir / f"{shard.name}.sealed", provider, "weights", digest=("blake3", "sha256")[i]
        )
    result = discover(ws, [root / "gpu-node-17"], device="gpu-node-17", confirm=True)
    assert result.new_findings == ()
    sealed = [m for m in result.matches if m["kind"] == "sealed-copy"]
    assert len(sealed) == 2
    assert {m["evidence"] for m in sealed} == {"sealed-header"}  # --confirm never decrypts
    assert all(m["location"] and m["location"].endswith("ckpt/atlas") for m in sealed)
    rows = [r for r in _sightings(ws, result.scan_id) if r.match == "sealed-copy"]
    assert [r.format for r in rows] == ["gpaisec-sealed"] * 2
    assert not any(r.confirmed for r in rows)
    plain = [r for r in _sightings(ws, result.scan_id) if r.match != "sealed-copy"]
    assert {r.format for r in plain} == {"safetensors"}
    assert all(r.confirmed for r in plain)


def test_a_sealed_copy_at_an_unapproved_location_is_the_same_finding(
    world: tuple[Workspace, Path, Path], provider: LocalKeyProvider
) -> None:
    ws, root, v3 = world
    shard = sorted(v3.glob("*.safetensors"))[0]
    (root / "gpu-node-17" / "scratch").mkdir()
    seal_file(shard, root / "gpu-node-17" / "scratch" / "eval.bin", provider, "weights", digest="sha256")
    shutil.copy(shard, root / "gpu-node-17" / "scratch" / "plain.bin")
    result = discover(ws, [root / "gpu-node-17" / "scratch"], device="gpu-node-17")
    by_path = {Path(f["summary"].rsplit("(", 1)[-1].rstrip(")")).name: f for f in result.new_findings}
    assert set(by_path) == {"eval.bin", "plain.bin"}
    assert by_path["plain.bin"]["kind"] == by_path["eval.bin"]["kind"] == "unauthorised_copy"
    assert by_path["plain.bin"]["severity"] == "high"
    # Not lowered: "sealed" is what an unauthenticated header says (plaintext could follow it).
    assert by_path["eval.bin"]["severity"] == "high"
    assert "sealed copy" in by_path["eval.bin"]["summary"]
    assert by_path["plain.bin"]["summary"].startswith("copy of unreleased")
    with ws.reader() as s:
        finding = s.get(Finding, by_path["eval.bin"]["id"])
        assert finding is not None
        assert finding.details["sealed"] is True
        assert finding.details["match"] == "sealed-copy"


def test_a_sealed_copy_on_an_unmanaged_laptop_opens_the_same_findings(
    world: tuple[Workspace, Path, Path], provider: LocalKeyProvider
) -> None:
    ws, root, v3 = world
    laptop = root / "laptop-9"
    laptop.mkdir()
    for shard in sorted(v3.glob("*.safetensors")):
        seal_file(shard, laptop / (shard.stem[::-1] + ".dat"), provider, "weights")
    # Hostile sealed files beside them, large enough to be opened: one cut short, one whose header
    # claims another length. They are problems; the scan goes on and still finds the real copies.
    good = sorted(laptop.iterdir())[0].read_bytes()
    (laptop / "cut.sealed").write_bytes(good[: len(good) // 2])
    liar = bytearray(good)
    struct.pack_into(">Q", liar, 20, 1 << 40)
    (laptop / "liar.sealed").write_bytes(bytes(liar))
    result = discover(ws, [laptop], device="laptop-9")
    assert {Path(m["path"]).suffix for m in result.matches} == {".dat"}
    assert {m["kind"] for m in result.matches} == {"sealed-copy"}
    assert {(f["kind"], f["severity"]) for f in result.new_findings} == {
        ("unmanaged_device_copy", "critical"),
        ("unregistered_location", "critical"),
    }
    assert all("sealed copy" in f["summary"] for f in result.new_findings)
    assert any(v["version"] == "v3" and v["found"] for v in result.versions_found)
    problems = {Path(p["path"]).name: p for p in result.problems}
    assert set(problems) == {"cut.sealed", "liar.sealed"}
    assert all(p["kind"] == "malformed-weights" for p in problems.values())
    assert "size-mismatch" in problems["liar.sealed"]["detail"]
    # The sealed copies really are the registered plaintext (checked here with the key; discovery
    # itself never decrypts).
    for copy in laptop.glob("*.dat"):
        with open_file(copy, provider) as reader:
            plaintext = b"".join(reader)
        assert plaintext in {p.read_bytes() for p in v3.glob("*.safetensors")}
