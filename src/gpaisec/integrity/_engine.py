"""The hashing engine: walk a model directory and digest every file or shard of it.

How the work is spread (two cores are the common case, so both must stay busy, and the GIL is
the thing to stay clear of):

* The calling thread walks the tree with :func:`os.scandir`, using only the entry types the
  directory listing already holds (no ``stat`` per file), and hands files to a thread pool in
  batches of a few hundred: one hand-off per batch, not per file.
* A worker opens each file (``O_NOFOLLOW`` unless links are allowed) and reads it with one
  ``os.readv`` into a reused buffer one byte larger than the small-file limit. A short read of a
  regular file means end of file, so a file that fits is hashed from that buffer (hash objects
  release the GIL while they work) with three system calls and no ``stat``. A file that does not
  fit is handed back as large, with its size.
* A large BLAKE3 file is hashed by the calling thread through a read-only ``mmap``, window by
  window, each window on all cores (``max_threads=AUTO``); BLAKE3's tree makes the digest the
  same as a one-thread hash (and as ``b3sum``). Windows already hashed are dropped from the
  mapping (``MADV_DONTNEED``), so resident memory stays near one window, never the whole file.
* A large SHA-256 file is one task (method ``files``), or one task per group of shards (method
  ``shards``), in a second, wider pool: hashlib releases the GIL while it hashes a window of the
  mapping, and more readers than cores keep a cold disk's queue full (model-signing sizes its
  pool the same way). Small files keep the narrow pool, where more threads only fight for the GIL.

* Many small files, in a process with no other thread (the CLI, a batch job; never a threaded
  server): the small files are shared out to ``workers - 1`` forked processes plus this one, each
  hashing its share on one thread. Threads gain little there: every system call releases and takes
  back the GIL, and with two threads that hand-off is itself a futex call per system call, which
  costs as much as the call on a virtual machine. A child sends its digests back through a pipe
  (JSON) and exits with ``os._exit``; a share whose child failed is hashed here again. A file that
  turns out large is handed back with its size and hashed here as below.

The progress callback is only ever called on the calling thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import blake3

from gpaisec import _forks
from gpaisec.errors import InputError
from gpaisec.integrity._manifest import (
    Algorithm,
    FileDigest,
    HashParams,
    HexDigest,
    Manifest,
    Resource,
)

__all__ = ["ProgressCallback", "hash_directory", "hash_file", "hash_tree"]

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_done, bytes_total)`` on the calling thread.

``bytes_total`` is ``None`` while it is not yet known (the walk reads no file sizes, so the total
is known once every file has been opened); the last call has ``bytes_done == bytes_total``.
"""

_SMALL: Final = 1 << 20  # files up to this size are read whole, in one read, by a pool worker
_BATCH_FILES: Final = 256  # files per pool task
_B3_WINDOW: Final = 256 << 20  # mmap window per BLAKE3 update on all cores
_SHA_WINDOW: Final = 64 << 20  # mmap window per SHA-256 update
_SHARD_TASK_BYTES: Final = 256 << 20  # shards of a large file are grouped into tasks this big
_POLL_SECONDS: Final = 0.1
_FORK_MIN_FILES: Final = 2048  # fewer small files than this are not worth a fork

_OPEN_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_PAGE: Final = mmap.PAGESIZE
_DONTNEED: Final[int | None] = getattr(mmap, "MADV_DONTNEED", None)


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    rel: str  # model path
    path: str  # OS path to open
    size: int = -1  # -1 until a worker has opened the file


class _Counter:
    """Bytes hashed so far, added to by workers and read by the calling thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 2


def _default_workers() -> int:
    return max(2, min(_cpus(), 8))


def _large_workers(workers: int) -> int:
    return max(workers, min(32, _cpus() + 4))


def _new_hasher(algorithm: Algorithm, *, all_cores: bool = False) -> _Hasher:
    if algorithm == "blake3":
        h: _Hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if all_cores else 1)
        return h
    return hashlib.sha256()


def _changed(rel: str) -> InputError:
    return InputError(
        f"{rel!r} changed size while it was being hashed",
        hint="stop every writer to the model directory, then hash it again",
    )


def _unreadable(rel: str, exc: OSError) -> InputError:
    return InputError(
        f"cannot read {rel!r}: {exc.strerror or exc}",
        hint="check that the file exists and that this user may read it",
    )


# -- walking -------------------------------------------------------------------------------


def _check_root(path: str | os.PathLike[str]) -> str:
    root = os.fspath(path)
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.lexists(root) else "is not a directory"
        raise InputError(
            f"model directory {root!r} {what}", hint="give the directory that holds the model files"
        )
    return root


def _walk(root: str, params: HashParams, ignore: frozenset[str]) -> Iterator[_Entry]:
    """Yield every regular file under ``root`` that is not ignored, in no particular order.

    Refuses symlinks (unless ``params.allow_symlinks``, and then only links to regular files:
    model-signing does not descend into linked directories, so neither do we, but loudly) and
    special files. Ignored directories are not entered.
    """
    stack = [("", root)]
    while stack:
        rel_dir, dir_path = stack.pop()
        try:
            scan = os.scandir(dir_path)
        except OSError as exc:
            raise _unreadable(rel_dir or ".", exc) from None
        with scan:
            for entry in scan:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if rel in ignore:
                    continue
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    raise InputError(
                        f"file name {rel!r} is not valid UTF-8",
                        hint="rename it: manifests and signatures record names as UTF-8 text",
                    ) from None
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((rel, entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        yield _Entry(rel, entry.path)
                    elif entry.is_symlink():
                        yield _followed_link(rel, entry.path, params)
                    else:
                        raise InputError(
                            f"{rel!r} is not a regular file or directory (a device, socket or pipe)",
                            hint="remove it from the model directory or add it to the ignore paths",
                        )
                except OSError as exc:
                    raise _unreadable(rel, exc) from None


def _followed_link(rel: str, path: str, params: HashParams) -> _Entry:
    if not params.allow_symlinks:
        raise InputError(
            f"{rel!r} is a symbolic link, and links are refused by default",
            hint="replace it with the file it points to, or allow symlinks (allow_symlinks=True) "
            "if the link target is trusted",
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(
            f"{rel!r} is a symbolic link to nothing", hint="fix or remove the dangling link"
        ) from None
    if stat.S_ISREG(st.st_mode):
        return _Entry(rel, path)
    raise InputError(
        f"{rel!r} is a symbolic link to a directory or special file; only links to files are followed",
        hint="copy the linked directory into the model directory, or ignore the link",
    )


# -- hashing -------------------------------------------------------------------------------

_local = threading.local()


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = bytearray(_SMALL + 1)
        _local.buf = buf
    return buf


def _hash_batch(
    batch: list[_Entry], params: HashParams, counter: _Counter
) -> tuple[list[Resource], list[_Entry], int]:
    """Hash the small files of ``batch`` from one read each; hand back the large ones, sized.

    Returns the resources, the large files, and the bytes hashed.
    """
    out: list[Resource] = []
    large: list[_Entry] = []
    buf = _buffer()
    view = memoryview(buf)
    flags = _OPEN_FLAGS | (0 if params.allow_symlinks else _NOFOLLOW)
    new = blake3.blake3 if params.algorithm == "blake3" else hashlib.sha256
    shard = params.shard_size if params.method == "shards" else None
    done = 0
    try:
        for e in batch:
            try:
                fd = os.open(e.path, flags)
                try:
                    # A regular file returns fewer bytes than asked only at its end, so n <= _SMALL
                    # means the whole file is in buf. One byte more than _SMALL means it is large.
                    n = os.readv(fd, [buf])
                    if n > _SMALL:
                        large.append(_Entry(e.rel, e.path, os.fstat(fd).st_size))
                        continue
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _unreadable(e.rel, exc) from None
            done += n
            if shard is None:
                out.append(Resource(e.rel, new(view[:n]).hexdigest()))
            else:  # method "shards": an empty file has no shards, as in model-signing
                for start in range(0, n, shard):
                    end = min(n, start + shard)
                    out.append(Resource(e.rel, new(view[start:end]).hexdigest(), start, end))
    finally:
        view.release()
    counter.add(done)
    return out, large, done


@contextlib.contextmanager
def _mapped(e: _Entry, allow_symlinks: bool) -> Iterator[tuple[mmap.mmap, memoryview]]:
    flags = _OPEN_FLAGS | (0 if allow_symlinks else _NOFOLLOW)
    try:
        fd = os.open(e.path, flags)
    except OSError as exc:
        raise _unreadable(e.rel, exc) from None
    try:
        if os.fstat(fd).st_size != e.size:
            raise _changed(e.rel)
        mm = mmap.mmap(fd, e.size, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise _unreadable(e.rel, exc) from None
    finally:
        os.close(fd)  # the mapping keeps its own reference to the file
    view = memoryview(mm)
    try:
        yield mm, view
    finally:
        view.release()
        mm.close()


def _hash_ranges(
    e: _Entry,
    ranges: list[tuple[int, int]],
    params: HashParams,
    counter: _Counter,
    *,
    all_cores: bool = False,
    on_window: Callable[[], None] | None = None,
) -> list[Resource]:
    """Hash byte ranges of one large file through a read-only mapping, window by window."""
    window = _B3_WINDOW if params.algorithm == "blake3" else _SHA_WINDOW
    sharded = params.method == "shards"
    out: list[Resource] = []
    with _mapped(e, params.allow_symlinks) as (mm, view):
        for start, end in ranges:
            h = _new_hasher(params.algorithm, all_cores=all_cores)
            for off in range(start, end, window):
                stop = min(end, off + window)
                with view[off:stop] as chunk:
                    h.update(chunk)
                if _DONTNEED is not None:
                    low = off - off % _PAGE
                    mm.madvise(_DONTNEED, low, stop - low)
                counter.add(stop - off)
                if on_window is not None:
                    on_window()
            digest = HexDigest(h.hexdigest())
            out.append(Resource(e.rel, digest, start, end) if sharded else Resource(e.rel, digest))
    return out


def _shard_task_ranges(size: int, shard_size: int) -> Iterator[list[tuple[int, int]]]:
    """Shards of a file ([0, s), [s, 2s), ... [ks, size)), grouped into tasks of useful size."""
    per_task = max(1, _SHARD_TASK_BYTES // shard_size)
    group: list[tuple[int, int]] = []
    for start in range(0, size, shard_size):
        group.append((start, min(size, start + shard_size)))
        if len(group) >= per_task:
            yield group
            group = []
    if group:
        yield group


def _can_fork(workers: int, files: int) -> bool:
    """Processes for small files only where fork() is safe: no other thread in this process."""
    return workers > 1 and files >= _FORK_MIN_FILES and hasattr(os, "fork") and threading.active_count() == 1


def _fork_share(share: list[_Entry], params: HashParams) -> tuple[int, int] | None:
    """Fork a child that hashes ``share``; (pid, read end of its pipe), or None if fork failed."""

    def work() -> dict[str, object]:
        try:
            out, large, done = _hash_batch(share, params, _Counter())
        except InputError as exc:
            return {"error": exc.message, "hint": exc.hint}
        return {
            "resources": [list(r) for r in out],
            "large": [[e.rel, e.path, e.size] for e in large],
            "done": done,
        }

    return _forks.fork_worker(work)


def _collect_share(pid: int, read_fd: int) -> tuple[list[Resource], list[_Entry], int] | None:
    """A child's results; None if it failed (its share is then hashed here). Raises the
    child's InputError (an unreadable file, say) as this process's own."""
    payload = _forks.collect(pid, read_fd)
    if payload is None:
        return None
    if "error" in payload:
        raise InputError(str(payload["error"]), hint=payload.get("hint"))
    try:
        out = [Resource(str(p), str(d), s, e) for p, d, s, e in payload["resources"]]
        large = [_Entry(str(r), str(p), int(n)) for r, p, n in payload["large"]]
        done = int(payload["done"])
    except (ValueError, KeyError, TypeError):
        return None
    return out, large, done


def _hash_small_in_processes(
    entries: list[_Entry],
    params: HashParams,
    workers: int,
    counter: _Counter,
    report: Callable[[], None],
) -> tuple[list[Resource], list[_Entry], int]:
    """Hash ``entries`` in ``workers - 1`` forked children and this process (module docs)."""
    shares = [
        entries[i * len(entries) // workers : (i + 1) * len(entries) // workers] for i in range(workers)
    ]
    children: list[tuple[int, int, list[_Entry]]] = []
    results: list[Resource] = []
    large: list[_Entry] = []
    done = 0
    own = list(shares[0])
    try:
        for share in shares[1:]:
            child = _fork_share(share, params)
            if child is None:
                own.extend(share)
            else:
                children.append((*child, share))
        for i in range(0, len(own), _BATCH_FILES):
            out, found, n = _hash_batch(own[i : i + _BATCH_FILES], params, counter)
            results.extend(out)
            large.extend(found)
            done += n
            report()
        while children:
            pid, read_fd, share = children.pop(0)
            got = _collect_share(pid, read_fd)
            if got is None:
                got = _hash_batch(share, params, counter)
            else:
                counter.add(got[2])
            results.extend(got[0])
            large.extend(got[1])
            done += got[2]
            report()
    finally:
        _forks.reap((pid, read_fd) for pid, read_fd, _share in children)  # abandoned (an error)
    return results, large, done


def hash_tree(
    path: str | os.PathLike[str],
    params: HashParams,
    *,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    extra_ignore: frozenset[str] = frozenset(),
) -> Manifest:
    """Hash ``path`` with ``params``; ``extra_ignore`` leaves out paths without recording them.

    ``extra_ignore`` exists for the verifier, which leaves out a signature file that sits in the
    model directory; everything else should go through :func:`hash_directory`.
    """
    root = _check_root(path)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}", hint="leave it unset for the default")
    ignore = frozenset(params.ignore_paths) | extra_ignore
    counter = _Counter()
    results: list[Resource] = []
    batches: set[Future[tuple[list[Resource], list[_Entry], int]]] = set()
    ranges: set[Future[list[Resource]]] = set()
    large_b3: list[_Entry] = []
    small_bytes = 0
    large_bytes = 0

    def report() -> None:
        if progress is not None:
            known = not batches  # every file opened: all sizes known
            progress(counter.value, small_bytes + large_bytes if known else None)

    def take_large(found: list[_Entry]) -> None:
        nonlocal large_bytes
        for e in found:
            large_bytes += e.size
            if params.algorithm == "blake3":
                large_b3.append(e)
            elif params.method == "shards" and params.shard_size is not None:
                for group in _shard_task_ranges(e.size, params.shard_size):
                    ranges.add(wide_pool().submit(_hash_ranges, e, group, params, counter))
            else:
                ranges.add(wide_pool().submit(_hash_ranges, e, [(0, e.size)], params, counter))

    def harvest(timeout: float) -> None:
        nonlocal batches, ranges, small_bytes
        if batches:
            done, batches = wait(batches, timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in done:
                small, found, hashed = fut.result()
                results.extend(small)
                small_bytes += hashed
                take_large(found)
            timeout = 0
        if ranges:
            finished, ranges = wait(ranges, timeout=timeout, return_when=FIRST_COMPLETED)
            for task in finished:
                results.extend(task.result())

    # Walk to the end before hashing: a walking thread and the workers would fight for the GIL
    # (each worker system call then waits for the walker's switch interval; measured 3x slower).
    entries: list[_Entry] = []
    for e in _walk(root, params, ignore):
        entries.append(e)
        if progress is not None and len(entries) % 8192 == 0:
            progress(0, None)  # still walking: show that something is happening
    narrow = workers or _default_workers()
    pool = ThreadPoolExecutor(max_workers=narrow, thread_name_prefix="gpaisec-hash")
    wide: list[ThreadPoolExecutor] = []

    def wide_pool() -> ThreadPoolExecutor:
        if not wide:
            wide.append(
                ThreadPoolExecutor(
                    max_workers=_large_workers(narrow), thread_name_prefix="gpaisec-hash-large"
                )
            )
        return wide[0]

    try:
        if _can_fork(narrow, len(entries)):

            def walking() -> None:  # the total is not known until every share is back
                if progress is not None:
                    progress(counter.value, None)

            small, found, hashed = _hash_small_in_processes(entries, params, narrow, counter, walking)
            results.extend(small)
            small_bytes += hashed
            take_large(found)
            entries = []
        for i in range(0, len(entries), _BATCH_FILES):
            batches.add(pool.submit(_hash_batch, entries[i : i + _BATCH_FILES], params, counter))
        while batches or ranges or large_b3:
            if large_b3:  # on this thread, all cores, while the pool finishes small files
                e = large_b3.pop()
                results.extend(
                    _hash_ranges(e, [(0, e.size)], params, counter, all_cores=True, on_window=report)
                )
                harvest(0)
            else:
                harvest(_POLL_SECONDS)
            report()
    except BaseException:
        for p in (pool, *wide):
            p.shutdown(wait=True, cancel_futures=True)
        raise
    for p in (pool, *wide):
        p.shutdown(wait=True)
    report()
    return Manifest._trusted(params, results, model_name_of(root))


def hash_directory(
    path: str | os.PathLike[str],
    params: HashParams | None = None,
    *,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> Manifest:
    """Hash every file of the model directory ``path`` and return its :class:`Manifest`.

    Args:
        path: the model directory.
        params: how to hash (default :class:`HashParams`: BLAKE3, one digest per file, git
            metadata ignored, symlinks refused). The manifest records them.
        progress: optional ``progress(bytes_done, bytes_total)``, called on this thread.
        workers: threads for small files (default: the CPUs this process may use, 2 to 8);
            large SHA-256 files use ``max(workers, min(32, CPUs + 4))``.

    Raises:
        InputError: the directory is missing, holds a refused symlink or special file, a file
            cannot be read, or a file changed size while it was hashed.
    """
    return hash_tree(path, params or HashParams(), progress=progress, workers=workers)


def hash_file(
    path: str | os.PathLike[str],
    algorithm: Algorithm = "blake3",
    *,
    progress: ProgressCallback | None = None,
) -> FileDigest:
    """Whole-content digest of one regular file (BLAKE3 on all cores, or SHA-256).

    The BLAKE3 digest equals ``b3sum``'s, the SHA-256 one ``sha256sum``'s. A link named by the
    caller is followed.
    """
    rel = os.fspath(path)
    try:
        st = os.stat(rel)
    except OSError as exc:
        raise _unreadable(rel, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{rel!r} is not a regular file", hint="give the path of one file")
    entry = _Entry(rel, rel, st.st_size)
    counter = _Counter()
    if st.st_size == 0:
        digest = HexDigest(_new_hasher(algorithm).hexdigest())
    else:
        params = HashParams(algorithm=algorithm, allow_symlinks=True, ignore_paths=())

        def report() -> None:
            if progress is not None:
                progress(counter.value, st.st_size)

        (res,) = _hash_ranges(entry, [(0, st.st_size)], params, counter, all_cores=True, on_window=report)
        digest = HexDigest(res.digest)
    if progress is not None:
        progress(st.st_size, st.st_size)
    return FileDigest(algorithm=algorithm, digest=digest, size=st.st_size)


def model_name_of(path: str | os.PathLike[str]) -> str:
    """The informative model name: the final component of the directory's absolute path."""
    return Path(os.path.abspath(path)).name
