"""Work shared out to forked children that report back as JSON through a pipe.

Used by the hashing engine (many small files) and the discovery walk. fork() is only safe in a
process with no other thread; callers check that before forking. A child runs its work, writes one
JSON object to its pipe and leaves with ``os._exit`` (no cleanup of the parent's state runs twice).
A child that could not be forked, failed, or sent something unreadable gives ``None``, and the
caller does that share itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["collect", "fork_worker", "reap"]


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
