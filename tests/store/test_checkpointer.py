"""The server's WAL checkpointer: the log is copied into the database by a thread of its own, and
serving connections stop checkpointing inside their commits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from gpaisec.store import create_db_engine
from gpaisec.store.engine import DEFERRED_AUTOCHECKPOINT, start_wal_checkpointer


def _rows_in_main_file(path: Path) -> int:
    # immutable=1 reads the database file alone, ignoring the WAL: only checkpointed rows are there.
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # the table itself is not checkpointed yet
            return 0


def test_the_thread_checkpoints_and_commits_no_longer_do(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = create_db_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (i INTEGER)"))
    checkpointer = start_wal_checkpointer(engine, interval=0.05)
    assert checkpointer is not None
    assert checkpointer.thread.is_alive()
    assert checkpointer.thread.name in {t.name for t in threading.enumerate()}
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == DEFERRED_AUTOCHECKPOINT
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
    deadline = time.monotonic() + 10
    while _rows_in_main_file(path) != 3:
        assert time.monotonic() < deadline, "the WAL was not checkpointed by the thread"
        time.sleep(0.05)
    checkpointer.stop()
    assert not checkpointer.thread.is_alive()  # stopped: later tests may fork again
    engine.dispose()


def test_no_checkpointer_for_postgresql_or_memory() -> None:
    assert start_wal_checkpointer(create_db_engine("sqlite://")) is None
    assert start_wal_checkpointer(create_db_engine("postgresql://u@127.0.0.1:1/db")) is None
