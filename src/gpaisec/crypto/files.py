"""Sealing, opening, unsealing and rewrapping files with a key provider.

Every function here reads plaintext only from the caller's source and writes ciphertext only to
the destination it was given (through a temporary file in the same directory, renamed when
complete), so no plaintext copy appears anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from gpaisec.crypto import sealed as fmt
from gpaisec.crypto.keys import KeyProvider, KeyUnavailableError, WrappedKey, check_key_id
from gpaisec.errors import InputError, IntegrityError

__all__ = [
    "SealResult",
    "SealedReader",
    "find_sealed",
    "inspect",
    "open_file",
    "retirable_versions",
    "rewrap",
    "seal_directory",
    "seal_file",
    "seal_to",
    "unseal_to",
    "versions_in_use",
]

DEFAULT_SUFFIX = ".sealed"


@dataclass(frozen=True)
class SealResult:
    """What one seal produced."""

    source: Path | None
    path: Path | None
    plaintext_length: int
    sealed_length: int
    digest_alg: str
    digest: str
    key_id: str
    key_version: int


@dataclass(frozen=True)
class SlotInfo:
    index: int
    slot: fmt.KeySlot


def _digest_code(digest: str) -> int:
    codes = {v: k for k, v in fmt.DIGEST_NAMES.items()}
    if digest not in codes:
        raise InputError(f"unknown digest {digest!r}", hint=f"use one of {', '.join(sorted(codes))}")
    return codes[digest]


def seal_to(
    src: str | os.PathLike[str],
    dst_fd: int,
    provider: KeyProvider,
    key_id: str,
    *,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
    digest: str = "blake3",
    workers: int | None = None,
    slot_size: int = fmt.DEFAULT_SLOT_SIZE,
) -> SealResult:
    """Seal ``src`` into the seekable file descriptor ``dst_fd`` (from offset 0).

    Steps: 1. a fresh random data key; 2. the provider wraps it (audited); 3. chunks are encrypted
    in parallel into the payload area; 4. core and key slot 0 are written last, so an interrupted
    seal never leaves a header that describes a complete file.
    """
    check_key_id(key_id)
    try:
        src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {src}: {exc.strerror}") from None
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{src} is not a regular file")
        core = fmt.new_core(
            st.st_size, chunk_size=chunk_size, digest_alg=_digest_code(digest), slot_size=slot_size
        )
        data_key = os.urandom(32)  # step 1
        wrapped = provider.wrap(key_id, data_key)  # step 2
        payload_key, header_key = fmt.derive_keys(data_key, core)
        core = fmt.encrypt_stream(src_fd, dst_fd, core, payload_key, workers=workers)  # step 3
        slot = fmt.KeySlot(1, wrapped.key_id, wrapped.version, wrapped.algorithm, wrapped.blob)
        header = core.encode() + fmt.encode_slot(slot, core, header_key) + bytes(core.slot_size)
        fmt.write_exact_at(dst_fd, memoryview(header), 0)  # step 4
    finally:
        os.close(src_fd)
    return SealResult(
        Path(src),
        None,
        core.plaintext_length,
        core.sealed_size,
        core.digest_name,
        core.digest.hex(),
        wrapped.key_id,
        wrapped.version,
    )


def _unnamed_file(directory: Path) -> int | None:
    """An unnamed file in ``directory`` (``O_TMPFILE``), or None where the kernel or file system lacks it."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise InputError(f"cannot write in {directory}: {exc.strerror}") from None


def _link_unnamed(fd: int, dst: Path, *, overwrite: bool) -> None:
    """Give the unnamed file ``fd`` the name ``dst`` (atomically; replacing it only if ``overwrite``).

    ``linkat(AT_FDCWD, "/proc/self/fd/N", dirfd, name, AT_SYMLINK_FOLLOW)``: Python calls plain
    ``link()`` (which would link the /proc symlink itself) unless a directory fd is given.
    """
    proc = f"/proc/self/fd/{fd}"
    dir_fd = os.open(dst.absolute().parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not overwrite:
            try:
                os.link(proc, dst.name, dst_dir_fd=dir_fd, follow_symlinks=True)
            except FileExistsError:
                raise InputError(f"{dst} already exists", hint="remove it or pass overwrite=True") from None
            return
        while True:  # link() cannot replace: link under a fresh temporary name, then rename over dst
            tmp = f".{dst.name}.{secrets.token_hex(8)}.partial"
            try:
                os.link(proc, tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
                break
            except FileExistsError:
                continue
        try:
            os.replace(tmp, dst.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _atomic_output(dst: Path, *, overwrite: bool) -> Iterator[int]:
    """A new file that appears at ``dst`` complete, or not at all.

    Where the file system allows (Linux: ext4, xfs, btrfs, tmpfs), the file is written unnamed
    (``O_TMPFILE``), fsynced, and then linked in as ``dst``: a seal killed at any point before leaves
    nothing behind. Elsewhere it is written as ``.<name>.<random>.partial`` beside ``dst`` and renamed
    over it; a seal killed while writing leaves that file, which opening refuses (its header is
    written last). In that fallback, and when replacing an existing ``dst``, a kill in the instant
    between the final fsync and the rename leaves a complete sealed copy under the ``.partial`` name.
    """
    directory = dst.absolute().parent
    if not directory.is_dir():
        raise InputError(f"cannot write {dst}: directory {directory} does not exist")
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} already exists", hint="remove it or pass overwrite=True")
    unnamed = _unnamed_file(directory)
    if unnamed is not None:
        try:
            yield unnamed
            os.fsync(unnamed)
            _link_unnamed(unnamed, dst, overwrite=overwrite)
        finally:
            os.close(unnamed)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=directory)
        try:
            yield fd
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, dst)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def seal_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    provider: KeyProvider,
    key_id: str,
    *,
    overwrite: bool = False,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
    digest: str = "blake3",
    workers: int | None = None,
) -> SealResult:
    """Seal ``src`` to ``dst`` atomically: readers see no file or the whole sealed file."""
    src_p, dst_p = Path(src), Path(dst)
    if dst_p.exists() and src_p.exists() and os.path.samefile(src_p, dst_p):
        raise InputError("the sealed file cannot replace its source in place", hint="seal to a new path")
    with _atomic_output(dst_p, overwrite=overwrite) as fd:
        res = seal_to(src_p, fd, provider, key_id, chunk_size=chunk_size, digest=digest, workers=workers)
    return SealResult(
        src_p,
        dst_p,
        res.plaintext_length,
        res.sealed_length,
        res.digest_alg,
        res.digest,
        res.key_id,
        res.key_version,
    )


def seal_directory(
    src_dir: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    provider: KeyProvider,
    key_id: str,
    *,
    suffix: str = DEFAULT_SUFFIX,
    overwrite: bool = False,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
    digest: str = "blake3",
    workers: int | None = None,
) -> list[SealResult]:
    """Seal every regular file under ``src_dir`` to the same relative path + ``suffix`` under ``dst_dir``.

    Symbolic links are not followed (a link could point at anything); each file gets its own data key.
    """
    src_root, dst_root = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if not src_root.is_dir():
        raise InputError(f"{src_root} is not a directory")
    if dst_root == src_root or dst_root.is_relative_to(src_root) or src_root.is_relative_to(dst_root):
        raise InputError("the sealed directory must be outside the source directory and not contain it")
    results: list[SealResult] = []
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(src_root)
            out = dst_root / rel.parent / (rel.name + suffix)
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            results.append(
                seal_file(
                    path,
                    out,
                    provider,
                    key_id,
                    overwrite=overwrite,
                    chunk_size=chunk_size,
                    digest=digest,
                    workers=workers,
                )
            )
    return results


def _read_header(fd: int, name: str) -> tuple[fmt.Core, list[tuple[int, bytes]]]:
    head = bytearray(fmt.CORE_SIZE)
    try:
        fmt.read_exact_at(fd, memoryview(head), 0)
    except fmt.SealedIntegrityError:
        raise fmt.SealedIntegrityError(f"{name} is not a gpaisec sealed file (too short)") from None
    core = fmt.parse_core(bytes(head))  # step 1
    size = os.fstat(fd).st_size
    if size != core.sealed_size:  # step 2
        raise fmt.SealedIntegrityError(
            f"{name} is {size} bytes but its header describes {core.sealed_size} (truncated or extended)"
        )
    slots = []
    for index in (0, 1):
        raw = bytearray(core.slot_size)
        fmt.read_exact_at(fd, memoryview(raw), core.slot_offset(index))
        slots.append((index, bytes(raw)))
    return core, slots


def _open_slots(fd: int, name: str, provider: KeyProvider) -> tuple[fmt.Core, SlotInfo, bytes, bytes, bytes]:
    """Steps 1-3: (core, the slot that opened, data key, payload key, header key)."""
    core, raw_slots = _read_header(fd, name)
    candidates = []
    for index, raw in raw_slots:
        slot = fmt.parse_slot(raw)
        if slot is not None:
            candidates.append((slot.generation, index, slot, raw))
    candidates.sort(key=lambda c: c[0], reverse=True)
    reasons: list[str] = []
    for _, index, slot, raw in candidates:
        try:
            data_key = provider.unwrap(
                WrappedKey(slot.key_id, slot.key_version, slot.algorithm, slot.wrapped)
            )
            if len(data_key) != 32:
                raise fmt.SealedIntegrityError("the unwrapped data key has the wrong length")
            payload_key, header_key = fmt.derive_keys(data_key, core)
            fmt.verify_slot(raw, core, header_key)  # step 3
        except (IntegrityError, KeyUnavailableError, InputError) as exc:  # InputError: a garbled key id
            reasons.append(f"slot {index} ({slot.key_id} v{slot.key_version}): {exc.message}")
            continue
        return core, SlotInfo(index, slot), data_key, payload_key, header_key
    raise fmt.SealedIntegrityError(
        f"no key slot of {name} opens: " + ("; ".join(reasons) or "both slots are empty"),
        hint="check the key provider holds the key version named, or the file was tampered with",
    )


class SealedReader:
    """An opened sealed file: header verified, chunks decrypted and verified on demand.

    Random access (:meth:`read_chunk`, :meth:`pread`) verifies each chunk it touches but cannot
    check the whole-file digest; :meth:`readall_into` and :meth:`__iter__` check it at the end.
    """

    def __init__(self, path: Path, fd: int, provider: KeyProvider) -> None:
        self.path = path
        self._fd = fd
        self.core, self.slot, _, payload_key, _ = _open_slots(fd, str(path), provider)
        self._payload_key = payload_key
        self._cipher = fmt.ChunkCipher(self.core, payload_key)

    @property
    def size(self) -> int:
        return self.core.plaintext_length

    @property
    def chunk_count(self) -> int:
        return self.core.chunk_count

    def read_chunk(self, i: int) -> bytes:
        if not 0 <= i < self.core.chunk_count:
            raise InputError(f"chunk {i} is outside 0..{self.core.chunk_count - 1}")
        ln = self.core.chunk_length(i)
        ct = bytearray(ln + fmt.TAG_SIZE)
        fmt.read_exact_at(self._fd, memoryview(ct), self.core.chunk_offset(i))
        return self._cipher.decrypt(i, ct)

    def pread(self, offset: int, size: int) -> bytes:
        """Plaintext ``[offset, offset+size)`` (clipped at the end), decrypting only the chunks needed."""
        if offset < 0 or size < 0:
            raise InputError("negative offset or size")
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        cs = self.core.chunk_size
        out = bytearray()
        for i in range(offset // cs, (end - 1) // cs + 1):
            chunk = self.read_chunk(i)
            lo, hi = max(offset - i * cs, 0), min(end - i * cs, len(chunk))
            out += chunk[lo:hi]
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        return fmt.iter_chunks(self._fd, self.core, self._payload_key)

    def readall_into(self, sink: fmt.Sink, *, workers: int | None = None) -> bytes:
        """Decrypt everything into ``sink`` (in order, one call at a time); returns the verified digest."""
        digest = fmt.decrypt_stream(self._fd, self.core, self._payload_key, sink, workers=workers)
        assert digest is not None
        return digest

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_file(path: str | os.PathLike[str], provider: KeyProvider) -> SealedReader:
    """Open a sealed file for reading; the header is verified before this returns."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror}") from None
    try:
        return SealedReader(p, fd, provider)
    except BaseException:
        os.close(fd)
        raise


def _fd_sink(fd: int) -> fmt.Sink:
    def sink(data: memoryview) -> None:
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])

    return sink


def unseal_to(
    path: str | os.PathLike[str], dst: int | BinaryIO, provider: KeyProvider, *, workers: int | None = None
) -> bytes:
    """Decrypt ``path`` into a file descriptor or binary file; return the verified plaintext digest.

    Only authenticated chunks are written. If a later check fails, a regular-file destination is
    truncated back to where it started and SealedIntegrityError is raised; a pipe or socket
    destination cannot be taken back, so its reader must discard what it got on a failure exit.
    """
    fd: int | None
    if isinstance(dst, int):
        fd = dst
    else:
        dst.flush()
        try:
            fd = dst.fileno()
        except (OSError, io.UnsupportedOperation):
            fd = None
    start: int | None = None
    if fd is not None:
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                start = os.lseek(fd, 0, os.SEEK_CUR)
        sink = _fd_sink(fd)
    else:
        assert not isinstance(dst, int)
        writer = dst

        def sink(data: memoryview) -> None:
            writer.write(data)

    with open_file(path, provider) as reader:
        try:
            return reader.readall_into(sink, workers=workers)
        except IntegrityError:
            if fd is not None and start is not None:
                os.ftruncate(fd, start)
                os.lseek(fd, start, os.SEEK_SET)
            elif not isinstance(dst, int):
                with contextlib.suppress(OSError, io.UnsupportedOperation, ValueError):
                    dst.seek(0)
                    dst.truncate()
            raise


def rewrap(
    path: str | os.PathLike[str],
    provider: KeyProvider,
    new_version: int | None = None,
    *,
    key_id: str | None = None,
) -> tuple[int, int]:
    """Rewrap the data key of ``path`` under ``new_version`` (default: current) without touching the data.

    Steps: 1. open the active slot (unwrap, verify); 2. wrap the data key under the new version;
    3. write it to the *other* slot with the next generation and fsync; 4. wipe the old slot and
    fsync. A crash before 3 completes leaves the old slot; after 3, the new one (higher generation)
    wins and the old one is at worst still present until the next rewrap.
    Returns (old version, new version).
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot open {p} for rewrapping: {exc.strerror}") from None
    try:
        core, active, data_key, _, header_key = _open_slots(fd, str(p), provider)  # step 1
        target_id = check_key_id(key_id or active.slot.key_id)
        version = provider.current_version(target_id) if new_version is None else new_version
        old = active.slot.key_version
        other = 1 - active.index
        if target_id == active.slot.key_id and version == old:
            stale = fmt.parse_slot(_read_slot(fd, core, other))
            if stale is not None:
                _wipe_slot(fd, core, other)
            return old, version
        wrapped = provider.wrap(target_id, data_key, version=version)  # step 2
        slot = fmt.KeySlot(
            active.slot.generation + 1, wrapped.key_id, wrapped.version, wrapped.algorithm, wrapped.blob
        )
        fmt.write_exact_at(fd, memoryview(fmt.encode_slot(slot, core, header_key)), core.slot_offset(other))
        os.fsync(fd)  # step 3
        _wipe_slot(fd, core, active.index)  # step 4
        return old, wrapped.version
    finally:
        os.close(fd)


def _read_slot(fd: int, core: fmt.Core, index: int) -> bytes:
    raw = bytearray(core.slot_size)
    fmt.read_exact_at(fd, memoryview(raw), core.slot_offset(index))
    return bytes(raw)


def _wipe_slot(fd: int, core: fmt.Core, index: int) -> None:
    fmt.write_exact_at(fd, memoryview(bytes(core.slot_size)), core.slot_offset(index))
    os.fsync(fd)


def inspect(path: str | os.PathLike[str]) -> tuple[fmt.Core, list[fmt.KeySlot]]:
    """The header as written (core and non-empty slots), WITHOUT verifying it: for reports only."""
    p = Path(path)
    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = bytearray(fmt.CORE_SIZE)
        fmt.read_exact_at(fd, memoryview(head), 0)
        core = fmt.parse_core(bytes(head))
        slots = [s for s in (fmt.parse_slot(_read_slot(fd, core, i)) for i in (0, 1)) if s is not None]
        return core, slots
    finally:
        os.close(fd)


def find_sealed(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself) that starts with the sealed magic."""
    r = Path(root)
    paths: Iterable[Path] = (
        [r] if r.is_file() else (Path(d) / f for d, _, fs in os.walk(r) for f in sorted(fs))
    )
    for p in paths:
        if p.is_symlink() or not p.is_file():
            continue
        with contextlib.suppress(OSError), p.open("rb") as fh:
            if fh.read(len(fmt.MAGIC)) == fmt.MAGIC:
                yield p


def versions_in_use(paths: Iterable[str | os.PathLike[str]]) -> dict[str, set[int]]:
    """Key id -> versions named by any slot of the sealed files under ``paths`` (both slots, unverified:
    a file left mid-rewrap still counts for its old version, so it cannot be retired too early)."""
    used: dict[str, set[int]] = {}
    for root in paths:
        for p in find_sealed(root):
            try:
                _, slots = inspect(p)
            except (IntegrityError, OSError):
                continue
            for s in slots:
                used.setdefault(s.key_id, set()).add(s.key_version)
    return used


def retirable_versions(
    provider: KeyProvider, key_id: str, paths: Iterable[str | os.PathLike[str]]
) -> list[int]:
    """Versions of ``key_id`` that are not current and that no sealed file under ``paths`` names."""
    current = provider.current_version(key_id)
    used = versions_in_use(paths).get(key_id, set())
    return [v for v in provider.versions(key_id) if v != current and v not in used]
