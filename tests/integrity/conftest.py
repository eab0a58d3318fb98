"""Fixtures for the integrity tests: EC key files and small generated model directories.

Tests marked ``clean_process`` run in a fresh interpreter when this one has other threads: hashing in
forked processes happens only in a single-threaded process (see ``integrity._engine``), and earlier
tests can leave idle threads behind (schemathesis' ASGI portal, for one). Such a test is then run
again, alone, in a child interpreter, and its result is this test's result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def write_key_pair(directory: Path, name: str, curve: ec.EllipticCurve | None = None) -> tuple[Path, Path]:
    """Write ``name.pem`` (private, unencrypted) and ``name.pub`` (public) and return their paths."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def build_model(root: Path, files: Mapping[str, bytes]) -> Path:
    """Create ``root`` holding ``files`` (model path -> content)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def weights(n: int, seed: int = 0) -> bytes:
    """``n`` bytes of reproducible pseudo-random content (stand-in for tensor data)."""
    import random

    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two P-256 key pairs: ``signer`` and ``other``."""
    d = tmp_path_factory.mktemp("keys")
    signer_priv, signer_pub = write_key_pair(d, "signer")
    other_priv, other_pub = write_key_pair(d, "other")
    return {
        "private": signer_priv,
        "public": signer_pub,
        "other_private": other_priv,
        "other_public": other_pub,
    }


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A small model directory: a config, a tokenizer and two weight shards, one of them empty."""
    return build_model(
        tmp_path / "model",
        {
            "config.json": b'{"hidden": 8}',
            "tokenizer/vocab.txt": b"a\nb\nc\n",
            "model-00001-of-00002.safetensors": weights(300_000, 1),
            "model-00002-of-00002.safetensors": weights(70_001, 2),
            "empty.bin": b"",
        },
    )


def mode_bits(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


CHILD_ENV = "GPAISEC_TEST_CLEAN_CHILD"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clean_process: needs a process with no other thread (forks)")


def _quiet(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while threading.active_count() > 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if pyfuncitem.get_closest_marker("clean_process") is None or os.environ.get(CHILD_ENV):
        return None
    if _quiet(5.0):  # idle helper threads of earlier tests end within seconds
        return None
    others = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        env={**os.environ, CHILD_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{pyfuncitem.nodeid} failed in a clean interpreter (run there because of threads {others}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    )
    return True
