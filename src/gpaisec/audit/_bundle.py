"""Proof files: an inclusion or consistency proof with the signed checkpoints it rests on. Pure.

An inclusion proof file is self-contained: the entry's exact bytes, its position, the audit path and
the signed checkpoint. Anyone with the log's public key checks it with
``gpaisec audit check-proof FILE --public-key K`` or ``python -m gpaisec.audit.offline --proof FILE
--public-key K``; no database is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpaisec.audit._entry import Entry, EntryError, parse_entry
from gpaisec.audit._keys import PublicKey
from gpaisec.audit._note import Checkpoint, open_checkpoint
from gpaisec.audit.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, verify_consistency, verify_inclusion
from gpaisec.errors import AuditIntegrityError, InputError

__all__ = [
    "CONSISTENCY_FORMAT",
    "EXPORT_FILES",
    "EXPORT_FORMAT",
    "MANIFEST_CONTEXT",
    "INCLUSION_FORMAT",
    "ConsistencyProof",
    "InclusionProof",
    "check_consistency",
    "check_inclusion",
    "load_proof",
]

EXPORT_FORMAT = "gpaisec-audit-export/1"
EXPORT_FILES = ("entries.jsonl", "leaf-hashes.txt", "checkpoints.jsonl", "public-key.pem")
MANIFEST_CONTEXT = b"gpaisec audit export manifest v1\n"
"""Prefix of the signed bytes of manifest.json, so the signature means nothing as a checkpoint."""
INCLUSION_FORMAT = "gpaisec-audit-inclusion-proof/1"
CONSISTENCY_FORMAT = "gpaisec-audit-consistency-proof/1"


@dataclass(frozen=True)
class InclusionProof:
    origin: str
    seq: int
    tree_size: int
    entry: bytes
    proof: tuple[bytes, ...]
    checkpoint: str
    key_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INCLUSION_FORMAT,
            "origin": self.origin,
            "seq": self.seq,
            "tree_size": self.tree_size,
            "entry": self.entry.decode("utf-8"),
            "leaf_hash": leaf_hash(self.entry).hex(),
            "proof": [h.hex() for h in self.proof],
            "checkpoint": self.checkpoint,
            "key_id": self.key_id,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    origin: str
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: tuple[bytes, ...]
    old_checkpoint: str | None
    new_checkpoint: str
    key_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONSISTENCY_FORMAT,
            "origin": self.origin,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "proof": [h.hex() for h in self.proof],
            "old_checkpoint": self.old_checkpoint,
            "new_checkpoint": self.new_checkpoint,
            "key_id": self.key_id,
        }


def load_proof(text: str | bytes, *, source: str = "proof") -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(f"{source} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") not in (INCLUSION_FORMAT, CONSISTENCY_FORMAT):
        raise InputError(f"{source} is not a gpaisec audit proof (no known 'format')")
    return data


def _field(data: dict[str, Any], name: str, kind: type, source: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AuditIntegrityError(f"{source}: field {name!r} is missing or not a {kind.__name__}")
    return value


def _hashes(data: dict[str, Any], name: str, source: str) -> list[bytes]:
    items = _field(data, name, list, source)
    out = []
    for item in items:
        try:
            h = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            h = b""
        if len(h) != HASH_SIZE:
            raise AuditIntegrityError(f"{source}: {name} holds something that is not a 32-byte hex hash")
        out.append(h)
    return out


def check_inclusion(
    data: dict[str, Any], key: PublicKey, *, source: str = "proof"
) -> tuple[Entry, Checkpoint]:
    """Check an inclusion proof file. Raises AuditIntegrityError; returns the entry and its checkpoint.

    1. The checkpoint is signed by ``key`` (the key the verifier trusts, not one the file names).
    2. The checkpoint's size is the proof's tree size.
    3. The entry's bytes are a canonical entry whose seq is the proof's seq.
    4. The audit path leads from the entry's leaf hash to the checkpoint's root.
    """
    if data.get("format") != INCLUSION_FORMAT:
        raise InputError(f"{source} is not an inclusion proof")
    # 1. Signed checkpoint.
    ckpt = open_checkpoint(_field(data, "checkpoint", str, source), key, where=f"{source}: checkpoint")
    # 2. Sizes agree.
    size = _field(data, "tree_size", int, source)
    if ckpt.size != size:
        raise AuditIntegrityError(f"{source}: the checkpoint signs size {ckpt.size}, the proof says {size}")
    # 3. The entry.
    seq = _field(data, "seq", int, source)
    raw = _field(data, "entry", str, source).encode("utf-8")
    try:
        entry = parse_entry(raw)
    except EntryError as exc:
        raise AuditIntegrityError(f"{source}: entry {seq}: {exc}", first_bad=seq) from None
    if entry.seq != seq:
        raise AuditIntegrityError(
            f"{source}: the entry says it is entry {entry.seq}, not {seq}", first_bad=seq
        )
    leaf = leaf_hash(raw)
    claimed = data.get("leaf_hash")
    if claimed is not None and claimed != leaf.hex():
        raise AuditIntegrityError(f"{source}: entry {seq}: leaf_hash does not match the entry", first_bad=seq)
    # 4. The audit path.
    try:
        verify_inclusion(leaf, seq, size, _hashes(data, "proof", source), ckpt.root)
    except AuditIntegrityError as exc:
        raise AuditIntegrityError(f"{source}: entry {seq}: {exc.message}", first_bad=seq) from None
    return entry, ckpt


def check_consistency(
    data: dict[str, Any], key: PublicKey, *, source: str = "proof"
) -> tuple[Checkpoint | None, Checkpoint]:
    """Check a consistency proof file: both checkpoints signed by ``key``, and the proof joins them."""
    if data.get("format") != CONSISTENCY_FORMAT:
        raise InputError(f"{source} is not a consistency proof")
    old_size = _field(data, "old_size", int, source)
    new = open_checkpoint(_field(data, "new_checkpoint", str, source), key, where=f"{source}: new checkpoint")
    old: Checkpoint | None = None
    if old_size == 0:
        old_root = EMPTY_ROOT
    else:
        old = open_checkpoint(
            _field(data, "old_checkpoint", str, source),
            key,
            origin=new.origin,
            where=f"{source}: old checkpoint",
        )
        old_root = old.root
        if old.size != old_size:
            raise AuditIntegrityError(f"{source}: the old checkpoint signs size {old.size}, not {old_size}")
    if new.size != _field(data, "new_size", int, source):
        raise AuditIntegrityError(f"{source}: the new checkpoint's size differs from new_size")
    verify_consistency(old_size, new.size, old_root, new.root, _hashes(data, "proof", source))
    return old, new
