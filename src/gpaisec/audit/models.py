"""The audit log's tables. Only :mod:`gpaisec.audit.service` reads or writes them.

- ``audit_head``: one row (id 1), locked by every appending transaction (SELECT … FOR UPDATE on
  PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers). It holds the log's origin, size,
  root and compact range (the hashes of the perfect subtrees that make up the tree), so an append
  needs no other read.
- ``audit_entry``: one row per entry: the canonical bytes that are hashed, their leaf hash, and
  copies of time, actor, action and object for queries (verify checks the copies).
- ``audit_node``: the hash of every complete interior subtree, keyed by its in-order number
  (:func:`gpaisec.audit.merkle.flat_id`); proofs are read from here, never recomputed.
- ``audit_checkpoint``: one signed checkpoint per appending transaction, written in that transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpaisec.store.base import Base, UTCDateTime

__all__ = ["AUDIT_TABLES", "AuditCheckpoint", "AuditEntry", "AuditHead", "AuditNode"]

# SQLite makes only "INTEGER PRIMARY KEY" an alias of its row id (one b-tree, fastest appends).
_BigInt = BigInteger().with_variant(Integer(), "sqlite")


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(_BigInt)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    compact_range: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100))
    object: Mapped[str] = mapped_column(String(500), index=True)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditNode(Base):
    __tablename__ = "audit_node"

    id: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)


AUDIT_TABLES: list[Table] = [
    cast(Table, m.__table__) for m in (AuditHead, AuditEntry, AuditNode, AuditCheckpoint)
]
"""The audit tables, for ``metadata.create_all(engine, tables=AUDIT_TABLES)`` in tests and benchmarks."""
