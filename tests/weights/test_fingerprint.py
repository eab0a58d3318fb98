"""Cheap sampled fingerprints, per-tensor digests, full digests, and change detection."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from gpaisec.errors import IntegrityError
from gpaisec.weights import fingerprint as fingerprint_module
from gpaisec.weights.fingerprint import (
    DEFAULT_SCHEME,
    FileDigests,
    FileFingerprint,
    FingerprintDecodeError,
    NotWeightsError,
    SamplingScheme,
    StatSnapshot,
    TensorSample,
    digest_file,
    file_digest,
    fingerprint_file,
    is_distinctive,
    sample_ranges,
)
from gpaisec.weights.formats import (
    HEAD_BYTES,
    FileChangedError,
    Format,
    SafetensorsError,
    UnreadableFileError,
)
from tests.weights.conftest import Tensor, make_model, random_tensor, reshard, write_safetensors, write_shards

# --------------------------------------------------------------------------------------------------
# Sampling geometry


@given(st.integers(0, 1 << 40), st.integers(1, 1 << 20), st.integers(2, 64))
def test_sample_ranges_are_inside_ordered_disjoint_and_include_both_ends(
    total: int, block: int, count: int
) -> None:
    ranges = sample_ranges(total, block, count)
    if total <= block * count:
        assert ranges == ((0, total),)
        return
    assert len(ranges) == count
    assert ranges[0][0] == 0
    assert ranges[-1][0] + ranges[-1][1] == total
    for (offset, length), (next_offset, _n) in zip(ranges, ranges[1:], strict=False):
        assert length == block
        assert offset + length <= next_offset


def test_scheme_is_validated_and_round_trips() -> None:
    assert SamplingScheme.from_json(DEFAULT_SCHEME.to_json()) == DEFAULT_SCHEME
    with pytest.raises(Exception, match="not supported"):
        SamplingScheme(version=2)
    with pytest.raises(Exception, match="file_blocks"):
        SamplingScheme(file_blocks=1)
    with pytest.raises(Exception, match="tensor_block"):
        SamplingScheme(tensor_block=100)
    with pytest.raises(FingerprintDecodeError, match="sampling scheme"):
        SamplingScheme.from_json({**DEFAULT_SCHEME.to_json(), "algorithm": "md5"})


# --------------------------------------------------------------------------------------------------
# Sampled fingerprints


def test_fingerprint_does_not_depend_on_name_or_location(tmp_path: Path) -> None:
    original = write_safetensors(tmp_path / "a" / "model.safetensors", make_model(1))
    moved = tmp_path / "b" / "c" / "cache-blob"
    moved.parent.mkdir(parents=True)
    shutil.copyfile(original, moved)
    first, second = fingerprint_file(original), fingerprint_file(moved)
    assert first == second
    assert first.format is Format.SAFETENSORS
    assert first.size == original.stat().st_size
    assert first.scheme == DEFAULT_SCHEME


def test_tensor_samples_survive_renaming_reordering_and_resharding(tmp_path: Path) -> None:
    model = make_model(2)
    original = write_safetensors(tmp_path / "orig.safetensors", model)
    shards = reshard(model, 4, rename=lambda n: "transformer." + n.replace(".", "_"), seed=5)
    paths = write_shards(tmp_path / "stolen", shards, "part-{i}.bin")
    original_keys = {t.key for t in fingerprint_file(original).tensors}
    shard_keys = {t.key for p in paths for t in fingerprint_file(p).tensors}
    assert shard_keys == original_keys
    assert len(original_keys) < len(model)  # the constant norms and biases coincide across layers


def test_same_shapes_different_values_give_different_samples(tmp_path: Path) -> None:
    a = fingerprint_file(write_safetensors(tmp_path / "a", make_model(3)))
    b = fingerprint_file(write_safetensors(tmp_path / "b", make_model(4)))
    assert a.size == b.size
    assert a.header_digest == b.header_digest  # identical names, dtypes, shapes and offsets
    assert a.sample_digest != b.sample_digest
    assert a.key != b.key
    distinctive_a = {t.key for t in a.tensors if t.nbytes >= 1024}
    distinctive_b = {t.key for t in b.tensors if t.nbytes >= 1024}
    assert not distinctive_a & distinctive_b


def test_every_sampled_block_matters(tmp_path: Path) -> None:
    path = tmp_path / "blob.gguf"
    size = 5 << 20
    path.write_bytes(b"GGUF" + random.Random(1).randbytes(size - 4))
    base = fingerprint_file(path)
    for offset, _length in sample_ranges(size, DEFAULT_SCHEME.file_block, DEFAULT_SCHEME.file_blocks):
        data = bytearray(path.read_bytes())
        data[offset + 5] ^= 0xFF
        path.write_bytes(bytes(data))
        assert fingerprint_file(path).sample_digest != base.sample_digest
        data[offset + 5] ^= 0xFF
        path.write_bytes(bytes(data))


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    real = os.pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        data = real(fd, length, offset)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting)
    return reads


def test_sampled_fingerprint_reads_a_bounded_amount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    model = {f"w{i}": random_tensor(rng, "F32", (1024, 1024)) for i in range(16)}  # 64 MiB
    path = write_safetensors(tmp_path / "big.safetensors", model)
    reads = _count_reads(monkeypatch)
    fingerprint = fingerprint_file(path)
    scheme = DEFAULT_SCHEME
    budget = HEAD_BYTES + 8 + 4096 + scheme.file_block * scheme.file_blocks
    budget += len(model) * scheme.tensor_block * scheme.tensor_blocks
    assert sum(reads) <= budget
    assert sum(reads) < path.stat().st_size / 30
    assert len(fingerprint.tensors) == 16


def test_malformed_safetensors_is_an_error_not_a_fingerprint(hostile: Path) -> None:
    with pytest.raises(SafetensorsError):
        fingerprint_file(hostile / "safetensors" / "overlapping_offsets.safetensors")


def test_anomalies_are_recorded(hostile: Path) -> None:
    fingerprint = fingerprint_file(hostile / "safetensors" / "trailing_bytes.safetensors")
    assert fingerprint.anomalies == ("trailing-data",)


# --------------------------------------------------------------------------------------------------
# Full digests


def test_full_digests_equal_plain_blake3_of_file_and_tensors(tmp_path: Path) -> None:
    model = make_model(5)
    model["empty"] = Tensor("F32", (0,), b"")
    path = write_safetensors(tmp_path / "m.safetensors", model)
    digests = digest_file(path)
    assert digests.digest == blake3(path.read_bytes()).hexdigest()
    assert digests.fingerprint == fingerprint_file(path)
    for tensor in digests.tensors:
        assert tensor.digest == blake3(model[tensor.name].data).hexdigest()
        assert tensor.key == (tensor.dtype, tensor.shape, tensor.sample)
    flags = {t.name: t.distinctive for t in digests.tensors}
    assert flags["embed.weight"] is True
    assert flags["layers.0.norm.weight"] is False  # constant
    assert flags["layers.0.mlp.up.bias"] is False  # constant zeros
    assert flags["empty"] is False


def test_full_digest_crosses_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint_module, "_READ_CHUNK", 1000)
    rng = random.Random(3)
    model = {f"t{i}": random_tensor(rng, "U8", (rng.randint(0, 2500),)) for i in range(12)}
    path = write_safetensors(tmp_path / "m", model)
    digests = digest_file(path)
    assert digests.digest == blake3(path.read_bytes()).hexdigest()
    assert {t.name: t.digest for t in digests.tensors} == {
        n: blake3(t.data).hexdigest() for n, t in model.items()
    }


def test_tensor_only_digests_and_plain_file_digest(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(13))
    full = digest_file(path)
    tensors_only = digest_file(path, whole_file=False)
    assert tensors_only.digest is None
    assert tensors_only.tensors == full.tensors
    assert FileDigests.from_json(json.loads(json.dumps(tensors_only.to_json()))) == tensors_only
    assert file_digest(path) == full.digest == blake3(path.read_bytes()).hexdigest()


def test_is_distinctive() -> None:
    rng = random.Random(0)
    assert is_distinctive("BF16", 8192, rng.randbytes(8192))
    assert not is_distinctive("BF16", 8192, b"\x80\x3f" * 4096)
    assert not is_distinctive("F32", 512, rng.randbytes(512))  # too small
    identity_like = (b"\0\0\0\0" * 255 + b"\0\0\x80\x3f") * 4
    assert not is_distinctive("F32", 1 << 20, identity_like)
    assert is_distinctive("F4", 4096, rng.randbytes(4096))


def test_registration_refuses_non_weight_files(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 4096}')
    with pytest.raises(NotWeightsError, match="not in a recognised weight format") as info:
        digest_file(path, require_weights=True)
    assert info.value.hint
    assert digest_file(path).fingerprint.format is Format.UNKNOWN


def test_non_safetensors_formats_get_file_level_digests(hostile: Path) -> None:
    digests = digest_file(hostile / "formats" / "model.gguf.json", require_weights=True)
    assert digests.fingerprint.format is Format.GGUF
    assert digests.tensors == ()
    assert digests.digest == blake3((hostile / "formats" / "model.gguf.json").read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Change detection


def test_a_file_that_changed_since_listing_is_refused(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(6))
    listed = StatSnapshot.of(path.stat())
    with path.open("ab") as handle:
        handle.write(b"appended")
    with pytest.raises(FileChangedError, match="changed since it was listed"):
        fingerprint_file(path, expected=listed)
    with pytest.raises(FileChangedError):
        digest_file(path, expected=listed)


@pytest.fixture
def grow_during_sampling(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = fingerprint_module._sample

    def sample_then_grow(src: Any, scheme: SamplingScheme, *, keep_tensor_samples: bool) -> Any:
        result = real(src, scheme, keep_tensor_samples=keep_tensor_samples)
        with open(f"/proc/self/fd/{src.fd}", "ab") as handle:
            handle.write(b"more bytes")
        return result

    monkeypatch.setattr(fingerprint_module, "_sample", sample_then_grow)
    return


@pytest.mark.usefixtures("grow_during_sampling")
def test_a_file_that_changes_while_read_is_refused(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(7))
    with pytest.raises(FileChangedError, match="changed while it was being read"):
        fingerprint_file(path)


def test_a_file_truncated_during_the_full_pass_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_safetensors(tmp_path / "m", make_model(8))
    real = fingerprint_module._full_pass

    def truncate_then_hash(src: Any, header: Any, **kwargs: Any) -> Any:
        os.truncate(path, 100)
        return real(src, header, **kwargs)

    monkeypatch.setattr(fingerprint_module, "_full_pass", truncate_then_hash)
    with pytest.raises(FileChangedError, match="ended at"):
        digest_file(path)


def test_unreadable_and_special_files(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError):
        fingerprint_file(tmp_path / "missing")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFileError, match="not a regular file"):
        fingerprint_file(fifo)
    link = tmp_path / "link"
    link.symlink_to(write_safetensors(tmp_path / "m", make_model(1)))
    assert fingerprint_file(link).format is Format.SAFETENSORS
    with pytest.raises(UnreadableFileError):
        fingerprint_file(link, follow_symlinks=False)


# --------------------------------------------------------------------------------------------------
# JSON


def test_values_round_trip_through_json(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(9))
    digests = digest_file(path)
    text = json.dumps(digests.to_json())
    assert FileDigests.from_json(json.loads(text)) == digests
    fingerprint = digests.fingerprint
    assert FileFingerprint.from_json(json.loads(json.dumps(fingerprint.to_json()))) == fingerprint
    sample = fingerprint.tensors[0]
    assert TensorSample.from_json(sample.to_json()) == sample


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("digest"), "missing 'digest'"),
        (lambda d: d.update(digest="ABC"), "hex digest"),
        (lambda d: d["fingerprint"].update(size=True), "'size' has the wrong type"),
        (lambda d: d["fingerprint"].update(size=-1), "negative"),
        (lambda d: d["fingerprint"].update(format="exe"), "unknown format"),
        (lambda d: d["fingerprint"]["tensors"][0].update(dtype="F13"), "unknown dtype"),
        (lambda d: d["fingerprint"]["tensors"][0].update(shape=[1, -1]), "shape"),
        (lambda d: d["tensors"].pop(), "do not correspond"),
        (lambda d: d["tensors"][0].update(sample="0" * 64), "disagrees"),
        (lambda d: d["fingerprint"].update(scheme={"version": 1}), "missing"),
    ],
)
def test_malformed_stored_fingerprints_are_refused(tmp_path: Path, mutate: Any, message: str) -> None:
    data = json.loads(json.dumps(digest_file(write_safetensors(tmp_path / "m", make_model(10))).to_json()))
    mutate(data)
    with pytest.raises(FingerprintDecodeError, match=message) as info:
        FileDigests.from_json(data)
    assert isinstance(info.value, IntegrityError)
    assert info.value.hint == "re-register the artifact to recompute its fingerprints"
