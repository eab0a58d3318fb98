"""The hashing engine against independent references (hashlib, blake3, model-signing)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.errors import InputError
from gpaisec.integrity import HashParams, Manifest, _engine, hash_directory, hash_file
from tests.integrity.conftest import build_model, weights


def reference(root: Path, params: HashParams) -> list[tuple[str, str]]:
    """(resource name, hex digest) computed the plain way, sorted by name components."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(rel == i or rel.startswith(i + "/") for i in params.ignore_paths):
            continue
        data = path.read_bytes()
        if params.method == "shards":
            assert params.shard_size is not None
            for start in range(0, len(data), params.shard_size):
                end = min(len(data), start + params.shard_size)
                out.append((f"{rel}:{start}:{end}", hashlib.sha256(data[start:end]).hexdigest()))
        elif params.algorithm == "blake3":
            out.append((rel, blake3.blake3(data).hexdigest()))
        else:
            out.append((rel, hashlib.sha256(data).hexdigest()))

    def key(item: tuple[str, str]) -> tuple[tuple[str, ...], int]:
        name = item[0]
        if params.method == "shards":
            path, start, _ = name.rsplit(":", 2)
            return tuple(path.split("/")), int(start)
        return tuple(name.split("/")), 0

    return sorted(out, key=key)


def names_and_digests(m: Manifest) -> list[tuple[str, str]]:
    return [(r.name, r.digest) for r in m.resources]


PARAMS = [
    HashParams(),
    HashParams(algorithm="sha256"),
    HashParams(algorithm="sha256", method="shards", shard_size=65_536),
    HashParams(algorithm="sha256", method="shards", shard_size=100_003),
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.resource_algorithm)
def test_digests_match_plain_reference(model: Path, params: HashParams) -> None:
    m = hash_directory(model, params)
    assert names_and_digests(m) == reference(model, params)
    assert m.params == params
    assert m.model_name == "model"


def test_large_files_go_through_the_mapped_path_in_several_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files above the small-file limit are mmapped; shrink the windows so one file spans many,
    # with window and shard boundaries that are not page aligned.
    monkeypatch.setattr(_engine, "_B3_WINDOW", 70_001)
    monkeypatch.setattr(_engine, "_SHA_WINDOW", 50_001)
    monkeypatch.setattr(_engine, "_SHARD_TASK_BYTES", 300_000)
    root = build_model(
        tmp_path / "m",
        {"big-1.bin": weights(_engine._SMALL + 1, 3), "big-2.bin": weights(2 * _engine._SMALL + 12_345, 4)},
    )
    for params in PARAMS:
        assert names_and_digests(hash_directory(root, params)) == reference(root, params), params


def test_small_limit_boundary(tmp_path: Path) -> None:
    sizes = [_engine._SMALL - 1, _engine._SMALL, _engine._SMALL + 1]
    root = build_model(tmp_path / "m", {f"f{n}": weights(n, n) for n in sizes})
    for params in PARAMS:
        assert names_and_digests(hash_directory(root, params)) == reference(root, params)


@pytest.mark.parametrize("params", PARAMS[:3], ids=lambda p: p.resource_algorithm)
def test_same_resources_as_model_signing(model: Path, params: HashParams) -> None:
    from model_signing import hashing

    config = hashing.Config()
    if params.method == "shards":
        config.use_shard_serialization(hashing_algorithm="sha256", shard_size=params.shard_size)
    else:
        config.use_file_serialization(hashing_algorithm=params.algorithm)
    theirs = [
        (d.identifier, d.digest.algorithm, d.digest.digest_hex)
        for d in config.hash(model).resource_descriptors()
    ]
    ours = [(r.name, params.resource_algorithm, r.digest) for r in hash_directory(model, params).resources]
    assert ours == theirs


def test_empty_files_are_resources_for_files_but_not_for_shards(model: Path) -> None:
    files = hash_directory(model, HashParams(algorithm="sha256"))
    shards = hash_directory(model, HashParams(algorithm="sha256", method="shards"))
    assert "empty.bin" in files.files
    assert "empty.bin" not in shards.files  # as model-signing: an empty file has no shards


def test_worker_count_does_not_change_the_result(model: Path) -> None:
    for params in PARAMS:
        assert hash_directory(model, params, workers=1) == hash_directory(model, params, workers=5)


def test_symlink_is_refused_by_default(model: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret"
    secret.write_bytes(b"not part of the model")
    (model / "link.bin").symlink_to(secret)
    with pytest.raises(InputError, match="'link.bin' is a symbolic link") as info:
        hash_directory(model)
    assert info.value.hint
    assert "allow_symlinks" in info.value.hint


def test_allowed_symlink_to_a_file_hashes_the_target_under_the_link_name(model: Path, tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"shared blob")
    (model / "link.bin").symlink_to(target)
    m = hash_directory(model, HashParams(allow_symlinks=True))
    assert m.files["link.bin"][0].digest == blake3.blake3(b"shared blob").hexdigest()
    assert m.params.allow_symlinks


def test_symlinked_directory_is_refused_even_when_links_are_allowed(model: Path, tmp_path: Path) -> None:
    other = build_model(tmp_path / "elsewhere", {"x.bin": b"x"})
    (model / "linked-dir").symlink_to(other, target_is_directory=True)
    with pytest.raises(InputError, match="link to a directory"):
        hash_directory(model, HashParams(allow_symlinks=True))


def test_dangling_symlink_is_refused(model: Path) -> None:
    (model / "dangling").symlink_to(model / "nowhere")
    with pytest.raises(InputError, match="link to nothing"):
        hash_directory(model, HashParams(allow_symlinks=True))


def test_special_file_is_refused(model: Path) -> None:
    os.mkfifo(model / "pipe")
    with pytest.raises(InputError, match="not a regular file"):
        hash_directory(model)


def test_non_utf8_file_name_is_refused(model: Path) -> None:
    fd = os.open(os.fsencode(model) + b"/bad-\xff.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    with pytest.raises(InputError, match="not valid UTF-8"):
        hash_directory(model)


def test_git_metadata_at_the_top_is_ignored_by_default_and_recorded(model: Path) -> None:
    build_model(model, {".git/HEAD": b"ref", ".gitignore": b"*.tmp", "sub/.gitignore": b"x"})
    m = hash_directory(model)
    assert ".gitignore" not in m.files
    assert not any(p.startswith(".git/") for p in m.files)
    assert "sub/.gitignore" in m.files  # only the top level, as model-signing
    assert ".git" in m.params.ignore_paths
    strict = hash_directory(model, HashParams(ignore_paths=()))
    assert ".gitignore" in strict.files
    assert ".git/HEAD" in strict.files


def test_ignore_paths_leave_out_files_and_whole_directories(model: Path) -> None:
    m = hash_directory(model, HashParams(ignore_paths=("tokenizer", "config.json")))
    assert set(m.files) == {
        "empty.bin",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }


def test_ignored_directory_is_not_entered(model: Path, tmp_path: Path) -> None:
    # A link inside an ignored directory does not trip the symlink refusal.
    build_model(model, {"cache/real": b"r"})
    (model / "cache" / "link").symlink_to(tmp_path)
    assert "cache/real" not in hash_directory(model, HashParams(ignore_paths=("cache",))).files


def test_missing_or_non_directory_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        hash_directory(tmp_path / "absent")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InputError, match="is not a directory"):
        hash_directory(tmp_path / "file")


def test_empty_directory_gives_an_empty_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert hash_directory(tmp_path / "empty").resources == ()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported_by_name(model: Path) -> None:
    (model / "config.json").chmod(0)
    with pytest.raises(InputError, match="cannot read 'config.json'"):
        hash_directory(model)


def test_progress_reaches_the_total(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "_B3_WINDOW", 65_536)
    build_model(model, {"big.bin": weights(_engine._SMALL + 500_000, 9)})
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    for params in PARAMS:
        calls: list[tuple[int, int | None]] = []

        def record(done: int, total: int | None, calls: list[tuple[int, int | None]] = calls) -> None:
            calls.append((done, total))

        hash_directory(model, params, progress=record)
        assert calls[-1] == (total, total)
        dones = [d for d, _ in calls]
        assert dones == sorted(dones)
        assert all(t in (None, total) for _, t in calls)


def test_hash_file_matches_b3sum_and_sha256(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    data = weights(_engine._SMALL * 2 + 7, 5)
    f.write_bytes(data)
    b3 = hash_file(f)
    assert (b3.algorithm, b3.digest, b3.size) == ("blake3", blake3.blake3(data).hexdigest(), len(data))
    assert hash_file(f, "sha256").digest == hashlib.sha256(data).hexdigest()
    if shutil.which("b3sum"):
        out = subprocess.run(["b3sum", "--no-names", str(f)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == b3.digest
    (tmp_path / "e").write_bytes(b"")
    assert hash_file(tmp_path / "e").digest == blake3.blake3(b"").hexdigest()
    with pytest.raises(InputError, match="not a regular file"):
        hash_file(tmp_path)


_tree = st.dictionaries(
    st.lists(st.sampled_from(["a", "b", "a-b", "a.b", "c"]), min_size=1, max_size=3).map("/".join),
    st.binary(max_size=3000),
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_tree, st.integers(1, 700))
def test_random_trees_match_reference(tree: dict[str, bytes], shard_size: int) -> None:
    # Drop paths that are a prefix directory of another (a file cannot also be a directory).
    names = sorted(tree)
    files = {n: d for n, d in tree.items() if not any(o.startswith(n + "/") for o in names)}
    with tempfile.TemporaryDirectory() as tmp:
        root = build_model(Path(tmp) / "m", files)
        for params in (
            HashParams(),
            HashParams(algorithm="sha256"),
            HashParams(algorithm="sha256", method="shards", shard_size=shard_size),
        ):
            assert names_and_digests(hash_directory(root, params)) == reference(root, params)


def test_worker_count_must_be_positive(model: Path) -> None:
    with pytest.raises(InputError, match="workers must be at least 1"):
        hash_directory(model, workers=0)
