"""Tampering with the database directly (SQL UPDATE / DELETE / INSERT): verify names the first bad entry.

Each example changes the stored log inside a transaction, verifies in that same transaction, and rolls
back, so one log serves many examples on each backend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from gpaisec.audit import merkle, service
from gpaisec.audit._entry import encode_entry, parse_entry
from gpaisec.audit._keys import PublicKey
from gpaisec.audit.models import AuditEntry
from gpaisec.errors import AuditIntegrityError
from gpaisec.workspace import Workspace

from .helpers import batch_start, build_log

BATCHES = [1, 1, 3, 1, 5, 2, 1, 4]  # 18 entries, 8 checkpoints
SIZE = sum(BATCHES)
FIXTURE_OK = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def log(audit_ws: Workspace) -> Workspace:
    build_log(audit_ws, BATCHES)
    service.verify(audit_ws)
    return audit_ws


@pytest.fixture
def key(log: Workspace) -> PublicKey:
    k = service.trusted_key(log)
    assert k is not None
    return k


def tampered(ws: Workspace, key: PublicKey, change: Callable[[Session], None]) -> AuditIntegrityError:
    """Apply ``change`` in a transaction, verify there, roll back; return the verification error."""
    session = ws._sessions()
    try:
        session.begin()
        change(session)
        with pytest.raises(AuditIntegrityError) as caught:
            service.verify_session(session, key)
        return caught.value
    finally:
        session.rollback()
        session.close()
        service.verify(ws)  # the change was rolled back: the log verifies again


def row(s: Session, seq: int) -> dict[str, Any]:
    r = s.execute(text("SELECT * FROM audit_entry WHERE seq = :s"), {"s": seq}).mappings().one()
    return dict(r)


def put(s: Session, values: dict[str, Any]) -> None:
    s.execute(
        text(
            "INSERT INTO audit_entry (seq, time, actor, action, object, entry, leaf_hash) "
            "VALUES (:seq, :time, :actor, :action, :object, :entry, :leaf_hash)"
        ),
        values,
    )


def set_entry(s: Session, seq: int, **values: Any) -> None:
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    s.execute(text(f"UPDATE audit_entry SET {assignments} WHERE seq = :seq"), {**values, "seq": seq})


@FIXTURE_OK
@given(seq=st.integers(0, SIZE - 1), pos=st.integers(0, 10_000), value=st.integers(0, 255))
def test_changed_entry_byte(log: Workspace, key: PublicKey, seq: int, pos: int, value: int) -> None:
    def change(s: Session) -> None:
        data = bytearray(bytes(row(s, seq)["entry"]))
        i = pos % len(data)
        data[i] = value if value != data[i] else (value + 1) % 256
        set_entry(s, seq, entry=bytes(data))

    assert tampered(log, key, change).first_bad == seq


@FIXTURE_OK
@given(
    seq=st.integers(0, SIZE - 1), column=st.sampled_from(["actor", "action", "object", "time", "leaf_hash"])
)
def test_changed_column(log: Workspace, key: PublicKey, seq: int, column: str) -> None:
    def change(s: Session) -> None:
        new: dict[str, Any] = {
            "actor": "test:mallory",
            "action": "thing.hidden",
            "object": "thing:other",
            "leaf_hash": b"\x00" * 32,
        }
        table = AuditEntry.__table__
        if column == "time":  # one microsecond later, stored the way each backend stores times
            old = s.execute(select(table.c.time).where(table.c.seq == seq)).scalar_one()
            new["time"] = old + dt.timedelta(microseconds=1)
        s.execute(update(table).where(table.c.seq == seq).values({column: new[column]}))

    assert tampered(log, key, change).first_bad == seq


@FIXTURE_OK
@given(seq=st.integers(0, SIZE - 1))
def test_deleted_entry(log: Workspace, key: PublicKey, seq: int) -> None:
    err = tampered(log, key, lambda s: s.execute(text("DELETE FROM audit_entry WHERE seq = :s"), {"s": seq}))
    assert err.first_bad == seq


@FIXTURE_OK
@given(seq=st.integers(0, SIZE - 1), offset=st.integers(1, 50))
def test_moved_entry(log: Workspace, key: PublicKey, seq: int, offset: int) -> None:
    def change(s: Session) -> None:
        s.execute(text("UPDATE audit_entry SET seq = :n WHERE seq = :s"), {"n": SIZE + offset, "s": seq})

    assert tampered(log, key, change).first_bad == seq


@FIXTURE_OK
@given(pair=st.lists(st.integers(0, SIZE - 1), min_size=2, max_size=2, unique=True))
def test_swapped_entries(log: Workspace, key: PublicKey, pair: list[int]) -> None:
    a, b = sorted(pair)

    def change(s: Session) -> None:
        ra, rb = row(s, a), row(s, b)
        s.execute(text("DELETE FROM audit_entry WHERE seq IN (:a, :b)"), {"a": a, "b": b})
        put(s, {**rb, "seq": a})
        put(s, {**ra, "seq": b})

    assert tampered(log, key, change).first_bad == a


def _forged(seq: int, actor: str = "test:mallory") -> dict[str, Any]:
    time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    data = encode_entry(seq, time, actor, "thing.touch", f"thing:{seq}", {"forged": True})
    return {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": "thing.touch",
        "object": f"thing:{seq}",
        "entry": data,
        "leaf_hash": merkle.leaf_hash(data),
    }


def _insert_forged(s: Session, values: dict[str, Any]) -> None:
    # Through the table object so that the time column is stored the way each backend stores it.
    s.execute(AuditEntry.__table__.insert().values(values))


def test_inserted_entry_after_the_log(log: Workspace, key: PublicKey) -> None:
    err = tampered(log, key, lambda s: _insert_forged(s, _forged(SIZE)))
    assert err.first_bad == SIZE


@FIXTURE_OK
@given(seq=st.integers(0, SIZE - 1))
def test_rewritten_entry_with_its_hash_is_caught_by_its_checkpoint(
    log: Workspace, key: PublicKey, seq: int
) -> None:
    """A careful forger rewrites bytes, leaf hash and columns together: only the signed root can tell.

    The first entry not covered by a verifying checkpoint is named: the start of the forged entry's batch.
    """

    def change(s: Session) -> None:
        s.execute(text("DELETE FROM audit_entry WHERE seq = :s"), {"s": seq})
        _insert_forged(s, _forged(seq))

    err = tampered(log, key, change)
    assert err.first_bad == batch_start(BATCHES, seq)
    assert err.first_bad is not None
    assert err.first_bad <= seq


def test_rewritten_entry_in_a_single_entry_batch_is_named_exactly(log: Workspace, key: PublicKey) -> None:
    def change(s: Session) -> None:
        s.execute(text("DELETE FROM audit_entry WHERE seq = 5"))
        _insert_forged(s, _forged(5))

    assert tampered(log, key, change).first_bad == 5  # entry 5 is batch [5, 6) alone


def test_parsed_entries_are_what_was_recorded(log: Workspace) -> None:
    with log.reader() as s:
        data = bytes(row(s, 3)["entry"])
    assert parse_entry(data).object == "thing:3"


@FIXTURE_OK
@given(ckpt=st.integers(0, len(BATCHES) - 1), pos=st.integers(0, 10_000), value=st.integers(1, 255))
def test_changed_checkpoint_note_is_named(
    log: Workspace, key: PublicKey, ckpt: int, pos: int, value: int
) -> None:
    sizes = [sum(BATCHES[: i + 1]) for i in range(len(BATCHES))]
    size = sizes[ckpt]

    def change(s: Session) -> None:
        note = s.execute(text("SELECT note FROM audit_checkpoint WHERE size = :s"), {"s": size}).scalar_one()
        data = bytearray(note.encode())
        i = pos % len(data)
        data[i] = value if value != data[i] else value % 255 + 1  # never NUL: PostgreSQL text refuses it
        s.execute(
            text("UPDATE audit_checkpoint SET note = :n WHERE size = :s"),
            {"n": data.decode("utf-8", errors="replace"), "s": size},
        )

    err = tampered(log, key, change)
    assert f"checkpoint at size {size}" in err.message


def test_checkpoint_columns_and_removal(log: Workspace, key: PublicKey) -> None:
    err = tampered(
        log,
        key,
        lambda s: s.execute(
            text("UPDATE audit_checkpoint SET root = :r WHERE size = 5"), {"r": b"\x01" * 32}
        ),
    )
    assert "checkpoint at size 5" in err.message
    # The latest checkpoint removed: its entries are no longer covered by any signature.
    last = SIZE - BATCHES[-1]
    err = tampered(
        log, key, lambda s: s.execute(text("DELETE FROM audit_checkpoint WHERE size = :s"), {"s": SIZE})
    )
    assert err.first_bad == last

    # Entries and checkpoint at the end removed together: the head still remembers the size.
    def truncate(s: Session) -> None:
        s.execute(text("DELETE FROM audit_checkpoint WHERE size = :s"), {"s": SIZE})
        s.execute(text("DELETE FROM audit_entry WHERE seq >= :s"), {"s": last})

    assert tampered(log, key, truncate).first_bad == last


def test_checkpoint_signed_by_another_key(log: Workspace) -> None:
    from gpaisec.audit._keys import LocalSigner

    other = LocalSigner.generate().public_key
    session = log._sessions()
    try:
        with pytest.raises(AuditIntegrityError, match="not signed by the trusted key"):
            service.verify_session(session, other)
    finally:
        session.close()


def test_changed_node_and_head(log: Workspace, key: PublicKey) -> None:
    node = merkle.flat_id(2, 1)  # entries 4..7
    err = tampered(
        log,
        key,
        lambda s: s.execute(
            text("UPDATE audit_node SET hash = :h WHERE id = :i"), {"h": b"\x02" * 32, "i": node}
        ),
    )
    assert "entries 4..7" in err.message
    err = tampered(log, key, lambda s: s.execute(text("DELETE FROM audit_node WHERE id = :i"), {"i": node}))
    assert "entries 4..7" in err.message
    err = tampered(
        log,
        key,
        lambda s: s.execute(
            text("INSERT INTO audit_node (id, hash) VALUES (:i, :h)"), {"i": 10**6 + 1, "h": b"\x00" * 32}
        ),
    )
    assert "node table" in err.message
    err = tampered(
        log, key, lambda s: s.execute(text("UPDATE audit_head SET root = :r"), {"r": b"\x00" * 32})
    )
    assert "head" in err.message
    err = tampered(
        log, key, lambda s: s.execute(text("UPDATE audit_head SET compact_range = :r"), {"r": b"\x00" * 64})
    )
    assert "compact range" in err.message


def test_text_replace_in_sql_is_named(log: Workspace, key: PublicKey) -> None:
    """The obvious forgery with a SQL string function (SQLite even turns the BLOB into TEXT)."""
    if log.engine.dialect.name == "sqlite":
        sql = "UPDATE audit_entry SET entry = replace(entry, 'thing:7', 'thing:8') WHERE seq = 7"
    else:
        sql = (
            "UPDATE audit_entry SET entry = convert_to("
            "replace(convert_from(entry, 'UTF8'), 'thing:7', 'thing:8'), 'UTF8') WHERE seq = 7"
        )
    assert tampered(log, key, lambda s: s.execute(text(sql))).first_bad == 7
