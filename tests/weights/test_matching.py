"""Matching scanned files against registered artifacts: copies, renames, re-shards, and no false matches."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.errors import InputError
from gpaisec.weights.fingerprint import SamplingScheme, digest_file, fingerprint_file
from gpaisec.weights.matching import (
    Discovery,
    Evidence,
    MatchIndex,
    MatchKind,
    RegisteredArtifact,
    RegisteredFile,
    ScannedFile,
    SchemeMismatchError,
)
from tests.weights.conftest import (
    Tensor,
    make_model,
    reshard,
    safetensors_bytes,
    write_safetensors,
    write_shards,
)

SMALL = 4096  # min_match_bytes for the small test models


def register(
    model: str, version: str, paths: list[Path], artifact_id: str | None = None
) -> RegisteredArtifact:
    return RegisteredArtifact(
        model=model,
        version=version,
        artifact_id=artifact_id,
        files=tuple(RegisteredFile(str(p), digest_file(p, require_weights=True)) for p in paths),
    )


def scanned(*paths: Path, confirm: bool = False) -> list[ScannedFile]:
    return [ScannedFile(str(p), fingerprint_file(p), digest_file(p) if confirm else None) for p in paths]


def match_and_confirm(index: MatchIndex, paths: list[Path]) -> tuple[Discovery, Discovery]:
    first = index.match(scanned(*paths))
    to_confirm = [Path(p) for p in first.paths_to_confirm()]
    return first, index.match(scanned(*to_confirm, confirm=True))


@pytest.fixture
def registered(tmp_path: Path) -> tuple[dict[str, Tensor], list[Path], MatchIndex]:
    model = make_model(100, layers=4, dim=64)
    shards = write_shards(
        tmp_path / "registry" / "frontier", reshard(model, 3), "model-{i:05d}-of-{n:05d}.safetensors"
    )
    index = MatchIndex([register("frontier", "v1", shards, "art-1")], min_match_bytes=SMALL)
    return model, shards, index


def test_exact_copies_moved_and_renamed(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    _model, shards, index = registered
    moved = tmp_path / "home" / "alice" / "Downloads" / shards[0].name
    renamed = tmp_path / "tmp" / ".cache" / "blob-9f31"
    moved.parent.mkdir(parents=True)
    renamed.parent.mkdir(parents=True)
    shutil.copyfile(shards[0], moved)
    shutil.copyfile(shards[1], renamed)
    first, confirmed = match_and_confirm(index, [moved, renamed, shards[2]])
    kinds = {Path(m.path).name: (m.kind, m.evidence, m.at_registered_path) for m in confirmed.matches}
    assert kinds == {
        moved.name: (MatchKind.FILE_COPY, Evidence.CONFIRMED, False),
        renamed.name: (MatchKind.RENAMED_COPY, Evidence.CONFIRMED, False),
        shards[2].name: (MatchKind.FILE_COPY, Evidence.CONFIRMED, True),
    }
    assert {m.evidence for m in first.matches} == {Evidence.SAMPLED}
    renamed_match = next(m for m in confirmed.matches if m.path == str(renamed))
    assert renamed_match.registered_path == str(shards[1])
    assert renamed_match.artifact_id == "art-1"
    (finding,) = confirmed.findings
    assert finding.found
    assert finding.coverage == pytest.approx(1.0)
    assert finding.evidence is Evidence.CONFIRMED


@pytest.mark.parametrize("n_files", [1, 2, 5, 11])
def test_resharded_renamed_shuffled_copies_are_found(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex], n_files: int
) -> None:
    model, _shards, index = registered
    stolen = reshard(model, n_files, rename=lambda n: "model." + n.upper(), seed=n_files)
    paths = write_shards(tmp_path / "exfil", stolen, "chunk{i}.dat")
    first, confirmed = match_and_confirm(index, paths)
    assert {m.kind for m in confirmed.matches} == {MatchKind.TENSOR_COPY}
    assert {m.evidence for m in confirmed.matches} == {Evidence.CONFIRMED}
    (finding,) = confirmed.findings
    assert (finding.model, finding.version, finding.found) == ("frontier", "v1", True)
    assert finding.coverage == pytest.approx(1.0)
    assert set(finding.paths) == {
        str(p) for p in paths if any(t.nbytes >= 1024 for t in fingerprint_file(p).tensors)
    }
    assert first.findings[0].coverage == pytest.approx(1.0)


def test_partial_copy_reports_coverage_but_is_not_found(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    model, _shards, index = registered
    names = ["embed.weight", "layers.0.attn.q.weight", "layers.0.mlp.up.weight"]
    path = write_safetensors(tmp_path / "partial.bin", {n: model[n] for n in names})
    discovery = index.match(scanned(path))
    (match,) = discovery.matches
    assert match.kind is MatchKind.TENSOR_COPY
    assert match.tensors_matched == 3
    assert match.candidate_fraction == pytest.approx(1.0)
    (finding,) = discovery.findings
    assert not finding.found
    assert 0.05 < finding.coverage < 0.5


def test_tensors_merged_with_foreign_ones_and_trailing_bytes(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    model, _shards, index = registered
    foreign = make_model(999, layers=1)
    mixed = {**{f"ours.{n}": t for n, t in model.items()}, **{f"theirs.{n}": t for n, t in foreign.items()}}
    path = tmp_path / "merged.safetensors"
    path.write_bytes(safetensors_bytes(mixed, trailing=b"\0" * 100))
    fingerprint = fingerprint_file(path)
    assert fingerprint.anomalies == ("trailing-data",)
    (match,) = index.match([ScannedFile(str(path), fingerprint)]).matches
    assert match.kind is MatchKind.TENSOR_COPY
    assert 0.5 < match.candidate_fraction < 1.0


def test_unrelated_files_of_same_size_and_format_do_not_match(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    _model, shards, index = registered
    # Same architecture, same tensor names and shapes, hence same header and size; other values.
    twin = make_model(101, layers=4, dim=64)
    twin_paths = write_shards(
        tmp_path / "other-lab", reshard(twin, 3), "model-{i:05d}-of-{n:05d}.safetensors"
    )
    for ours, theirs in zip(shards, twin_paths, strict=True):
        assert ours.stat().st_size == theirs.stat().st_size
    # Random bytes of the exact size, with the same safetensors header.
    imposters = []
    for i, shard in enumerate(shards):
        data = bytearray(shard.read_bytes())
        start = 8 + int.from_bytes(data[:8], "little")
        data[start:] = random.Random(i).randbytes(len(data) - start)
        imposter = tmp_path / "imposters" / shard.name
        imposter.parent.mkdir(exist_ok=True)
        imposter.write_bytes(bytes(data))
        imposters.append(imposter)
    discovery = index.match(scanned(*twin_paths, *imposters))
    assert discovery.matches == ()
    assert discovery.findings == ()


def test_shared_constant_tensors_are_not_evidence(tmp_path: Path) -> None:
    ours = {
        "norm": Tensor("F32", (4096,), b"\0\0\x80\x3f" * 4096),
        "w": Tensor("F32", (64, 64), random.randbytes(16384)),
    }
    theirs = {
        "ln": Tensor("F32", (4096,), b"\0\0\x80\x3f" * 4096),
        "v": Tensor("F32", (64, 64), random.randbytes(16384)),
    }
    index = MatchIndex([register("m", "1", [write_safetensors(tmp_path / "ours", ours)])], min_match_bytes=0)
    assert index.match(scanned(write_safetensors(tmp_path / "theirs", theirs))).matches == ()


def test_sampled_match_with_an_edit_outside_the_samples_is_reported_modified(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    model, _shards, index = registered
    edited = dict(model)
    data = bytearray(model["embed.weight"].data)  # 32 KiB: sampled blocks at 0, 9.3k, 18.6k, 28k
    data[6000] ^= 0x01
    edited["embed.weight"] = Tensor("BF16", model["embed.weight"].shape, bytes(data))
    path = write_safetensors(tmp_path / "finetuned.safetensors", edited)
    first, confirmed = match_and_confirm(index, [path])
    assert first.matches[0].evidence is Evidence.SAMPLED
    (match,) = confirmed.matches
    assert match.evidence is Evidence.MODIFIED
    assert match.tensors_modified == 1
    assert confirmed.findings[0].evidence is Evidence.MODIFIED


def test_non_safetensors_formats_match_as_whole_files(tmp_path: Path, hostile: Path) -> None:
    gguf = tmp_path / "registry" / "frontier-q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF\x03\0\0\0" + random.Random(5).randbytes(300_000))
    index = MatchIndex([register("frontier", "v1-gguf", [gguf])])
    copy = tmp_path / "x" / "notes.txt"
    copy.parent.mkdir()
    shutil.copyfile(gguf, copy)
    same_size = tmp_path / "x" / "other.gguf"
    same_size.write_bytes(b"GGUF\x03\0\0\0" + random.Random(6).randbytes(300_000))
    _first, confirmed = match_and_confirm(index, [copy, same_size])
    (match,) = confirmed.matches
    assert (match.kind, match.evidence, match.path) == (MatchKind.RENAMED_COPY, Evidence.CONFIRMED, str(copy))
    assert match.matched_bytes == gguf.stat().st_size
    assert confirmed.findings[0].found


def test_shared_tensors_between_versions_count_for_both(tmp_path: Path) -> None:
    base = make_model(7, layers=2)
    tuned = dict(base)
    tuned["head.weight"] = Tensor(
        "BF16", base["head.weight"].shape, random.Random(8).randbytes(len(base["head.weight"].data))
    )
    index = MatchIndex(
        [
            register("m", "base", [write_safetensors(tmp_path / "base.safetensors", base)]),
            register("m", "tuned", [write_safetensors(tmp_path / "tuned.safetensors", tuned)]),
        ],
        min_match_bytes=SMALL,
    )
    copy = write_safetensors(
        tmp_path / "copy" / "x.safetensors", {"renamed." + n: t for n, t in tuned.items()}
    )
    discovery = index.match(scanned(copy))
    coverage = {f.version: f.coverage for f in discovery.findings}
    assert coverage["tuned"] == pytest.approx(1.0)
    assert 0.5 < coverage["base"] < 1.0


def test_tied_weights_count_once(tmp_path: Path) -> None:
    rng = random.Random(11)
    shared = Tensor("F32", (32, 32), rng.randbytes(4096))
    other = Tensor("F32", (32, 32), rng.randbytes(4096))
    path = write_safetensors(tmp_path / "tied", {"embed": shared, "lm_head": shared, "w": other})
    index = MatchIndex([register("m", "1", [path])], min_match_bytes=0)
    assert index.total_bytes(0) == 8192
    copy = write_safetensors(tmp_path / "copy", {"a": shared})
    (finding,) = index.match(scanned(copy)).findings
    assert finding.coverage == pytest.approx(0.5)


def test_min_match_bytes_suppresses_small_isolated_overlaps(tmp_path: Path) -> None:
    model = make_model(12, layers=6, dim=64)
    index = MatchIndex(
        [register("m", "1", [write_safetensors(tmp_path / "m.safetensors", model)])],
        min_match_bytes=64 * 1024,
    )
    small = write_safetensors(tmp_path / "one-tensor", {"x": model["layers.0.attn.q.weight"]})  # 8 KiB
    assert index.match(scanned(small)).matches == ()
    big = write_safetensors(tmp_path / "several", {n: model[n] for n in list(model)[:12]})
    assert len(index.match(scanned(big)).matches) == 1


def test_index_properties_and_validation(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    _model, shards, index = registered
    assert index.min_candidate_size is not None
    assert index.min_candidate_size <= min(p.stat().st_size for p in shards)
    assert MatchIndex([]).min_candidate_size is None
    assert MatchIndex([]).match(scanned(*shards)) == Discovery()
    with pytest.raises(InputError, match="found_coverage"):
        MatchIndex([], found_coverage=0)
    with pytest.raises(InputError, match="min_match_bytes"):
        MatchIndex([], min_match_bytes=-1)


def test_scheme_mismatch_is_refused(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    _model, shards, index = registered
    other = SamplingScheme(file_block=4096)
    with pytest.raises(SchemeMismatchError, match="different sampling scheme"):
        index.match([ScannedFile(str(shards[0]), fingerprint_file(shards[0], scheme=other))])
    mixed = RegisteredArtifact(
        "m", "2", (RegisteredFile(str(shards[0]), digest_file(shards[0], scheme=other)),)
    )
    with pytest.raises(SchemeMismatchError, match="different sampling schemes"):
        MatchIndex([*index.artifacts, mixed])


def test_artifacts_and_results_serialise(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex]
) -> None:
    _model, shards, index = registered
    artifact = index.artifacts[0]
    assert RegisteredArtifact.from_json(json.loads(json.dumps(artifact.to_json()))) == artifact
    weird = tmp_path / "caf\udcffe.bin"  # undecodable byte in the name
    shutil.copyfile(shards[0], weird)
    discovery = index.match(scanned(weird))
    text = json.dumps(discovery.to_json())
    assert "caf\\\\xffe.bin" in text
    with pytest.raises(Exception, match="malformed"):
        RegisteredArtifact.from_json({"model": "m", "version": 1, "files": []})


# --------------------------------------------------------------------------------------------------
# Property: coverage equals the distinctive bytes of the copied subset, however it is sharded.


@given(st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_coverage_is_the_fraction_of_distinctive_bytes_copied(
    tmp_path: Path, registered: tuple[dict[str, Tensor], list[Path], MatchIndex], data: st.DataObject
) -> None:
    model, _shards, index = registered
    names = data.draw(st.lists(st.sampled_from(sorted(model)), min_size=1, unique=True))
    n_files = data.draw(st.integers(1, 4))
    subset = {n: model[n] for n in names}
    directory = tmp_path / f"prop-{random.getrandbits(64):x}"
    paths = write_shards(directory, reshard(subset, min(n_files, len(subset)), seed=1), "s{i}")
    discovery = index.match(scanned(*paths))
    distinctive = {
        (t.dtype, t.shape, t.data): len(t.data)
        for t in model.values()
        if len(set(t.data)) > 4 and len(t.data) >= 1024
    }
    copied = {(t.dtype, t.shape, t.data): len(t.data) for t in subset.values()}
    expected = sum(size for key, size in copied.items() if key in distinctive) / sum(distinctive.values())
    coverage = discovery.findings[0].coverage if discovery.findings else 0.0
    if discovery.findings:
        assert coverage == pytest.approx(expected)
    else:
        assert expected < index.found_coverage


def test_registered_files_need_a_whole_file_digest(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(14))
    artifact = RegisteredArtifact("m", "1", (RegisteredFile(str(path), digest_file(path, whole_file=False)),))
    with pytest.raises(InputError, match="no whole-file digest"):
        MatchIndex([artifact])


def test_small_tensors_are_left_out_of_evidence_when_large_ones_dominate(tmp_path: Path) -> None:
    rng = random.Random(21)
    big = {f"big{i}": Tensor("F32", (128, 128), rng.randbytes(65536)) for i in range(8)}
    small = {f"small{i}": Tensor("F32", (1024,), rng.randbytes(4096)) for i in range(4)}  # 3 %
    artifact = register("m", "1", [write_safetensors(tmp_path / "reg" / "m.safetensors", {**big, **small})])
    smalls = write_safetensors(tmp_path / "smalls", small)
    bigs = write_safetensors(tmp_path / "bigs", big)

    index = MatchIndex([artifact], min_match_bytes=0)
    assert index.min_candidate_size == 65536 + 10  # the walker need not open smaller files
    assert index.match(scanned(smalls)).matches == ()
    (finding,) = index.match(scanned(bigs)).findings
    assert finding.coverage == pytest.approx(1.0)

    everything = MatchIndex([artifact], min_match_bytes=0, min_evidence_bytes=0)
    assert everything.min_candidate_size == 4096 + 10
    assert len(everything.match(scanned(smalls)).matches) == 1
    assert everything.match(scanned(bigs)).findings[0].coverage == pytest.approx(512 / 528)


def test_an_artifact_of_small_tensors_keeps_them_as_evidence(tmp_path: Path) -> None:
    rng = random.Random(22)
    tensors = {f"t{i}": Tensor("F32", (1024,), rng.randbytes(4096)) for i in range(6)}
    index = MatchIndex([register("tiny", "1", [write_safetensors(tmp_path / "tiny.safetensors", tensors)])])
    assert index.min_candidate_size == 4096 + 10
    stolen = write_shards(tmp_path / "x", reshard(tensors, 3), "{i}")
    (finding,) = index.match(scanned(*stolen)).findings
    assert finding.found
