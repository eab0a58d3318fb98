"""Walk directory trees for weight files, and scan them against registered artifacts.

:class:`Walker` visits a tree with ``os.scandir`` and an explicit stack (no recursion, one open
directory at a time) and yields a :class:`Candidate` for every regular file whose first bytes sniff
as a weight format. Entries are reached relative to their directory's descriptor. Regular files
are known from the directory listing; files below ``min_size`` are skipped after one ``fstatat``,
without being opened; the rest are opened without following symlinks and without blocking on
FIFOs, checked to be regular files, and sniffed from their first 8 KiB. That one ``fstatat`` per
file is the floor of a walk's cost; ``workers`` > 1 spreads it over several processes.

Nothing in a tree stops a walk. What gets in the way is recorded as a :class:`ScanProblem` and the
walk goes on:

* directories that cannot be listed (permissions, I/O errors, removed during the walk);
* symlink loops (symlinks are not followed by default; with ``follow_symlinks=True`` a directory
  whose ``(st_dev, st_ino)`` is already an ancestor is a loop, and one seen elsewhere is skipped);
* broken symlinks (when following), files that vanish or change between listing and reading;
* names that are not valid UTF-8 (reported, and still scanned through their surrogate-escaped
  ``str`` path, which the ``os`` functions accept);
* files whose bytes say safetensors or gpaisec sealed but whose header is malformed, truncated
  or lying about the file's length (during :func:`scan`).

:func:`scan` is the whole discovery pipeline for one tree: walk, fingerprint each candidate
(comparing size and modification time before and after), match against a
:class:`~gpaisec.weights.matching.MatchIndex`, then -- only for the files that matched -- compute
full digests and match again to confirm.
"""

from __future__ import annotations

import enum
import errno
import marshal
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from gpaisec import _forks
from gpaisec.errors import InputError
from gpaisec.weights.fingerprint import (
    FileDigests,
    FileFingerprint,
    FingerprintDecodeError,
    StatSnapshot,
    digest_file,
    file_digest,
    fingerprint_file,
)
from gpaisec.weights.formats import (
    HEAD_BYTES,
    FileChangedError,
    Format,
    SafetensorsError,
    SealedHeaderError,
    WeightFileError,
    _FdSource,
    _sniff_source,
    display_path,
)
from gpaisec.weights.matching import Discovery, MatchIndex, MatchKind, ScannedFile

__all__ = [
    "DEFAULT_MIN_SIZE",
    "Candidate",
    "ProblemKind",
    "ScanProblem",
    "ScanReport",
    "WalkStats",
    "Walker",
    "scan",
]

_Pending: TypeAlias = tuple[str, frozenset[tuple[int, int]]]
"""A directory still to visit, with the (st_dev, st_ino) of its ancestors (for loop detection)."""

DEFAULT_MIN_SIZE: Final = 4096
"""Files smaller than this are skipped unopened when no index says otherwise."""

_SPLIT_LEVELS: Final = 4
_SPLIT_TARGET: Final = 8  # directories per worker before the tree is shared out

_BASE_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS: Final = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class ProblemKind(enum.StrEnum):
    """Why part of a tree could not be scanned as expected."""

    UNREADABLE_DIRECTORY = "unreadable-directory"
    UNREADABLE_FILE = "unreadable-file"
    VANISHED = "vanished"
    SYMLINK_LOOP = "symlink-loop"
    BROKEN_SYMLINK = "broken-symlink"
    CHANGED_DURING_SCAN = "changed-during-scan"
    UNDECODABLE_NAME = "undecodable-name"
    MALFORMED_WEIGHTS = "malformed-weights"


@dataclass(frozen=True)
class ScanProblem:
    """Something in the tree that could not be scanned as expected; the walk went on."""

    kind: ProblemKind
    path: str
    detail: str

    @property
    def display_path(self) -> str:
        return display_path(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "path": self.display_path, "detail": self.detail}


@dataclass(frozen=True)
class Candidate:
    """A regular file whose first bytes are a weight format. ``path`` may hold surrogate escapes.

    ``prepared`` is what the walker's ``prepare`` hook returned for it in a worker process (JSON
    values), or None when the candidate was found in this process and the hook has not run.
    """

    path: str
    format: Format
    stat: StatSnapshot
    prepared: Any = field(default=None, compare=False, repr=False)

    @property
    def display_path(self) -> str:
        return display_path(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.display_path, "format": self.format.value, "size": self.stat.size}

    def to_record(self) -> list[Any]:
        """A lossless JSON-able form (the path keeps its surrogate escapes) for worker processes."""
        st = self.stat
        return [self.path, self.format.value, st.size, st.mtime_ns, st.dev, st.ino]

    @classmethod
    def from_record(cls, record: list[Any], prepared: Any = None) -> Candidate:
        path, fmt, size, mtime_ns, dev, ino = record
        return cls(path, Format(fmt), StatSnapshot(size=size, mtime_ns=mtime_ns, dev=dev, ino=ino), prepared)


@dataclass(frozen=True)
class WalkStats:
    """Counters of one walk."""

    directories: int = 0
    files: int = 0
    skipped_small: int = 0
    sniffed: int = 0
    candidates: int = 0
    symlinks_skipped: int = 0
    special_files: int = 0
    directories_revisited: int = 0
    other_filesystems: int = 0
    problems: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


class Walker:
    """Iterate over the weight-file candidates of a tree; see the module docs.

    ``problems`` and ``stats`` are complete once iteration has finished. ``root`` may also be a
    single file. A root that does not exist raises :class:`~gpaisec.errors.InputError`.

    ``workers`` > 1 shares the walk out to forked processes (listing and lstat are system-call
    bound, and run in parallel on different cores). It is ignored when following symlinks or where
    there is no fork(), and must only be used from a process without other threads (the CLI).

    ``prepare``, if given, is called in the worker processes on each candidate they find, and its
    result (JSON values) comes back as :attr:`Candidate.prepared`: work on the candidates (reading
    and hashing a few blocks of each) is then shared out as well. It must not raise.
    """

    def __init__(
        self,
        root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        *,
        min_size: int = DEFAULT_MIN_SIZE,
        follow_symlinks: bool = False,
        same_filesystem: bool = False,
        workers: int = 1,
        prepare: Callable[[Candidate], Any] | None = None,
    ) -> None:
        if min_size < 0:
            raise InputError(f"min_size must not be negative, got {min_size}")
        if not 1 <= workers <= 64:
            raise InputError(f"workers must be between 1 and 64, got {workers}")
        self.root = os.fsdecode(root)
        self.workers = workers if hasattr(os, "fork") and not follow_symlinks else 1
        self.min_size = min_size
        self.follow_symlinks = follow_symlinks
        self.same_filesystem = same_filesystem
        self.prepare = prepare
        self._problems: list[ScanProblem] = []
        self._counts = dict.fromkeys(WalkStats.__dataclass_fields__, 0)
        self._visited: set[tuple[int, int]] = set()
        self._root_dev = 0

    @property
    def problems(self) -> tuple[ScanProblem, ...]:
        return tuple(self._problems)

    @property
    def stats(self) -> WalkStats:
        return WalkStats(**{**self._counts, "problems": len(self._problems)})

    def _problem(self, kind: ProblemKind, path: str, detail: str) -> None:
        self._problems.append(ScanProblem(kind=kind, path=path, detail=detail))

    def _os_problem(self, path: str, exc: OSError, *, directory: bool) -> None:
        if exc.errno == errno.ENOENT:
            self._problem(ProblemKind.VANISHED, path, f"removed during the scan: {_describe(exc)}")
        elif exc.errno == errno.ELOOP:
            self._problem(ProblemKind.SYMLINK_LOOP, path, _describe(exc))
        elif exc.errno == errno.ENOTDIR:
            self._problem(ProblemKind.CHANGED_DURING_SCAN, path, "no longer a directory")
        elif directory:
            self._problem(ProblemKind.UNREADABLE_DIRECTORY, path, _describe(exc))
        else:
            self._problem(ProblemKind.UNREADABLE_FILE, path, _describe(exc))

    def __iter__(self) -> Iterator[Candidate]:
        try:
            root_stat = os.stat(self.root)
        except FileNotFoundError:
            raise InputError(
                f"{display_path(self.root)} does not exist", hint="give a directory or file to scan"
            ) from None
        except OSError as exc:
            self._os_problem(self.root, exc, directory=True)
            return
        self._root_dev = root_stat.st_dev
        if stat.S_ISREG(root_stat.st_mode):
            self._counts["files"] += 1
            candidate = self._sniff(self.root, follow=True)
            if candidate is not None:
                yield candidate
            return
        if not stat.S_ISDIR(root_stat.st_mode):
            raise InputError(
                f"{display_path(self.root)} is neither a directory nor a regular file",
                hint="give a directory or file to scan",
            )
        key = (root_stat.st_dev, root_stat.st_ino)
        self._visited = {key}
        stack: list[_Pending] = [(self.root, frozenset({key}))]
        if self.workers > 1:
            yield from self._parallel(stack)
            return
        yield from self._drain(stack)

    def _drain(self, stack: list[_Pending]) -> Iterator[Candidate]:
        while stack:
            path, ancestors = stack.pop()
            yield from self._directory(path, ancestors, stack)

    # Parallel walking ------------------------------------------------------------------------------
    #
    # Listing and lstat-ing every entry is system-call bound, and system calls of different processes
    # run on different cores. With ``workers`` > 1 (and symlinks not followed, so that loop detection
    # needs no shared state):
    #   1. the top of the tree is walked here until there are enough directories to share out;
    #   2. ``workers - 1`` children are forked; each is sent those directories one at a time (the
    #      oldest not yet taken), is kept some ahead (``_forks.ahead``: many while many are left,
    #      two at the end), walks each whole subtree and answers with its candidates, problems and
    #      counters (``marshal``);
    #   3. meanwhile this process walks the subtrees from the other end, yielding as it goes, and
    #      yields a child's candidates when they come. So the shares balance themselves however
    #      uneven the subtrees and however busy the cores. A subtree whose child failed is walked
    #      again here.
    # fork() is only safe in a process without other threads: use workers > 1 from the CLI, not
    # from inside a threaded server.

    def _parallel(self, stack: list[_Pending]) -> Iterator[Candidate]:
        # Step 1: the top of the tree.
        frontier = stack
        for _level in range(_SPLIT_LEVELS):
            if not frontier or len(frontier) >= _SPLIT_TARGET * self.workers:
                break
            deeper: list[_Pending] = []
            for path, ancestors in frontier:
                yield from self._directory(path, ancestors, deeper)
            frontier = deeper
        if len(frontier) < self.workers:
            yield from self._drain(frontier)
            return
        # Step 2: the children.
        pending = deque(frontier)
        servers: list[_forks.Server] = []
        sent: dict[_forks.Server, deque[_Pending]] = {}
        finished = False
        try:
            for _ in range(self.workers - 1):
                server = _forks.serve(self._serve_subtree, others=servers)
                if server is not None:
                    servers.append(server)
                    sent[server] = deque()
            while True:
                _forks.pump(servers)
                for server in servers:
                    taken = sent[server]
                    while server.replies:
                        subtree = taken.popleft()
                        found = self._answer(server.replies.popleft())
                        if found is None:  # unreadable: walk it here
                            pending.append(subtree)
                        else:
                            yield from found
                    if not server.alive:  # it failed: its subtrees are walked here
                        pending.extend(taken)
                        taken.clear()
                    while (
                        server.accepting and len(taken) < _forks.ahead(len(pending), self.workers) and pending
                    ):
                        subtree = pending.popleft()
                        taken.append(subtree)
                        server.send(marshal.dumps((subtree[0], list(subtree[1]))))
                    if not pending:
                        server.close_requests()  # it exits once it has answered the last ones
                # Step 3: a subtree here, the newest one.
                if pending:
                    path, ancestors = pending.pop()
                    yield from self._drain([(path, ancestors)])
                elif any(sent.values()):
                    _forks.pump(servers, None)
                else:
                    finished = True
                    break
        finally:
            for server in servers:
                if finished:
                    server.stop()
                else:
                    server.kill()  # abandoned early

    def _serve_subtree(self, request: bytes) -> bytes:
        """In a forked child: walk one subtree and answer with what it found (marshal)."""
        path, ancestors = marshal.loads(request)  # noqa: S302 - from our own parent, through a pipe
        self._problems, self._counts = [], dict.fromkeys(self._counts, 0)
        prepare = self.prepare
        found = [
            (c.to_record(), prepare(c) if prepare is not None else None)
            for c in self._drain([(path, frozenset(map(tuple, ancestors)))])
        ]
        problems = [(p.kind.value, p.path, p.detail) for p in self._problems]
        return marshal.dumps((found, problems, self._counts))

    def _answer(self, reply: bytes) -> list[Candidate] | None:
        """A child's answer for one subtree, or None if it cannot be read (walk it here)."""
        try:
            # our own forked child, through a pipe only the two processes hold
            found, problems, counts = marshal.loads(reply)  # noqa: S302
            candidates = [Candidate.from_record(list(record), prepared) for record, prepared in found]
            reported = [ScanProblem(ProblemKind(k), p, d) for k, p, d in problems]
            added = {name: int(counts[name]) for name in self._counts}
        except (ValueError, KeyError, TypeError, EOFError):
            return None
        self._problems.extend(reported)
        for name, value in added.items():
            self._counts[name] += value
        return candidates

    def _directory(
        self,
        path: str,
        ancestors: frozenset[tuple[int, int]],
        stack: list[_Pending],
    ) -> Iterator[Candidate]:
        # The directory is opened once and everything in it is reached relative to that descriptor
        # (fstatat, openat): cheaper than resolving full paths, and the directory cannot be swapped
        # for another while it is being read. Below the root, a directory replaced by a symlink is
        # refused (O_NOFOLLOW) unless symlinks are followed.
        follow = self.follow_symlinks
        flags = _DIR_FLAGS if follow or path == self.root else _DIR_FLAGS | _NOFOLLOW
        try:
            dir_fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP and not follow:
                self._problem(ProblemKind.CHANGED_DURING_SCAN, path, "replaced by a symlink during the scan")
            else:
                self._os_problem(path, exc, directory=True)
            return
        try:
            iterator = os.scandir(dir_fd)
        except OSError as exc:
            os.close(dir_fd)
            self._os_problem(path, exc, directory=True)
            return
        counts = self._counts
        counts["directories"] += 1
        min_size = self.min_size
        track = follow or self.same_filesystem
        prefix = path if path.endswith(os.sep) else path + os.sep
        files = small = 0  # the hot counters stay local; see ``finally``
        with iterator:
            try:
                for entry in iterator:
                    name = entry.name
                    if not name.isascii():
                        try:
                            name.encode("utf-8")
                        except UnicodeEncodeError:
                            self._problem(
                                ProblemKind.UNDECODABLE_NAME,
                                prefix + name,
                                f"the name is not valid UTF-8: {os.fsencode(name)!r}",
                            )
                    try:
                        # Regular files first: they are most entries, and d_type answers without a
                        # system call; only their size needs one (fstatat).
                        if entry.is_file(follow_symlinks=False):
                            files += 1
                            if entry.stat(follow_symlinks=False).st_size < min_size:
                                small += 1
                                continue
                            candidate = self._sniff(prefix + name, follow=False, dir_fd=dir_fd, name=name)
                            if candidate is not None:
                                yield candidate
                        elif entry.is_dir(follow_symlinks=False):
                            if track:
                                self._push(prefix + name, entry.stat(follow_symlinks=False), ancestors, stack)
                            else:
                                stack.append((prefix + name, ancestors))
                        elif entry.is_symlink():
                            if follow:
                                yield from self._symlink(prefix + name, ancestors, stack)
                            else:
                                counts["symlinks_skipped"] += 1
                        else:
                            counts["special_files"] += 1
                    except OSError as exc:
                        self._os_problem(prefix + name, exc, directory=False)
            except OSError as exc:
                self._problem(
                    ProblemKind.UNREADABLE_DIRECTORY, path, f"listing failed part-way: {_describe(exc)}"
                )
            finally:
                counts["files"] += files
                counts["skipped_small"] += small
                os.close(dir_fd)

    def _push(
        self,
        path: str,
        st: os.stat_result,
        ancestors: frozenset[tuple[int, int]],
        stack: list[_Pending],
    ) -> None:
        if self.same_filesystem and st.st_dev != self._root_dev:
            self._counts["other_filesystems"] += 1
            return
        if not self.follow_symlinks:
            stack.append((path, ancestors))
            return
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            self._problem(
                ProblemKind.SYMLINK_LOOP, path, "leads back to a directory that contains it; not followed"
            )
        elif key in self._visited:
            self._counts["directories_revisited"] += 1
        else:
            self._visited.add(key)
            stack.append((path, ancestors | {key}))

    def _symlink(
        self,
        path: str,
        ancestors: frozenset[tuple[int, int]],
        stack: list[_Pending],
    ) -> Iterator[Candidate]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._problem(ProblemKind.BROKEN_SYMLINK, path, "the symlink's target does not exist")
            return
        except OSError as exc:
            self._os_problem(path, exc, directory=False)
            return
        if stat.S_ISDIR(st.st_mode):
            self._push(path, st, ancestors, stack)
        elif stat.S_ISREG(st.st_mode):
            self._counts["files"] += 1
            if st.st_size < self.min_size:
                self._counts["skipped_small"] += 1
                return
            candidate = self._sniff(path, follow=True)
            if candidate is not None:
                yield candidate
        else:
            self._counts["special_files"] += 1

    def _sniff(
        self, path: str, *, follow: bool, dir_fd: int | None = None, name: str | None = None
    ) -> Candidate | None:
        flags = _BASE_FLAGS if follow else _BASE_FLAGS | _NOFOLLOW
        try:
            if dir_fd is not None and name is not None:
                fd = os.open(name, flags, dir_fd=dir_fd)
            else:
                fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP and not follow:
                self._problem(ProblemKind.CHANGED_DURING_SCAN, path, "replaced by a symlink during the scan")
            else:
                self._os_problem(path, exc, directory=False)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._counts["special_files"] += 1
                return None
            if st.st_size < self.min_size:
                self._counts["skipped_small"] += 1
                return None
            head = os.pread(fd, HEAD_BYTES, 0)
            found = _sniff_source(_FdSource(fd, st.st_size, path), head)
        except OSError as exc:
            self._os_problem(path, exc, directory=False)
            return None
        finally:
            os.close(fd)
        self._counts["sniffed"] += 1
        if not found.is_weights:
            return None
        self._counts["candidates"] += 1
        return Candidate(path=path, format=found, stat=StatSnapshot.of(st))


# --------------------------------------------------------------------------------------------------
# The discovery pipeline


@dataclass(frozen=True)
class ScanReport:
    """The outcome of :func:`scan`: what matched, what got in the way, and the walk's counters."""

    root: str
    discovery: Discovery
    problems: tuple[ScanProblem, ...]
    stats: WalkStats
    fingerprinted: int
    confirmed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "root": display_path(self.root),
            **self.discovery.to_json(),
            "problems": [p.to_json() for p in self.problems],
            "stats": self.stats.to_json(),
            "fingerprinted": self.fingerprinted,
            "confirmed": self.confirmed,
        }


def _problem_for(path: str, exc: WeightFileError) -> ScanProblem:
    if isinstance(exc, FileChangedError):
        return ScanProblem(ProblemKind.CHANGED_DURING_SCAN, path, exc.message)
    if isinstance(exc, SafetensorsError | SealedHeaderError):
        return ScanProblem(ProblemKind.MALFORMED_WEIGHTS, path, exc.message)
    return ScanProblem(ProblemKind.UNREADABLE_FILE, path, exc.message)


def _confirm(
    index: MatchIndex, item: ScannedFile, candidate: Candidate, *, whole_file: bool, follow: bool
) -> FileDigests:
    """Full digests for a matched file, hashing each byte once.

    A whole-file match is confirmed by the file's BLAKE3 alone: equal to a registered file's, the
    bytes -- hence every tensor -- are that file's, whose tensor digests are reused. Otherwise (a
    tensor copy, or a whole-file match that turns out modified) the tensors are hashed.
    """
    if whole_file:
        digest = file_digest(candidate.path, expected=candidate.stat, follow_symlinks=follow)
        registered = index.registered_file(digest)
        if registered is not None and registered.digests.fingerprint == item.fingerprint:
            return FileDigests(item.fingerprint, digest, registered.digests.tensors)
    digests = digest_file(
        candidate.path,
        scheme=index.scheme,
        expected=candidate.stat,
        follow_symlinks=follow,
        whole_file=not whole_file,
    )
    if whole_file:
        return FileDigests(digests.fingerprint, digest, digests.tensors)
    return digests


def _prepared(candidate: Candidate) -> FileFingerprint | ScanProblem | None:
    """What a worker process found for ``candidate``; None if it cannot be read back (redo it)."""
    try:
        tag, *rest = candidate.prepared
        if tag == "fingerprint":
            return FileFingerprint.from_json(rest[0])
        if tag == "problem":
            kind, detail = rest
            return ScanProblem(ProblemKind(kind), candidate.path, str(detail))
    except (ValueError, TypeError, WeightFileError, FingerprintDecodeError):
        pass
    return None


def scan(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    index: MatchIndex,
    *,
    confirm: bool = True,
    follow_symlinks: bool = False,
    same_filesystem: bool = False,
    min_size: int | None = None,
    workers: int = 1,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> ScanReport:
    """Discover copies of the indexed artifacts under ``root``.

    1. Walk the tree (:class:`Walker`); the size threshold defaults to the smallest file that
       could match anything in ``index``.
    2. Fingerprint each candidate (:func:`~gpaisec.weights.fingerprint.fingerprint_file`) under the
       index's scheme, checking that it did not change since it was listed.
    3. Match all fingerprints at once (:meth:`MatchIndex.match`).
    4. With ``confirm``, compute full digests of the matched files only
       (:func:`~gpaisec.weights.fingerprint.digest_file`) and match those files again; a file that
       cannot be confirmed keeps its sampled evidence and gets a problem record.

    ``on_candidate`` is called for each candidate before it is fingerprinted (progress display).
    ``workers`` > 1 walks the tree in that many processes (see :class:`Walker`), which also
    fingerprint the candidates they find (step 2), so that work is shared out too.
    """
    threshold = min_size
    if threshold is None:
        smallest = index.min_candidate_size
        threshold = DEFAULT_MIN_SIZE if smallest is None else smallest
    root_path = os.fsdecode(root)

    def fingerprint(candidate: Candidate) -> FileFingerprint | ScanProblem:
        try:
            return fingerprint_file(
                candidate.path,
                scheme=index.scheme,
                expected=candidate.stat,
                follow_symlinks=follow_symlinks or candidate.path == root_path,
            )
        except WeightFileError as exc:
            return _problem_for(candidate.path, exc)

    def prepare(candidate: Candidate) -> list[Any]:  # in a worker process: JSON values only
        found = fingerprint(candidate)
        if isinstance(found, ScanProblem):
            return ["problem", found.kind.value, found.detail]
        return ["fingerprint", found.to_json()]

    walker = Walker(
        root,
        min_size=threshold,
        follow_symlinks=follow_symlinks,
        same_filesystem=same_filesystem,
        workers=workers,
        prepare=prepare,
    )
    problems: list[ScanProblem] = []
    scanned: dict[str, tuple[Candidate, ScannedFile]] = {}
    for candidate in walker:
        if on_candidate is not None:
            on_candidate(candidate)
        found = _prepared(candidate) if candidate.prepared is not None else None
        if found is None:
            found = fingerprint(candidate)
        if isinstance(found, ScanProblem):
            problems.append(found)
            continue
        scanned[candidate.path] = (candidate, ScannedFile(candidate.path, found))
    discovery = index.match(item for _c, item in scanned.values())
    confirmed = 0
    if confirm and discovery.matches:
        whole = {m.path for m in discovery.matches if m.kind is not MatchKind.TENSOR_COPY}
        # A sealed copy is never decrypted: its header is all the evidence there is, and hashing
        # its ciphertext would prove nothing about the plaintext.
        sealed = {m.path for m in discovery.matches if m.kind is MatchKind.SEALED_COPY} - {
            m.path for m in discovery.matches if m.kind is not MatchKind.SEALED_COPY
        }
        again: list[ScannedFile] = []
        for path in dict.fromkeys(m.path for m in discovery.matches):
            candidate, item = scanned[path]
            if path in sealed:
                again.append(item)
                continue
            follow = follow_symlinks or path == walker.root
            try:
                digests = _confirm(index, item, candidate, whole_file=path in whole, follow=follow)
            except WeightFileError as exc:
                problems.append(_problem_for(path, exc))
                again.append(item)
                continue
            if digests.fingerprint != item.fingerprint:
                problems.append(
                    ScanProblem(
                        ProblemKind.CHANGED_DURING_SCAN, path, "changed between scanning and confirming"
                    )
                )
                again.append(item)
                continue
            confirmed += 1
            again.append(ScannedFile(path, item.fingerprint, digests))
        discovery = index.match(again)
    return ScanReport(
        root=walker.root,
        discovery=discovery,
        problems=tuple(walker.problems) + tuple(problems),
        stats=walker.stats,
        fingerprinted=len(scanned),
        confirmed=confirmed,
    )
