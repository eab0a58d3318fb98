"""Sealed-file format: round trips, random access, and tampering of every kind -> IntegrityError."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.crypto import (
    SealedIntegrityError,
    inspect,
    open_file,
    seal_file,
    seal_to,
    secret_from_env,
    unseal_to,
)
from gpaisec.crypto import sealed as fmt
from gpaisec.crypto.local import LocalKeyProvider
from gpaisec.errors import InputError, IntegrityError
from tests.crypto.conftest import FAST_ARGON

CS = 4096  # the smallest chunk size: many chunks from small files


def _unseal_bytes(path: Path, provider: LocalKeyProvider, workers: int | None = None) -> bytes:
    buf = io.BytesIO()
    unseal_to(path, buf, provider, workers=workers)
    return buf.getvalue()


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 5 * CS + 17, 64 * CS])
@pytest.mark.parametrize("workers", [1, 2])
def test_round_trip(tmp_path: Path, local_provider: LocalKeyProvider, size: int, workers: int) -> None:
    data = os.urandom(size)
    (tmp_path / "w.bin").write_bytes(data)
    res = seal_file(
        tmp_path / "w.bin", tmp_path / "w.sealed", local_provider, "model-a", chunk_size=CS, workers=workers
    )
    sealed = (tmp_path / "w.sealed").read_bytes()
    assert sealed.startswith(b"GPAISEAL")
    assert size < 64 or data not in sealed
    assert res.sealed_length == len(sealed)
    core, slots = inspect(tmp_path / "w.sealed")
    assert core.chunk_count == max(1, -(-size // CS))  # an exact multiple has no empty tail chunk
    assert [s.key_version for s in slots] == [1]
    assert _unseal_bytes(tmp_path / "w.sealed", local_provider, workers) == data
    with open_file(tmp_path / "w.sealed", local_provider) as r:
        assert b"".join(r) == data


def test_sha256_digest_and_default_chunk_size(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    data = os.urandom(5 << 20)
    (tmp_path / "w").write_bytes(data)
    res = seal_file(tmp_path / "w", tmp_path / "s", local_provider, "model-a", digest="sha256")
    import hashlib

    assert res.digest == hashlib.sha256(data).hexdigest()
    assert _unseal_bytes(tmp_path / "s", local_provider) == data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 20 * CS), length=st.integers(0, 3 * CS))
def test_random_access(tmp_path: Path, local_provider: LocalKeyProvider, offset: int, length: int) -> None:
    path = tmp_path / "ra.sealed"
    data_path = tmp_path / "ra.bin"
    if not path.exists():
        data_path.write_bytes(os.urandom(17 * CS + 123))
        seal_file(data_path, path, local_provider, "model-a", chunk_size=CS)
    data = data_path.read_bytes()
    with open_file(path, local_provider) as r:
        assert r.pread(offset, length) == data[offset : offset + length]
        i = min(offset // CS, r.chunk_count - 1)
        assert r.read_chunk(i) == data[i * CS : (i + 1) * CS]


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[LocalKeyProvider, Path, bytes, Path, bytes]:
    d = tmp_path_factory.mktemp("tamper")
    os.environ["GPAISEC_TEST_TAMPER_PASS"] = "pw"
    p = LocalKeyProvider(d / "keys", secret_from_env("GPAISEC_TEST_TAMPER_PASS"), params=FAST_ARGON)
    p.create("model-a")
    out = []
    for name in ("a", "b"):
        data = os.urandom(6 * CS + 100)
        (d / name).write_bytes(data)
        seal_file(d / name, d / f"{name}.sealed", p, "model-a", chunk_size=CS)
        out += [d / f"{name}.sealed", data]
    return p, out[0], out[1], out[2], out[3]


def _expect_rejected(provider: LocalKeyProvider, path: Path, original: bytes | None = None) -> None:
    """Opening and unsealing must raise IntegrityError and leave no plaintext in the destination.

    If ``original`` is given, the only other acceptable outcome is the exact original plaintext
    (a change confined to the unused crash-recovery key slot).
    """
    buf = io.BytesIO()
    try:
        unseal_to(path, buf, provider)
    except IntegrityError:
        assert buf.getvalue() == b""
        return
    assert original is not None, "a tampered file unsealed"
    assert buf.getvalue() == original, "a tampered file unsealed to other plaintext"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flip_any_byte(
    sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], data: st.DataObject
) -> None:
    p, a, a_plain, _, _ = sealed_pair
    blob = bytearray(a.read_bytes())
    core = fmt.parse_core(bytes(blob))
    # Bias towards the header, which is small but dense with meaning.
    pos = data.draw(
        st.one_of(st.integers(0, core.payload_offset - 1), st.integers(0, len(blob) - 1)), label="position"
    )
    blob[pos] ^= data.draw(st.integers(1, 255), label="xor")
    t = a.with_name("flipped.sealed")
    t.write_bytes(bytes(blob))
    inactive = range(core.slot_offset(1), core.slot_offset(1) + core.slot_size)
    _expect_rejected(p, t, a_plain if pos in inactive else None)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(1, 6 * (CS + 16) + 116))
def test_truncate(sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], cut: int) -> None:
    p, a, _, _, _ = sealed_pair
    blob = a.read_bytes()
    t = a.with_name("cut.sealed")
    t.write_bytes(blob[:-cut])
    _expect_rejected(p, t)


@settings(max_examples=30, deadline=None)
@given(extra=st.binary(min_size=1, max_size=CS + 40))
def test_extend(sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], extra: bytes) -> None:
    p, a, _, _, _ = sealed_pair
    t = a.with_name("ext.sealed")
    t.write_bytes(a.read_bytes() + extra)
    _expect_rejected(p, t)


def _chunks(blob: bytes) -> tuple[fmt.Core, list[bytes]]:
    core = fmt.parse_core(blob)
    return core, [blob[core.chunk_offset(i) : core.chunk_offset(i) + core.chunk_length(i) + 16]
                  for i in range(core.chunk_count)]  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(i=st.integers(0, 5), j=st.integers(0, 5))
def test_reorder_full_chunks(
    sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], i: int, j: int
) -> None:
    p, a, _, _, _ = sealed_pair
    blob = a.read_bytes()
    core, chunks = _chunks(blob)
    if i == j:
        j = (i + 1) % 6
    chunks[i], chunks[j] = chunks[j], chunks[i]
    t = a.with_name("reordered.sealed")
    t.write_bytes(blob[: core.payload_offset] + b"".join(chunks))
    _expect_rejected(p, t)


def test_drop_last_chunk_and_mark_earlier_final(
    sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes],
) -> None:
    """Cutting at a chunk boundary (and fixing the length in the core) is still caught."""
    p, a, _, _, _ = sealed_pair
    blob = a.read_bytes()
    core, chunks = _chunks(blob)
    hdr = bytearray(blob[: core.payload_offset])
    struct.pack_into(">Q", hdr, 20, 5 * CS)  # plaintext length field
    t = a.with_name("short.sealed")
    t.write_bytes(bytes(hdr) + b"".join(chunks[:5]))
    _expect_rejected(p, t)


def test_splice_between_files(sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes]) -> None:
    p, a, _, b, _ = sealed_pair
    ablob, bblob = a.read_bytes(), b.read_bytes()
    core, achunks = _chunks(ablob)
    _, bchunks = _chunks(bblob)
    t = a.with_name("spliced.sealed")
    t.write_bytes(bblob[: core.payload_offset] + ablob[core.payload_offset :])  # B's header on A's data
    _expect_rejected(p, t)
    t.write_bytes(ablob[: core.payload_offset] + b"".join(achunks[:3] + bchunks[3:]))  # mixed chunks
    _expect_rejected(p, t)
    t.write_bytes(
        ablob[: fmt.CORE_SIZE] + bblob[fmt.CORE_SIZE : core.payload_offset] + ablob[core.payload_offset :]
    )
    _expect_rejected(p, t)  # B's key slots on A's core


def test_wrong_key_version(sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes]) -> None:
    p, a, _, _, _ = sealed_pair
    blob = bytearray(a.read_bytes())
    off = fmt.CORE_SIZE + 5 + len(b"model-a")
    assert struct.unpack_from(">I", blob, off)[0] == 1
    struct.pack_into(">I", blob, off, 2)
    t = a.with_name("wrongver.sealed")
    t.write_bytes(bytes(blob))
    with pytest.raises(SealedIntegrityError, match="no key slot"):
        unseal_to(t, io.BytesIO(), p)


def test_failed_unseal_truncates_regular_file(
    sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], tmp_path: Path
) -> None:
    p, a, _, _, _ = sealed_pair
    blob = bytearray(a.read_bytes())
    blob[-1] ^= 1  # the last chunk: earlier chunks are written before it fails
    t = tmp_path / "late.sealed"
    t.write_bytes(bytes(blob))
    out = tmp_path / "out"
    with out.open("wb") as fh:
        fh.write(b"keep")
        with pytest.raises(IntegrityError):
            unseal_to(t, fh.fileno(), p, workers=2)
    assert out.read_bytes() == b"keep"


def test_not_sealed(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    (tmp_path / "x").write_bytes(b"hello world" * 20)
    with pytest.raises(SealedIntegrityError, match="not a gpaisec sealed file"):
        open_file(tmp_path / "x", local_provider)


# -- the parallel pipeline ------------------------------------------------------------------


def _pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gpaiseal-")]


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_sink_gets_chunks_in_order_one_call_at_a_time(
    tmp_path: Path, local_provider: LocalKeyProvider, workers: int
) -> None:
    data = os.urandom(40 * CS + 7)
    (tmp_path / "w").write_bytes(data)
    seal_file(tmp_path / "w", tmp_path / "s", local_provider, "model-a", chunk_size=CS, workers=workers)
    calls: list[bytes] = []
    inside = threading.Semaphore(1)

    def sink(d: memoryview) -> None:
        assert inside.acquire(blocking=False), "the sink was called while another call was running"
        try:
            calls.append(bytes(d))
            time.sleep(0.0005)  # give an overlapping call the chance to happen
        finally:
            inside.release()

    with open_file(tmp_path / "s", local_provider) as r:
        r.readall_into(sink, workers=workers)
    assert [len(c) for c in calls] == [CS] * 40 + [7]
    assert b"".join(calls) == data
    assert _pipeline_threads() == []


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_first_bad_chunk_is_named_whatever_the_timing(
    sealed_pair: tuple[LocalKeyProvider, Path, bytes, Path, bytes], tmp_path: Path, workers: int
) -> None:
    p, a, a_plain, _, _ = sealed_pair
    blob = bytearray(a.read_bytes())
    core = fmt.parse_core(bytes(blob))
    for i in (5, 1, 3):  # chunk 1 is not the first one a worker could reach
        blob[core.chunk_offset(i) + 9] ^= 0x40
    t = tmp_path / "bad.sealed"
    t.write_bytes(bytes(blob))
    got: list[bytes] = []
    with (
        pytest.raises(SealedIntegrityError, match=r"^chunk 1 of 7 does not verify"),
        open_file(t, p) as r,
    ):
        r.readall_into(lambda d: got.append(bytes(d)), workers=workers)
    assert got == [a_plain[:CS]]  # chunk 0 (authenticated) and nothing after the bad chunk
    assert _pipeline_threads() == []


def test_a_failing_sink_stops_the_pipeline(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    (tmp_path / "w").write_bytes(os.urandom(30 * CS))
    seal_file(tmp_path / "w", tmp_path / "s", local_provider, "model-a", chunk_size=CS)
    seen: list[int] = []

    def sink(d: memoryview) -> None:
        seen.append(len(d))
        if len(seen) == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), open_file(tmp_path / "s", local_provider) as r:
        r.readall_into(sink, workers=3)
    assert len(seen) == 3
    assert _pipeline_threads() == []


@pytest.mark.parametrize("direction", ["seal", "unseal"])
def test_memory_does_not_grow_with_the_file(
    tmp_path: Path, local_provider: LocalKeyProvider, direction: str
) -> None:
    cs = 64 << 10
    peaks = []
    for chunks in (8, 128):
        src, sealed = tmp_path / f"w{chunks}", tmp_path / f"s{chunks}"
        src.write_bytes(os.urandom(chunks * cs))
        if direction == "unseal":
            seal_file(src, sealed, local_provider, "model-a", chunk_size=cs)
        fd = os.open(os.devnull, os.O_WRONLY)
        tracemalloc.start()
        try:
            if direction == "seal":
                seal_to(src, fd, local_provider, "model-a", chunk_size=cs, workers=2)
            else:
                unseal_to(sealed, fd, local_provider, workers=2)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
            os.close(fd)
    assert peaks[0] >= 4 * cs  # the buffers are traced: the comparison below means something
    assert peaks[1] < peaks[0] + cs, f"peak {peaks[1]} for 128 chunks vs {peaks[0]} for 8"


# -- atomic output ---------------------------------------------------------------------------


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "partial-file"])
def test_seal_file_output_is_whole_or_absent(
    tmp_path: Path, local_provider: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    from gpaisec.crypto import files

    if not unnamed:
        monkeypatch.setattr(files, "_unnamed_file", lambda directory: None)
    elif files._unnamed_file(tmp_path) is None:
        pytest.skip("this file system has no O_TMPFILE")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    data = os.urandom(9 * CS)
    (tmp_path / "w").write_bytes(data)
    seal_file(tmp_path / "w", out_dir / "w.sealed", local_provider, "model-a", chunk_size=CS)
    assert _unseal_bytes(out_dir / "w.sealed", local_provider) == data

    with pytest.raises(InputError, match="already exists"):
        seal_file(tmp_path / "w", out_dir / "w.sealed", local_provider, "model-a")
    data2 = os.urandom(3 * CS)
    (tmp_path / "w").write_bytes(data2)
    seal_file(tmp_path / "w", out_dir / "w.sealed", local_provider, "model-a", overwrite=True)
    assert _unseal_bytes(out_dir / "w.sealed", local_provider) == data2

    real_encrypt = fmt.encrypt_stream

    def failing(*args: object, **kwargs: object) -> fmt.Core:
        real_encrypt(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(fmt, "encrypt_stream", failing)
    with pytest.raises(OSError, match="disk full"):
        seal_file(tmp_path / "w", out_dir / "new.sealed", local_provider, "model-a")
    with pytest.raises(OSError, match="disk full"):
        seal_file(tmp_path / "w", out_dir / "w.sealed", local_provider, "model-a", overwrite=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["w.sealed"]
    assert _unseal_bytes(out_dir / "w.sealed", local_provider) == data2
