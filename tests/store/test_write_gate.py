"""The SQLite write gate: writers across threads and processes queue on a lock file instead of
SQLite's sleeping busy handler; a writer that cannot get in in time is refused, nothing done."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpaisec.errors import StoreError
from gpaisec.store.engine import SqliteWriteGate, write_gate
from gpaisec.weights import registry
from gpaisec.workspace import Workspace


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'gpaisec.db'}", actor="test:alice")


def test_postgresql_and_memory_databases_have_no_gate(sqlite_ws: Workspace) -> None:
    from sqlalchemy import create_engine

    assert write_gate(sqlite_ws.engine) is not None
    assert write_gate(create_engine("sqlite://")) is None
    assert write_gate(create_engine("postgresql+psycopg://u@127.0.0.1/db")) is None


def test_a_second_writer_waits_for_the_first_and_then_commits(sqlite_ws: Workspace) -> None:
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with sqlite_ws.transaction():
            holding.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    holding.wait(5)
    registry.add_model(sqlite_ws, "atlas")  # its own transaction: waits at the gate
    order.append("second done")
    t.join()
    assert order == ["first done", "second done"]
    assert [m.name for m in registry.list_models(sqlite_ws)] == ["atlas"]


def test_a_writer_that_cannot_get_in_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gpaisec.store.engine import SqliteWriteGate\n"
            f"with SqliteWriteGate({str(db)!r}).hold():\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        gate = SqliteWriteGate(str(db), timeout=0.3)
        with pytest.raises(StoreError, match="held the database for more than 0.3 s"), gate.hold():
            pytest.fail("entered a gate another process holds")
        holder.kill()
        holder.wait(10)
        with gate.hold():  # a dead holder's lock goes with its process
            pass
    finally:
        holder.kill()
        holder.wait(10)


def test_the_gate_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    gate = SqliteWriteGate(str(tmp_path / "y.db"), timeout=0.5)
    with gate.hold(), gate.hold():
        pass
