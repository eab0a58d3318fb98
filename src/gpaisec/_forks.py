"""Work shared out to forked children.

fork() is only safe in a process with no other thread; callers check that before forking. A child
leaves with ``os._exit`` (no cleanup of the parent's state runs twice). Two shapes:

* One share, one answer (the discovery walk): :func:`fork_worker` runs ``work`` in a child that
  writes one JSON object to its pipe; :func:`collect` reads it. A child that could not be forked,
  failed, or sent something unreadable gives ``None``, and the caller does that share itself.
* A child that serves requests as they come (the hashing engine, which hands out files while it is
  still walking the tree): :func:`serve` forks a child that answers each request frame with one
  reply frame (a 4-byte little-endian length, then the bytes). The parent side, a :class:`Server`,
  never blocks on a write: requests are queued and written as the pipe takes them, while
  :func:`pump` reads replies, so a child blocked on a long reply cannot deadlock with a parent
  blocked on a long request. A child that fails ends its reply pipe (:attr:`Server.alive` turns
  False); the caller does its unanswered requests itself.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Server", "ahead", "collect", "fork_worker", "pump", "reap", "serve"]


def _quiet_child() -> None:
    """No cyclic garbage collection in a child: it lives briefly, and a collection would write to
    (and so copy) every page of the heap it shares with its parent."""
    gc.disable()


def fork_worker(work: Callable[[], dict[str, Any]]) -> tuple[int, int] | None:
    """Fork a child that runs ``work`` and sends its result; (pid, read end), or None if fork failed."""
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: work, report, exit without running any cleanup
        status = 1
        try:
            _quiet_child()
            os.close(read_fd)
            payload = work()
            with os.fdopen(write_fd, "wb") as sink:
                sink.write(json.dumps(payload).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    return pid, read_fd


def collect(pid: int, read_fd: int) -> dict[str, Any] | None:
    """The child's result once it has exited; None if it failed or sent no JSON object."""
    try:
        with os.fdopen(read_fd, "rb") as source:
            data = source.read()
    except OSError:
        data = b""
    finally:
        _pid, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def reap(children: Iterable[tuple[int, int]]) -> None:
    """Stop and reap children whose results are no longer wanted (the caller gave up early)."""
    for pid, read_fd in children:
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


# -- children that serve requests -------------------------------------------------------------------

_READ_SIZE = 1 << 16
_MIN_AHEAD = 2
_MAX_AHEAD = 64


def ahead(pending: int, processes: int) -> int:
    """How many units of work a child should hold unanswered, when ``pending`` are left to share.

    A child that runs dry waits for the parent to send more, and on a busy machine the parent may
    be off its core for a whole time slice: so while much is left, each child holds a good share
    of it (a quarter of its part of ``pending``). Toward the end that share shrinks to two units,
    so that no process is left holding work while another has nothing to do.
    """
    return max(_MIN_AHEAD, min(_MAX_AHEAD, pending // (2 * processes)))


class Server:
    """The parent's side of a child started by :func:`serve`."""

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid = pid
        self.to_child = to_child
        self.from_child = from_child
        self.alive = True  # False once the reply pipe ended (the child failed or was stopped)
        self.replies: deque[bytes] = deque()  # complete replies, oldest first
        self._out = bytearray()  # request bytes the pipe has not taken yet
        self._in = bytearray()
        self._ending = False  # no more requests: the request pipe closes once _out is written
        os.set_blocking(to_child, False)

    @property
    def accepting(self) -> bool:
        """Alive and not told that requests have ended: :meth:`send` would deliver."""
        return self.alive and not self._ending

    def send(self, request: bytes) -> None:
        """Queue one request; written now as far as the pipe takes it, the rest by :func:`pump`.

        A request to a server that is not :attr:`accepting` is dropped.
        """
        if self.accepting:
            self._out += len(request).to_bytes(4, "little") + request
            self._write()

    def close_requests(self) -> None:
        """Send no more requests: the child answers those it has, then exits.

        Takes effect once every queued request is written; the replies can still be read.
        """
        self._ending = True
        if not self._out:
            self._close_to_child()

    def _close_to_child(self) -> None:
        if self.to_child >= 0:
            with contextlib.suppress(OSError):
                os.close(self.to_child)
            self.to_child = -1

    def _write(self) -> None:
        try:
            n = os.write(self.to_child, self._out)
        except BlockingIOError:
            return
        except OSError:  # the child is gone; its reply pipe tells the rest
            self._out.clear()
            n = 0
        del self._out[:n]
        if self._ending and not self._out:
            self._close_to_child()

    def _read(self) -> None:
        try:
            data = os.read(self.from_child, _READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self.alive = False
            return
        buf = self._in
        buf += data
        while len(buf) >= 4:
            n = int.from_bytes(buf[:4], "little")
            if len(buf) < 4 + n:
                break
            self.replies.append(bytes(buf[4 : 4 + n]))
            del buf[: 4 + n]

    def stop(self) -> None:
        """End the child (it sees its request pipe close) and reap it."""
        self._close_to_child()
        if self.from_child >= 0:
            with contextlib.suppress(OSError):
                os.close(self.from_child)
            self.from_child = -1
        self.alive = False
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def kill(self) -> None:
        """Stop a child whose work is no longer wanted (the caller gave up early)."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)
        self.stop()


def serve(handle: Callable[[bytes], bytes], *, others: Iterable[Server] = ()) -> Server | None:
    """Fork a child that answers each request with ``handle(request)``; None if fork failed.

    ``others`` are this process's other servers: the child closes its copies of their pipes, so
    that each of them still sees its requests end when the parent stops it.
    """
    try:
        req_r, req_w = os.pipe()
    except OSError:
        return None
    try:
        rep_r, rep_w = os.pipe()
    except OSError:
        os.close(req_r)
        os.close(req_w)
        return None
    try:
        pid = os.fork()
    except OSError:
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
        return None
    if pid == 0:  # the child: answer requests until the parent closes them, then exit
        status = 1
        try:
            _quiet_child()
            os.close(req_w)
            os.close(rep_r)
            for other in others:
                for fd in (other.to_child, other.from_child):
                    if fd >= 0:
                        os.close(fd)
            with os.fdopen(req_r, "rb") as source, os.fdopen(rep_w, "wb") as sink:
                while len(head := source.read(4)) == 4:
                    n = int.from_bytes(head, "little")
                    request = source.read(n)
                    if len(request) != n:
                        break
                    reply = handle(request)
                    sink.write(len(reply).to_bytes(4, "little") + reply)
                    sink.flush()
            status = 0
        finally:
            os._exit(status)
    os.close(req_r)
    os.close(rep_w)
    return Server(pid, req_w, rep_r)


def pump(servers: Iterable[Server], timeout: float | None = 0.0) -> None:
    """Move queued requests into the pipes and replies out of them.

    Waits up to ``timeout`` seconds (None: without limit) for something to happen, then does all
    that can be done without blocking.
    """
    live = [s for s in servers if s.alive]
    if not live:
        return
    readers = {s.from_child: s for s in live}
    writers = {s.to_child: s for s in live if s._out and s.to_child >= 0}
    readable, writable, _ = select.select(list(readers), list(writers), [], timeout)
    for fd in writable:
        writers[fd]._write()
    for fd in readable:
        readers[fd]._read()
