"""Signed checkpoints in the C2SP tlog-checkpoint / signed-note text format.

A checkpoint commits to the first ``size`` entries of the log::

    gpaisec.local/audit/3f9c1a2b7d4e5f60          origin: names this log
    1042                                          tree size, decimal
    3jCRaR3c8Fq9...=                              root hash, standard base64
    time 2026-11-27T14:53:05.123456Z              extension line: when it was signed
                                                  (blank line)
    — gpaisec.local/audit/3f9c1a2b7d4e5f60 AbCd...   signature line

The signature line is an em dash, the key name (the origin), and base64 of the 4-byte key hash
``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` followed by the 64-byte Ed25519 signature over the
text above the blank line (each line ending in a newline). Tools that read signed notes can check it
with the verifier key ``name+hash+base64(0x01 || public key)`` (see :func:`vkey`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from gpaisec.audit._entry import EntryError, format_time, parse_time
from gpaisec.audit._keys import PublicKey, Signer
from gpaisec.errors import AuditIntegrityError

__all__ = ["Checkpoint", "note_key_hash", "open_checkpoint", "sign_checkpoint", "vkey"]

ED25519_ALG = b"\x01"
DASH = "\u2014"
ORIGIN_RE = re.compile(r"[\x21-\x7e]+")
SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified (or freshly signed) checkpoint."""

    origin: str
    size: int
    root: bytes
    time: dt.datetime
    key_id: str
    note: str


def note_key_hash(name: str, public: PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + public.raw).digest()[:4]


def vkey(name: str, public: PublicKey) -> str:
    """The signed-note verifier key string for ``public`` under ``name``."""
    enc = base64.b64encode(ED25519_ALG + public.raw).decode()
    return f"{name}+{note_key_hash(name, public).hex()}+{enc}"


def _body(origin: str, size: int, root: bytes, time: dt.datetime) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {format_time(time)}\n"


def sign_checkpoint(origin: str, size: int, root: bytes, time: dt.datetime, signer: Signer) -> Checkpoint:
    if not ORIGIN_RE.fullmatch(origin) or "+" in origin:
        raise ValueError(f"origin {origin!r} must be printable ASCII without spaces or '+'")
    body = _body(origin, size, root, time)
    public = signer.public_key
    sig = signer.sign(body.encode())
    line = f"{DASH} {origin} {base64.b64encode(note_key_hash(origin, public) + sig).decode()}\n"
    return Checkpoint(origin, size, root, time, public.key_id, f"{body}\n{line}")


def open_checkpoint(
    note: str, trusted: PublicKey, *, origin: str | None = None, where: str = "checkpoint"
) -> Checkpoint:
    """Parse a signed checkpoint and check its signature with the trusted key. Raises AuditIntegrityError.

    1. Split the note into text and signature lines at the last blank line.
    2. Parse the text: origin (and that it is the expected one), size, root, time.
    3. Find the signature line made by the trusted key (key name and key hash).
    4. Check the Ed25519 signature over the text.
    """

    def bad(reason: str) -> AuditIntegrityError:
        return AuditIntegrityError(f"{where}: {reason}")

    # 1. Text, blank line, signature lines.
    if not note.endswith("\n"):
        raise bad("the signed note does not end with a newline")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs:
        raise bad("the signed note has no signature lines")
    text += "\n"
    # 2. The checkpoint body.
    lines = text.split("\n")[:-1]
    if len(lines) != 4:
        raise bad(f"expected 4 lines of text (origin, size, root, time), found {len(lines)}")
    name, size_text, root_text, time_line = lines
    if not ORIGIN_RE.fullmatch(name):
        raise bad("the origin line is not printable ASCII")
    if origin is not None and name != origin:
        raise bad(f"origin {name!r} is not this log's origin {origin!r}")
    if not SIZE_RE.fullmatch(size_text):
        raise bad(f"size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:
        raise bad("the root hash is not base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_text:
        raise bad("the root hash is not 32 bytes of canonical base64")
    if not time_line.startswith("time "):
        raise bad("the fourth line is not 'time RFC3339'")
    try:
        time = parse_time(time_line[5:])
    except EntryError as exc:
        raise bad(str(exc)) from None
    # 3. The trusted key's signature line.
    want_hash = note_key_hash(name, trusted)
    signature: bytes | None = None
    for sig_line in sigs[:-1].split("\n"):
        parts = sig_line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise bad(f"malformed signature line {sig_line[:40]!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise bad("a signature is not base64") from None
        # Canonical base64 only: otherwise the unused low bits of the last character could be
        # changed without changing the signature, and the note would not be byte-for-byte unique.
        if base64.b64encode(blob).decode() != parts[2]:
            raise bad("a signature is not canonical base64")
        if parts[1] == name and blob[:4] == want_hash:
            if len(blob) != 68:
                raise bad("the signature has the wrong length")
            signature = blob[4:]
    if signature is None:
        raise bad(f"not signed by the trusted key {trusted.key_id[:16]}…")
    # 4. The signature itself.
    if not trusted.signature_ok(signature, text.encode()):
        raise bad(f"the signature does not verify with key {trusted.key_id[:16]}…")
    return Checkpoint(name, int(size_text), root, time, trusted.key_id, note)
