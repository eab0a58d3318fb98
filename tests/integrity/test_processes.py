"""Small files hashed in forked processes: the same manifest as one thread, with safe fallbacks."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from gpaisec import _forks as forks_module
from gpaisec.integrity import HashParams, _engine, hash_directory

FILES = 2600  # above the threshold at which small files are shared out to processes


# Forking needs a process with no other thread: see tests/integrity/conftest.py.
pytestmark = pytest.mark.clean_process


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(FILES):
        d = root / f"d{i % 13}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.bin").write_bytes(i.to_bytes(4, "little") * (1 + i % 700))
    (root / "d3" / "large.bin").write_bytes(os.urandom(3 << 20))  # handed back to the parent
    (root / "empty").write_bytes(b"")
    return root


def _expected(root: Path, new: Callable[[bytes], object]) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = new(path.read_bytes()).hexdigest()  # type: ignore[attr-defined]
    return out


def _forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fork
    parent = os.getpid()

    def counted() -> int:
        if os.getpid() == parent:
            calls.append(1)
        return real()

    monkeypatch.setattr(_engine.os, "fork", counted)
    return calls


@pytest.mark.parametrize(("algorithm", "new"), [("blake3", blake3.blake3), ("sha256", hashlib.sha256)])
@pytest.mark.parametrize("workers", [2, 3])
def test_processes_give_the_digests_of_every_file(
    many: Path, algorithm: str, new: Callable[[bytes], object], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks = _forks(monkeypatch)
    manifest = hash_directory(many, HashParams(algorithm=algorithm), workers=workers)  # type: ignore[arg-type]
    assert len(forks) == workers - 1
    assert {rel: r[0].digest for rel, r in manifest.files.items()} == _expected(many, new)
    single = hash_directory(many, HashParams(algorithm=algorithm), workers=1)  # type: ignore[arg-type]
    assert manifest.digest() == single.digest()


def test_shards_method_in_processes(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = HashParams(algorithm="sha256", method="shards", shard_size=1000)
    forks = _forks(monkeypatch)
    manifest = hash_directory(many, params, workers=2)
    assert forks == [1]
    monkeypatch.setattr(_engine, "_FORK_MIN_FILES", 10**9)  # the thread path
    assert manifest.digest() == hash_directory(many, params, workers=2).digest()


def test_no_fork_while_another_thread_runs(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forks = _forks(monkeypatch)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        manifest = hash_directory(many, workers=2)
    finally:
        stop.set()
        other.join()
    assert forks == []
    assert {rel: r[0].digest for rel, r in manifest.files.items()} == _expected(many, blake3.blake3)


def test_a_failed_fork_or_child_is_hashed_here(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = hash_directory(many, workers=1).resources

    def no_fork() -> int:
        raise BlockingIOError("no more processes")

    with monkeypatch.context() as m:
        m.setattr(_engine.os, "fork", no_fork)
        assert hash_directory(many, workers=2).resources == expected

    def broken(*_args: object, **_kwargs: object) -> bytes:
        raise RuntimeError("child cannot hash")

    forks = _forks(monkeypatch)
    monkeypatch.setattr(_engine, "_serve_batch", broken)  # every child dies on its first batch
    assert hash_directory(many, workers=3).resources == expected
    assert forks == [1, 1]
    _assert_no_children()


def test_large_replies_do_not_block_the_pipes(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny shards: one reply holds thousands of digests, far more than a pipe buffer."""
    params = HashParams(algorithm="sha256", method="shards", shard_size=64)
    forks = _forks(monkeypatch)
    manifest = hash_directory(many, params, workers=2)
    assert forks == [1]
    monkeypatch.setattr(_engine, "_FORK_MIN_FILES", 10**9)  # the thread path
    assert manifest.resources == hash_directory(many, params, workers=2).resources


def test_a_file_that_vanishes_in_a_child_is_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(FILES):
        (tmp_path / f"f{i:05d}").write_bytes(b"x")
    real = _engine._walk
    gone = tmp_path / "f00000"  # in the first batch, which goes to the first child

    def walk_then_remove(*args: object, **kwargs: object) -> object:
        batches = list(real(*args, **kwargs))  # type: ignore[arg-type]
        gone.unlink()
        return iter(batches)

    monkeypatch.setattr(_engine, "_walk", walk_then_remove)
    served: list[int] = []
    real_serve = forks_module.serve

    def counted_serve(*args: object, **kwargs: object) -> object:
        served.append(1)
        return real_serve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(forks_module, "serve", counted_serve)
    with pytest.raises(_engine.InputError, match="cannot read 'f00000': No such file") as in_child:
        hash_directory(tmp_path, workers=2)
    assert served == [1]
    _assert_no_children()
    gone.write_bytes(b"x")  # listed by the walk and removed again, for the same error here
    with pytest.raises(_engine.InputError) as here:
        hash_directory(tmp_path, workers=1)
    assert here.value.message == in_child.value.message
    assert here.value.hint == in_child.value.hint


def _echo_twice(request: bytes) -> bytes:
    return request * 2


def test_a_server_takes_requests_and_replies_larger_than_a_pipe() -> None:
    server = forks_module.serve(_echo_twice)
    assert server is not None
    try:
        requests = [os.urandom(n) for n in (0, 1, 300_000, 1_000_000, 5)]
        for request in requests:
            server.send(request)
        server.close_requests()
        while len(server.replies) < len(requests) and server.alive:
            forks_module.pump([server], 5.0)
        assert list(server.replies) == [r * 2 for r in requests]
    finally:
        server.stop()
    _assert_no_children()


def test_a_server_that_fails_ends_its_replies() -> None:
    def fail(_request: bytes) -> bytes:
        raise RuntimeError("no")

    server = forks_module.serve(fail)
    assert server is not None
    try:
        server.send(b"x")
        while server.alive:
            forks_module.pump([server], 5.0)
        assert not server.replies
    finally:
        server.stop()
    _assert_no_children()


def _assert_no_children() -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
