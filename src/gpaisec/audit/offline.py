"""The auditor's verifier: checks an audit export, or a proof file, with no database.

Needs only the Python standard library and ``cryptography`` (no SQLAlchemy is imported)::

    python -m gpaisec.audit.offline EXPORT_DIR [--public-key KEY]
    python -m gpaisec.audit.offline --proof proof.json --public-key KEY

Verifying an export (the same rules as ``gpaisec audit verify``, see :mod:`gpaisec.audit._verifier`):

1. Take the public key: ``--public-key`` if given (pin the key the provider published; recommended),
   else the export's ``public-key.pem``. ``manifest.json`` must be signed by it (``manifest.sig``) and
   name its key id.
2. Read ``checkpoints.jsonl``; each checkpoint's signature is checked when the entries reach its size.
3. Read ``entries.jsonl`` line by line (line N is entry N-1) with ``leaf-hashes.txt`` beside it:
   canonical JSON, own position, leaf hash, and at each checkpoint the recomputed root.
4. The manifest's size, root and file digests match what was read.

Any failure is one line naming the first bad entry (and its line), with a non-zero exit status (4).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gpaisec.audit._bundle import (
    CONSISTENCY_FORMAT,
    EXPORT_FILES,
    EXPORT_FORMAT,
    MANIFEST_CONTEXT,
    check_consistency,
    check_inclusion,
    load_proof,
)
from gpaisec.audit._keys import PublicKey, load_public_key, parse_public_key
from gpaisec.audit._verifier import StoredCheckpoint, StoredEntry, VerifyResult, verify_log
from gpaisec.errors import AuditIntegrityError, GpaisecError, InputError

__all__ = ["ExportCheck", "main", "verify_export", "verify_proof_file"]


@dataclass(frozen=True)
class ExportCheck:
    path: Path
    result: VerifyResult

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "export": str(self.path),
            "verified": True,
            "tree_size": r.tree_size,
            "root": r.root.hex(),
            "checkpoints": r.checkpoints,
            "origin": r.origin,
            "key_id": r.key_id,
            "latest_checkpoint_time": r.latest.time.isoformat().replace("+00:00", "Z") if r.latest else None,
        }


def _bad(directory: Path, message: str, first_bad: int | None = None) -> AuditIntegrityError:
    return AuditIntegrityError(f"export {directory}: {message}", first_bad=first_bad)


def _read(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except FileNotFoundError:
        raise _bad(directory, f"{name} is missing (is this an audit export?)") from None
    except OSError as exc:
        raise _bad(directory, f"cannot read {name}: {exc.strerror}") from None


def _read_manifest(directory: Path, key: PublicKey, which: str) -> dict[str, Any]:
    data = _read(directory, "manifest.json")
    sig_text = _read(directory, "manifest.sig")
    try:
        sig = base64.b64decode(sig_text.strip(), validate=True)
        if base64.b64encode(sig) + b"\n" != sig_text:  # exactly as written: canonical, one newline
            sig = b""
    except ValueError:
        sig = b""
    if len(sig) != 64 or not key.signature_ok(sig, MANIFEST_CONTEXT + data):
        raise _bad(directory, f"manifest.json is not signed by {which} ({key.key_id[:16]}…)")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise _bad(directory, "manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise _bad(directory, f"manifest.json is not a {EXPORT_FORMAT} manifest")
    if manifest.get("key_id") != key.key_id:
        raise _bad(directory, f"the manifest names key {str(manifest.get('key_id'))[:16]}…, not {which}")
    return manifest


def _open(directory: Path, name: str) -> IO[bytes]:
    try:
        return open(directory / name, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise _bad(directory, f"{name} is missing") from None
    except OSError as exc:
        raise _bad(directory, f"cannot read {name}: {exc.strerror}") from None


def _entries(directory: Path, entries: IO[bytes], leaves: IO[bytes]) -> Iterator[StoredEntry]:
    seq = 0
    for line in entries:
        where = f"entries.jsonl line {seq + 1}"
        if not line.endswith(b"\n"):
            raise AuditIntegrityError(
                f"export {directory}: entry {seq} ({where}): truncated (the file ends inside the line)",
                first_bad=seq,
            )
        leaf_line = leaves.readline()
        if not leaf_line.endswith(b"\n"):
            raise _bad(directory, f"entry {seq}: leaf-hashes.txt ends before line {seq + 1}", seq)
        try:
            leaf = bytes.fromhex(leaf_line[:-1].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            leaf = b""
        if len(leaf) != 32:
            raise _bad(
                directory, f"entry {seq}: leaf-hashes.txt line {seq + 1} is not a 32-byte hex hash", seq
            )
        yield StoredEntry(line[:-1], None, leaf, None, where)
        seq += 1
    if leaves.readline():
        raise _bad(directory, f"leaf-hashes.txt has more lines than entries.jsonl ({seq})", seq)


def _checkpoints(directory: Path, f: IO[bytes]) -> Iterator[StoredCheckpoint]:
    for n, line in enumerate(f, start=1):
        where = f"checkpoints.jsonl line {n}"
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if (
            not line.endswith(b"\n")
            or not isinstance(item, dict)
            or not isinstance(item.get("note"), str)
            or not isinstance(item.get("size"), int)
        ):
            raise _bad(directory, f"{where} is not a checkpoint record (truncated or corrupt)")
        yield StoredCheckpoint(item["note"], item["size"], None, where=where)


def _digest(directory: Path, name: str) -> str:
    h = hashlib.sha256()
    with _open(directory, name) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_export(directory: Path | str, *, public_key: PublicKey | None = None) -> ExportCheck:
    """Verify an export directory; raise AuditIntegrityError (or InputError) on the first problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", hint="give the directory that audit export wrote")
    # 1. Key, then the manifest signed by it.
    if public_key is not None:
        key, which = public_key, "the pinned key"
    else:
        try:
            key = parse_public_key(_read(directory, "public-key.pem"), source="public-key.pem")
        except InputError as exc:
            raise _bad(directory, exc.message) from None
        which = "public-key.pem"
    manifest = _read_manifest(directory, key, which)
    # 2. and 3. Entries, leaf hashes and checkpoints, in one pass.
    with (
        _open(directory, "entries.jsonl") as ef,
        _open(directory, "leaf-hashes.txt") as lf,
        _open(directory, "checkpoints.jsonl") as cf,
    ):
        try:
            result = verify_log(
                _entries(directory, ef, lf),
                _checkpoints(directory, cf),
                key=key,
                origin=manifest.get("origin"),
            )
        except AuditIntegrityError as exc:
            if exc.message.startswith("export "):
                raise
            raise AuditIntegrityError(f"export {directory}: {exc.message}", first_bad=exc.first_bad) from None
    # 4. The manifest agrees.
    if manifest.get("tree_size") != result.tree_size:
        raise _bad(
            directory,
            f"the manifest records {manifest.get('tree_size')} entries, the export holds {result.tree_size}",
            min(result.tree_size, manifest["tree_size"])
            if isinstance(manifest.get("tree_size"), int)
            else None,
        )
    if manifest.get("root") != result.root.hex():
        raise _bad(directory, "the manifest's root differs from the recomputed root")
    if manifest.get("checkpoints") != result.checkpoints or manifest.get("origin") != result.origin:
        raise _bad(directory, "the manifest's checkpoint count or origin differs from the export")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _bad(directory, "the manifest lists no files")
    for name in EXPORT_FILES:
        info = files.get(name)
        if not isinstance(info, dict) or info.get("sha256") != _digest(directory, name):
            raise _bad(directory, f"{name} does not match the SHA-256 in the manifest")
    return ExportCheck(directory, result)


def verify_proof_file(path: Path | str, public_key: PublicKey) -> dict[str, Any]:
    """Check an inclusion or consistency proof file with the trusted ``public_key``; return a summary."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    data = load_proof(text, source=str(path))
    if data["format"] == CONSISTENCY_FORMAT:
        old, new = check_consistency(data, public_key, source=str(path))
        return {
            "proof": str(path),
            "verified": True,
            "kind": "consistency",
            "old_size": old.size if old else 0,
            "new_size": new.size,
            "new_root": new.root.hex(),
            "origin": new.origin,
            "key_id": public_key.key_id,
        }
    entry, ckpt = check_inclusion(data, public_key, source=str(path))
    return {
        "proof": str(path),
        "verified": True,
        "kind": "inclusion",
        "seq": entry.seq,
        "tree_size": ckpt.size,
        "root": ckpt.root.hex(),
        "checkpoint_time": ckpt.time.isoformat().replace("+00:00", "Z"),
        "origin": ckpt.origin,
        "key_id": public_key.key_id,
        "entry": {
            "time": entry.time.isoformat().replace("+00:00", "Z"),
            "actor": entry.actor,
            "action": entry.action,
            "object": entry.object,
            "details": entry.details,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpaisec.audit.offline",
        description="Verify a gpaisec audit export, or a proof file, without a database.",
    )
    parser.add_argument("export", nargs="?", type=Path, help="directory written by 'gpaisec audit export'")
    parser.add_argument("--proof", type=Path, help="an inclusion or consistency proof file instead")
    parser.add_argument(
        "--public-key", type=Path, help="the log's published public key (PEM, base64 or vkey)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if (args.export is None) == (args.proof is None):
        parser.error("give an export directory or --proof FILE")
    try:
        key = load_public_key(args.public_key) if args.public_key else None
        if args.proof is not None:
            if key is None:
                raise InputError(
                    "checking a proof needs --public-key", hint="use the key the provider published"
                )
            summary = verify_proof_file(args.proof, key)
            line = f"OK: {args.proof}: {summary['kind']} proof verifies against the signed checkpoint"
        else:
            check = verify_export(args.export, public_key=key)
            summary = check.to_json()
            r = check.result
            line = (
                f"OK: {args.export}: {r.tree_size} entries, {r.checkpoints} signed checkpoints, "
                f"root {r.root.hex()}, key {r.key_id}"
            )
            if key is None:
                line += " (key taken from the export: compare it with the published key id)"
    except GpaisecError as exc:
        sys.stderr.write(f"error: {exc.diagnostics()}\n")
        return exc.exit_code
    if args.format == "json":
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
