"""Cheap fingerprints of weight files, and the full digests that confirm them.

Discovery must recognise a copy of registered weights without hashing every file it walks past.
Three levels of evidence, from cheapest to most expensive:

* :class:`FileFingerprint` (:func:`fingerprint_file`, at scan time): format, size, a digest of the
  header and a digest of a few sampled blocks, and for safetensors a :class:`TensorSample` per
  tensor. Reads about 1 MiB per file plus 16 KiB per tensor, whatever the file's size.
* :class:`TensorSample`: a digest of sampled blocks *of one tensor's bytes*, keyed with its dtype
  and shape. It does not depend on the tensor's name, its offset or the file it is in, so a tensor
  is recognised after renaming, moving or re-sharding into any number of files.
* :class:`FileDigests` (:func:`digest_file`, once at registration and again to confirm a match):
  BLAKE3 of the whole file (the same value ``b3sum`` prints) and of every tensor, alongside the
  sampled fingerprint so that registration stores exactly the values a scan computes.

Hashing scheme version 1 (every parameter is recorded in :class:`SamplingScheme`; all BLAKE3-256):

1. *Blocks.* For a byte range of ``total`` bytes sampled with ``count`` blocks of ``block`` bytes:
   if ``total <= block * count`` the whole range is one block; otherwise block ``i`` (0-based)
   starts at ``i * (total - block) // (count - 1)``, so the first and last blocks are included and
   blocks never overlap.
2. *Header digest.* Plain BLAKE3 of the safetensors length prefix and JSON header; for every other
   format, of the first ``file_block`` bytes.
3. *File sample digest.* BLAKE3 in derive-key mode, context ``"gpaisec weights file sample v1"``,
   over ``u64le(size) u64le(file_block) u64le(file_blocks)`` then the file's blocks (step 1).
4. *Tensor sample digest.* Derive-key context ``"gpaisec weights tensor sample v1"``, over
   ``u64le(nbytes) u64le(tensor_block) u64le(tensor_blocks)`` then the blocks of the tensor's bytes
   (step 1, offsets relative to the tensor's first byte). dtype and shape are part of the key.
5. *Full digests.* Plain BLAKE3 of the whole file and of each tensor's bytes.

A tensor is *distinctive* (usable as evidence) when it has at least :data:`MIN_DISTINCTIVE_BYTES`
and its sampled elements take at least :data:`MIN_DISTINCT_VALUES` different values: an all-zero
bias or an all-ones norm is the same in unrelated models and must not produce a match.

Files are opened without blocking on FIFOs and only if regular; the size, modification time and
identity are compared with the walker's (``expected``) before reading and again after, and a
difference raises :class:`~gpaisec.weights.formats.FileChangedError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NewType, TypeAlias

from blake3 import blake3

from gpaisec.errors import InputError, IntegrityError
from gpaisec.weights.formats import (
    DTYPE_BITS,
    HEAD_BYTES,
    FileChangedError,
    Format,
    SafetensorsHeader,
    SealedHeader,
    UnreadableFileError,
    _FdSource,
    _open_regular,
    _read_header,
    _sniff_source,
    display_path,
    parse_sealed_header,
)

__all__ = [
    "DEFAULT_SCHEME",
    "MIN_DISTINCTIVE_BYTES",
    "MIN_DISTINCT_VALUES",
    "Digest",
    "FileDigests",
    "FileFingerprint",
    "FileKey",
    "FingerprintDecodeError",
    "NotWeightsError",
    "SamplingScheme",
    "StatSnapshot",
    "TensorDigest",
    "TensorKey",
    "TensorSample",
    "digest_file",
    "file_digest",
    "fingerprint_file",
    "is_distinctive",
    "sample_ranges",
]

Digest = NewType("Digest", str)
"""A BLAKE3-256 digest as 64 lower-case hex digits."""

TensorKey: TypeAlias = tuple[str, tuple[int, ...], Digest]
"""(dtype, shape, sampled digest): how a tensor is looked up, whatever its name or file."""

FileKey: TypeAlias = tuple[str, int, Digest, Digest]
"""(format, size, header digest, sample digest): how a whole file is looked up."""

MIN_DISTINCTIVE_BYTES: Final = 1024
MIN_DISTINCT_VALUES: Final = 16

_FILE_CONTEXT: Final = "gpaisec weights file sample v1"
_TENSOR_CONTEXT: Final = "gpaisec weights tensor sample v1"
_READ_CHUNK: Final = 8 << 20
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class NotWeightsError(InputError):
    """A file given for registration is not in a recognised weight format."""

    title = "not a weight file"


class FingerprintDecodeError(IntegrityError):
    """A stored fingerprint (JSON) is malformed: the record was corrupted or hand-edited."""

    title = "stored fingerprint is malformed"


# --------------------------------------------------------------------------------------------------
# JSON helpers (stored fingerprints are checked field by field when loaded)


def _bad(what: str) -> FingerprintDecodeError:
    return FingerprintDecodeError(
        f"stored fingerprint is malformed: {what}",
        hint="re-register the artifact to recompute its fingerprints",
    )


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise _bad(f"missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _bad(f"{key!r} has the wrong type")
    return value


def _get_digest(data: Mapping[str, Any], key: str) -> Digest:
    value = _get(data, key, str)
    if not _HEX64.fullmatch(value):
        raise _bad(f"{key!r} is not a 64-digit lower-case hex digest")
    return Digest(value)


def _get_count(data: Mapping[str, Any], key: str) -> int:
    value = _get(data, key, int)
    if value < 0:
        raise _bad(f"{key!r} is negative")
    return int(value)


def _get_shape(data: Mapping[str, Any]) -> tuple[int, ...]:
    shape = _get(data, "shape", list)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad("'shape' must be a list of non-negative integers")
    return tuple(shape)


def _get_dtype(data: Mapping[str, Any]) -> str:
    dtype = _get(data, "dtype", str)
    if dtype not in DTYPE_BITS:
        raise _bad(f"unknown dtype {dtype!r}")
    return str(dtype)


# --------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class SamplingScheme:
    """Every parameter that shapes a sampled digest; fingerprints compare only under equal schemes."""

    version: int = 1
    algorithm: str = "blake3"
    file_block: int = 64 * 1024
    file_blocks: int = 16
    tensor_block: int = 4 * 1024
    tensor_blocks: int = 4

    def __post_init__(self) -> None:
        if self.version != 1 or self.algorithm != "blake3":
            raise InputError(
                f"sampling scheme v{self.version}/{self.algorithm} is not supported",
                hint="this gpaisec computes scheme v1 with blake3; upgrade gpaisec or re-register",
            )
        for name in ("file_block", "tensor_block"):
            value = getattr(self, name)
            if not 64 <= value <= 64 << 20 or value % 64:
                raise InputError(f"{name} must be a multiple of 64 between 64 B and 64 MiB, got {value}")
        for name in ("file_blocks", "tensor_blocks"):
            value = getattr(self, name)
            if not 2 <= value <= 1024:
                raise InputError(f"{name} must be between 2 and 1024, got {value}")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "file_block": self.file_block,
            "file_blocks": self.file_blocks,
            "tensor_block": self.tensor_block,
            "tensor_blocks": self.tensor_blocks,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SamplingScheme:
        try:
            return cls(
                version=_get(data, "version", int),
                algorithm=_get(data, "algorithm", str),
                file_block=_get(data, "file_block", int),
                file_blocks=_get(data, "file_blocks", int),
                tensor_block=_get(data, "tensor_block", int),
                tensor_blocks=_get(data, "tensor_blocks", int),
            )
        except FingerprintDecodeError:
            raise
        except InputError as exc:
            raise _bad(f"sampling scheme: {exc.message}") from None


DEFAULT_SCHEME: Final = SamplingScheme()


@dataclass(frozen=True)
class TensorSample:
    """The cheap fingerprint of one safetensors tensor; ``name`` is informational only."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    sample: Digest

    @property
    def key(self) -> TensorKey:
        return (self.dtype, self.shape, self.sample)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "sample": self.sample,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSample:
        return cls(
            name=_get(data, "name", str),
            dtype=_get_dtype(data),
            shape=_get_shape(data),
            nbytes=_get_count(data, "nbytes"),
            sample=_get_digest(data, "sample"),
        )


@dataclass(frozen=True)
class FileFingerprint:
    """The cheap fingerprint of a weight file (see the module docs for how each digest is made).

    ``tensors`` is empty unless the format is safetensors; ``anomalies`` lists the tolerated
    header oddities (:class:`~gpaisec.weights.formats.SafetensorsProblem` values). ``sealed`` is
    the checked header of a gpaisec sealed file (its plaintext's length and digest), else None.
    """

    scheme: SamplingScheme
    format: Format
    size: int
    header_digest: Digest
    sample_digest: Digest
    tensors: tuple[TensorSample, ...] = ()
    anomalies: tuple[str, ...] = ()
    sealed: SealedHeader | None = None

    @property
    def key(self) -> FileKey:
        return (self.format.value, self.size, self.header_digest, self.sample_digest)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.to_json(),
            "format": self.format.value,
            "size": self.size,
            "header_digest": self.header_digest,
            "sample_digest": self.sample_digest,
            "tensors": [t.to_json() for t in self.tensors],
            "anomalies": list(self.anomalies),
        } | ({"sealed": self.sealed.to_json()} if self.sealed is not None else {})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileFingerprint:
        fmt = _get(data, "format", str)
        try:
            file_format = Format(fmt)
        except ValueError:
            raise _bad(f"unknown format {fmt!r}") from None
        anomalies = _get(data, "anomalies", list)
        if not all(isinstance(a, str) for a in anomalies):
            raise _bad("'anomalies' must be a list of strings")
        return cls(
            scheme=SamplingScheme.from_json(_get(data, "scheme", Mapping)),
            format=file_format,
            size=_get_count(data, "size"),
            header_digest=_get_digest(data, "header_digest"),
            sample_digest=_get_digest(data, "sample_digest"),
            tensors=tuple(TensorSample.from_json(t) for t in _get(data, "tensors", list)),
            anomalies=tuple(anomalies),
            sealed=_sealed_from_json(data["sealed"]) if data.get("sealed") is not None else None,
        )


def _sealed_from_json(data: Mapping[str, Any]) -> SealedHeader:
    algorithm = _get(data, "digest_algorithm", str)
    if algorithm not in ("blake3", "sha256"):
        raise _bad(f"unknown sealed digest algorithm {algorithm!r}")
    return SealedHeader(
        digest_algorithm=algorithm,
        plaintext_digest=_get_digest(data, "plaintext_digest"),
        plaintext_length=_get_count(data, "plaintext_length"),
        chunk_size=_get_count(data, "chunk_size"),
        sealed_size=_get_count(data, "sealed_size"),
    )


@dataclass(frozen=True)
class TensorDigest:
    """Full and sampled digests of one tensor, and whether it can serve as evidence."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    sample: Digest
    digest: Digest
    distinctive: bool

    @property
    def key(self) -> TensorKey:
        return (self.dtype, self.shape, self.sample)

    @property
    def full_key(self) -> TensorKey:
        return (self.dtype, self.shape, self.digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "sample": self.sample,
            "digest": self.digest,
            "distinctive": self.distinctive,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorDigest:
        return cls(
            name=_get(data, "name", str),
            dtype=_get_dtype(data),
            shape=_get_shape(data),
            nbytes=_get_count(data, "nbytes"),
            sample=_get_digest(data, "sample"),
            digest=_get_digest(data, "digest"),
            distinctive=_get(data, "distinctive", bool),
        )


@dataclass(frozen=True)
class FileDigests:
    """Everything registration stores about one file: the sampled fingerprint, the BLAKE3 of the
    whole file and the digests of every tensor (in the order of ``fingerprint.tensors``).

    ``digest`` is None only when it was deliberately not computed (``whole_file=False``, used to
    confirm a tensor copy, where the file as a whole is not expected to match anything).
    ``sha256`` is plain SHA-256 of the whole file when asked for (registration asks, so that a
    sealed copy whose header records SHA-256 of its plaintext can be matched); else None.
    """

    fingerprint: FileFingerprint
    digest: Digest | None
    tensors: tuple[TensorDigest, ...] = ()
    sha256: Digest | None = None

    def __post_init__(self) -> None:
        if len(self.tensors) != len(self.fingerprint.tensors):
            raise _bad("the tensor digests do not correspond to the fingerprint's tensors")

    @property
    def size(self) -> int:
        return self.fingerprint.size

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint.to_json(),
            "digest": self.digest,
            "tensors": [t.to_json() for t in self.tensors],
        } | ({"sha256": self.sha256} if self.sha256 is not None else {})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileDigests:
        fingerprint = FileFingerprint.from_json(_get(data, "fingerprint", Mapping))
        tensors = tuple(TensorDigest.from_json(t) for t in _get(data, "tensors", list))
        for sampled, full in zip(fingerprint.tensors, tensors, strict=False):
            if sampled.key != full.key or sampled.nbytes != full.nbytes:
                raise _bad("a tensor digest disagrees with the fingerprint's tensor sample")
        digest = None if data.get("digest", "") is None else _get_digest(data, "digest")
        sha256 = _get_digest(data, "sha256") if data.get("sha256") is not None else None
        return cls(fingerprint=fingerprint, digest=digest, tensors=tensors, sha256=sha256)


@dataclass(frozen=True)
class StatSnapshot:
    """The parts of ``stat`` that tell whether a file changed between two looks."""

    size: int
    mtime_ns: int
    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatSnapshot:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino)


# --------------------------------------------------------------------------------------------------
# Sampling


def sample_ranges(total: int, block: int, count: int) -> tuple[tuple[int, int], ...]:
    """The (offset, length) blocks sampled from a range of ``total`` bytes (module docs, step 1)."""
    if total <= block * count:
        return ((0, total),)
    span = total - block
    return tuple((i * span // (count - 1), block) for i in range(count))


_ELEMENT_FORMATS: Final[dict[int, Literal["B", "H", "I", "Q"]]] = {1: "B", 2: "H", 4: "I", 8: "Q"}


def is_distinctive(dtype: str, nbytes: int, sampled: bytes) -> bool:
    """Whether a tensor can serve as evidence: big enough and not (nearly) constant.

    ``sampled`` is the tensor's sampled bytes (the blocks of module docs step 4, concatenated).
    """
    if nbytes < MIN_DISTINCTIVE_BYTES:
        return False
    bits = DTYPE_BITS.get(dtype, 8)
    width = bits // 8 if bits % 8 == 0 and bits // 8 in _ELEMENT_FORMATS else 1
    usable = len(sampled) - len(sampled) % width
    values = set(memoryview(sampled)[:usable].cast(_ELEMENT_FORMATS[width]))
    return len(values) >= MIN_DISTINCT_VALUES


def _u64s(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


@dataclass
class _Sampled:
    fingerprint: FileFingerprint
    header: SafetensorsHeader | None
    tensor_samples: list[bytes] = field(default_factory=list)


def _sample(src: _FdSource, scheme: SamplingScheme, *, keep_tensor_samples: bool) -> _Sampled:
    head = src.read_at(0, HEAD_BYTES)
    file_format = _sniff_source(src, head)
    header: SafetensorsHeader | None = None
    sealed: SealedHeader | None = None
    anomalies: tuple[str, ...] = ()
    tensors: list[TensorSample] = []
    kept: list[bytes] = []
    header_digest: Digest | None = None
    if file_format is Format.SEALED:
        sealed = parse_sealed_header(head, src.size, source=src.name)
    elif file_format is Format.SAFETENSORS:
        header, raw = _read_header(src)
        header_digest = Digest(blake3(raw).hexdigest())
        anomalies = tuple(a.value for a in header.anomalies)
        for info in header.tensors:
            start = header.data_start + info.begin
            hasher = blake3(derive_key_context=_TENSOR_CONTEXT)
            hasher.update(_u64s(info.nbytes, scheme.tensor_block, scheme.tensor_blocks))
            parts = []
            for offset, length in sample_ranges(info.nbytes, scheme.tensor_block, scheme.tensor_blocks):
                block = src.read_exact(start + offset, length)
                hasher.update(block)
                if keep_tensor_samples:
                    parts.append(block)
            if keep_tensor_samples:
                kept.append(b"".join(parts))
            tensors.append(
                TensorSample(
                    name=info.name,
                    dtype=info.dtype,
                    shape=info.shape,
                    nbytes=info.nbytes,
                    sample=Digest(hasher.hexdigest()),
                )
            )
    hasher = blake3(derive_key_context=_FILE_CONTEXT)
    hasher.update(_u64s(src.size, scheme.file_block, scheme.file_blocks))
    first_block = b""
    for offset, length in sample_ranges(src.size, scheme.file_block, scheme.file_blocks):
        block = src.read_exact(offset, length)
        if offset == 0:
            first_block = block[: scheme.file_block]
        hasher.update(block)
    if header_digest is None:
        header_digest = Digest(blake3(first_block).hexdigest())
    fingerprint = FileFingerprint(
        scheme=scheme,
        format=file_format,
        size=src.size,
        header_digest=header_digest,
        sample_digest=Digest(hasher.hexdigest()),
        tensors=tuple(tensors),
        anomalies=anomalies,
        sealed=sealed,
    )
    return _Sampled(fingerprint=fingerprint, header=header, tensor_samples=kept)


class _Opened:
    """An open regular file whose stat is checked against expectations before and after reading."""

    def __init__(self, path: str, expected: StatSnapshot | None, follow_symlinks: bool) -> None:
        self.shown = display_path(path)
        self.fd, st = _open_regular(path, follow_symlinks=follow_symlinks)
        self.before = StatSnapshot.of(st)
        if expected is not None and expected != self.before:
            os.close(self.fd)
            raise FileChangedError(
                f"{self.shown}: changed since it was listed (size {expected.size} -> {self.before.size})",
                path=self.shown,
                hint="the file is being written or replaced; scan again once it is stable",
            )
        self.source = _FdSource(self.fd, st.st_size, self.shown)

    def check_unchanged(self) -> None:
        after = StatSnapshot.of(os.fstat(self.fd))
        if after != self.before:
            raise FileChangedError(
                f"{self.shown}: changed while it was being read (size {self.before.size} -> {after.size})",
                path=self.shown,
                hint="the file is being written or replaced; scan again once it is stable",
            )

    def close(self) -> None:
        os.close(self.fd)


@contextmanager
def _guard(path: str, expected: StatSnapshot | None, follow_symlinks: bool) -> Iterator[_Opened]:
    opened = _Opened(path, expected, follow_symlinks)
    try:
        yield opened
        opened.check_unchanged()
    except OSError as exc:
        raise UnreadableFileError(
            f"{opened.shown}: read failed: {exc.strerror or exc}", path=opened.shown
        ) from None
    finally:
        opened.close()


def fingerprint_file(
    path: str | os.PathLike[str] | bytes,
    *,
    scheme: SamplingScheme = DEFAULT_SCHEME,
    expected: StatSnapshot | None = None,
    follow_symlinks: bool = True,
) -> FileFingerprint:
    """The cheap fingerprint of a file (module docs, steps 1–4).

    Raises :class:`~gpaisec.weights.formats.SafetensorsError` if the bytes say safetensors but the
    header is malformed, :class:`FileChangedError` if the file differs from ``expected`` or changes
    while read, :class:`UnreadableFileError` if it cannot be read.
    """
    with _guard(os.fsdecode(path), expected, follow_symlinks) as opened:
        result = _sample(opened.source, scheme, keep_tensor_samples=False).fingerprint
    return result


def digest_file(
    path: str | os.PathLike[str] | bytes,
    *,
    scheme: SamplingScheme = DEFAULT_SCHEME,
    expected: StatSnapshot | None = None,
    follow_symlinks: bool = True,
    require_weights: bool = False,
    whole_file: bool = True,
    sha256: bool = False,
) -> FileDigests:
    """The sampled fingerprint plus full BLAKE3 digests of the file and of every tensor.

    Used at registration (store the result) and to confirm a match. Reads the whole file once, in
    8 MiB chunks into one reused buffer (no mmap: a file truncated under a mapping would crash the
    process with SIGBUS). With ``require_weights`` a file of no recognised weight format raises
    :class:`NotWeightsError`. ``whole_file=False`` skips the whole-file digest (``digest`` is
    None), halving the hashing when only the tensors need confirming. ``sha256=True`` also
    computes plain SHA-256 of the whole file in the same read (on a second thread, overlapping
    BLAKE3), for matching sealed copies whose headers record SHA-256.
    """
    with _guard(os.fsdecode(path), expected, follow_symlinks) as opened:
        sampled = _sample(opened.source, scheme, keep_tensor_samples=True)
        if require_weights and not sampled.fingerprint.format.is_weights:
            raise NotWeightsError(
                f"{opened.shown}: not in a recognised weight format (the bytes are not safetensors, GGUF, "
                "PyTorch, pickle, ONNX, HDF5, NumPy or a gpaisec sealed file)",
                hint="register only weight files; discovery could never find copies of this one",
            )
        digest, tensor_digests, sha = _full_pass(
            opened.source, sampled.header, whole_file=whole_file, sha256=sha256
        )
        result = FileDigests(
            fingerprint=sampled.fingerprint,
            digest=digest,
            sha256=sha,
            tensors=tuple(
                TensorDigest(
                    name=s.name,
                    dtype=s.dtype,
                    shape=s.shape,
                    nbytes=s.nbytes,
                    sample=s.sample,
                    digest=d,
                    distinctive=is_distinctive(s.dtype, s.nbytes, raw),
                )
                for s, d, raw in zip(
                    sampled.fingerprint.tensors, tensor_digests, sampled.tensor_samples, strict=True
                )
            ),
        )
    return result


def file_digest(
    path: str | os.PathLike[str] | bytes,
    *,
    expected: StatSnapshot | None = None,
    follow_symlinks: bool = True,
) -> Digest:
    """Plain BLAKE3 of the whole file (what ``b3sum`` prints), with the same change checks."""
    with _guard(os.fsdecode(path), expected, follow_symlinks) as opened:
        digest, _tensors, _sha = _full_pass(opened.source, None, whole_file=True)
    assert digest is not None
    return digest


class _Sha256Thread:
    """SHA-256 of a stream on a helper thread: ``update(chunk)`` returns at once, ``wait()`` before
    the chunk's buffer is reused. hashlib releases the GIL while hashing, so this overlaps BLAKE3."""

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self._thread: threading.Thread | None = None

    def update(self, chunk: memoryview) -> None:
        self.wait()
        self._thread = threading.Thread(target=self.hasher.update, args=(chunk,), daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> Digest:
        self.wait()
        return Digest(self.hasher.hexdigest())


def _full_pass(
    src: _FdSource, header: SafetensorsHeader | None, *, whole_file: bool, sha256: bool = False
) -> tuple[Digest | None, list[Digest], Digest | None]:
    """One sequential read: the whole-file digest and, for safetensors, one digest per tensor
    (and, when asked, the whole file's SHA-256).

    The header guarantees the tensors are sorted and do not overlap, so at most one tensor hasher
    is open at a time.
    """
    spans: Sequence[tuple[int, int]] = ()
    if header is not None:
        spans = [(header.data_start + t.begin, header.data_start + t.end) for t in header.tensors]
    file_hash = blake3(max_threads=blake3.AUTO) if whole_file else None
    sha = _Sha256Thread() if sha256 else None
    digests: list[Digest] = []
    current: blake3 | None = None
    index = 0
    buffer = bytearray(min(_READ_CHUNK, max(src.size, 1)))
    view = memoryview(buffer)
    position = 0
    while True:
        # Tensors ending at or before ``position`` are complete (empty tensors included).
        while index < len(spans) and spans[index][1] <= position:
            digests.append(Digest((current or blake3()).hexdigest()))
            current = None
            index += 1
        if position >= src.size:
            break
        if sha is not None:
            sha.wait()  # the buffer is about to be overwritten
        got = os.preadv(src.fd, [view[: min(len(buffer), src.size - position)]], position)
        if got <= 0:
            raise FileChangedError(
                f"{src.name}: the file ended at {position} bytes, expected {src.size}",
                path=src.name,
                hint="the file was truncated while being read; scan it again once it is stable",
            )
        chunk = view[:got]
        end = position + got
        if sha is not None:
            sha.update(chunk)
        if file_hash is not None:
            file_hash.update(chunk)
        while index < len(spans) and spans[index][0] < end:
            start, stop = spans[index]
            lo, hi = max(start, position), min(stop, end)
            if lo < hi:
                if current is None:
                    current = blake3(max_threads=blake3.AUTO)
                current.update(chunk[lo - position : hi - position])
            if stop > end:
                break  # the tensor continues in the next chunk
            digests.append(Digest((current or blake3()).hexdigest()))
            current = None
            index += 1
        position = end
    return (
        (Digest(file_hash.hexdigest()) if file_hash is not None else None),
        digests,
        (sha.hexdigest() if sha is not None else None),
    )
