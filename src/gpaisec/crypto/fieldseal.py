"""Sealing short secrets kept in database fields (AES-256-GCM under a workspace key).

A sealed value is text, so it fits a ``String`` column on every backend::

    v1:<base64(nonce (12 bytes) || ciphertext || GCM tag (16 bytes))>

The caller supplies associated data that names where the value belongs (its table, column and
row); the value opens only with the same key *and* the same associated data, so a value copied to
another row, or into another workspace (another key), does not open. A wrong key, an altered value,
a malformed value or an unknown version raise :class:`FieldSealError`, whose message never holds
the value or the plaintext.

The key is 32 random bytes kept in a key file (mode 0600, written whole or not at all: temporary
file, fsync, then a hard link that only one concurrent writer can win)::

    {"format": "gpaisec-field-key-v1", "key": "<base64 of the 32 bytes>"}

or, where a key provider (HSM, TPM or passphrase key file) holds a key-encryption key for it, only
wrapped by that key::

    {"format": "gpaisec-field-key-v1",
     "wrapped": {"key_id": ..., "version": .., "algorithm": ..., "blob": "<base64>"}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gpaisec._files import read_private_file, write_atomically
from gpaisec.crypto.keys import DATA_KEY_BYTES, WrappedKey
from gpaisec.errors import ConfigError, IntegrityError

__all__ = [
    "KEY_FORMAT",
    "VERSION",
    "FieldKey",
    "FieldSealError",
    "SealedValue",
    "create_key_file",
    "has_version",
    "is_wrapped",
    "parse",
    "read_key_file",
    "rewrite_wrapped",
    "seal",
    "unseal",
]

VERSION: Final = "v1"
KEY_FORMAT: Final = "gpaisec-field-key-v1"
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
MAX_VALUE_CHARS: Final = 4096
_VERSION_PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")


class FieldSealError(IntegrityError):
    """A sealed field does not open: wrong key, altered or malformed value, or an unknown version."""

    title = "sealed value does not open"


@dataclass(frozen=True)
class FieldKey:
    """A 32-byte AES-256-GCM key; ``key_id`` names it (a hash, not the key) in errors and audit."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != DATA_KEY_BYTES:
            raise ConfigError(f"a field key is {DATA_KEY_BYTES} bytes, not {len(self.material)}")

    @classmethod
    def generate(cls) -> FieldKey:
        return cls(os.urandom(DATA_KEY_BYTES))

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"gpaisec-field-key-id\x00" + self.material).hexdigest()[:16]


@dataclass(frozen=True)
class SealedValue:
    """A parsed sealed value (no key needed to parse)."""

    version: str
    nonce: bytes
    ciphertext: bytes  # with the GCM tag at its end


def has_version(value: str) -> bool:
    """True if ``value`` carries a version prefix (``<version>:``), i.e. is meant to be sealed.

    Base32 and hex plaintexts never hold a ``:``, so a caller can tell them from sealed values.
    """
    return ":" in value


def parse(value: str) -> SealedValue:
    """Split a sealed value; :class:`FieldSealError` if it is not one of a version this code knows."""
    if len(value) > MAX_VALUE_CHARS:
        raise FieldSealError("the sealed value is too long")
    version, sep, body = value.partition(":")
    if not sep:
        raise FieldSealError("the value has no version prefix: it is not sealed")
    if version != VERSION:
        shown = repr(version) if _VERSION_PREFIX.fullmatch(version) else "(unreadable)"
        raise FieldSealError(
            f"the sealed value has format version {shown}, which this gpaisec does not know "
            f"(it reads {VERSION})"
        )
    try:
        raw = base64.b64decode(body.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise FieldSealError("the sealed value is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != body:  # one spelling only: any change is refused
        raise FieldSealError("the sealed value is not valid base64")
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise FieldSealError("the sealed value is truncated")
    return SealedValue(version, raw[:NONCE_BYTES], raw[NONCE_BYTES:])


def seal(key: FieldKey, plaintext: bytes, associated_data: bytes) -> str:
    """Encrypt ``plaintext`` bound to ``associated_data``; a fresh random nonce each time."""
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key.material).encrypt(nonce, plaintext, associated_data)
    return f"{VERSION}:" + base64.b64encode(nonce + ct).decode("ascii")


def unseal(key: FieldKey, value: str, associated_data: bytes) -> bytes:
    """The plaintext of ``value``, or :class:`FieldSealError` (never unauthenticated bytes)."""
    # Step 1: the format and its version.
    sealed = parse(value)
    # Step 2: authenticated decryption under this key and this row's associated data.
    try:
        return AESGCM(key.material).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
    except InvalidTag:
        raise FieldSealError(
            f"the sealed value does not open under key {key.key_id}: another workspace's key, "
            "a value copied from another row, or an altered value"
        ) from None


# --- key files ------------------------------------------------------------------------------------

Wrap = Callable[[bytes], WrappedKey]
Unwrap = Callable[[WrappedKey], bytes]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _encode(key: FieldKey, wrap: Wrap | None) -> bytes:
    if wrap is None:
        doc: dict[str, object] = {"format": KEY_FORMAT, "key": _b64(key.material)}
    else:
        w = wrap(key.material)
        doc = {
            "format": KEY_FORMAT,
            "wrapped": {
                "key_id": w.key_id,
                "version": w.version,
                "algorithm": w.algorithm,
                "blob": _b64(w.blob),
            },
        }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def rewrite_wrapped(path: Path, key: FieldKey, wrap: Wrap) -> None:
    """Replace the plain key file at ``path`` by one holding the same key wrapped (atomic, 0600)."""
    write_atomically(path, _encode(key, wrap), what="the wrapped key", mode=0o600)


def is_wrapped(path: Path) -> bool:
    """True if the key file at ``path`` holds its key only wrapped by a key provider."""
    return "wrapped" in _read_doc(path)


def _read_doc(path: Path) -> dict[str, object]:
    data = read_private_file(
        path,
        "the key file",
        unreadable_hint="it must be a regular file (not a link) owned by the workspace's user",
        limit=64 * 1024,
    )
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
        raise ConfigError(
            f"the key file {path} is not a {KEY_FORMAT} key file", hint="restore it from backup"
        )
    return doc


def read_key_file(path: Path, *, unwrap: Unwrap | None = None) -> FieldKey | None:
    """The key in ``path``; None if there is no such file. A wrapped key needs ``unwrap``."""
    if not path.exists() and not path.is_symlink():
        return None
    doc = _read_doc(path)
    try:
        if "wrapped" in doc:
            w = doc["wrapped"]
            assert isinstance(w, dict)
            wrapped = WrappedKey(
                str(w["key_id"]), int(w["version"]), str(w["algorithm"]), base64.b64decode(w["blob"])
            )
        else:
            return FieldKey(base64.b64decode(str(doc["key"]), validate=True))
    except (KeyError, TypeError, ValueError, AssertionError, binascii.Error):
        raise ConfigError(f"the key file {path} is malformed", hint="restore it from backup") from None
    if unwrap is None:
        raise ConfigError(
            f"the key in {path} is wrapped by key {wrapped.key_id!r} of a key provider, "
            "which this process has not opened",
            hint="open the workspace's key provider first (GPAISEC_KEK_PASSPHRASE or GPAISEC_PKCS11_PIN)",
        )
    return FieldKey(unwrap(wrapped))


def create_key_file(path: Path, *, wrap: Wrap | None = None, unwrap: Unwrap | None = None) -> FieldKey:
    """Create a key in ``path`` (0600, in a 0700 directory) unless one exists; return the key the
    file holds afterwards (another process may have won the race: its key is returned).

    Written whole or not at all, and only if ``path`` does not exist (exclusive
    :func:`gpaisec._files.write_atomically`: of two writers exactly one wins).
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the keys directory {directory}: {exc.strerror}") from None
    key = FieldKey.generate()
    won = write_atomically(
        path, _encode(key, wrap), what="the key file", mode=0o600, exclusive=True, error=ConfigError
    )
    if won:
        return key
    key_now = read_key_file(path, unwrap=unwrap)
    assert key_now is not None  # the link failed because the file exists
    return key_now
