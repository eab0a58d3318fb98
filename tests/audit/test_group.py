"""Group commit: many threads' events share batches and checkpoints; the log still verifies; a failed
batch fails every submitter closed and commits nothing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import func, select, text

from gpaisec.audit import group
from gpaisec.audit.group import AuditWriteError, AuditWriter
from gpaisec.audit.models import AuditCheckpoint, AuditEntry
from gpaisec.audit.service import AuditEvent, log, prove, verify
from gpaisec.errors import InputError
from gpaisec.workspace import Workspace


def event(i: int) -> AuditEvent:
    return AuditEvent(
        actor=f"test:t{i % 4}", action="access.decide", object=f"version:m{i}", details={"i": i}
    )


def count(ws: Workspace, model: type[AuditEntry] | type[AuditCheckpoint]) -> int:
    with ws.reader() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_concurrent_appends_share_batches_and_verify(audit_ws: Workspace) -> None:
    writer = audit_ws.audit_writer()
    threads, per_thread = 8, 25
    got: list[range] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for k in range(per_thread):
            seqs = writer.append([event(t * per_thread + k)])
            with lock:
                got.append(seqs)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    total = threads * per_thread
    seqs = sorted(s for r in got for s in r)
    assert seqs == list(range(total))  # each got its own, none lost, none twice
    assert count(audit_ws, AuditEntry) == total
    # One signed checkpoint per committed batch, and every batch was committed.
    assert count(audit_ws, AuditCheckpoint) == writer.batches
    assert writer.records == total
    assert verify(audit_ws).tree_size == total
    # An entry committed through the writer is provable against the latest checkpoint.
    assert prove(audit_ws, seqs[-1]).tree_size == total


def test_events_queued_together_commit_under_one_checkpoint(audit_ws: Workspace) -> None:
    writer = AuditWriter(audit_ws, linger=0.2)
    futures = [writer.submit([event(i), event(i + 100)]) for i in range(10)]
    results = [f.result(timeout=30) for f in futures]
    writer.close()
    # Each submission's events stay together and in order.
    assert all(len(r) == 2 and r.step == 1 for r in results)
    assert sorted(s for r in results for s in r) == list(range(20))
    assert writer.batches < 10  # batched: fewer checkpoints than submissions
    assert count(audit_ws, AuditCheckpoint) == writer.batches
    assert verify(audit_ws).tree_size == 20
    entries = log(audit_ws, limit=None)
    assert [e.details["i"] for e in entries[:2]] == [0, 100]


def test_a_failed_batch_fails_every_submitter_and_commits_nothing(audit_ws: Workspace) -> None:
    writer = audit_ws.audit_writer()
    writer.append([event(0)])
    # The checkpoint table is gone: sealing fails, so the whole batch must fail.
    with audit_ws.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_checkpoint"))
    futures = [writer.submit([event(i)]) for i in range(1, 5)]
    for f in futures:
        with pytest.raises(AuditWriteError, match="could not record"):
            f.result(timeout=30)
    with pytest.raises(AuditWriteError):
        writer.append([event(9)])
    assert count(audit_ws, AuditEntry) == 1  # rolled back with its batch


def test_an_event_that_cannot_be_encoded_is_refused_alone(audit_ws: Workspace) -> None:
    writer = audit_ws.audit_writer()
    good = writer.submit([event(1)])
    with pytest.raises(InputError, match="cannot be recorded"):
        writer.submit([AuditEvent(actor="a", action="x", object="o", details={"bad": float("nan")})])
    assert good.result(timeout=30) == range(0, 1)


def test_a_timeout_fails_closed(audit_ws: Workspace) -> None:
    writer = audit_ws.audit_writer()
    writer.append([event(0)])
    # Hold the log's lock (the head row) in another transaction: the writer cannot commit in time.
    with audit_ws.transaction() as s:
        from gpaisec.audit.service import record

        record(s, actor="test:holder", action="thing.touch", object="thing:1")
        # PostgreSQL: the head row's lock; SQLite: the write gate this transaction holds.
        with pytest.raises(AuditWriteError, match="did not commit within"):
            writer.append([event(1)], timeout=0.3)


def test_closing_the_workspace_flushes_and_a_new_writer_takes_over(audit_ws: Workspace) -> None:
    first = audit_ws.audit_writer()
    future = first.submit([event(0)])
    audit_ws.close()
    assert future.result(timeout=30) == range(0, 1)
    assert audit_ws.audit_writer() is not first


def test_an_idle_writer_stops_its_thread_and_the_next_event_starts_one(
    audit_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group, "IDLE_EXIT", 0.05)
    writer = AuditWriter(audit_ws)
    first = writer.append([AuditEvent(actor="test", action="idle.one", object="x")])
    deadline = time.monotonic() + 5
    while any(t.name == "gpaisec-audit-writer" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle writer's thread did not end"
        time.sleep(0.01)
    second = writer.append([AuditEvent(actor="test", action="idle.two", object="x")])
    assert second.start == first.stop
    assert [e.action for e in log(audit_ws, action="idle.*")] == ["idle.one", "idle.two"]
    verify(audit_ws)


def test_async_appends_share_a_batch_and_verify(audit_ws: Workspace) -> None:
    writer = AuditWriter(audit_ws)

    async def main() -> list[range]:
        return await asyncio.gather(*(writer.append_async([event(i)]) for i in range(20)))

    results = asyncio.run(main())
    assert sorted(s for r in results for s in r) == list(range(20))
    assert writer.records == 20
    if audit_ws.engine.dialect.name == "sqlite":
        # Committed on the loop: everything appended before the loop's next turn is one batch.
        assert writer.batches == 1
    assert count(audit_ws, AuditCheckpoint) == writer.batches
    assert verify(audit_ws).tree_size == 20


def test_a_failed_async_batch_fails_every_caller_closed(audit_ws: Workspace) -> None:
    writer = AuditWriter(audit_ws)
    writer.append([event(0)])
    with audit_ws.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_checkpoint"))

    async def main() -> list[range | BaseException]:
        return await asyncio.gather(
            *(writer.append_async([event(i)]) for i in range(1, 5)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert all(isinstance(o, AuditWriteError) for o in outcomes), outcomes
    assert count(audit_ws, AuditEntry) == 1


def test_a_cancelled_caller_does_not_strand_the_rest_of_its_batch(audit_ws: Workspace) -> None:
    writer = AuditWriter(audit_ws)

    async def main() -> list[range | BaseException]:
        tasks = [asyncio.ensure_future(writer.append_async([event(i)])) for i in range(6)]
        await asyncio.sleep(0)  # every task has appended; the flush is queued behind them
        tasks[2].cancel()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [range(i, i + 1) for i in (0, 1, 3, 4, 5)]
    # The cancelled caller's event was committed all the same (the log errs on the side of recording).
    assert count(audit_ws, AuditEntry) == 6
    verify(audit_ws)


def test_a_busy_sqlite_writer_hands_the_batch_to_the_thread_and_the_loop_runs_on(
    audit_ws: Workspace,
) -> None:
    if audit_ws.engine.dialect.name != "sqlite":
        pytest.skip("the write gate is SQLite's")
    writer = AuditWriter(audit_ws)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with audit_ws.transaction():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)

    async def main() -> tuple[range, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
                if ticks == 10:
                    release.set()  # the other writer finishes only once the loop has run on

        tick = asyncio.ensure_future(ticker())
        seqs = await asyncio.wait_for(writer.append_async([event(0)]), 30)
        tick.cancel()
        return seqs, ticks

    seqs, ticks = asyncio.run(main())
    holder.join(10)
    assert seqs == range(0, 1)
    assert ticks >= 10  # the loop was not blocked while the gate was held
    assert count(audit_ws, AuditEntry) == 1


def test_appends_during_a_commit_in_flight_are_the_next_batch(audit_ws: Workspace) -> None:
    if audit_ws.engine.dialect.name != "sqlite":
        pytest.skip("the loop writes batches itself only on SQLite")
    writer = AuditWriter(audit_ws)
    busy = threading.Event()
    # The committer thread is busy with something else: the first batch is written, its commit waits.
    writer._committer.put(lambda: busy.wait(10))

    async def main() -> list[range]:
        first = [asyncio.ensure_future(writer.append_async([event(i)])) for i in range(3)]
        await asyncio.sleep(0.05)  # the loop runs on while the first batch's commit is pending
        assert writer.batches == 0
        assert not any(f.done() for f in first)
        second = [asyncio.ensure_future(writer.append_async([event(i)])) for i in range(3, 7)]
        await asyncio.sleep(0.05)
        assert writer.batches == 0  # one commit in flight per loop: the second batch waits for it
        busy.set()
        return list(await asyncio.wait_for(asyncio.gather(*first, *second), 30))

    results = asyncio.run(main())
    assert results == [range(i, i + 1) for i in range(7)]
    assert writer.batches == 2
    assert count(audit_ws, AuditCheckpoint) == 2
    assert verify(audit_ws).tree_size == 7


def test_a_batch_whose_commit_fails_fails_every_caller_and_frees_the_writer(audit_ws: Workspace) -> None:
    writer = AuditWriter(audit_ws)
    writer.append([event(0)])
    # A deferred foreign key makes COMMIT itself fail (the statements before it all succeed).
    with audit_ws.engine.begin() as conn:
        conn.execute(text("CREATE TABLE commit_trap_parent (id INTEGER PRIMARY KEY)"))
        conn.execute(
            text(
                "CREATE TABLE commit_trap (parent INTEGER REFERENCES commit_trap_parent (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
        if audit_ws.engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER commit_trap_fires AFTER INSERT ON audit_checkpoint "
                    "BEGIN INSERT INTO commit_trap (parent) VALUES (42); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION commit_trap_fn() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN INSERT INTO commit_trap (parent) VALUES (42); RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER commit_trap_fires AFTER INSERT ON audit_checkpoint "
                    "FOR EACH ROW EXECUTE FUNCTION commit_trap_fn()"
                )
            )

    async def main() -> list[range | BaseException]:
        return await asyncio.gather(
            *(writer.append_async([event(i)]) for i in range(1, 5)), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(main())
        assert all(isinstance(o, AuditWriteError) for o in outcomes), outcomes
        # It was the commit that failed (SQLite and PostgreSQL name the deferred violation differently).
        assert any(name in str(outcomes[0]) for name in ("IntegrityError", "ForeignKeyViolation"))
        assert count(audit_ws, AuditEntry) == 1
    finally:
        with audit_ws.engine.begin() as conn:
            on = "" if audit_ws.engine.dialect.name == "sqlite" else " ON audit_checkpoint"
            conn.execute(text(f"DROP TRIGGER commit_trap_fires{on}"))
            conn.execute(text("DROP TABLE commit_trap"))
            conn.execute(text("DROP TABLE commit_trap_parent"))
            if on:
                conn.execute(text("DROP FUNCTION commit_trap_fn()"))
    # Nothing is left holding the database: the next decisions commit at once, and the log verifies.
    again = asyncio.run(asyncio.wait_for(writer.append_async([event(5)]), 30))
    assert again == range(1, 2)
    assert verify(audit_ws).tree_size == 2


def test_a_commit_no_thread_can_take_fails_closed_and_frees_the_gate(
    audit_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    if audit_ws.sqlite_write_gate is None:
        pytest.skip("the loop writes batches itself only on file-backed SQLite")
    writer = AuditWriter(audit_ws)
    start = threading.Thread.start

    def no_committer(self: threading.Thread) -> None:
        if self.name == "gpaisec-audit-commit":
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", no_committer)

    async def main() -> list[range | BaseException]:
        return await asyncio.gather(
            *(writer.append_async([event(i)], timeout=10) for i in range(3)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert all(isinstance(o, AuditWriteError) for o in outcomes), outcomes
    assert not writer._committing
    # Nothing holds the gate or the database: other writers get in at once.
    with audit_ws.transaction(gate_wait=0.5):
        pass
    monkeypatch.setattr(threading.Thread, "start", start)
    assert asyncio.run(writer.append_async([event(3)], timeout=10)) == range(0, 1)
    assert count(audit_ws, AuditEntry) == 1
    verify(audit_ws)
