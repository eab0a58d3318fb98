"""The tamper-evident audit log: an append-only RFC 6962/9162 Merkle tree with signed checkpoints.

Every security-relevant state change writes one entry, in the same transaction as the change::

    from gpaisec.audit.service import record

    with ws.transaction() as s:
        ...                                   # the state change
        record(s, actor=ws.actor, action="device.add", object="device:gpu-7", details={"site": "fra1"})

How it holds together: hash, sign, verify.

1. **Hash.** Each entry is one canonical JSON object (actor, action, object, time, details, seq); its
   leaf hash is SHA-256(0x00 || bytes), interior nodes SHA-256(0x01 || left || right) (RFC 9162).
2. **Sign.** Each transaction that recorded entries writes, before it commits, one Ed25519-signed
   checkpoint (C2SP signed-note text: origin, tree size, root, time) over the whole log so far.
3. **Verify.** :func:`~gpaisec.audit.service.verify` recomputes every leaf and every checkpoint's root
   from the entries and names the first entry that does not verify; inclusion and consistency
   proofs come from stored subtree hashes; :mod:`gpaisec.audit.offline` checks an export or a proof
   file with nothing but the standard library and ``cryptography``.

Public modules: :mod:`~gpaisec.audit.merkle` (pure tree maths), :mod:`~gpaisec.audit.service`
(operations, needs the database), :mod:`~gpaisec.audit.offline` (the auditor's verifier). The
service functions are also importable from here; importing this package loads no database code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpaisec.audit.service import (
        AuditEvent,
        consistency,
        export,
        log,
        prove,
        record,
        record_many,
        seal,
        verify,
    )

__all__ = [
    "AuditEvent",
    "consistency",
    "export",
    "log",
    "prove",
    "record",
    "record_many",
    "seal",
    "verify",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that gpaisec.audit.offline and gpaisec.audit.merkle never import SQLAlchemy.
    if name in __all__:
        from gpaisec.audit import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
