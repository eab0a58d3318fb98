"""Unseal into memory only (Code of Practice, security appendix 4.2(4): non-persistent memory).

:func:`memory_dir` decrypts a sealed directory (or file) into anonymous memory files
(``memfd_create``; paths ``/proc/<pid>/fd/<n>``) or into a private directory on a tmpfs/ramfs
mount it has checked is memory-backed (``statfs`` magic), tries to ``mlock`` the pages so they are
not swapped, and on exit overwrites every byte with zeros, unlinks and closes everything. A
directory on a persistent file system is refused; :data:`unsafe_persistent` allows it (with a
warning) for tests and emergencies only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gpaisec.crypto.files import DEFAULT_SUFFIX, find_sealed, unseal_to
from gpaisec.crypto.keys import KeyProvider
from gpaisec.errors import ConfigError, InputError

__all__ = ["RAMFS_MAGIC", "TMPFS_MAGIC", "MemoryDir", "filesystem_magic", "is_memory_backed", "memory_dir"]

log = logging.getLogger(__name__)

TMPFS_MAGIC: Final = 0x01021994
RAMFS_MAGIC: Final = 0x858458F6
_MEMORY_FS: Final = frozenset({TMPFS_MAGIC, RAMFS_MAGIC})


@dataclass
class MemoryDir:
    """The unsealed files: ``files`` maps each relative name (suffix dropped) to a readable path."""

    files: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None
    locked: bool = True
    """Whether every file's pages were mlock'ed."""
    _fds: list[int] = field(default_factory=list, repr=False)
    _maps: list[mmap.mmap] = field(default_factory=list, repr=False)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def filesystem_magic(path: str | os.PathLike[str]) -> int:
    """The ``f_type`` of ``statfs(path)`` (Linux: the first field of struct statfs)."""
    buf = ctypes.create_string_buffer(256)
    if _libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise ConfigError(f"cannot statfs {path}: {os.strerror(err)}")
    return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], "little", signed=False) & 0xFFFFFFFF


def is_memory_backed(path: str | os.PathLike[str]) -> bool:
    return filesystem_magic(path) in _MEMORY_FS


def _lock(md: MemoryDir, fd: int, size: int) -> None:
    """mlock the pages through a shared mapping (needs CAP_IPC_LOCK or enough RLIMIT_MEMLOCK)."""
    if size == 0:
        return
    try:
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        md.locked = False
        return
    md._maps.append(m)
    anchor = ctypes.c_char.from_buffer(m)  # exports the buffer: released again before m.close()
    addr = ctypes.addressof(anchor)
    ok = _libc().mlock(ctypes.c_void_p(addr), ctypes.c_size_t(size)) == 0
    del anchor
    if not ok:
        md.locked = False
        log.info("mlock of %d bytes not permitted; unsealed pages may be swapped", size)


def _wipe_fd(fd: int) -> None:
    size = os.fstat(fd).st_size
    zeros = bytes(min(size, 1 << 20))
    off = 0
    while off < size:
        off += os.pwrite(fd, zeros[: min(len(zeros), size - off)], off)
    os.ftruncate(fd, 0)


@contextlib.contextmanager
def memory_dir(
    sealed: str | os.PathLike[str],
    provider: KeyProvider,
    *,
    base: str | os.PathLike[str] | None = None,
    suffix: str = DEFAULT_SUFFIX,
    unsafe_persistent: bool = False,
    workers: int | None = None,
) -> Iterator[MemoryDir]:
    """Unseal every sealed file under ``sealed`` into memory for the duration of the block.

    ``base=None``: memfd files. ``base=<dir>``: a private 0700 directory under ``base``, which must
    be on tmpfs or ramfs (ConfigError otherwise, unless ``unsafe_persistent=True``).
    """
    root_in = Path(sealed)
    md = MemoryDir()
    tmp_root: Path | None = None
    if base is not None:
        if not is_memory_backed(base):
            if not unsafe_persistent:
                raise ConfigError(
                    f"{base} is not on a memory-backed file system (tmpfs or ramfs); refusing to write "
                    "unsealed model parameters to persistent storage",
                    hint="use a tmpfs mount such as /dev/shm, or base=None for memory files",
                )
            log.warning("UNSAFE: unsealing to %s, which is on a persistent file system", base)
        tmp_root = Path(tempfile.mkdtemp(prefix="gpaisec-unsealed-", dir=base))
        md.root = tmp_root
    try:
        for path in find_sealed(root_in):
            rel = path.name if root_in.is_file() else str(path.relative_to(root_in))
            name = rel[: -len(suffix)] if suffix and rel.endswith(suffix) else rel
            if tmp_root is None:
                fd = os.memfd_create(name.replace("/", "_"), os.MFD_CLOEXEC)
                md._fds.append(fd)
                out = Path(f"/proc/{os.getpid()}/fd/{fd}")
            else:
                out = tmp_root / name
                if not out.resolve().is_relative_to(tmp_root.resolve()):
                    raise InputError(f"refusing sealed file name {name!r} that leaves the directory")
                out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                md._fds.append(fd)
            unseal_to(path, fd, provider, workers=workers)
            _lock(md, fd, os.fstat(fd).st_size)
            md.files[name] = out
        yield md
    finally:
        for m in md._maps:
            m.close()
        for fd in md._fds:
            with contextlib.suppress(OSError):
                _wipe_fd(fd)
            os.close(fd)
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
