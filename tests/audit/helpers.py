"""Shared helpers for the audit tests."""

from __future__ import annotations

from collections.abc import Sequence

from gpaisec.audit.service import AuditEvent, record, record_many
from gpaisec.workspace import Workspace


def build_log(ws: Workspace, batches: Sequence[int], *, bulk: bool = False) -> list[int]:
    """Append ``sum(batches)`` entries, one transaction (and so one checkpoint) per batch."""
    seqs: list[int] = []
    n = 0
    for size in batches:
        with ws.transaction() as s:
            if bulk:
                events = [
                    AuditEvent(
                        actor=f"test:user{(n + i) % 3}",
                        action="thing.touch",
                        object=f"thing:{n + i}",
                        details={"i": n + i, "note": "é✓"},
                    )
                    for i in range(size)
                ]
                seqs.extend(record_many(s, events))
            else:
                for i in range(size):
                    seqs.append(
                        record(
                            s,
                            actor=f"test:user{(n + i) % 3}",
                            action="thing.touch",
                            object=f"thing:{n + i}",
                            details={"i": n + i, "note": "é✓"},
                        )
                    )
        n += size
    return seqs


def checkpoint_starts(batches: Sequence[int]) -> list[int]:
    """The first entry of each batch (entries after the previous checkpoint)."""
    out, n = [], 0
    for size in batches:
        out.append(n)
        n += size
    return out


def batch_start(batches: Sequence[int], seq: int) -> int:
    return max(s for s in checkpoint_starts(batches) if s <= seq)
