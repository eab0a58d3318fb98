"""Recognise model-weight files by their bytes, and read safetensors headers safely.

Names and extensions are never trusted: a copy of a model can be renamed to anything. :func:`sniff`
reads at most a few KiB from the start of a file (plus, for zip archives, the small end-of-archive
record and central directory) and says which weight format the bytes are in:

======================  =====================================================================
format                  how it is recognised
======================  =====================================================================
gpaisec sealed file     magic ``GPAISEAL`` at offset 0
GGUF                    magic ``GGUF`` at offset 0
NumPy ``.npy``          magic ``\\x93NUMPY`` at offset 0
HDF5                    signature ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0, 512, 1024, 2048 or 4096
PyTorch zip             a zip archive holding ``<dir>/data.pkl``
NumPy ``.npz``          a zip archive whose members are all ``.npy``
safetensors             8-byte little-endian header length, then a JSON object
pickle                  a plausible opcode stream (protocol header, valid opcodes, no stack underflow)
ONNX                    a protobuf ``ModelProto``: ``ir_version`` first, then known fields such as
                        ``producer_name``, ``graph`` or ``opset_import`` with sane lengths
======================  =====================================================================

Sniffing is a cheap first filter; a file that sniffs as safetensors is only trusted after
:func:`parse_safetensors_header` has checked its header. That parser is written for hostile input:
it refuses a header longer than :data:`MAX_SAFETENSORS_HEADER` (the reference implementation's
limit) or longer than the file *before* allocating anything, and every malformed header raises
:class:`SafetensorsError` with a :class:`SafetensorsProblem` naming what is wrong. Gaps between
tensors and bytes after the last tensor (which the reference implementation refuses) are reported
as :attr:`SafetensorsHeader.anomalies` instead, so that discovery can still recognise the tensors
of a copy that had bytes appended; pass ``strict=True`` to refuse them.
"""

from __future__ import annotations

import enum
import io
import json
import os
import pickletools
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, TypeAlias

from gpaisec.crypto import sealed as _sealed
from gpaisec.errors import InputError, IntegrityError

__all__ = [
    "DTYPE_BITS",
    "HEAD_BYTES",
    "MAX_SAFETENSORS_HEADER",
    "FileChangedError",
    "Format",
    "PathOrFile",
    "SafetensorsError",
    "SafetensorsHeader",
    "SafetensorsProblem",
    "SealedHeader",
    "SealedHeaderError",
    "SealedProblem",
    "TensorInfo",
    "UnreadableFileError",
    "WeightFileError",
    "display_path",
    "parse_safetensors_header",
    "parse_sealed_header",
    "read_safetensors_header",
    "read_sealed_header",
    "safetensors_header_length",
    "sniff",
    "sniff_bytes",
]

HEAD_BYTES: Final = 8192
"""How much of the start of a file :func:`sniff` reads (one read; it covers HDF5 user blocks of up
to 4 KiB, so sniffing a file that is not a zip archive costs exactly one read)."""

MAX_SAFETENSORS_HEADER: Final = 100_000_000
"""Largest safetensors JSON header accepted (the reference implementation's limit, 100 MB)."""

_HDF5_SIGNATURE: Final = b"\x89HDF\r\n\x1a\n"
_HDF5_MAX_USERBLOCK: Final = 4096
_ZIP_LOCAL: Final = b"PK\x03\x04"
_ZIP_EMPTY: Final = b"PK\x05\x06"
_ZIP_CENTRAL_LIMIT: Final = 1 << 20
_ZIP_NAMES_LIMIT: Final = 100_000

PathOrFile: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes] | BinaryIO"
"""A path (``str``, ``bytes`` or path-like) or a binary file object opened for reading."""

DTYPE_BITS: Final[dict[str, int]] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
"""Bits per element of every safetensors dtype."""


class Format(enum.StrEnum):
    """A weight file format, as recognised from the file's bytes."""

    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    PYTORCH_ZIP = "pytorch-zip"
    PICKLE = "pickle"
    ONNX = "onnx"
    HDF5 = "hdf5"
    NPY = "npy"
    NPZ = "npz"
    SEALED = "gpaisec-sealed"
    UNKNOWN = "unknown"

    @property
    def is_weights(self) -> bool:
        """True for every recognised weight format (everything but :attr:`UNKNOWN`)."""
        return self is not Format.UNKNOWN


# --------------------------------------------------------------------------------------------------
# Errors


class WeightFileError(InputError):
    """Root of the errors about a weight file: unreadable, changing, or malformed."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class UnreadableFileError(WeightFileError):
    """The file cannot be opened or read (permissions, vanished, not a regular file)."""

    title = "unreadable file"


class FileChangedError(WeightFileError):
    """The file changed (size, modification time or identity) while it was being read."""

    title = "file changed while being read"


class SafetensorsProblem(enum.StrEnum):
    """What is wrong with a safetensors header; the value is stable and fit for reports."""

    TRUNCATED = "truncated"
    HEADER_TOO_LARGE = "header-too-large"
    HEADER_PAST_EOF = "header-past-end-of-file"
    NOT_UTF8 = "header-not-utf8"
    NOT_JSON = "header-not-json"
    TOO_COMPLEX = "header-too-complex"
    NOT_OBJECT = "header-not-object"
    DUPLICATE_KEY = "duplicate-key"
    BAD_METADATA = "bad-metadata"
    BAD_ENTRY = "bad-tensor-entry"
    BAD_DTYPE = "bad-dtype"
    SHAPE_MISMATCH = "shape-offsets-mismatch"
    OFFSETS_OUT_OF_RANGE = "offsets-out-of-range"
    OVERLAPPING_OFFSETS = "overlapping-offsets"
    GAP_IN_DATA = "gap-in-data"
    TRAILING_DATA = "trailing-data"


class SafetensorsError(WeightFileError):
    """A file that looks like safetensors has a header that is malformed or hostile.

    :attr:`problem` names the problem; the message says where.
    """

    title = "malformed safetensors file"

    def __init__(self, problem: SafetensorsProblem, detail: str, *, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        super().__init__(
            f"{where}safetensors header rejected ({problem.value}): {detail}",
            path=path,
            hint="the file is not a valid safetensors file; if it is meant to be a copy of model weights "
            "it was truncated or tampered with, so treat it as a finding and do not load it",
        )
        self.problem = problem


class SealedProblem(enum.StrEnum):
    """What is wrong with the header of a file that starts with the sealed format's magic."""

    TRUNCATED = "truncated"
    BAD_HEADER = "bad-header"
    SIZE_MISMATCH = "size-mismatch"


class SealedHeaderError(WeightFileError):
    """A file that starts with ``GPAISEAL`` has a header that is truncated, malformed or lying.

    :attr:`problem` names the problem; the message says where.
    """

    title = "malformed gpaisec sealed file"

    def __init__(self, problem: SealedProblem, detail: str, *, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        super().__init__(
            f"{where}sealed-file header rejected ({problem.value}): {detail}",
            path=path,
            hint="the file claims to be a gpaisec sealed file but is not a whole, valid one: it was "
            "truncated in transfer or tampered with; treat it as a finding and find out where it came from",
        )
        self.problem = problem


# --------------------------------------------------------------------------------------------------
# Random access over a file descriptor or a file object


def display_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A printable form of a path: undecodable bytes are shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class _Source:
    """Random-access reads of a file of known size."""

    size: int
    name: str

    def read_at(self, offset: int, length: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def read_exact(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; a short read means the file shrank."""
        data = self.read_at(offset, length)
        if len(data) != length:
            raise FileChangedError(
                f"{self.name}: expected {length} bytes at offset {offset} but the file ended early",
                path=self.name,
                hint="the file was truncated while being read; scan it again once it is stable",
            )
        return data


class _FdSource(_Source):
    """Reads with ``os.pread`` on an open descriptor (no shared file position, no buffering)."""

    def __init__(self, fd: int, size: int, name: str) -> None:
        self.fd = fd
        self.size = size
        self.name = name

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        first = os.pread(self.fd, length, offset)
        if len(first) == length or not first:
            return first
        parts = [first]
        got = len(first)
        while got < length:
            more = os.pread(self.fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)


class _FileObjectSource(_Source):
    """Reads from a seekable binary file object (restores nothing: callers own the position)."""

    def __init__(self, fileobj: BinaryIO, name: str) -> None:
        self.fileobj = fileobj
        self.size = fileobj.seek(0, io.SEEK_END)
        self.name = name

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        self.fileobj.seek(offset)
        parts: list[bytes] = []
        got = 0
        while got < length:
            chunk = self.fileobj.read(length - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class _BytesSource(_Source):
    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = data
        self.size = len(data)
        self.name = name

    def read_at(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + max(0, length)]


_OPEN_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_regular(path: str, *, follow_symlinks: bool = True) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without blocking on FIFOs; refuse anything but a regular file."""
    flags = _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0)
    shown = display_path(path)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnreadableFileError(
            f"{shown}: cannot open: {exc.strerror or exc}",
            path=shown,
            hint="check that the file exists and that this user may read it",
        ) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:  # pragma: no cover - fstat on an open fd does not fail in practice
        os.close(fd)
        raise UnreadableFileError(f"{shown}: cannot stat: {exc.strerror or exc}", path=shown) from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnreadableFileError(
            f"{shown}: not a regular file", path=shown, hint="only regular files can hold weights"
        )
    return fd, st


def _with_source(source: PathOrFile, action: Callable[[_Source], Any]) -> Any:
    if isinstance(source, str | bytes | os.PathLike):
        path = os.fsdecode(source)
        fd, st = _open_regular(path)
        try:
            return action(_FdSource(fd, st.st_size, display_path(path)))
        except OSError as exc:
            raise UnreadableFileError(
                f"{display_path(path)}: read failed: {exc.strerror or exc}", path=display_path(path)
            ) from None
        finally:
            os.close(fd)
    name = getattr(source, "name", "<file object>")
    shown = display_path(name) if isinstance(name, str | bytes) else "<file object>"
    try:
        position = source.tell()
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(
            f"{shown}: the file object is not seekable ({exc})",
            path=shown,
            hint="pass a path or a seekable binary file object",
        ) from None
    try:
        return action(_FileObjectSource(source, shown))
    finally:
        source.seek(position)


# --------------------------------------------------------------------------------------------------
# Sniffing


def sniff(source: PathOrFile) -> Format:
    """The weight format of a file, recognised from its first bytes (never from its name).

    ``source`` is a path or a seekable binary file object (whose position is restored). Reads
    :data:`HEAD_BYTES` from the start and, for zip archives only, the end-of-archive record and up
    to 1 MiB of central directory. An HDF5 file with a user block larger than 4 KiB (rare: h5py
    and Keras write none) is not recognised.

    Raises :class:`UnreadableFileError` if the file cannot be opened or read.
    """
    result: Format = _with_source(source, _sniff_source)
    return result


def sniff_bytes(data: bytes) -> Format:
    """The weight format of an in-memory file (``data`` is the whole file)."""
    return _sniff_source(_BytesSource(data))


def _sniff_source(src: _Source, head: bytes | None = None) -> Format:
    if head is None:
        head = src.read_at(0, HEAD_BYTES)
    if head.startswith(b"GPAISEAL"):
        return Format.SEALED
    if head.startswith(b"GGUF"):
        return Format.GGUF
    if head.startswith(b"\x93NUMPY"):
        return Format.NPY
    if head.startswith(_HDF5_SIGNATURE):
        return Format.HDF5
    if head.startswith(_ZIP_LOCAL) or head.startswith(_ZIP_EMPTY):
        return _classify_zip(src, head)
    if _looks_safetensors(head, src.size):
        return Format.SAFETENSORS
    if _looks_pickle(head, complete=len(head) >= src.size):
        return Format.PICKLE
    if _looks_onnx(head, src.size):
        return Format.ONNX
    if _hdf5_in_userblock(head):
        return Format.HDF5
    return Format.UNKNOWN


def _hdf5_in_userblock(head: bytes) -> bool:
    # The HDF5 superblock may follow a user block of 512 * 2**k bytes; only those inside the head
    # are looked at, so that sniffing costs one read.
    offset = 512
    while offset <= _HDF5_MAX_USERBLOCK:
        if head[offset : offset + 8] == _HDF5_SIGNATURE:
            return True
        offset *= 2
    return False


def _looks_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack_from("<Q", head)
    if not 2 <= length <= MAX_SAFETENSORS_HEADER or head[8] != 0x7B:  # "{"
        return False
    # The byte after "{" (skipping JSON whitespace) opens a key or closes the object.
    rest = head[9 : 9 + min(length - 1, 64)].lstrip(b" \t\r\n")
    if rest and rest[0] not in b'"}':
        return False
    # When the whole header is in view it must end with "}" and optional padding.
    if 8 + length <= len(head) and not head[8 : 8 + length].rstrip(b" \t\r\n").endswith(b"}"):
        return False
    # A header that runs past the end of the file still sniffs as safetensors: the parser then says
    # so, which reports a truncated copy instead of silently ignoring it.
    return size >= 10


_PICKLE_OPCODES: Final = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
_MIN_PICKLE_OPS_TRUNCATED: Final = 6


def _looks_pickle(head: bytes, *, complete: bool) -> bool:
    """Parse the opcode stream without executing it and simulate the stack depth.

    Accepted: a stream that reaches STOP after at least two opcodes with a consistent stack, or,
    when only the head of a larger file is in view, at least a few consistent opcodes before the
    data runs out inside a length-prefixed argument.
    """
    if not head:
        return False
    first = head[0]
    if first == 0x80:  # PROTO
        if len(head) < 3 or not 2 <= head[1] <= 5:
            return False
    elif first not in _PICKLE_OPCODES:
        return False
    stream = io.BytesIO(head)
    stack: list[bool] = []  # True marks a MARK
    ops = 0
    next_pos = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            ops += 1
            next_pos = stream.tell()
            if not _pickle_stack_step(stack, opcode):
                return False
            if opcode.name == "STOP":
                return ops >= 2 and not stack
    except (ValueError, IndexError, UnicodeDecodeError, struct.error, OverflowError):
        if complete or ops < _MIN_PICKLE_OPS_TRUNCATED:
            return False
        if next_pos >= len(head):  # the head ended exactly between two opcodes
            return True
        failing = _PICKLE_OPCODES.get(head[next_pos])
        if failing is None or failing.arg is None:
            return False
        n = failing.arg.n
        if n > 0:  # fixed-size argument cut off by the end of the head
            return next_pos + 1 + n > len(head)
        if n == pickletools.UP_TO_NEWLINE:  # a text argument running past the end of the head
            return b"\n" not in head[next_pos:]
        return n < pickletools.UP_TO_NEWLINE  # a counted argument longer than the head
    # The head parsed completely without reaching STOP.
    return not complete and ops >= _MIN_PICKLE_OPS_TRUNCATED


def _pickle_stack_step(stack: list[bool], opcode: pickletools.OpcodeInfo) -> bool:
    for item in reversed(opcode.stack_before):
        if item is pickletools.stackslice:
            while stack and not stack[-1]:
                stack.pop()
            if not stack:
                return False
        elif item is pickletools.markobject:
            if not stack or not stack[-1]:
                return False
            stack.pop()
        else:
            if not stack or stack[-1]:
                return False
            stack.pop()
    for item in opcode.stack_after:
        stack.append(item is pickletools.markobject)
    return True


# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_ONNX_FIELDS: Final = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_STRING_FIELDS: Final = {2, 3, 4, 6}
_ONNX_EVIDENCE_FIELDS: Final = {2, 7, 8}


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None


def _looks_onnx(head: bytes, size: int) -> bool:
    if len(head) < 4 or head[0] != 0x08:  # field 1 (ir_version), varint
        return False
    parsed = _varint(head, 1)
    if parsed is None or not 1 <= parsed[0] <= 100:
        return False
    pos = parsed[1]
    evidence = False
    while pos < len(head):
        parsed = _varint(head, pos)
        if parsed is None:
            return evidence
        tag, pos = parsed
        field, wire = tag >> 3, tag & 7
        if _ONNX_FIELDS.get(field) != wire:
            return False
        parsed = _varint(head, pos)
        if parsed is None:
            return evidence
        value, pos = parsed
        if wire == 0:
            continue
        if pos + value > size:
            return False
        if field in _ONNX_STRING_FIELDS and pos + value <= len(head):
            try:
                head[pos : pos + value].decode("utf-8")
            except UnicodeDecodeError:
                return False
        evidence = evidence or field in _ONNX_EVIDENCE_FIELDS
        if field == 7:  # the graph: everything after it is model data
            return True
        pos += value
    return evidence


def _classify_zip(src: _Source, head: bytes) -> Format:
    first = _zip_first_name(head)
    if first is not None and _is_torch_pickle_name(first):
        return Format.PYTORCH_ZIP
    names = _zip_central_names(src)
    if names is None:
        if first is not None and first.endswith(b".npy"):
            return Format.NPZ
        return Format.UNKNOWN
    if any(_is_torch_pickle_name(name) for name in names):
        return Format.PYTORCH_ZIP
    if names and all(name.endswith(b".npy") for name in names):
        return Format.NPZ
    return Format.UNKNOWN


def _is_torch_pickle_name(name: bytes) -> bool:
    prefix, sep, leaf = name.rpartition(b"/")
    return bool(sep) and leaf == b"data.pkl" and bool(prefix) and b"/" not in prefix


def _zip_first_name(head: bytes) -> bytes | None:
    if len(head) < 30 or not head.startswith(_ZIP_LOCAL):
        return None
    (name_len,) = struct.unpack_from("<H", head, 26)
    if 30 + name_len > len(head):
        return None
    return head[30 : 30 + name_len]


def _zip_central_names(src: _Source) -> list[bytes] | None:
    """Member names from the central directory, or None if it cannot be found or read."""
    if src.size < 22:
        return None
    tail = src.read_at(src.size - 22, 22)
    at = 0 if tail.startswith(_ZIP_EMPTY) else -1
    tail_start = src.size - 22
    if at < 0:
        tail_start = max(0, src.size - 22 - 0xFFFF)
        tail = src.read_at(tail_start, src.size - tail_start)
        at = tail.rfind(_ZIP_EMPTY)
        if at < 0 or at + 22 > len(tail):
            return None
    entries, cd_size, cd_offset = struct.unpack_from("<xxxxxxxxxxHII", tail, at)
    if entries == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):
        eocd = tail_start + at
        locator = src.read_at(eocd - 20, 20) if eocd >= 20 else b""
        if len(locator) != 20 or not locator.startswith(b"PK\x06\x07"):
            return None
        (z64_offset,) = struct.unpack_from("<Q", locator, 8)
        record = src.read_at(z64_offset, 56)
        if len(record) != 56 or not record.startswith(b"PK\x06\x06"):
            return None
        entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
    if cd_offset > src.size:
        return None
    directory = src.read_at(cd_offset, min(cd_size, _ZIP_CENTRAL_LIMIT))
    names: list[bytes] = []
    pos = 0
    while pos + 46 <= len(directory) and len(names) < min(entries, _ZIP_NAMES_LIMIT):
        if directory[pos : pos + 4] != b"PK\x01\x02":
            break
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, pos + 28)
        name = directory[pos + 46 : pos + 46 + name_len]
        if len(name) != name_len:
            break
        names.append(name)
        pos += 46 + name_len + extra_len + comment_len
    return names


# --------------------------------------------------------------------------------------------------
# safetensors header


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file. ``begin``/``end`` are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header.

    ``tensors`` are sorted by offset and do not overlap; ``data_start`` is the file offset of the
    data section (8 + header length); ``anomalies`` lists tolerated oddities (see module docs).
    """

    header_length: int
    file_size: int
    tensors: tuple[TensorInfo, ...]
    metadata: tuple[tuple[str, str], ...]
    anomalies: tuple[SafetensorsProblem, ...] = ()

    @property
    def data_start(self) -> int:
        return 8 + self.header_length

    @property
    def data_size(self) -> int:
        return self.file_size - self.data_start


def safetensors_header_length(
    prefix: bytes,
    file_size: int,
    *,
    source: str | None = None,
    max_header_bytes: int = MAX_SAFETENSORS_HEADER,
) -> int:
    """Check the 8-byte length prefix against the limit and the file size; return the length.

    Call this before reading the header so that nothing is allocated for a hostile length.
    """
    if len(prefix) < 8 or file_size < 8:
        raise SafetensorsError(
            SafetensorsProblem.TRUNCATED,
            f"the file has {file_size} bytes, fewer than the 8-byte header length",
            path=source,
        )
    (length,) = struct.unpack_from("<Q", prefix)
    if length > max_header_bytes:
        raise SafetensorsError(
            SafetensorsProblem.HEADER_TOO_LARGE,
            f"the header claims {length} bytes, more than the limit of {max_header_bytes}",
            path=source,
        )
    if 8 + length > file_size:
        raise SafetensorsError(
            SafetensorsProblem.HEADER_PAST_EOF,
            f"the header claims {length} bytes but the file has only {file_size - 8} after the length",
            path=source,
        )
    return int(length)


def read_safetensors_header(
    source: PathOrFile, *, max_header_bytes: int = MAX_SAFETENSORS_HEADER, strict: bool = False
) -> SafetensorsHeader:
    """Read and check the header of a safetensors file (a path or a seekable binary file object).

    Raises :class:`SafetensorsError` for a malformed or hostile header, :class:`UnreadableFileError`
    if the file cannot be read.
    """

    def action(src: _Source) -> SafetensorsHeader:
        header, _raw = _read_header(src, max_header_bytes=max_header_bytes, strict=strict)
        return header

    result: SafetensorsHeader = _with_source(source, action)
    return result


def _read_header(
    src: _Source, *, max_header_bytes: int = MAX_SAFETENSORS_HEADER, strict: bool = False
) -> tuple[SafetensorsHeader, bytes]:
    prefix = src.read_at(0, 8)
    length = safetensors_header_length(prefix, src.size, source=src.name, max_header_bytes=max_header_bytes)
    raw = prefix + src.read_exact(8, length)
    header = parse_safetensors_header(
        raw, src.size, source=src.name, max_header_bytes=max_header_bytes, strict=strict
    )
    return header, raw


def _short(name: str) -> str:
    shown = repr(name)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_safetensors_header(
    data: bytes,
    file_size: int,
    *,
    source: str | None = None,
    max_header_bytes: int = MAX_SAFETENSORS_HEADER,
    strict: bool = False,
) -> SafetensorsHeader:
    """Check a safetensors header; ``data`` holds the file's first ``8 + length`` bytes.

    Steps, each with its own :class:`SafetensorsProblem`:

    1. the length prefix is within ``max_header_bytes`` and the file (before any allocation);
    2. the header is UTF-8, not pathologically dense, and JSON without duplicate keys;
    3. it is an object; ``__metadata__``, if present, maps strings to strings;
    4. every other entry is ``{"dtype", "shape", "data_offsets"}`` with a known dtype, a shape of
       non-negative integers and two integer offsets inside the data section;
    5. the shape times the dtype size equals the byte length given by the offsets;
    6. no two tensors overlap. Gaps and trailing bytes are anomalies (errors when ``strict``).
    """
    # Step 1: the length, checked before the header is looked at.
    length = safetensors_header_length(data[:8], file_size, source=source, max_header_bytes=max_header_bytes)
    if len(data) < 8 + length:
        raise SafetensorsError(
            SafetensorsProblem.HEADER_PAST_EOF,
            f"expected {length} header bytes but got {len(data) - 8}",
            path=source,
        )
    body = data[8 : 8 + length]
    data_size = file_size - 8 - length

    # Step 2: decode and parse, refusing structures far denser than any real header (each tensor
    # entry is at least ~50 bytes holding 3 containers and 5 commas) so that a small header cannot
    # make json build hundreds of millions of objects.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError(
            SafetensorsProblem.NOT_UTF8, f"byte {exc.start} of the header is not UTF-8", path=source
        ) from None
    containers = body.count(b"{") + body.count(b"[")
    if containers > length // 16 + 16 or body.count(b",") > length // 6 + 64:
        raise SafetensorsError(
            SafetensorsProblem.TOO_COMPLEX,
            f"{containers} objects/arrays and {body.count(b',')} commas in {length} bytes is far denser "
            "than any real header",
            path=source,
        )
    try:
        parsed = json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise SafetensorsError(
            SafetensorsProblem.DUPLICATE_KEY, f"key {_short(exc.key)} appears more than once", path=source
        ) from None
    except RecursionError:
        raise SafetensorsError(
            SafetensorsProblem.TOO_COMPLEX, "the JSON is nested too deeply", path=source
        ) from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise SafetensorsError(SafetensorsProblem.NOT_JSON, str(exc)[:200], path=source) from None

    # Step 3: the top level and the metadata.
    if not isinstance(parsed, dict):
        raise SafetensorsError(
            SafetensorsProblem.NOT_OBJECT,
            f"the header is a JSON {type(parsed).__name__}, not an object",
            path=source,
        )
    metadata: tuple[tuple[str, str], ...] = ()
    tensors: list[TensorInfo] = []
    for name, entry in parsed.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise SafetensorsError(
                    SafetensorsProblem.BAD_METADATA,
                    "__metadata__ must be an object mapping strings to strings",
                    path=source,
                )
            metadata = tuple(sorted(entry.items()))
            continue
        tensors.append(_check_entry(name, entry, data_size, source))

    # Step 6: overlaps, gaps, trailing bytes.
    tensors.sort(key=lambda t: (t.begin, t.end))
    anomalies: list[SafetensorsProblem] = []
    previous_end = 0
    previous_name: str | None = None
    for tensor in tensors:
        if tensor.begin < previous_end:
            raise SafetensorsError(
                SafetensorsProblem.OVERLAPPING_OFFSETS,
                f"tensor {_short(tensor.name)} [{tensor.begin}, {tensor.end}) overlaps tensor "
                f"{_short(previous_name or '')} which ends at {previous_end}",
                path=source,
            )
        if tensor.begin > previous_end and SafetensorsProblem.GAP_IN_DATA not in anomalies:
            anomalies.append(SafetensorsProblem.GAP_IN_DATA)
        previous_end = tensor.end
        previous_name = tensor.name
    if previous_end < data_size:
        anomalies.append(SafetensorsProblem.TRAILING_DATA)
    if strict and anomalies:
        detail = {
            SafetensorsProblem.GAP_IN_DATA: "there are unused bytes between tensors",
            SafetensorsProblem.TRAILING_DATA: f"{data_size - previous_end} bytes follow the last tensor",
        }
        raise SafetensorsError(anomalies[0], detail[anomalies[0]], path=source)
    return SafetensorsHeader(
        header_length=length,
        file_size=file_size,
        tensors=tuple(tensors),
        metadata=metadata,
        anomalies=tuple(anomalies),
    )


_ENTRY_KEYS: Final = frozenset({"dtype", "shape", "data_offsets"})


def _check_entry(name: str, entry: Any, data_size: int, source: str | None) -> TensorInfo:
    # Step 4: the entry's structure.
    shown = _short(name)
    if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise SafetensorsError(
            SafetensorsProblem.BAD_ENTRY,
            f"tensor {shown} must be an object with exactly dtype, shape and data_offsets, got {keys}",
            path=source,
        )
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise SafetensorsError(
            SafetensorsProblem.BAD_DTYPE,
            f"tensor {shown} has unknown dtype {_short(str(dtype))}",
            path=source,
        )
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise SafetensorsError(
            SafetensorsProblem.BAD_ENTRY,
            f"tensor {shown} shape must be a list of non-negative integers",
            path=source,
        )
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise SafetensorsError(
            SafetensorsProblem.BAD_ENTRY,
            f"tensor {shown} data_offsets must be a list of two integers",
            path=source,
        )
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise SafetensorsError(
            SafetensorsProblem.OFFSETS_OUT_OF_RANGE,
            f"tensor {shown} data_offsets [{begin}, {end}] are not inside the {data_size}-byte data section",
            path=source,
        )
    # Step 5: the byte length implied by dtype and shape (stop multiplying once it is too large).
    bits = DTYPE_BITS[dtype]
    limit = 8 * data_size
    total_bits = 0
    if 0 not in shape:
        total_bits = bits
        for dim in shape:
            total_bits *= dim
            if total_bits > limit:
                raise SafetensorsError(
                    SafetensorsProblem.SHAPE_MISMATCH,
                    f"tensor {shown} of dtype {dtype} and shape {shape[:8]} is larger than the data section",
                    path=source,
                )
    if total_bits % 8 or total_bits // 8 != end - begin:
        raise SafetensorsError(
            SafetensorsProblem.SHAPE_MISMATCH,
            f"tensor {shown} of dtype {dtype} and shape {shape} needs {total_bits / 8:g} bytes "
            f"but data_offsets give {end - begin}",
            path=source,
        )
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


# --------------------------------------------------------------------------------------------------
# gpaisec sealed files (header only: nothing here decrypts)

SEALED_HEADER_BYTES: Final = _sealed.CORE_SIZE
"""Bytes of a sealed file's core header: everything :func:`parse_sealed_header` needs."""


@dataclass(frozen=True)
class SealedHeader:
    """What the unencrypted core header of a gpaisec sealed file says about its plaintext.

    ``plaintext_digest`` (hex) is plain BLAKE3 or SHA-256 (``digest_algorithm``) of the whole
    plaintext, as the sealer computed it. Without the data key it cannot be checked against the
    ciphertext: it is the header's claim, and discovery reports it as such.
    """

    digest_algorithm: str
    plaintext_digest: str
    plaintext_length: int
    chunk_size: int
    sealed_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "digest_algorithm": self.digest_algorithm,
            "plaintext_digest": self.plaintext_digest,
            "plaintext_length": self.plaintext_length,
            "chunk_size": self.chunk_size,
            "sealed_size": self.sealed_size,
        }


def parse_sealed_header(data: bytes, file_size: int, *, source: str | None = None) -> SealedHeader:
    """Check the core header of a sealed file; ``data`` is at least its first bytes.

    Steps, each with its own :class:`SealedProblem` (all before anything is allocated from a
    value in the header):

    1. the file holds a whole core header (:data:`SEALED_HEADER_BYTES`);
    2. the core parses (:func:`gpaisec.crypto.sealed.parse_core`: magic, version, suite, digest
       algorithm, chunk and slot sizes and plaintext length within the format's limits);
    3. the file is exactly as long as the header's plaintext length and chunk size imply, so a
       truncated or extended copy, or a header lying about its length, is refused.
    """
    # Step 1.
    if file_size < SEALED_HEADER_BYTES or len(data) < SEALED_HEADER_BYTES:
        raise SealedHeaderError(
            SealedProblem.TRUNCATED,
            f"the file has {min(file_size, len(data))} bytes, fewer than the "
            f"{SEALED_HEADER_BYTES}-byte header",
            path=source,
        )
    # Step 2.
    try:
        core = _sealed.parse_core(bytes(data[:SEALED_HEADER_BYTES]))
    except IntegrityError as exc:
        raise SealedHeaderError(SealedProblem.BAD_HEADER, exc.message, path=source) from None
    # Step 3.
    expected = core.sealed_size
    if expected != file_size:
        raise SealedHeaderError(
            SealedProblem.SIZE_MISMATCH,
            f"the header describes {core.plaintext_length} plaintext bytes in {core.chunk_size}-byte "
            f"chunks, a {expected}-byte file, but the file has {file_size} bytes",
            path=source,
        )
    return SealedHeader(
        digest_algorithm=core.digest_name,
        plaintext_digest=core.digest.hex(),
        plaintext_length=core.plaintext_length,
        chunk_size=core.chunk_size,
        sealed_size=expected,
    )


def read_sealed_header(source: PathOrFile) -> SealedHeader:
    """Read and check the header of a sealed file (a path or a seekable binary file object).

    Raises :class:`SealedHeaderError` for a truncated, malformed or lying header,
    :class:`UnreadableFileError` if the file cannot be read.
    """

    def action(src: _Source) -> SealedHeader:
        return parse_sealed_header(src.read_at(0, SEALED_HEADER_BYTES), src.size, source=src.name)

    result: SealedHeader = _with_source(source, action)
    return result
