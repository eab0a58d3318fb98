"""The tree walker and the scan pipeline: candidates found by bytes, problems reported, never a crash."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.errors import InputError
from gpaisec.weights import walk as walk_module
from gpaisec.weights.fingerprint import digest_file
from gpaisec.weights.formats import Format
from gpaisec.weights.matching import Evidence, MatchIndex, MatchKind, RegisteredArtifact, RegisteredFile
from gpaisec.weights.walk import Candidate, ProblemKind, Walker, scan
from tests.weights.conftest import make_model, reshard, write_safetensors, write_shards


def walk_all(root: Path | bytes, **kwargs: object) -> tuple[list[Candidate], Walker]:
    walker = Walker(root, **kwargs)  # type: ignore[arg-type]
    return list(walker), walker


def kinds(walker: Walker) -> list[ProblemKind]:
    return [p.kind for p in walker.problems]


def test_candidates_are_found_by_bytes_and_small_files_skipped_unopened(
    tmp_path: Path, hostile: Path
) -> None:
    shutil.copytree(hostile / "formats", tmp_path / "tree" / "formats")
    shutil.copytree(hostile / "pickles", tmp_path / "tree" / "deep" / "er" / "pickles")
    for i in range(50):
        (tmp_path / "tree" / f"note{i}.txt").write_text("hello\n" * i)
    found, walker = walk_all(tmp_path / "tree", min_size=0)
    by_name = {Path(c.path).name: c.format for c in found}
    assert by_name["README.txt"] is Format.SAFETENSORS
    assert by_name["graph.pb.txt"] is Format.ONNX
    assert by_name["reduce_os_system.json"] is Format.PICKLE
    assert "fake.safetensors" not in by_name
    assert not any(name.startswith("note") for name in by_name)
    assert walker.problems == ()
    stats = walker.stats
    assert stats.candidates == len(found)
    assert stats.files == stats.sniffed + stats.skipped_small
    assert stats.directories == 5

    _found, small = walk_all(tmp_path / "tree", min_size=1024)
    assert small.stats.skipped_small > 50
    assert small.stats.sniffed < stats.sniffed


def test_a_single_file_root_and_a_missing_root(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(1))
    found, _walker = walk_all(path)
    assert [c.format for c in found] == [Format.SAFETENSORS]
    with pytest.raises(InputError, match="does not exist"):
        walk_all(tmp_path / "missing")


def test_symlinks_are_not_followed_by_default(tmp_path: Path) -> None:
    target = write_safetensors(tmp_path / "real" / "m.safetensors", make_model(1))
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link.safetensors").symlink_to(target)
    (tmp_path / "tree" / "dirlink").symlink_to(tmp_path / "real")
    (tmp_path / "tree" / "loop").symlink_to(tmp_path / "tree")
    found, walker = walk_all(tmp_path / "tree")
    assert found == []
    assert walker.stats.symlinks_skipped == 3
    assert walker.problems == ()


def test_symlink_loops_are_reported_when_following(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_safetensors(tree / "a" / "m.safetensors", make_model(1))
    (tree / "a" / "up").symlink_to(tree)  # loop back to an ancestor
    (tree / "a" / "self").symlink_to(tree / "a" / "self")  # ELOOP on stat
    (tree / "broken").symlink_to(tmp_path / "nowhere")
    (tree / "alias").symlink_to(tree / "a")  # the same directory by another path: not a loop
    found, walker = walk_all(tree, follow_symlinks=True)
    assert len(found) == 1
    problems = {(p.kind, Path(p.path).name) for p in walker.problems}
    assert (ProblemKind.SYMLINK_LOOP, "up") in problems
    assert (ProblemKind.SYMLINK_LOOP, "self") in problems
    assert (ProblemKind.BROKEN_SYMLINK, "broken") in problems
    assert walker.stats.directories_revisited == 1
    assert len(walker.problems) == 3


def test_a_followed_file_symlink_is_a_candidate(tmp_path: Path) -> None:
    target = write_safetensors(tmp_path / "real" / "m.safetensors", make_model(1))
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link").symlink_to(target)
    found, _walker = walk_all(tmp_path / "tree", follow_symlinks=True)
    assert [Path(c.path).name for c in found] == ["link"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any directory")
def test_unreadable_directories_are_reported(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "tree" / "ok" / "m.safetensors", make_model(1))
    locked = tmp_path / "tree" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        found, walker = walk_all(tmp_path / "tree")
    finally:
        locked.chmod(0o700)
    assert len(found) == 1
    assert kinds(walker) == [ProblemKind.UNREADABLE_DIRECTORY]


def _deny(monkeypatch: pytest.MonkeyPatch, suffixes: tuple[str, ...]) -> None:
    """Make os.open in the walker fail with EACCES for paths ending so (works as root too)."""
    real_open = os.open

    def open_(path: str, flags: int, *args: int, **kwargs: int) -> int:
        if str(path).endswith(suffixes):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(walk_module.os, "open", open_)


def test_unreadable_directories_and_files_are_reported_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    write_safetensors(tree / "ok" / "m.safetensors", make_model(1))
    write_safetensors(tree / "locked" / "hidden.safetensors", make_model(2))
    write_safetensors(tree / "secret.safetensors", make_model(3))
    _deny(monkeypatch, ("locked", "secret.safetensors"))
    found, walker = walk_all(tree)
    assert [Path(c.path).name for c in found] == ["m.safetensors"]
    problems = {(p.kind, Path(p.path).name) for p in walker.problems}
    assert problems == {
        (ProblemKind.UNREADABLE_DIRECTORY, "locked"),
        (ProblemKind.UNREADABLE_FILE, "secret.safetensors"),
    }
    assert all("Permission denied" in p.detail for p in walker.problems)


def test_undecodable_names_are_reported_and_still_scanned(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    directory = os.path.join(root, b"dir-\xff\xfe")
    os.mkdir(directory)
    name = os.path.join(directory, b"w\xe9ights")
    with open(name, "wb") as handle:
        handle.write(Path(write_safetensors(tmp_path / "src", make_model(1))).read_bytes())
    (tmp_path / "src").unlink()
    found, walker = walk_all(root)
    assert len(found) == 1
    assert os.fsencode(found[0].path) == name
    assert found[0].display_path.endswith("dir-\\xff\\xfe/w\\xe9ights")
    assert kinds(walker) == [ProblemKind.UNDECODABLE_NAME, ProblemKind.UNDECODABLE_NAME]
    json.dumps([p.to_json() for p in walker.problems] + [c.to_json() for c in found])


def test_fifos_and_sockets_are_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors")
    found, walker = walk_all(tmp_path, min_size=0)
    assert found == []
    assert walker.stats.special_files == 1


def test_directories_removed_during_the_walk_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    write_safetensors(tree / "a" / "m.safetensors", make_model(1))
    (tree / "c").mkdir()
    real_scandir = os.scandir

    class ListedThenRemoved:
        def __init__(self, target: int) -> None:
            with real_scandir(target) as iterator:
                self.entries = list(iterator)
            if (tree / "c").exists():
                (tree / "c").rmdir()  # listed, then removed before it is visited

        def __enter__(self) -> ListedThenRemoved:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

    def scandir(target: int) -> object:
        return ListedThenRemoved(target)

    monkeypatch.setattr(walk_module.os, "scandir", scandir)
    found, walker = walk_all(tree)
    assert len(found) == 1
    assert [(p.kind, Path(p.path).name) for p in walker.problems] == [(ProblemKind.VANISHED, "c")]


def test_many_files_are_walked_quickly(tmp_path: Path) -> None:
    for d in range(20):
        directory = tmp_path / f"d{d}"
        directory.mkdir()
        for f in range(250):
            (directory / f"f{f}.py").write_bytes(b"x" * (f % 50))
    write_safetensors(tmp_path / "d7" / "weights", make_model(1))
    found, walker = walk_all(tmp_path)
    assert len(found) == 1
    assert walker.stats.files == 5001
    assert walker.stats.sniffed == 1


# --------------------------------------------------------------------------------------------------
# scan(): walk + fingerprint + match + confirm


@pytest.fixture
def index(tmp_path: Path) -> MatchIndex:
    model = make_model(50, layers=4)
    shards = write_shards(tmp_path / "registry", reshard(model, 2), "model-{i}.safetensors")
    files = tuple(RegisteredFile(str(p), digest_file(p)) for p in shards)
    return MatchIndex([RegisteredArtifact("frontier", "v1", files)], min_match_bytes=4096)


def test_scan_finds_copies_confirms_them_and_reports_problems(
    tmp_path: Path, index: MatchIndex, hostile: Path
) -> None:
    tree = tmp_path / "laptop"
    registry = tmp_path / "registry"
    shutil.copytree(registry, tree / "backup")
    (tree / "Downloads").mkdir()
    shutil.copyfile(registry / "model-1.safetensors", tree / "Downloads" / "x.bin")
    write_shards(tree / "exfil", reshard(make_model(50, layers=4), 5, rename=str.upper, seed=3), "{i}.part")
    write_shards(tree / "unrelated", reshard(make_model(51, layers=4), 2), "model-{i}.safetensors")
    shutil.copyfile(hostile / "safetensors" / "overlapping_offsets.safetensors", tree / "broken.safetensors")
    for i in range(30):
        (tree / f"readme{i}.md").write_text("# notes\n" * 100)

    report = scan(tree, index, min_size=0)
    by_kind: dict[MatchKind, set[str]] = {}
    for match in report.discovery.matches:
        by_kind.setdefault(match.kind, set()).add(os.path.relpath(match.path, tree))
        assert match.evidence is Evidence.CONFIRMED
    assert by_kind[MatchKind.FILE_COPY] == {"backup/model-1.safetensors", "backup/model-2.safetensors"}
    assert by_kind[MatchKind.RENAMED_COPY] == {"Downloads/x.bin"}
    assert {p.split("/")[0] for p in by_kind[MatchKind.TENSOR_COPY]} == {"exfil"}
    assert not any("unrelated" in m.path for m in report.discovery.matches)
    (finding,) = report.discovery.findings
    assert finding.found
    assert finding.coverage == pytest.approx(1.0)
    assert [(p.kind, Path(p.path).name) for p in report.problems] == [
        (ProblemKind.MALFORMED_WEIGHTS, "broken.safetensors")
    ]
    assert report.confirmed == len({m.path for m in report.discovery.matches})
    json.dumps(report.to_json())


def test_scan_reports_files_that_change_or_vanish(tmp_path: Path, index: MatchIndex) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(tmp_path / "registry", tree)
    write_safetensors(tree / "growing.safetensors", make_model(60))
    write_safetensors(tree / "vanishing.safetensors", make_model(61))

    def tamper(candidate: Candidate) -> None:
        name = Path(candidate.path).name
        if name == "growing.safetensors":
            with open(candidate.path, "ab") as handle:
                handle.write(b"still being copied")
        elif name == "vanishing.safetensors":
            os.unlink(candidate.path)

    report = scan(tree, index, on_candidate=tamper)
    problems = {(p.kind, Path(p.path).name) for p in report.problems}
    assert problems == {
        (ProblemKind.CHANGED_DURING_SCAN, "growing.safetensors"),
        (ProblemKind.UNREADABLE_FILE, "vanishing.safetensors"),
    }
    assert len(report.discovery.matches) == 2
    assert report.discovery.findings[0].found


def test_scan_uses_the_index_threshold(tmp_path: Path, index: MatchIndex) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "tiny.safetensors").write_bytes(b"\x02" + b"\0" * 7 + b"{}")
    report = scan(tree, index)
    assert report.stats.skipped_small == 1
    assert report.stats.sniffed == 0
    assert index.min_candidate_size is not None
    assert index.min_candidate_size > 10


def test_confirmation_failure_keeps_sampled_evidence(
    tmp_path: Path, index: MatchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(tmp_path / "registry", tree)

    def refuse(*_args: object, **_kwargs: object) -> object:
        from gpaisec.weights.formats import UnreadableFileError

        raise UnreadableFileError("cannot open: I/O error")

    monkeypatch.setattr(walk_module, "digest_file", refuse)
    monkeypatch.setattr(walk_module, "file_digest", refuse)
    report = scan(tree, index)
    assert {m.evidence for m in report.discovery.matches} == {Evidence.SAMPLED}
    assert {p.kind for p in report.problems} == {ProblemKind.UNREADABLE_FILE}
    assert report.confirmed == 0


def test_an_edited_copy_outside_the_samples_is_confirmed_as_modified(tmp_path: Path) -> None:
    from gpaisec.weights.fingerprint import DEFAULT_SCHEME, sample_ranges
    from gpaisec.weights.formats import read_safetensors_header

    model = make_model(70, layers=2, dim=256)
    original = write_safetensors(tmp_path / "registry" / "model.safetensors", model)
    index = MatchIndex(
        [RegisteredArtifact("m", "1", (RegisteredFile(str(original), digest_file(original)),))]
    )
    header = read_safetensors_header(original)
    size = original.stat().st_size
    sampled = [
        (o, o + n) for o, n in sample_ranges(size, DEFAULT_SCHEME.file_block, DEFAULT_SCHEME.file_blocks)
    ]
    for tensor in header.tensors:
        start = header.data_start + tensor.begin
        sampled += [
            (start + o, start + o + n)
            for o, n in sample_ranges(
                tensor.nbytes, DEFAULT_SCHEME.tensor_block, DEFAULT_SCHEME.tensor_blocks
            )
        ]
    target = next(t for t in header.tensors if t.name == "layers.1.mlp.up.weight")
    position = next(
        p
        for p in range(header.data_start + target.begin, header.data_start + target.end, 512)
        if not any(lo <= p < hi for lo, hi in sampled)
    )
    data = bytearray(original.read_bytes())
    data[position] ^= 0x55
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "model.safetensors").write_bytes(bytes(data))
    report = scan(tree, index)
    (match,) = report.discovery.matches
    assert (match.kind, match.evidence, match.tensors_modified) == (MatchKind.FILE_COPY, Evidence.MODIFIED, 1)
    assert report.discovery.findings[0].evidence is Evidence.MODIFIED
    assert report.confirmed == 1


# --------------------------------------------------------------------------------------------------
# Parallel walking


def _summary(found: list[Candidate], walker: Walker) -> tuple[object, ...]:
    return (
        sorted((c.path, c.format, c.stat) for c in found),
        sorted((p.kind, p.path, p.detail) for p in walker.problems),
        walker.stats,
    )


@pytest.fixture
def wide_tree(tmp_path: Path, hostile: Path) -> Path:
    tree = tmp_path / "wide"
    for d in range(40):
        directory = tree / f"d{d % 5}" / f"e{d}"
        directory.mkdir(parents=True)
        for f in range(30):
            (directory / f"f{f}.txt").write_bytes(b"x" * (f * 300))
    shutil.copytree(hostile / "formats", tree / "d1" / "e6" / "formats")
    write_safetensors(tree / "d3" / "e8" / "weights.bin", make_model(1))
    os.mkdir(os.path.join(os.fsencode(tree), b"d2", b"bad-\xff"))
    return tree


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_parallel_walk_finds_exactly_what_the_serial_walk_finds(
    wide_tree: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deny(monkeypatch, ("e17",))
    serial = _summary(*walk_all(wide_tree, min_size=100))
    parallel = _summary(*walk_all(wide_tree, min_size=100, workers=workers))
    assert parallel == serial
    assert len(serial[0]) > 10
    assert {kind for kind, _p, _d in serial[1]} == {
        ProblemKind.UNREADABLE_DIRECTORY,
        ProblemKind.UNDECODABLE_NAME,
    }


def test_a_failed_worker_share_is_walked_again(wide_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> bytes:
        raise RuntimeError("worker cannot report")

    serial = _summary(*walk_all(wide_tree, min_size=100))
    monkeypatch.setattr(Walker, "_serve_subtree", broken)  # every worker dies on its first subtree
    assert _summary(*walk_all(wide_tree, min_size=100, workers=2)) == serial


def test_an_unreadable_answer_is_walked_again(wide_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def garbled(*_args: object, **_kwargs: object) -> bytes:
        return b"not marshal"

    serial = _summary(*walk_all(wide_tree, min_size=100))
    monkeypatch.setattr(Walker, "_serve_subtree", garbled)
    assert _summary(*walk_all(wide_tree, min_size=100, workers=3)) == serial


def test_a_walk_goes_on_when_fork_fails(wide_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    serial = _summary(*walk_all(wide_tree, min_size=100))
    monkeypatch.setattr(walk_module.os, "fork", no_fork)
    assert _summary(*walk_all(wide_tree, min_size=100, workers=3)) == serial


def _children() -> set[int]:
    """This process's children, zombies included (a reaped child is gone from the list)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            continue
    return pids


def test_abandoning_a_parallel_walk_reaps_the_workers(wide_tree: Path) -> None:
    # Other tests may leave servers running as children of this process: compare, don't expect none.
    before = _children()
    walker = Walker(wide_tree, min_size=100, workers=4)
    iterator = iter(walker)
    next(iterator)
    assert _children() - before, "the parallel walk should have started workers"
    iterator.close()  # type: ignore[attr-defined]
    assert _children() - before == set()


def test_workers_are_validated_and_ignored_when_following_symlinks(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="workers"):
        Walker(tmp_path, workers=0)
    assert Walker(tmp_path, workers=4, follow_symlinks=True).workers == 1


def test_scan_with_workers(tmp_path: Path, index: MatchIndex) -> None:
    tree = tmp_path / "tree"
    for d in range(30):
        shutil.copytree(tmp_path / "registry", tree / f"d{d}")
    report = scan(tree, index, workers=2)
    assert len(report.discovery.matches) == 60
    assert report.stats.directories == 31


class _Listing(list):  # type: ignore[type-arg]
    """A finished directory listing that can stand in for a scandir iterator."""

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


def test_a_directory_swapped_for_a_symlink_is_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    write_safetensors(tmp_path / "elsewhere" / "m.safetensors", make_model(1))
    real_scandir = os.scandir

    def scandir(target: int) -> object:
        entries = list(real_scandir(target))
        if (tree / "d").is_dir() and not (tree / "d").is_symlink():
            (tree / "d").rmdir()
            (tree / "d").symlink_to(tmp_path / "elsewhere")  # swapped after listing
        return _Listing(entries)

    monkeypatch.setattr(walk_module.os, "scandir", scandir)
    found, walker = walk_all(tree)
    assert found == []
    assert [(p.kind, Path(p.path).name) for p in walker.problems] == [(ProblemKind.CHANGED_DURING_SCAN, "d")]


def test_same_filesystem_skips_other_mounts(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to compare with")
    target = Path(tempfile.mkdtemp(dir=other))
    try:
        write_safetensors(target / "m.safetensors", make_model(1))
        (tmp_path / "mounted").symlink_to(target)
        found, walker = walk_all(tmp_path, follow_symlinks=True, same_filesystem=True)
        assert found == []
        assert walker.stats.other_filesystems == 1
        found, walker = walk_all(tmp_path, follow_symlinks=True)
        assert len(found) == 1
    finally:
        shutil.rmtree(target)


@pytest.mark.parametrize("workers", [2, 3])
def test_a_parallel_scan_fingerprints_in_the_workers_and_matches_like_a_serial_one(
    wide_tree: Path, hostile: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = wide_tree.parent / "registered"
    model = make_model(11)
    shard = write_safetensors(registered / "model.safetensors", model)
    index = MatchIndex([RegisteredArtifact("atlas", "v3", (RegisteredFile(str(shard), digest_file(shard)),))])
    shutil.copy(shard, wide_tree / "d4" / "e9" / "renamed.bin")
    shutil.copy(shard, wide_tree / "d0" / "e10" / "model.safetensors")
    shutil.copy(
        hostile / "safetensors" / "overlapping_offsets.safetensors", wide_tree / "d2" / "e12" / "x.st"
    )
    serial = scan(wide_tree, index, min_size=0)
    # The parent must not fingerprint what a worker already did: count the parent's own calls.
    calls: list[str] = []
    real = walk_module.fingerprint_file
    parent = os.getpid()

    def counted(path: str, **kwargs: Any) -> Any:
        if os.getpid() == parent:
            calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(walk_module, "fingerprint_file", counted)
    parallel = scan(wide_tree, index, min_size=0, workers=workers)
    assert parallel.discovery == serial.discovery
    assert sorted(parallel.problems, key=str) == sorted(serial.problems, key=str)
    assert {Path(m.path).name for m in parallel.discovery.matches} == {"renamed.bin", "model.safetensors"}
    assert any(p.kind is ProblemKind.MALFORMED_WEIGHTS for p in parallel.problems)
    assert parallel.fingerprinted == serial.fingerprinted
    assert parallel.stats.candidates == serial.stats.candidates
    assert len(calls) < serial.stats.candidates  # the workers fingerprinted their own finds
