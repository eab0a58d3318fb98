"""Recompute a log from its entries and check it against its signed checkpoints. Pure.

The database verifier (:func:`gpaisec.audit.service.verify`) and the offline verifier
(:mod:`gpaisec.audit.offline`) both feed this one function, so they agree on what "verifies" means.

Steps, in log order (each failure names the first entry that cannot be trusted):

1. Entries are numbered 0, 1, 2, … with no gap: a missing number names the missing entry.
2. Each entry's bytes are canonical JSON whose ``seq`` is its position (a moved, inserted or
   reordered entry fails here) and whose fields equal the stored columns, if any.
3. Each entry's leaf hash is recomputed; a stored leaf hash that differs names the entry.
4. At every checkpoint's size: the signature verifies with the trusted key, the origin is this log's,
   and the root recomputed from the entries equals the signed root. A mismatch means an entry after
   the previous good checkpoint was rewritten together with its stored hash: the first entry after
   that checkpoint is the first one that cannot be verified.
5. At the end: every checkpoint was reached (none is beyond the last entry) and every entry is
   covered by a checkpoint (entries appended without one were inserted behind the log's back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gpaisec.audit._entry import EntryError, parse_entry
from gpaisec.audit._keys import PublicKey
from gpaisec.audit._note import SIZE_RE, Checkpoint, open_checkpoint
from gpaisec.audit.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from gpaisec.errors import AuditIntegrityError

__all__ = ["StoredCheckpoint", "StoredEntry", "VerifyResult", "verify_log"]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry as a store holds it. ``seq``, ``leaf`` and ``columns`` are what the store keeps beside
    the bytes (None where it keeps nothing); ``where`` says where it was read, for messages."""

    data: bytes
    seq: int | None = None
    leaf: bytes | None = None
    columns: tuple[dt.datetime, str, str, str] | None = None  # time, actor, action, object
    where: str = ""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    note: str
    size: int | None = None
    root: bytes | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    tree_size: int
    root: bytes
    checkpoints: int
    origin: str | None
    key_id: str
    latest: Checkpoint | None


def _entry_error(seq: int, where: str, reason: str, *, first_bad: int | None = None) -> AuditIntegrityError:
    loc = f" ({where})" if where else ""
    return AuditIntegrityError(
        f"entry {seq}{loc}: {reason}",
        first_bad=seq if first_bad is None else first_bad,
        hint="the log was changed after it was written; keep this copy as evidence and investigate",
    )


class _Checkpoints:
    """Signed checkpoints in size order; each is opened (signature checked) when the entries reach it."""

    def __init__(self, items: Iterable[StoredCheckpoint], key: PublicKey, origin: str | None) -> None:
        self._it: Iterator[StoredCheckpoint] = iter(items)
        self._key = key
        self.origin = origin
        self.count = 0
        self.last_size = -1
        self.latest: Checkpoint | None = None
        self.peek: StoredCheckpoint | None = None
        self.peek_size = -1
        self._advance()

    def _advance(self) -> None:
        item = next(self._it, None)
        self.peek = item
        if item is None:
            return
        # Only the claimed size now, to know when the entries reach it; the signature is checked in take().
        lines = item.note.split("\n", 2)
        claimed = lines[1] if len(lines) == 3 else ""
        if not SIZE_RE.fullmatch(claimed):
            raise AuditIntegrityError(f"{item.where or 'checkpoint'}: the size line is not a decimal number")
        size = int(claimed)
        if size <= self.last_size:
            raise AuditIntegrityError(
                f"{item.where or 'checkpoint'}: size {size} does not follow size {self.last_size}"
            )
        self.peek_size = size

    def take(self) -> Checkpoint:
        item = self.peek
        assert item is not None
        where = item.where or f"checkpoint at size {self.peek_size}"
        ckpt = open_checkpoint(item.note, self._key, origin=self.origin, where=where)
        self.origin = ckpt.origin
        if item.size is not None and item.size != ckpt.size:
            raise AuditIntegrityError(
                f"{where}: stored size {item.size} differs from the signed size {ckpt.size}"
            )
        if item.root is not None and item.root != ckpt.root:
            raise AuditIntegrityError(f"{where}: stored root differs from the signed root")
        self.count += 1
        self.last_size = ckpt.size
        self.latest = ckpt
        self._advance()
        return ckpt


def verify_log(
    entries: Iterable[StoredEntry],
    checkpoints: Iterable[StoredCheckpoint],
    *,
    key: PublicKey,
    origin: str | None = None,
) -> VerifyResult:
    """Verify a whole log; return what verified, or raise AuditIntegrityError naming the first bad entry."""
    cps = _Checkpoints(checkpoints, key, origin)
    cr = CompactRange()
    good = 0  # entries [0, good) are covered by a verified checkpoint

    def reach_checkpoints() -> None:
        nonlocal good
        while cps.peek is not None and cps.peek_size == cr.size:
            ckpt = cps.take()
            if ckpt.size == 0:
                if ckpt.root != EMPTY_ROOT:
                    raise AuditIntegrityError("checkpoint at size 0 does not sign the empty tree's root")
                continue
            if cr.root() != ckpt.root:
                raise _entry_error(
                    good,
                    "",
                    f"entries {good}..{ckpt.size - 1} do not reproduce the root signed at size {ckpt.size}: "
                    "one of them was changed, removed, reordered or inserted together with its stored hash",
                )
            good = ckpt.size

    reach_checkpoints()
    for item in entries:
        seq = cr.size
        where = item.where
        # 1. Contiguous numbering.
        if item.seq is not None and item.seq != seq:
            if item.seq > seq:
                raise _entry_error(seq, where, f"missing (the next stored entry is {item.seq})")
            raise _entry_error(seq, where, f"stored out of order (numbered {item.seq})")
        # 2. Canonical bytes, own position, columns.
        try:
            entry = parse_entry(item.data)
        except EntryError as exc:
            raise _entry_error(seq, where, str(exc)) from None
        if entry.seq != seq:
            raise _entry_error(seq, where, f"says it is entry {entry.seq}: moved, inserted or reordered")
        if item.columns is not None and item.columns != (entry.time, entry.actor, entry.action, entry.object):
            raise _entry_error(
                seq, where, "stored time, actor, action or object differ from the hashed entry"
            )
        # 3. Leaf hash.
        leaf = leaf_hash(item.data)
        if item.leaf is not None and item.leaf != leaf:
            raise _entry_error(seq, where, "content does not match its stored leaf hash")
        cr.append(leaf)
        if cps.peek is not None and cps.peek_size < cr.size:
            raise AuditIntegrityError(
                f"{cps.peek.where or 'checkpoint'}: size {cps.peek_size} is out of order"
            )
        # 4. Checkpoints at this size.
        reach_checkpoints()
    # 5. Nothing left over on either side.
    if cps.peek is not None:
        raise _entry_error(
            cr.size,
            "",
            f"missing: the log ends after {cr.size} entries but a checkpoint signs {cps.peek_size}",
        )
    if good != cr.size:
        raise _entry_error(
            good,
            "",
            f"entries {good}..{cr.size - 1} are not covered by any signed checkpoint (added behind the log)",
        )
    return VerifyResult(
        tree_size=cr.size,
        root=cr.root(),
        checkpoints=cps.count,
        origin=cps.origin,
        key_id=key.key_id,
        latest=cps.latest,
    )
