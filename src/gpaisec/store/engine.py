"""Engines for SQLite (default, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from gpaisec.errors import StoreError

_log = logging.getLogger(__name__)

SUPPORTED = ("sqlite", "postgresql")


def redact_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def normalise_url(url: str) -> URL:
    """Parse and check a database URL; PostgreSQL URLs are pinned to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "the database URL cannot be parsed",
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB in GPAISEC_DATABASE_URL",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise StoreError(
            f"database backend {backend!r} is not supported",
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        )
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns (audit records)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


READ_ONLY = "gpaisec_read_only"


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at the start of the transaction: one writer at a time, no lock-upgrade
    # deadlocks. Readers (Workspace.reader) begin deferred and never block writers under WAL.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, "application_name": "gpaisec"},
    )


class WriteGateBusy(StoreError):
    """Another writer held SQLite's write gate for longer than this writer would wait."""

    title = "database busy"


class SqliteWriteGate:
    """Queues SQLite write transactions, across threads and processes, on a lock file beside the database.

    SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps 1, 2, 5,
    10, 15, 20, 25 ... ms between tries. Two server processes committing audit batches a millisecond
    long then delay each other by many milliseconds (measured: p99 over a second at 400 requests/s).
    Here a writer first takes an exclusive ``flock`` on ``<database>-writer.lock``, polling every
    50-500 µs, and only then begins its ``BEGIN IMMEDIATE`` transaction, which then finds the
    database free. A process that dies releases its lock with its file descriptor.

    The gate is reentrant per thread (a nested write transaction is left to SQLite, as before), and
    a writer that cannot get in within ``timeout`` seconds gets :class:`StoreError` (nothing done).
    """

    POLL_MIN: Final = 50e-6
    POLL_MAX: Final = 500e-6

    def __init__(self, database: str, timeout: float = 10.0) -> None:
        self.path = f"{database}-writer.lock"
        self.timeout = timeout
        self._local = threading.local()

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the gate for the block; wait at most ``timeout`` (default: the gate's) to get it."""
        if getattr(self._local, "held", False):
            yield
            return
        held = self.acquire(timeout)
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            held.release()

    def acquire(self, timeout: float | None = None) -> HeldGate:
        """Take the gate (not reentrant: the caller releases it, from any thread); wait at most
        ``timeout`` (default: the gate's), then :class:`WriteGateBusy`."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open the write lock {self.path}: {exc.strerror}",
                hint="the workspace directory must be writable by every process that writes to it",
            ) from None
        try:
            limit = self.timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            delay = self.POLL_MIN
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return HeldGate(fd)
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WriteGateBusy(
                            f"another writer has held the database for more than {limit:g} s",
                            hint="nothing was changed; retry, or find the process that holds "
                            f"{self.path} (fuser -v {self.path})",
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, self.POLL_MAX)
        except BaseException:
            os.close(fd)
            raise


class HeldGate:
    """The write gate, held until :meth:`release` (idempotent; closing the descriptor unlocks)."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def write_gate(engine: Engine) -> SqliteWriteGate | None:
    """The write gate of a file-backed SQLite engine; None for PostgreSQL (row locks queue there) and
    for an in-memory database (one connection, nothing to queue)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return SqliteWriteGate(os.path.abspath(database))


#: WAL pages after which a committing connection checkpoints by itself, once a checkpointer thread
#: runs (SQLite's default is 1,000): a safety net should the thread stop.
DEFERRED_AUTOCHECKPOINT: Final = 20_000


def _defer_checkpoints(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={DEFERRED_AUTOCHECKPOINT}")
    cur.close()


class WalCheckpointer:
    """A daemon thread that checkpoints SQLite's write-ahead log (see :func:`start_wal_checkpointer`)."""

    WARN_EVERY: Final = 60.0  # seconds between repeated warnings about a failing checkpoint

    def __init__(self, engine: Engine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gpaisec-wal-checkpointer", daemon=True)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        last_warning = -self.WARN_EVERY
        while not self._stop.wait(self._interval):
            try:
                # On the driver's connection, outside any transaction (one would stop the checkpoint).
                raw = self._engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
            except Exception as exc:  # the next round retries; commits checkpoint past the safety net
                now = time.monotonic()
                if now - last_warning >= self.WARN_EVERY:
                    last_warning = now
                    _log.warning("WAL checkpoint failed (retrying): %s: %s", type(exc).__name__, exc)


def start_wal_checkpointer(engine: Engine, interval: float = 0.25) -> WalCheckpointer | None:
    """Checkpoint SQLite's write-ahead log from a thread of its own, every ``interval`` seconds.

    By default the connection whose commit takes the WAL past 1,000 pages copies them into the
    database and fsyncs it, inside that commit: on a server that commits audit batches on its event
    loop, a pause of tens of milliseconds for every request in flight, about once a second at 1,000
    decisions/s. Here a daemon thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` (it never blocks
    readers or writers; SQLite releases the GIL while it copies) and the serving connections
    checkpoint by themselves only past DEFERRED_AUTOCHECKPOINT pages. For server processes only
    (a process that forks must have no other thread); returns None for PostgreSQL and in-memory
    SQLite. A failing checkpoint is retried every round and logged at most once a minute.
    """
    if write_gate(engine) is None:
        return None
    event.listen(engine, "connect", _defer_checkpoints)
    engine.dispose()  # connections opened from now on defer to the thread
    checkpointer = WalCheckpointer(engine, interval)
    checkpointer.thread.start()
    return checkpointer
