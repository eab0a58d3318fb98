"""The audit log's operations: record, seal, verify, prove, export, query.

Writing (inside the caller's own transaction, the same one as its state change)::

    with ws.transaction() as s:
        s.add(device)
        seq = record(s, actor=ws.actor, action="device.add", object=f"device:{name}", details={...})

:func:`record` takes the log's lock (the ``audit_head`` row) on its first call in a transaction,
numbers the entry, encodes it canonically and keeps it in the session; nothing else is written yet.
:meth:`Workspace.transaction <gpaisec.workspace.Workspace.transaction>` calls :func:`seal` just before
it commits: one pass hashes all of the transaction's entries into the tree, inserts them and the
interior nodes they complete (two multi-row inserts), moves the head and writes one signed
checkpoint, all in that transaction: group commit, and a checkpoint is durable before anyone can
read it. A transaction that recorded entries but commits without :func:`seal` is refused; a rolled-back
transaction (or savepoint) takes its entries with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Table, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from gpaisec.audit._bundle import EXPORT_FORMAT, MANIFEST_CONTEXT, ConsistencyProof, InclusionProof
from gpaisec.audit._entry import EntryError, encode_entry, parse_time
from gpaisec.audit._keys import PublicKey, Signer, load_signer
from gpaisec.audit._note import Checkpoint, open_checkpoint, sign_checkpoint, vkey
from gpaisec.audit._verifier import StoredCheckpoint, StoredEntry, VerifyResult, verify_log
from gpaisec.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_proof,
    flat_id,
    from_flat_id,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from gpaisec.audit.models import AuditCheckpoint, AuditEntry, AuditHead, AuditNode
from gpaisec.errors import AuditIntegrityError, ConfigError, InputError, NotFoundError
from gpaisec.store.base import utcnow
from gpaisec.store.fastsql import give_back

if TYPE_CHECKING:
    from gpaisec.workspace import Workspace

__all__ = [
    "AuditEvent",
    "ExportResult",
    "PreparedAppend",
    "append_committed",
    "LogEntry",
    "consistency",
    "export",
    "has_pending",
    "log",
    "prepare_append",
    "prove",
    "record",
    "record_many",
    "seal",
    "store_inclusion_proof",
    "trusted_key",
    "verify",
    "verify_session",
]

HEAD_ID = 1
_STATE = "gpaisec.audit.pending"
_MARKS = "gpaisec.audit.savepoints"
_ENTRY_COLUMNS = "audit_entry (seq, time, actor, action, object, entry, leaf_hash)"
_E, _N, _C, _H = (cast(Table, m.__table__) for m in (AuditEntry, AuditNode, AuditCheckpoint, AuditHead))


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event for :func:`record_many`."""

    actor: str
    action: str
    object: str
    details: dict[str, Any] | None = None


@dataclass
class _Pending:
    """What a transaction has recorded but not yet sealed (kept in ``session.info``)."""

    origin: str
    base: int
    compact: CompactRange
    rows: list[tuple[int, dt.datetime, str, str, str, bytes]] = field(default_factory=list)


def _b(value: object, what: str) -> bytes:
    """A stored binary value as bytes. SQLite may hand back TEXT where a raw UPDATE stored text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise AuditIntegrityError(f"{what} is stored as {type(value).__name__}, not bytes")


def _sqlite_time(value: dt.datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite DateTime stores it (what UTCDateTime reads back)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


# -- writing ------------------------------------------------------------------------------------


class _Driver:
    """The few statements the log's writer runs, on the driver's own cursor (values already in the
    driver's types; the round trip through the column types is covered by verify).

    Either the cursor of an ORM session's connection (:func:`record` and :func:`seal`, in the caller's
    transaction) or of a connection of the writer's own (:func:`append_committed`).
    """

    __slots__ = ("cursor", "ph", "sqlite")

    def __init__(self, cursor: Any, dialect_name: str, paramstyle: str) -> None:
        self.cursor = cursor
        self.sqlite = dialect_name == "sqlite"
        self.ph = "?" if paramstyle == "qmark" else "%s"

    @classmethod
    def of(cls, session: Session) -> _Driver:
        conn = session.connection()  # begins the session's transaction if it has not yet
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        return cls(dbapi.cursor(), conn.dialect.name, conn.dialect.paramstyle)

    def first(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cursor.execute(sql, params)
        return self.cursor.fetchone()

    def run(self, sql: str, params: Sequence[Any]) -> int:
        self.cursor.execute(sql, params)
        return int(self.cursor.rowcount)

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.cursor.executemany(sql, rows)

    def time(self, value: dt.datetime) -> Any:
        return _sqlite_time(value) if self.sqlite else value


def _lock_head(db: _Driver) -> _Pending:
    """Lock the head row (creating it once) and read the log's size and compact range."""
    # SQLite's BEGIN IMMEDIATE already holds the lock; PostgreSQL locks the row.
    sql = "SELECT origin, size, compact_range FROM audit_head WHERE id = 1"  # HEAD_ID
    sql = sql if db.sqlite else f"{sql} FOR UPDATE"
    row = db.first(sql)
    if row is None:
        # Two first writers may race to create the row; exactly one insert wins, both then lock it.
        origin = f"gpaisec.local/audit/{uuid.uuid4().hex[:16]}"
        marks = ", ".join([db.ph] * 5)
        db.run(
            f"INSERT INTO audit_head (id, origin, size, root, compact_range, updated_at) "  # noqa: S608
            f"VALUES ({HEAD_ID}, {marks}) ON CONFLICT (id) DO NOTHING",
            (origin, 0, EMPTY_ROOT, b"", db.time(utcnow())),
        )
        row = db.first(sql)
        if row is None:  # pragma: no cover - the insert or the other writer's insert is there
            raise AuditIntegrityError("the audit log's head row could not be created")
    origin, size, blob = row
    try:
        compact = CompactRange.from_bytes(size, _b(blob, "the audit head's compact range"))
    except ValueError:
        raise AuditIntegrityError(
            "the audit head's compact range does not fit its size",
            first_bad=None,
            hint="run gpaisec audit verify",
        ) from None
    return _Pending(origin=origin, base=size, compact=compact)


def _pending(session: Session) -> _Pending:
    state = session.info.get(_STATE)
    if state is None:
        state = session.info[_STATE] = _lock_head(_Driver.of(session))
    assert isinstance(state, _Pending)
    return state


def record(
    session: Session, *, actor: str, action: str, object: str, details: dict[str, Any] | None = None
) -> int:
    """Append one event to the audit log in ``session``'s transaction; return its sequence number.

    ``details`` must be plain JSON (dict, list, str, int, finite float, bool, None); it is encoded now,
    so later changes to the dict are not logged. The entry is written, hashed and covered by a signed
    checkpoint when the transaction commits through :meth:`Workspace.transaction` (or :func:`seal`).
    """
    state = _pending(session)
    seq = state.base + len(state.rows)
    now = utcnow()
    try:
        data = encode_entry(seq, now, actor, action, object, details)
    except EntryError as exc:
        raise InputError(f"audit event {action!r} cannot be recorded: {exc}") from None
    state.rows.append((seq, now, actor, action, object, data))
    return seq


def record_many(
    session: Session, events: Iterable[AuditEvent], *, details_json: Sequence[str] | None = None
) -> range:
    """Append many events in order; return their sequence numbers (contiguous).

    ``details_json``: each event's :func:`~gpaisec.audit._entry.encode_details`, if already known.
    """
    return _add_rows(_pending(session), events, details_json)


def _add_rows(state: _Pending, events: Iterable[AuditEvent], details_json: Sequence[str] | None) -> range:
    first = state.base + len(state.rows)
    added: list[tuple[int, dt.datetime, str, str, str, bytes]] = []
    now = utcnow()
    for i, ev in enumerate(events):
        try:
            data = encode_entry(
                first + i,
                now,
                ev.actor,
                ev.action,
                ev.object,
                ev.details,
                details_json=details_json[i] if details_json is not None else None,
            )
        except EntryError as exc:
            raise InputError(f"audit event {i} ({ev.action!r}) cannot be recorded: {exc}") from None
        added.append((first + i, now, ev.actor, ev.action, ev.object, data))
    state.rows.extend(added)
    return range(first, first + len(added))


def has_pending(session: Session) -> bool:
    """Whether this transaction recorded entries that :func:`seal` has not yet written."""
    state = session.info.get(_STATE)
    return bool(state is not None and state.rows)


def seal(session: Session, signer: Signer) -> Checkpoint | None:
    """Write this transaction's entries, their tree nodes, the new head and one signed checkpoint.

    Call just before commit (Workspace.transaction does). Returns the checkpoint, or None if nothing was
    recorded.
    """
    state = session.info.get(_STATE)
    if state is None or not state.rows:
        return None
    assert isinstance(state, _Pending)
    ckpt = _write(_Driver.of(session), state, signer)
    del session.info[_STATE]
    return ckpt


def _write(db: _Driver, state: _Pending, signer: Signer) -> Checkpoint:
    """Hash ``state``'s rows into the tree; insert them and the nodes they complete (one multi-row
    insert each), move the head and insert one signed checkpoint."""
    compact = state.compact.copy()
    entries: list[tuple[Any, ...]] = []
    nodes: list[tuple[int, bytes]] = []
    append = compact.append
    to_time = db.time
    for seq, time, actor, action, obj, data in state.rows:
        leaf = leaf_hash(data)
        for level, index, h in append(leaf):
            nodes.append((flat_id(level, index), h))
        entries.append((seq, to_time(time), actor, action, obj, data, leaf))
    root = compact.root()
    now = utcnow()
    ckpt = sign_checkpoint(state.origin, compact.size, root, now, signer)
    ph = db.ph
    # Only driver placeholders are formatted into these statements (hence noqa: S608).
    marks = ", ".join([ph] * 7)
    db.many(f"INSERT INTO {_ENTRY_COLUMNS} VALUES ({marks})", entries)  # noqa: S608
    if nodes:
        db.many(f"INSERT INTO audit_node (id, hash) VALUES ({ph}, {ph})", nodes)  # noqa: S608
    stamp = to_time(now)
    moved = db.run(
        f"UPDATE audit_head SET size = {ph}, root = {ph}, compact_range = {ph}, updated_at = {ph} "  # noqa: S608
        f"WHERE id = {HEAD_ID} AND size = {ph}",
        (compact.size, root, compact.to_bytes(), stamp, state.base),
    )
    if moved != 1:
        raise AuditIntegrityError(
            "the audit log's head moved while this transaction held its lock",
            hint="nothing was committed; retry",
        )
    marks = ", ".join([ph] * 5)
    db.run(
        f"INSERT INTO audit_checkpoint (size, root, time, key_id, note) VALUES ({marks})",  # noqa: S608
        (ckpt.size, root, stamp, ckpt.key_id, ckpt.note),
    )
    return ckpt


class PreparedAppend:
    """A batch of events written and sealed in a transaction of its own, not yet committed: its
    connection holds the database's write lock until :meth:`commit` or :meth:`abort` (either may run
    on another thread than the one that prepared it). ``results``: each run's sequence numbers."""

    __slots__ = ("_raw", "results")

    def __init__(self, raw: Any, results: list[range]) -> None:
        self._raw = raw
        self.results = results

    def commit(self) -> None:
        """Commit (on SQLite with ``synchronous=FULL``: fsync) and give the connection back; on any
        failure nothing is committed and the error is raised."""
        raw, self._raw = self._raw, None
        if raw is None:
            raise AuditIntegrityError("this batch was already committed or aborted")
        try:
            raw.commit()
        except BaseException:
            give_back(raw)
            raise
        raw.close()

    def abort(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            give_back(raw)


def prepare_append(
    engine: Engine,
    signer: Signer,
    items: Sequence[tuple[Sequence[AuditEvent], Sequence[str] | None]],
) -> PreparedAppend:
    """Record every run of events in ``items`` (with their details already encoded, or None) and seal
    them, in one transaction of their own on a connection of the engine's pool, without committing
    it: the group writer's batch (:mod:`gpaisec.audit.group`), without an ORM session. SQLite callers
    hold the workspace's write gate until the commit. Raises (nothing written) on any failure, the
    driver's own errors included.
    """
    raw = engine.raw_connection()
    try:
        dialect = engine.dialect
        db = _Driver(raw.cursor(), dialect.name, dialect.paramstyle)
        if db.sqlite:
            db.cursor.execute("BEGIN IMMEDIATE")
        state = _lock_head(db)
        results = [_add_rows(state, events, encoded) for events, encoded in items]
        _write(db, state, signer)
        db.cursor.close()
    except BaseException:
        give_back(raw)
        raise
    return PreparedAppend(raw, results)


def append_committed(
    engine: Engine,
    signer: Signer,
    items: Sequence[tuple[Sequence[AuditEvent], Sequence[str] | None]],
) -> list[range]:
    """:func:`prepare_append`, then commit: each run's sequence numbers once they are durable."""
    prepared = prepare_append(engine, signer, items)
    prepared.commit()
    return prepared.results


# Session bookkeeping: entries recorded in a savepoint that rolls back are dropped; a transaction's
# state never outlives it; a commit with unsealed entries is refused.


@event.listens_for(Session, "after_transaction_create")
def _on_begin(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        state = session.info.get(_STATE)
        session.info.setdefault(_MARKS, {})[transaction] = len(state.rows) if state is not None else 0


@event.listens_for(Session, "after_soft_rollback")
def _on_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(_STATE, None)
        return
    mark = session.info.get(_MARKS, {}).get(previous_transaction)
    state = session.info.get(_STATE)
    if mark is not None and state is not None:
        del state.rows[mark:]
        if not state.rows:
            # The head lock may have been taken inside the savepoint and released with it.
            del session.info[_STATE]


@event.listens_for(Session, "after_transaction_end")
def _on_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_STATE, None)
        session.info.pop(_MARKS, None)


@event.listens_for(Session, "before_commit")
def _on_commit(session: Session) -> None:
    if has_pending(session) and not session.in_nested_transaction():
        raise AuditIntegrityError(
            "a transaction recorded audit events but was committed without sealing them",
            hint="use Workspace.transaction(), or call gpaisec.audit.service.seal() before commit",
        )


# -- reading ------------------------------------------------------------------------------------


def _snapshot(session: Session) -> None:
    """Make every statement of this read see one snapshot (PostgreSQL; SQLite readers already do)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def trusted_key(ws: Workspace) -> PublicKey | None:
    """The public key that this workspace's checkpoints must verify with (None: no key yet)."""
    return ws.audit_public_key()


def _require_key(ws: Workspace) -> PublicKey:
    key = trusted_key(ws)
    if key is None:
        raise ConfigError(
            f"the audit signing key is missing from {ws.keys_dir}",
            hint="restore it from backup; without it the checkpoints cannot be verified",
        )
    return key


class _StoreNodes:
    """Stored subtree hashes: leaves from audit_entry.leaf_hash, interior nodes from audit_node."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        # One query for the whole proof, straight to the driver: leaves come from audit_entry under
        # negative keys (-1 - seq), interior nodes from audit_node under their flat ids.
        leaves = [index for level, index in ids if level == 0]
        inner = [flat_id(level, index) for level, index in ids if level > 0]
        conn = self.session.connection()
        ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        parts = []
        if inner:
            marks = ", ".join([ph] * len(inner))  # only placeholders are formatted in
            parts.append(f"SELECT id, hash FROM audit_node WHERE id IN ({marks})")  # noqa: S608
        if leaves:
            marks = ", ".join([ph] * len(leaves))
            parts.append(f"SELECT -1 - seq, leaf_hash FROM audit_entry WHERE seq IN ({marks})")  # noqa: S608
        out: dict[NodeId, bytes] = {}
        if parts:
            # The driver's own connection (same transaction): a proof is latency-bound, and SQLAlchemy's
            # result machinery would cost more than the lookups themselves.
            driver = conn.connection.driver_connection
            assert driver is not None
            rows = driver.execute(" UNION ALL ".join(parts), tuple(inner + leaves)).fetchall()
            for key, h in rows:
                node = (0, -1 - key) if key < 0 else from_flat_id(key)
                out[node] = _b(h, f"stored hash {node}")
        if len(out) != len(ids):
            raise AuditIntegrityError(
                "stored subtree hashes needed for this proof are missing", hint="run gpaisec audit verify"
            )
        return out


def store_inclusion_proof(session: Session, seq: int, size: int) -> list[bytes]:
    """The audit path for entry ``seq`` in the tree of ``size`` entries, read from stored subtrees."""
    return inclusion_proof(seq, size, _StoreNodes(session))


def _checkpoint_row(session: Session, size: int | None) -> tuple[int, str]:
    query = select(_C.c.size, _C.c.note)
    query = query.where(_C.c.size == size) if size is not None else query.order_by(_C.c.size.desc()).limit(1)
    row = session.execute(query).one_or_none()
    if row is None:
        if size is None:
            raise NotFoundError("the audit log has no checkpoint yet", hint="nothing has been recorded")
        raise NotFoundError(
            f"there is no checkpoint at size {size}",
            hint="gpaisec audit log shows the entries; sizes grow by batch",
        )
    return int(row[0]), str(row[1])


def prove(ws: Workspace, seq: int, *, checkpoint: int | None = None) -> InclusionProof:
    """An inclusion proof for entry ``seq`` against a signed checkpoint (the latest by default).

    The proof is checked before it is returned, so a damaged store cannot hand out a bad proof.
    """
    key = _require_key(ws)
    with ws.reader() as s:
        _snapshot(s)
        size, note = _checkpoint_row(s, checkpoint)
        ckpt = open_checkpoint(note, key, where=f"checkpoint at size {size}")
        if not 0 <= seq < size:
            raise InputError(
                f"entry {seq} is not covered by the checkpoint at size {size}",
                hint="entries are numbered from 0; pick a later checkpoint with --checkpoint",
            )
        data = s.execute(select(_E.c.entry).where(_E.c.seq == seq)).scalar_one_or_none()
        if data is None:
            raise AuditIntegrityError(f"entry {seq} is missing from the log", first_bad=seq)
        path = store_inclusion_proof(s, seq, size)
    try:
        verify_inclusion(leaf_hash(data), seq, size, path, ckpt.root)
    except AuditIntegrityError:
        raise AuditIntegrityError(
            f"the stored log does not prove entry {seq} against its checkpoint at size {size}",
            hint="run gpaisec audit verify to find the damage",
        ) from None
    return InclusionProof(
        ckpt.origin, seq, size, _b(data, f"entry {seq}"), tuple(path), ckpt.note, key.key_id
    )


def consistency(ws: Workspace, old_size: int, new_size: int) -> ConsistencyProof:
    """A proof that the checkpoint at ``old_size`` is a prefix of the checkpoint at ``new_size``.

    Both sizes must be checkpoint sizes (``old_size`` may be 0); the proof is checked before it is
    returned.
    """
    if not 0 <= old_size <= new_size:
        raise InputError(f"no consistency proof from size {old_size} to size {new_size}", hint="OLD <= NEW")
    key = _require_key(ws)
    with ws.reader() as s:
        _snapshot(s)
        new = open_checkpoint(_checkpoint_row(s, new_size)[1], key, where=f"checkpoint at size {new_size}")
        old: Checkpoint | None = None
        if old_size:
            old = open_checkpoint(
                _checkpoint_row(s, old_size)[1], key, where=f"checkpoint at size {old_size}"
            )
        path = consistency_proof(old_size, new_size, _StoreNodes(s))
    old_root = old.root if old is not None else EMPTY_ROOT
    try:
        verify_consistency(old_size, new_size, old_root, new.root, path)
    except AuditIntegrityError as exc:
        raise AuditIntegrityError(
            f"the checkpoints at sizes {old_size} and {new_size} are not consistent: {exc.message}",
            hint="run gpaisec audit verify",
        ) from None
    return ConsistencyProof(
        new.origin,
        old_size,
        new_size,
        old_root,
        new.root,
        tuple(path),
        old.note if old is not None else None,
        new.note,
        key.key_id,
    )


def _entries(session: Session) -> Iterator[StoredEntry]:
    query = select(_E.c.seq, _E.c.entry, _E.c.leaf_hash, _E.c.time, _E.c.actor, _E.c.action, _E.c.object)
    result = session.execute(query.order_by(_E.c.seq).execution_options(yield_per=2000))
    for seq, data, leaf, time, actor, action, obj in result:
        yield StoredEntry(
            _b(data, f"entry {seq}"), seq, _b(leaf, f"entry {seq}'s leaf hash"), (time, actor, action, obj)
        )


def _checkpoints(session: Session) -> Iterator[StoredCheckpoint]:
    query = select(_C.c.size, _C.c.root, _C.c.note).order_by(_C.c.size).execution_options(yield_per=2000)
    for size, root, note in session.execute(query):
        where = f"checkpoint at size {size}"
        yield StoredCheckpoint(str(note), size, _b(root, f"the root of the {where}"), where=where)


def _check_nodes(session: Session, size: int) -> bytes:
    """Every stored interior node equals the one recomputed from the (already verified) leaf hashes.

    Returns the compact range of the whole tree, for comparison with the head.
    """
    expected = size - size.bit_count()
    stored = session.execute(select(func.count()).select_from(_N)).scalar_one()
    batch: dict[int, bytes] = {}

    def flush() -> None:
        query = select(_N.c.id, _N.c.hash).where(_N.c.id.in_(list(batch)))
        rows: dict[int, bytes] = {node: _b(h, f"node {node}") for node, h in session.execute(query)}
        for node, h in batch.items():
            if rows.get(node) != h:
                level, index = from_flat_id(node)
                first, last = index << level, ((index + 1) << level) - 1
                raise AuditIntegrityError(
                    f"the stored subtree hash over entries {first}..{last} is "
                    f"{'missing' if node not in rows else 'wrong'} (the entries verify): proofs fail",
                    hint="the node table was changed; it can be rebuilt from the entries",
                )
        batch.clear()

    cr = CompactRange()
    query = select(_E.c.leaf_hash).order_by(_E.c.seq).execution_options(yield_per=5000)
    for (leaf,) in session.execute(query):
        for level, index, h in cr.append(_b(leaf, f"entry {cr.size}'s leaf hash")):
            batch[flat_id(level, index)] = h
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    if stored != expected:
        raise AuditIntegrityError(
            f"the node table holds {stored} subtree hashes; a log of {size} entries has {expected}",
            hint="rows were added to audit_node behind the log's back",
        )
    return cr.to_bytes()


def verify_session(session: Session, key: PublicKey) -> VerifyResult:
    """Verify the log visible in ``session`` with the trusted ``key`` (see :mod:`gpaisec.audit._verifier`).

    Beyond the entries and checkpoints, the head row must agree with them, and every stored subtree
    hash must equal the one recomputed (a wrong one would make proofs fail).
    """
    head = session.execute(select(_H.c.origin, _H.c.size, _H.c.root, _H.c.compact_range)).all()
    origin = head[0][0] if head else None
    result = verify_log(_entries(session), _checkpoints(session), key=key, origin=origin)
    if not head:
        if result.tree_size:
            raise AuditIntegrityError("the audit log has entries but no head row", first_bad=0)
        return result
    _, size, root, blob = head[0]
    root, blob = _b(root, "the head's root"), _b(blob, "the head's compact range")
    if size != result.tree_size:
        first = min(size, result.tree_size)
        raise AuditIntegrityError(
            f"the head records {size} entries but the log holds {result.tree_size}: "
            f"entry {first} onwards {'was removed' if size > result.tree_size else 'was added behind it'}",
            first_bad=first,
            hint="entries and their checkpoints were deleted or inserted directly in the database",
        )
    if root != result.root:
        raise AuditIntegrityError(
            "the head's root does not match the entries", hint="the head row was changed"
        )
    if _check_nodes(session, result.tree_size) != blob:
        raise AuditIntegrityError(
            "the head's compact range does not match the entries: the next append would be wrong",
            hint="the head row was changed",
        )
    return result


def verify(ws: Workspace) -> VerifyResult:
    """Recompute the whole log from its entries and check every signed checkpoint. Raises
    AuditIntegrityError naming the first entry that does not verify."""
    with ws.reader() as s:
        _snapshot(s)
        key = trusted_key(ws)
        if key is None:
            count = s.execute(select(func.count()).select_from(_C)).scalar_one()
            if count:
                _require_key(ws)
            key = PublicKey(b"\x00" * 32)  # nothing is signed; the empty log verifies trivially
        return verify_session(s, key)


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    path: Path
    tree_size: int
    checkpoints: int
    root: bytes
    key_id: str


class _HashingWriter:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.lines = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.bytes += len(data)
        self.lines += 1

    def close(self) -> dict[str, Any]:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return {"sha256": self.sha.hexdigest(), "bytes": self.bytes, "lines": self.lines}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export(ws: Workspace, dest: Path) -> ExportResult:
    """Write the log for an auditor into the new directory ``dest``, atomically.

    Layout: ``entries.jsonl`` (each line the exact bytes that were hashed), ``leaf-hashes.txt``,
    ``checkpoints.jsonl`` (``{"size", "note"}`` per line), ``public-key.pem``, ``manifest.json``
    (format, origin, size, root, key id, signed-note verifier key, and each file's SHA-256) and
    ``manifest.sig`` (the log's key over the manifest, so every byte of the export is signed). Everything
    is written into a temporary directory beside ``dest``, synced, then renamed into place. The log is
    exported as stored, even if it does not verify, so that damage can be examined.
    """
    dest = dest.expanduser().absolute()
    if dest.exists() or dest.is_symlink():
        raise InputError(f"{dest} already exists", hint="export into a new directory")
    if not dest.parent.is_dir():
        raise InputError(f"{dest.parent} is not a directory")
    signer = load_signer(ws.keys_dir)
    if signer is None:
        _require_key(ws)
    assert signer is not None
    key = signer.public_key
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        os.chmod(tmp, 0o755)  # noqa: S103 - an export is meant to be read by others
        with ws.reader() as s:
            _snapshot(s)
            head = s.execute(select(_H.c.origin, _H.c.size, _H.c.root)).one_or_none()
            origin, size, root = head if head is not None else (None, 0, EMPTY_ROOT)
            entries, leaves = _HashingWriter(tmp / "entries.jsonl"), _HashingWriter(tmp / "leaf-hashes.txt")
            query = select(_E.c.entry, _E.c.leaf_hash).order_by(_E.c.seq).execution_options(yield_per=5000)
            for data, leaf in s.execute(query):
                entries.write(_b(data, "an entry") + b"\n")
                leaves.write(_b(leaf, "a leaf hash").hex().encode() + b"\n")
            files = {"entries.jsonl": entries.close(), "leaf-hashes.txt": leaves.close()}
            cps = _HashingWriter(tmp / "checkpoints.jsonl")
            for item in _checkpoints(s):
                line = json.dumps({"size": item.size, "note": item.note}, sort_keys=True, ensure_ascii=False)
                cps.write(line.encode() + b"\n")
            files["checkpoints.jsonl"] = cps.close()
        pem = _HashingWriter(tmp / "public-key.pem")
        pem.write(key.pem())
        files["public-key.pem"] = pem.close()
        manifest = {
            "format": EXPORT_FORMAT,
            "origin": origin,
            "tree_size": size,
            "root": _b(root, "the head's root").hex(),
            "checkpoints": files["checkpoints.jsonl"]["lines"],
            "key_id": key.key_id,
            "vkey": vkey(origin, key) if origin else None,
            "exported_at": utcnow().isoformat().replace("+00:00", "Z"),
            "files": files,
        }
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        man = _HashingWriter(tmp / "manifest.json")
        man.write(manifest_bytes)
        man.close()
        sig = _HashingWriter(tmp / "manifest.sig")
        sig.write(base64.b64encode(signer.sign(MANIFEST_CONTEXT + manifest_bytes)) + b"\n")
        sig.close()
        _fsync_dir(tmp)
        os.rename(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(dest, size, files["checkpoints.jsonl"]["lines"], _b(root, "root"), key.key_id)


# -- queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    seq: int
    time: dt.datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]


def log(
    ws: Workspace,
    *,
    actor: str | None = None,
    action: str | None = None,
    object: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = 100,
) -> list[LogEntry]:
    """The latest ``limit`` entries matching every filter given, oldest first.

    ``action`` ending in ``.*`` matches by prefix (``device.*``); the others match exactly.
    """
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    query = select(_E.c.seq, _E.c.entry)
    if actor:
        query = query.where(_E.c.actor == actor)
    if action:
        if action.endswith(".*"):
            query = query.where(_E.c.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(_E.c.action == action)
    if object:
        query = query.where(_E.c.object == object)
    if since is not None:
        query = query.where(_E.c.time >= since)
    query = query.order_by(_E.c.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    with ws.reader() as s:
        rows = s.execute(query).all()
    out = []
    for _seq, data in reversed(rows):
        value = json.loads(_b(data, "an entry"))
        out.append(
            LogEntry(
                value["seq"],
                parse_time(value["time"]),
                value["actor"],
                value["action"],
                value["object"],
                value["details"],
            )
        )
    return out
