"""kill -9 during seal and during rotation; memory_dir refuses disk and cleans up."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpaisec.crypto import open_file, seal_file, unseal_to
from gpaisec.crypto.local import LocalKeyProvider
from gpaisec.crypto.memory import is_memory_backed, memory_dir
from gpaisec.errors import ConfigError, IntegrityError

_CHILD = """
import os, sys
from gpaisec.crypto import seal_file, rewrap, secret_from_env
from gpaisec.crypto.local import LocalKeyProvider, Argon2Params
p = LocalKeyProvider(sys.argv[2], secret_from_env("GPAISEC_TEST_PASSPHRASE"), params=Argon2Params(1, 1024, 1))
if sys.argv[1] == "seal":
    print("go", flush=True)
    seal_file(sys.argv[3], sys.argv[4], p, "model-a", chunk_size=4096, workers=2)
else:
    print("go", flush=True)
    while True:
        for v in (1, 2):
            rewrap(sys.argv[3], p, v)
"""


def _child(*args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, env=dict(os.environ)
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"go\n"
    return proc


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4])
def test_kill_during_seal_leaves_nothing_accepted(
    tmp_path: Path, local_provider: LocalKeyProvider, delay: float
) -> None:
    data = os.urandom(40 << 20)
    (tmp_path / "w").write_bytes(data)
    out = tmp_path / "out" / "w.sealed"
    out.parent.mkdir()
    proc = _child("seal", str(local_provider.directory), str(tmp_path / "w"), str(out))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "w").read_bytes() == data  # the original is untouched
    for f in out.parent.iterdir():  # a complete file, or only partial files that are refused
        buf = io.BytesIO()
        if f == out:
            unseal_to(f, buf, local_provider)
            assert buf.getvalue() == data
        else:
            assert f.name.endswith(".partial")
            with pytest.raises(IntegrityError):
                unseal_to(f, buf, local_provider)
            assert buf.getvalue() == b""


def test_kill_during_rotation_leaves_file_readable(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    data = os.urandom(200_000)
    (tmp_path / "w").write_bytes(data)
    seal_file(tmp_path / "w", tmp_path / "w.sealed", local_provider, "model-a", chunk_size=4096)
    local_provider.rotate("model-a")
    for delay in (0.01, 0.03, 0.07, 0.11, 0.2):
        proc = _child("rotate", str(local_provider.directory), str(tmp_path / "w.sealed"))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        buf = io.BytesIO()
        unseal_to(tmp_path / "w.sealed", buf, local_provider)
        assert buf.getvalue() == data


def test_memory_dir_memfd(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    files = {"a.safetensors": os.urandom(70_000), "sub/b.bin": b"", "sub/c": os.urandom(9)}
    for name, content in files.items():
        (tmp_path / "src" / name).write_bytes(content)
    from gpaisec.crypto import seal_directory

    seal_directory(tmp_path / "src", tmp_path / "sealed", local_provider, "model-a")
    with memory_dir(tmp_path / "sealed", local_provider) as md:
        assert set(md.files) == set(files)
        for name, content in files.items():
            assert md.files[name].read_bytes() == content
        paths = list(md.files.values())
    assert not any(p.exists() for p in paths)


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or not is_memory_backed("/dev/shm"), reason="no tmpfs at /dev/shm"
)
def test_memory_dir_tmpfs_and_cleanup(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    (tmp_path / "w").write_bytes(b"weights" * 1000)
    seal_file(tmp_path / "w", tmp_path / "w.sealed", local_provider, "model-a")
    with memory_dir(tmp_path / "w.sealed", local_provider, base="/dev/shm") as md:
        assert md.root is not None
        assert md.root.parent == Path("/dev/shm")
        assert md.files["w"].read_bytes() == b"weights" * 1000
        root = md.root
    assert not root.exists()


def test_memory_dir_refuses_disk(
    tmp_path: Path, local_provider: LocalKeyProvider, caplog: pytest.LogCaptureFixture
) -> None:
    if is_memory_backed(tmp_path):
        pytest.skip(f"{tmp_path} is itself on tmpfs")
    (tmp_path / "w").write_bytes(b"x" * 10)
    seal_file(tmp_path / "w", tmp_path / "w.sealed", local_provider, "model-a")
    with (
        pytest.raises(ConfigError, match="not on a memory-backed"),
        memory_dir(tmp_path / "w.sealed", local_provider, base=tmp_path),
    ):
        pass
    assert not list(tmp_path.glob("gpaisec-unsealed-*"))
    with memory_dir(tmp_path / "w.sealed", local_provider, base=tmp_path, unsafe_persistent=True) as md:
        assert md.files["w"].read_bytes() == b"x" * 10
    assert "UNSAFE" in caplog.text
    assert not list(tmp_path.glob("gpaisec-unsealed-*"))


def test_memory_dir_tampered_file_leaves_nothing(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    (tmp_path / "w").write_bytes(os.urandom(50_000))
    seal_file(tmp_path / "w", tmp_path / "w.sealed", local_provider, "model-a", chunk_size=4096)
    blob = bytearray((tmp_path / "w.sealed").read_bytes())
    blob[-3] ^= 1
    (tmp_path / "w.sealed").write_bytes(bytes(blob))
    before = set(Path("/dev/shm").iterdir())
    with pytest.raises(IntegrityError), memory_dir(tmp_path / "w.sealed", local_provider, base="/dev/shm"):
        pass
    assert set(Path("/dev/shm").iterdir()) == before
    with pytest.raises(IntegrityError), open_file(tmp_path / "w.sealed", local_provider) as r:
        b"".join(r)
