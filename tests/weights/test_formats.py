"""Sniffing weight formats from bytes, and the hostile-input-safe safetensors header parser."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.errors import GpaisecError, InputError
from gpaisec.weights.formats import (
    DTYPE_BITS,
    MAX_SAFETENSORS_HEADER,
    Format,
    SafetensorsError,
    SafetensorsProblem,
    UnreadableFileError,
    parse_safetensors_header,
    read_safetensors_header,
    safetensors_header_length,
    sniff,
    sniff_bytes,
)
from tests.weights.conftest import (
    Tensor,
    make_hostile_module,
    make_model,
    safetensors_bytes,
    write_safetensors,
)

# --------------------------------------------------------------------------------------------------
# Committed fixtures


def test_committed_fixtures_match_the_script(make_hostile: ModuleType, hostile: Path) -> None:
    built = make_hostile.build()
    assert built, "the script builds no fixtures"
    for relative, data in built.items():
        path = hostile / relative
        assert path.is_file(), f"{relative} is missing: run python tests/fixtures/make_hostile.py"
        assert path.read_bytes() == data, f"{relative} is stale: run python tests/fixtures/make_hostile.py"


FORMAT_CASES = [(f"formats/{n}", f) for n, f in make_hostile_module.FORMATS_EXPECTED.items()] + [
    (f"pickles/{n}", f) for n, f in make_hostile_module.PICKLES_EXPECTED.items()
]


@pytest.mark.parametrize("format_case", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_every_format_is_sniffed_from_bytes_whatever_the_name(
    format_case: tuple[str, str], hostile: Path
) -> None:
    relative, expected = format_case
    path = hostile / relative
    assert sniff(path) == Format(expected), relative
    assert sniff(str(path).encode()) == Format(expected)
    assert sniff_bytes(path.read_bytes()) == Format(expected)
    with path.open("rb") as handle:
        handle.seek(3)
        assert sniff(handle) == Format(expected)
        assert handle.tell() == 3, "sniff must restore the file position"


def test_misleading_extensions_cover_every_weight_format(make_hostile: ModuleType) -> None:
    sniffed = set(make_hostile.FORMATS_EXPECTED.values()) | set(make_hostile.PICKLES_EXPECTED.values())
    assert sniffed == {f.value for f in Format}
    for name, fmt in make_hostile.FORMATS_EXPECTED.items():
        if fmt != "unknown":
            # The name never gives the format away.
            assert not name.endswith(f".{fmt}"), name


def test_malicious_pickles_are_sniffed_never_loaded(hostile: Path, tmp_path: Path) -> None:
    marker = Path("/tmp/gpaisec-pwned")
    marker.unlink(missing_ok=True)
    for path in sorted((hostile / "pickles").iterdir()):
        assert sniff(path).is_weights
    assert not marker.exists()


def test_sniff_reads_only_the_start_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with path.open("wb") as handle:
        handle.write(b"GGUF" + b"\0" * 60)
        handle.truncate(1 << 30)  # sparse 1 GiB
    tracemalloc.start()
    try:
        assert sniff(path) is Format.GGUF
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_sniff_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="not a regular file"):
        sniff(tmp_path)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFileError, match="not a regular file"):
        sniff(fifo)  # must not block waiting for a writer
    with pytest.raises(UnreadableFileError, match="cannot open") as info:
        sniff(tmp_path / "missing")
    assert isinstance(info.value, InputError)
    assert info.value.hint


def test_real_generated_safetensors_is_recognised(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "weights.txt", make_model(1))
    assert sniff(path) is Format.SAFETENSORS
    # A header longer than the sniffed head is still recognised.
    many = {f"tensor.{i:05d}.with.a.long.name": Tensor("U8", (4,), b"abcd") for i in range(400)}
    long_header = write_safetensors(tmp_path / "long", many)
    assert sniff(long_header) is Format.SAFETENSORS


@given(st.binary(max_size=6000))
@settings(max_examples=300)
def test_sniffing_arbitrary_bytes_never_raises(data: bytes) -> None:
    assert isinstance(sniff_bytes(data), Format)


@given(st.binary(max_size=512))
def test_sniffing_never_raises_after_any_magic(tail: bytes) -> None:
    for magic in (b"PK\x03\x04", b"PK\x05\x06", b"\x80\x04", b"\x08\x09", struct.pack("<Q", 30) + b"{"):
        assert isinstance(sniff_bytes(magic + tail), Format)


# --------------------------------------------------------------------------------------------------
# The safetensors header parser: hostile fixtures


HEADER_CASES = sorted(make_hostile_module.SAFETENSORS_EXPECTED.items())


@pytest.mark.parametrize("hostile_header", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_hostile_headers_raise_a_clear_error_without_allocating(
    hostile_header: tuple[str, str], hostile: Path
) -> None:
    name, problem = hostile_header
    path = hostile / "safetensors" / name
    tracemalloc.start()
    try:
        with pytest.raises(SafetensorsError) as info:
            read_safetensors_header(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = info.value
    assert error.problem is SafetensorsProblem(problem), error.message
    assert isinstance(error, InputError)
    assert isinstance(error, GpaisecError)
    assert error.exit_code == 2
    assert str(path) in error.message
    assert problem in error.message
    assert error.hint
    assert "tampered" in error.hint
    assert peak < 2 * 1024 * 1024, f"{name}: parsing allocated {peak} bytes"


def test_anomalies_are_reported_and_strict_mode_refuses_them(make_hostile: ModuleType, hostile: Path) -> None:
    for name, anomalies in make_hostile.SAFETENSORS_ANOMALIES.items():
        path = hostile / "safetensors" / name
        header = read_safetensors_header(path)
        assert tuple(a.value for a in header.anomalies) == anomalies
        with pytest.raises(SafetensorsError) as info:
            read_safetensors_header(path, strict=True)
        assert info.value.problem.value == anomalies[0]


@pytest.mark.parametrize(
    ("length", "file_size", "problem"),
    [
        (2**64 - 1, 100, SafetensorsProblem.HEADER_TOO_LARGE),
        (2**63, 2**63 + 100, SafetensorsProblem.HEADER_TOO_LARGE),
        (MAX_SAFETENSORS_HEADER + 1, 2 * MAX_SAFETENSORS_HEADER, SafetensorsProblem.HEADER_TOO_LARGE),
        (MAX_SAFETENSORS_HEADER, 1000, SafetensorsProblem.HEADER_PAST_EOF),
        (993, 1000, SafetensorsProblem.HEADER_PAST_EOF),
    ],
)
def test_length_prefix_is_checked_before_anything_is_read(
    length: int, file_size: int, problem: SafetensorsProblem
) -> None:
    with pytest.raises(SafetensorsError) as info:
        safetensors_header_length(struct.pack("<Q", length), file_size)
    assert info.value.problem is problem


def test_a_huge_claimed_header_in_a_sparse_file_is_not_read(tmp_path: Path) -> None:
    # 99 MB claimed, and present (sparse): within the limit, so it is read -- but a 200 MB claim in
    # a 300 MB sparse file is refused before any allocation.
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", 200_000_000) + b"{")
        handle.truncate(300_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(SafetensorsError) as info:
            read_safetensors_header(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.problem is SafetensorsProblem.HEADER_TOO_LARGE
    assert peak < 64 * 1024


def test_a_lower_limit_can_be_set_by_the_caller(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m", make_model(2))
    with pytest.raises(SafetensorsError) as info:
        read_safetensors_header(path, max_header_bytes=64)
    assert info.value.problem is SafetensorsProblem.HEADER_TOO_LARGE


# --------------------------------------------------------------------------------------------------
# Valid headers


def test_a_valid_file_parses_to_sorted_tensors(tmp_path: Path) -> None:
    model = make_model(3)
    path = write_safetensors(
        tmp_path / "m", model, metadata={"format": "pt"}, order=sorted(model, reverse=True)
    )
    header = read_safetensors_header(path)
    assert header.metadata == (("format", "pt"),)
    assert header.anomalies == ()
    assert {t.name for t in header.tensors} == set(model)
    begins = [t.begin for t in header.tensors]
    assert begins == sorted(begins)
    data = path.read_bytes()
    for info in header.tensors:
        assert info.dtype == model[info.name].dtype
        assert info.shape == model[info.name].shape
        assert data[header.data_start + info.begin : header.data_start + info.end] == model[info.name].data
    with path.open("rb") as handle:
        assert read_safetensors_header(handle) == header


def test_sub_byte_and_empty_tensors() -> None:
    tensors = {
        "fp4": Tensor("F4", (4,), b"\x12\x34"),
        "fp6": Tensor("F6_E2M3", (4,), b"\x01\x02\x03"),
        "empty": Tensor("F32", (0, 7), b""),
        "scalar": Tensor("F64", (), b"\0" * 8),
    }
    data = safetensors_bytes(tensors)
    header = parse_safetensors_header(data[: 8 + struct.unpack("<Q", data[:8])[0]], len(data))
    assert {t.name: t.nbytes for t in header.tensors} == {"empty": 0, "fp4": 2, "fp6": 3, "scalar": 8}


# --------------------------------------------------------------------------------------------------
# Property tests: generated headers, valid and hostile

_dtypes = st.sampled_from(sorted(d for d, bits in DTYPE_BITS.items() if bits % 8 == 0))
_shapes = st.lists(st.integers(0, 6), max_size=4).map(tuple)


@st.composite
def _models(draw: st.DrawFn) -> dict[str, Tensor]:
    names = draw(st.lists(st.text(min_size=0, max_size=12), max_size=6, unique=True))
    tensors = {}
    for name in names:
        if name == "__metadata__":
            continue
        dtype, shape = draw(_dtypes), draw(_shapes)
        size = DTYPE_BITS[dtype] // 8
        for dim in shape:
            size *= dim
        tensors[name] = Tensor(dtype, shape, draw(st.binary(min_size=size, max_size=size)))
    return tensors


@given(_models(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_generated_valid_files_round_trip(model: dict[str, Tensor], metadata: dict[str, str]) -> None:
    data = safetensors_bytes(model, metadata=metadata)
    length = struct.unpack("<Q", data[:8])[0]
    header = parse_safetensors_header(data[: 8 + length], len(data), strict=True)
    assert {t.name: (t.dtype, t.shape, t.nbytes) for t in header.tensors} == {
        n: (t.dtype, t.shape, len(t.data)) for n, t in model.items()
    }
    assert dict(header.metadata) == metadata


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
_entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from([*DTYPE_BITS, "F13", ""]) | _json,
        "shape": st.lists(st.integers(-2, 2**40), max_size=4) | _json,
        "data_offsets": st.lists(st.integers(-5, 2**65), min_size=0, max_size=3) | _json,
    },
    optional={"extra": _json},
)


@given(
    st.dictionaries(st.text(max_size=6), _entries | _json, max_size=5),
    st.integers(0, 256),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_generated_hostile_headers_either_parse_consistently_or_raise_safetensors_error(
    header: dict[str, object], data_size: int
) -> None:
    body = json.dumps(header).encode()
    blob = struct.pack("<Q", len(body)) + body
    try:
        parsed = parse_safetensors_header(blob, len(blob) + data_size)
    except SafetensorsError:
        return  # a clear, typed refusal is the acceptable outcome
    end = 0
    for tensor in parsed.tensors:
        assert 0 <= end <= tensor.begin <= tensor.end <= data_size
        assert tensor.dtype in DTYPE_BITS
        bits = DTYPE_BITS[tensor.dtype]
        for dim in tensor.shape:
            bits *= dim
        assert bits == 8 * tensor.nbytes
        end = tensor.end


@given(st.binary(max_size=300), st.integers(0, 1000))
def test_arbitrary_header_bytes_only_raise_safetensors_error(body: bytes, extra: int) -> None:
    blob = struct.pack("<Q", len(body)) + body
    with contextlib.suppress(SafetensorsError):
        parse_safetensors_header(blob, len(blob) + extra)


@given(st.binary(min_size=0, max_size=64))
def test_mutated_valid_header_never_crashes(noise: bytes) -> None:
    data = bytearray(safetensors_bytes(make_model(9, layers=1, dim=8)))
    for index, byte in enumerate(noise):
        data[(index * 7919) % len(data)] ^= byte
    with contextlib.suppress(SafetensorsError):
        read_safetensors_header(io.BytesIO(bytes(data)))
