"""The hashing engine: walk a model directory and digest every file or shard of it.

How the work is spread (two cores are the common case, so both must stay busy, and the GIL is
the thing to stay clear of):

* The calling thread walks the tree with :func:`os.scandir`, using only the entry types the
  directory listing already holds (no ``stat`` per file), and hands files to a thread pool in
  batches of a hundred or so: one hand-off per batch, not per file.
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
  server): once the walk has found enough files to be worth it, ``workers - 1`` children are
  forked, and the walk goes on while they hash. Batches of files go to the children as they are
  found (their OS paths, NUL-separated, through a pipe), each child kept some batches ahead
  (``_forks.ahead``: many while many are left, two at the end); once the walk is done this
  process hashes the remaining batches itself, newest first, while the children keep taking the
  oldest. A child answers each batch with its files' sizes and digests (``marshal``), and exits
  when its request pipe closes. Threads gain little here: every system call releases and takes
  back the GIL, and with two threads that hand-off is itself a futex call per system call, which
  costs as much as the call on a virtual machine. A batch whose child failed is hashed here
  again. A file that turns out large is handed back with its size and hashed here as below.

The walk visits each directory's entries in name order, so files come out in manifest order
(component-wise, see ``path_sort_key``) and the manifest's final sort has nothing to reorder.

The progress callback is only ever called on the calling thread.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import marshal
import mmap
import operator
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Final, Protocol, TypeAlias

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
_BATCH_FILES: Final = 128  # files per pool task or request to a child process
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

_Batch: TypeAlias = tuple[list[str], list[str]]
"""Files to hash: their model paths and, in the same order, the OS paths to open."""


def _check_root(path: str | os.PathLike[str]) -> str:
    root = os.fspath(path)
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.lexists(root) else "is not a directory"
        raise InputError(
            f"model directory {root!r} {what}", hint="give the directory that holds the model files"
        )
    return root


def _listing(dir_path: str, rel_dir: str) -> Iterator[os.DirEntry[str]]:
    """The entries of one directory, sorted by name."""
    try:
        with os.scandir(dir_path) as scan:
            entries = list(scan)
    except OSError as exc:
        raise _unreadable(rel_dir or ".", exc) from None
    entries.sort(key=_name)
    return iter(entries)


_name: Final = operator.attrgetter("name")


def _walk(root: str, params: HashParams, ignore: frozenset[str]) -> Iterator[_Batch]:
    """Yield every regular file under ``root`` that is not ignored, in batches, in manifest order.

    Refuses symlinks (unless ``params.allow_symlinks``, and then only links to regular files:
    model-signing does not descend into linked directories, so neither do we, but loudly) and
    special files. Ignored directories are not entered. Only the entry types of the directory
    listing are used: no ``stat`` per file.

    Each directory's entries are visited in name order and a subdirectory is walked where its name
    falls, so files come out in the component-wise order of a manifest (``path_sort_key``): the
    manifest's final sort then finds them already in order.
    """
    rels: list[str] = []
    paths: list[str] = []
    stack = [("", _listing(root, ""))]
    while stack:
        prefix, entries = stack[-1]
        for entry in entries:
            name = entry.name
            rel = prefix + name
            if rel in ignore:
                continue
            if not name.isascii():  # each name is checked once, as its own entry
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    raise InputError(
                        f"file name {rel!r} is not valid UTF-8",
                        hint="rename it: manifests and signatures record names as UTF-8 text",
                    ) from None
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", _listing(entry.path, rel)))
                    break  # walk it now; this directory's other entries come after it
                if not entry.is_file(follow_symlinks=False):
                    _check_other(rel, entry, params)
            except OSError as exc:
                raise _unreadable(rel, exc) from None
            rels.append(rel)
            paths.append(entry.path)
            if len(rels) >= _BATCH_FILES:
                yield rels, paths
                rels, paths = [], []
        else:
            stack.pop()
    if rels:
        yield rels, paths


def _check_other(rel: str, entry: os.DirEntry[str], params: HashParams) -> None:
    """Neither a regular file nor a directory: raise unless a link to a file that may be followed."""
    if not entry.is_symlink():
        raise InputError(
            f"{rel!r} is not a regular file or directory (a device, socket or pipe)",
            hint="remove it from the model directory or add it to the ignore paths",
        )
    _check_link(rel, entry.path, params)


def _check_link(rel: str, path: str, params: HashParams) -> None:
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
    if not stat.S_ISREG(st.st_mode):
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


class _ReadError(Exception):
    """The file at ``index`` of a batch could not be read."""

    def __init__(self, index: int, exc: OSError) -> None:
        super().__init__(index, exc)
        self.index = index
        self.exc = exc


def _digest_files(paths: Sequence[str | bytes], params: HashParams) -> tuple[list[int], list[str]]:
    """Hash each small file of ``paths`` from one read; the same in a forked child as here.

    Returns each file's size and the digests in file order: with method ``files`` one per file
    (``""`` for a large file), with ``shards`` one per shard of each small file. A large file
    (more than ``_SMALL`` bytes) is not hashed: its size is given as ``-1 - size``.
    """
    buf = _buffer()
    bufs = [buf]
    view = memoryview(buf)
    flags = _OPEN_FLAGS | (0 if params.allow_symlinks else _NOFOLLOW)
    new = blake3.blake3 if params.algorithm == "blake3" else hashlib.sha256
    shard = params.shard_size if params.method == "shards" else None
    sizes: list[int] = []
    digests: list[str] = []
    size, digest = sizes.append, digests.append
    open_, readv, close = os.open, os.readv, os.close  # locals: this loop runs once per file
    try:
        for i, path in enumerate(paths):
            try:
                fd = open_(path, flags)
                try:
                    # A regular file returns fewer bytes than asked only at its end, so n <= _SMALL
                    # means the whole file is in buf. One byte more than _SMALL means it is large.
                    n = readv(fd, bufs)
                    if n > _SMALL:
                        n = -1 - os.fstat(fd).st_size
                finally:
                    close(fd)
            except OSError as exc:
                raise _ReadError(i, exc) from None
            size(n)
            if shard is None:
                digest(new(view[:n]).hexdigest() if n >= 0 else "")
            else:  # method "shards": an empty file has no shards, as in model-signing
                for start in range(0, n, shard):
                    digest(new(view[start : min(n, start + shard)]).hexdigest())
    finally:
        view.release()
    return sizes, digests


_new_resource: Final = functools.partial(tuple.__new__, Resource)
"""Resource from a 4-tuple in C, without the Python-level ``__new__`` of a named tuple."""


def _resources(
    batch: _Batch, sizes: list[int], digests: list[str], params: HashParams
) -> tuple[list[Resource], list[_Entry], int]:
    """The resources of a batch's small files, its large files (sized), and the bytes hashed."""
    rels, paths = batch
    if params.method == "files" and (not sizes or min(sizes) >= 0):  # the common case, all in C
        return list(map(_new_resource, zip(rels, digests, repeat(None), repeat(None)))), [], sum(sizes)
    out: list[Resource] = []
    large: list[_Entry] = []
    done = 0
    shard = params.shard_size
    k = 0
    for rel, path, n in zip(rels, paths, sizes, strict=True):
        if n < 0:
            large.append(_Entry(rel, path, -1 - n))
            if shard is None:
                k += 1  # method files: a large file holds a place ("") among the digests
            continue
        done += n
        if shard is None:
            out.append(Resource(rel, digests[k]))
            k += 1
        else:
            for start in range(0, n, shard):
                out.append(Resource(rel, digests[k], start, min(n, start + shard)))
                k += 1
    return out, large, done


def _hash_batch(
    batch: _Batch, params: HashParams, counter: _Counter
) -> tuple[list[Resource], list[_Entry], int]:
    """Hash the small files of ``batch`` here; hand back the large ones, sized."""
    try:
        sizes, digests = _digest_files(batch[1], params)
    except _ReadError as err:
        raise _unreadable(batch[0][err.index], err.exc) from None
    got = _resources(batch, sizes, digests, params)
    counter.add(got[2])
    return got


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


def _can_fork(workers: int) -> bool:
    """Processes for small files only where fork() is safe: no other thread in this process."""
    return workers > 1 and hasattr(os, "fork") and threading.active_count() == 1


def _serve_batch(request: bytes, params: HashParams) -> bytes:
    """In a forked child: hash the files named in ``request`` (NUL-separated OS paths)."""
    try:
        sizes, digests = _digest_files(request.split(b"\0"), params)
    except _ReadError as err:
        return marshal.dumps(("error", err.index, err.exc.errno, err.exc.strerror))
    return marshal.dumps(("ok", sizes, digests))


def _hash_small_in_processes(
    head: list[_Batch],
    walk: Iterator[_Batch],
    params: HashParams,
    workers: int,
    counter: _Counter,
    report: Callable[[], None],
    finished: list[_forks.Server],
) -> tuple[list[Resource], list[_Entry], int]:
    """Hash ``head`` and the rest of ``walk`` in ``workers - 1`` forked children and here.

    The children start while the walk goes on. Each child is kept ``_forks.ahead`` batches ahead:
    when one falls below, it is sent the oldest walked batch; this process walks, and once the walk is
    done hashes the newest batch itself. So the walk overlaps the hashing, and at the end no
    process waits for another for longer than about one batch. A child that fails has its
    unanswered batches hashed here; a file a child cannot read raises here as it would have here.
    The resources come back in walk order (each batch has its slot), which is manifest order.
    """
    servers: list[_forks.Server] = []
    sent: dict[_forks.Server, deque[int]] = {}  # batch numbers each child has not answered yet
    batches: list[_Batch] = []
    slots: list[list[Resource]] = []
    pending: deque[int] = deque()
    large: list[_Entry] = []
    done = 0

    def walked(batch: _Batch) -> None:
        pending.append(len(batches))
        batches.append(batch)
        slots.append([])

    def take(seq: int, got: tuple[list[Resource], list[_Entry], int]) -> None:
        nonlocal done
        slots[seq] = got[0]
        large.extend(got[1])
        done += got[2]

    for batch in head:
        walked(batch)
    try:
        for _ in range(workers - 1):
            server = _forks.serve(functools.partial(_serve_batch, params=params), others=servers)
            if server is not None:
                servers.append(server)
                sent[server] = deque()
        walking = True
        while True:
            _forks.pump(servers)
            for server in servers:
                answered = sent[server]
                while server.replies:
                    seq = answered.popleft()
                    # our own forked child, through a pipe only the two processes hold
                    reply = marshal.loads(server.replies.popleft())  # noqa: S302
                    if reply[0] == "error":
                        _tag, index, errno_, strerror = reply
                        raise _unreadable(batches[seq][0][index], OSError(errno_, strerror))
                    got = _resources(batches[seq], reply[1], reply[2], params)
                    counter.add(got[2])
                    take(seq, got)
                if not server.alive:  # it failed: its unanswered batches are hashed here
                    pending.extendleft(answered)
                    answered.clear()
                while server.accepting and len(answered) < _forks.ahead(len(pending), workers) and pending:
                    seq = pending.popleft()
                    answered.append(seq)
                    server.send(os.fsencode("\0".join(batches[seq][1])))
                if not walking and not pending:
                    server.close_requests()  # it exits once it has answered the last ones
            if walking:
                found = next(walk, None)
                if found is None:
                    walking = False
                else:
                    walked(found)
            elif pending:
                seq = pending.pop()
                take(seq, _hash_batch(batches[seq], params, counter))
                report()
            elif any(sent.values()):
                _forks.pump(servers, _POLL_SECONDS)
                report()
            else:
                break
    except BaseException:
        for server in servers:
            server.kill()
        raise
    finished.extend(servers)
    return [r for slot in slots for r in slot], large, done


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

    narrow = workers or _default_workers()
    walk = _walk(root, params, ignore)
    head: list[_Batch] = []
    head_files = 0
    if _can_fork(narrow):
        for batch in walk:  # enough files to be worth a fork?
            head.append(batch)
            head_files += len(batch[0])
            if head_files >= _FORK_MIN_FILES:
                break
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

    children: list[_forks.Server] = []
    collecting = gc.isenabled()
    try:
        if head_files >= _FORK_MIN_FILES and _can_fork(narrow):

            def walking() -> None:  # the total is not known until every batch is back
                if progress is not None:
                    progress(counter.value, None)

            # Only this thread runs (just checked), and what is built until the manifest is
            # acyclic (tuples of strings): a cyclic collection meanwhile could only walk the whole
            # heap for nothing, again and again over 20,000 files in a process that holds much
            # else (measured: a fifth of this process's time in the benchmark).
            gc.disable()
            small, found, hashed = _hash_small_in_processes(
                head, walk, params, narrow, counter, walking, children
            )
            results.extend(small)
            small_bytes += hashed
            if found and collecting:
                gc.enable()  # large files take long, and other threads may start
            take_large(found)
        else:
            # Walk to the end before hashing: a walking thread and the workers would fight for the
            # GIL (each worker system call then waits for the walker's switch interval; measured
            # 3x slower).
            for batch in walk:
                head.append(batch)
                if progress is not None and len(head) % 32 == 0:
                    progress(0, None)  # still walking: show that something is happening
            for batch in head:
                batches.add(pool.submit(_hash_batch, batch, params, counter))
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
        for p in (pool, *wide):
            p.shutdown(wait=True)
        report()
        return Manifest._trusted(params, results, model_name_of(root))
    except BaseException:
        for p in (pool, *wide):
            p.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if collecting:
            gc.enable()
        for child in children:
            child.stop()


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
