"""Recording, sealing, proving and verifying the log in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select, text

from gpaisec.audit import merkle, service
from gpaisec.audit._bundle import check_consistency, check_inclusion
from gpaisec.audit._entry import parse_entry
from gpaisec.audit.models import AuditCheckpoint, AuditEntry, AuditNode
from gpaisec.errors import AuditIntegrityError, InputError, NotFoundError
from gpaisec.workspace import Workspace

from .helpers import build_log


def count(ws: Workspace, model: type) -> int:
    with ws.reader() as s:
        return len(s.execute(select(model)).all())


def test_record_returns_contiguous_seqs_and_one_checkpoint_per_transaction(audit_ws: Workspace) -> None:
    seqs = build_log(audit_ws, [1, 3, 2])
    assert seqs == list(range(6))
    assert count(audit_ws, AuditCheckpoint) == 3
    assert count(audit_ws, AuditNode) == 6 - (6).bit_count()
    result = service.verify(audit_ws)
    assert (result.tree_size, result.checkpoints) == (6, 3)
    with audit_ws.reader() as s:
        leaves = [
            merkle.leaf_hash(bytes(e)) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.seq))
        ]
    assert result.root == merkle.root(leaves)


def test_entry_is_canonical_json_with_all_fields(audit_ws: Workspace) -> None:
    with audit_ws.transaction() as s:
        seq = service.record(
            s, actor="test:bob", action="device.add", object="device:gpu-7", details={"b": 1, "a": [1.5]}
        )
    with audit_ws.reader() as s:
        raw = bytes(s.execute(select(AuditEntry.entry).where(AuditEntry.seq == seq)).scalar_one())
    assert raw.startswith(b'{"action":"device.add","actor":"test:bob","details":{"a":[1.5],"b":1},"object":')
    entry = parse_entry(raw)
    assert (entry.seq, entry.actor, entry.object) == (0, "test:bob", "device:gpu-7")
    time = json.loads(raw)["time"]
    assert time.endswith("Z")
    assert len(time) == 27


def test_record_many_and_record_share_one_batch(audit_ws: Workspace) -> None:
    with audit_ws.transaction() as s:
        a = service.record(s, actor="test:a", action="x.one", object="o:1")
        many = service.record_many(s, [service.AuditEvent("test:a", "x.many", f"o:{i}") for i in range(50)])
        b = service.record(s, actor="test:a", action="x.two", object="o:2")
    assert (a, many, b) == (0, range(1, 51), 51)
    assert count(audit_ws, AuditCheckpoint) == 1
    assert service.verify(audit_ws).tree_size == 52


def test_a_transaction_without_records_writes_nothing(audit_ws: Workspace) -> None:
    with audit_ws.transaction():
        pass
    assert count(audit_ws, AuditCheckpoint) == 0
    assert not (audit_ws.keys_dir / "audit-ed25519.pem").exists()  # the key is made on first need
    assert service.verify(audit_ws).tree_size == 0


def test_rolled_back_transaction_leaves_no_trace(audit_ws: Workspace) -> None:
    build_log(audit_ws, [2])

    def failing() -> None:
        with audit_ws.transaction() as s:
            service.record(s, actor="test:a", action="x.fail", object="o:1")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing()
    with audit_ws.transaction() as s:
        assert service.record(s, actor="test:a", action="x.ok", object="o:1") == 2
    assert service.verify(audit_ws).tree_size == 3


def test_savepoint_rollback_drops_its_entries(audit_ws: Workspace) -> None:
    with audit_ws.transaction() as s:
        service.record(s, actor="test:a", action="x.outer", object="o:1")
        sp = s.begin_nested()
        service.record(s, actor="test:a", action="x.inner", object="o:2")
        sp.rollback()
        with s.begin_nested():
            kept = service.record(s, actor="test:a", action="x.kept", object="o:3")
    assert kept == 1
    entries = service.log(audit_ws)
    assert [e.action for e in entries] == ["x.outer", "x.kept"]
    service.verify(audit_ws)


def test_savepoint_rollback_of_first_record_relocks(audit_ws: Workspace) -> None:
    build_log(audit_ws, [3])
    with audit_ws.transaction() as s:
        sp = s.begin_nested()
        service.record(s, actor="test:a", action="x.gone", object="o:1")
        sp.rollback()
        assert service.record(s, actor="test:a", action="x.kept", object="o:2") == 3
    assert service.verify(audit_ws).tree_size == 4


def test_commit_without_seal_is_refused(audit_ws: Workspace) -> None:
    session = audit_ws._sessions()
    service.record(session, actor="test:a", action="x.raw", object="o:1")
    with pytest.raises(AuditIntegrityError, match="without sealing"):
        session.commit()
    session.close()
    assert count(audit_ws, AuditEntry) == 0


def test_bad_events_are_input_errors(audit_ws: Workspace) -> None:
    with audit_ws.transaction() as s:
        for kwargs in (
            {"actor": "", "action": "x.y", "object": "o"},
            {"actor": "a", "action": "Not Valid", "object": "o"},
            {"actor": "a", "action": "x.y", "object": "o\n"},
            {"actor": "a", "action": "x.y", "object": "o", "details": {"f": float("nan")}},
            {"actor": "a", "action": "x.y", "object": "o", "details": {"f": object()}},
            {"actor": "a" * 201, "action": "x.y", "object": "o"},
        ):
            with pytest.raises(InputError):
                service.record(s, **kwargs)  # type: ignore[arg-type]
    assert count(audit_ws, AuditEntry) == 0


def test_details_are_captured_when_recorded(audit_ws: Workspace) -> None:
    details = {"n": 1}
    with audit_ws.transaction() as s:
        service.record(s, actor="test:a", action="x.y", object="o", details=details)
        details["n"] = 2
    assert service.log(audit_ws)[0].details == {"n": 1}


def test_prove_every_entry_against_every_checkpoint(audit_ws: Workspace) -> None:
    batches = [1, 2, 5, 1, 8]
    build_log(audit_ws, batches)
    key = service.trusted_key(audit_ws)
    assert key is not None
    sizes = [1, 3, 8, 9, 17]
    for size in sizes:
        for seq in range(size):
            proof = service.prove(audit_ws, seq, checkpoint=size)
            entry, ckpt = check_inclusion(proof.to_json(), key)
            assert (entry.seq, ckpt.size) == (seq, size)
    assert service.prove(audit_ws, 4).tree_size == 17
    for old in [0, *sizes]:
        for new in sizes:
            if old <= new:
                check_consistency(service.consistency(audit_ws, old, new).to_json(), key)


def test_prove_errors(audit_ws: Workspace) -> None:
    build_log(audit_ws, [2, 2])
    with pytest.raises(InputError, match="not covered"):
        service.prove(audit_ws, 3, checkpoint=2)
    with pytest.raises(NotFoundError, match="no checkpoint at size 3"):
        service.prove(audit_ws, 0, checkpoint=3)
    with pytest.raises(NotFoundError):
        service.consistency(audit_ws, 1, 4)
    with pytest.raises(InputError):
        service.consistency(audit_ws, 4, 2)


def test_prove_refuses_a_damaged_node_table(audit_ws: Workspace) -> None:
    build_log(audit_ws, [8])
    with audit_ws.transaction() as s:
        s.execute(
            text("UPDATE audit_node SET hash = :h WHERE id = :id"),
            {"h": b"\x00" * 32, "id": merkle.flat_id(1, 1)},
        )
    with pytest.raises(AuditIntegrityError, match="does not prove entry 0"):
        service.prove(audit_ws, 0)


def test_log_filters(audit_ws: Workspace) -> None:
    build_log(audit_ws, [9])
    assert [e.seq for e in service.log(audit_ws, actor="test:user1")] == [1, 4, 7]
    assert [e.seq for e in service.log(audit_ws, object="thing:5")] == [5]
    assert [e.seq for e in service.log(audit_ws, action="thing.*", limit=2)] == [7, 8]
    assert service.log(audit_ws, action="other.*") == []
    first = service.log(audit_ws, limit=1)[0]
    assert [e.seq for e in service.log(audit_ws, since=first.time)] == [8]


def test_concurrent_writers_get_contiguous_numbers(audit_ws: Workspace) -> None:
    threads, per_thread, per_txn = 4, 10, 3
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                with audit_ws.transaction() as s:
                    got = [
                        service.record(s, actor=f"test:t{t}", action="x.race", object=f"o:{t}:{i}:{j}")
                        for j in range(per_txn)
                    ]
                with lock:
                    results.extend(got)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    total = threads * per_thread * per_txn
    assert sorted(results) == list(range(total))
    result = service.verify(audit_ws)
    assert (result.tree_size, result.checkpoints) == (total, threads * per_thread)
