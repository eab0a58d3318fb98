"""Content-addressed document storage in the workspace: hash while copying, fsync, rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpaisec.errors import InputError

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredDocument:
    sha256: str
    size: int
    stored_as: str  # path relative to the workspace


def store_document(home: Path, source: Path) -> StoredDocument:
    """Copy ``source`` into ``home/documents`` under its SHA-256; the copy appears whole or not at all."""
    try:
        src = source.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}", hint="give a readable file") from None
    target_dir = home / "documents"
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".incoming-")
    try:
        with src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        rel = Path("documents") / digest[:2] / digest
        final = home / rel
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(tmp, final)
        os.chmod(final, 0o400)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StoredDocument(sha256=digest, size=size, stored_as=str(rel))
