"""The checkpoint signing key: Ed25519, kept in the workspace's keys directory.

``KEYS_DIR/audit-ed25519.pem`` holds the private key (PKCS#8 PEM, mode 0600, directory 0700), created
on first use; ``audit-ed25519.pub.pem`` beside it holds the public key. A key file that others can read,
that is not a regular file, or that does not parse is refused with a hint: the log is only as
trustworthy as this key.

The key id is the lower-case hex SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gpaisec._files import read_private_file, write_atomically
from gpaisec.errors import ConfigError, InputError

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "LocalSigner",
    "PublicKey",
    "Signer",
    "key_id",
    "load_or_create_signer",
    "load_signer",
    "parse_public_key",
    "load_public_key",
]

PRIVATE_KEY_FILE = "audit-ed25519.pem"
PUBLIC_KEY_FILE = "audit-ed25519.pub.pem"


def key_id(public_raw: bytes) -> str:
    """Lower-case hex SHA-256 of the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key that verifies checkpoints."""

    raw: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def signature_ok(self, signature: bytes, data: bytes) -> bool:
        # Internal: the one caller (_note.open_checkpoint) raises at once on False.
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Signer(Protocol):
    """What signs checkpoints: a local key file today; an HSM or TPM key later."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


class LocalSigner:
    """An Ed25519 private key held in memory."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._public = PublicKey(raw)

    @classmethod
    def generate(cls) -> LocalSigner:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _check_dir(keys_dir: Path) -> None:
    try:
        st = keys_dir.lstat()
    except FileNotFoundError:
        try:
            keys_dir.mkdir(parents=True, mode=0o700)
            os.chmod(keys_dir, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(
                f"cannot create the keys directory {keys_dir}: {exc.strerror}",
                hint="check the workspace's permissions",
            ) from None
        st = keys_dir.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"the keys path {keys_dir} is not a directory", hint="move it away; it is created anew"
        )
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the keys directory {keys_dir} is open to other users (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 700 {keys_dir}",
        )


def _read_private(path: Path) -> LocalSigner:
    data = read_private_file(
        path,
        "the audit signing key",
        unreadable_hint="run gpaisec as the workspace's owner and check the file's permissions",
    )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"the audit signing key {path} is not an unencrypted PEM private key",
            hint="restore the key file from backup",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"the audit signing key {path} is not an Ed25519 key", hint="restore it from backup"
        )
    return LocalSigner(key)


def load_signer(keys_dir: Path) -> LocalSigner | None:
    """The workspace's signing key, or None if there is none yet (nothing is created)."""
    path = keys_dir / PRIVATE_KEY_FILE
    if not keys_dir.exists() and not keys_dir.is_symlink():
        return None
    _check_dir(keys_dir)
    if not path.exists() and not path.is_symlink():
        return None
    return _read_private(path)


def load_or_create_signer(keys_dir: Path) -> LocalSigner:
    """The workspace's signing key, created (0600, in a 0700 directory) the first time it is needed."""
    _check_dir(keys_dir)
    path = keys_dir / PRIVATE_KEY_FILE
    if not path.exists() and not path.is_symlink():
        signer = LocalSigner.generate()
        # Two processes may race here; an exclusive write lets exactly one win, the other reads its key.
        write_atomically(
            path,
            signer.private_pem(),
            what="the audit signing key",
            mode=0o600,
            exclusive=True,
            error=ConfigError,
        )
    signer = _read_private(path)
    pub_path = keys_dir / PUBLIC_KEY_FILE
    if not pub_path.exists():
        write_atomically(
            pub_path,
            signer.public_key.pem(),
            what="the audit public key",
            mode=0o644,
            exclusive=True,
            error=ConfigError,
        )
    return signer


def parse_public_key(data: bytes, *, source: str) -> PublicKey:
    """An Ed25519 public key from PEM, from base64 of the raw 32 bytes, or from a signed-note vkey."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, UnsupportedAlgorithm):
            raise InputError(f"{source} is not a PEM Ed25519 public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"{source} is not an Ed25519 public key")
        return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    parts = text.split(b"+", 2)  # a vkey is name+hash+base64(0x01 || key); base64 itself may hold '+'
    is_vkey = len(parts) == 3 and re.fullmatch(rb"[0-9a-f]{8}", parts[1]) is not None
    try:
        raw = base64.b64decode(parts[2] if is_vkey else text, validate=True)
    except ValueError:
        raise InputError(f"{source} is neither PEM nor base64 nor a vkey") from None
    if is_vkey:
        if len(raw) != 33 or raw[0] != 1:
            raise InputError(f"{source} is not an Ed25519 signed-note verifier key")
        raw = raw[1:]
    if len(raw) != 32:
        raise InputError(f"{source} does not hold a 32-byte Ed25519 public key")
    return PublicKey(raw)


def load_public_key(path: Path) -> PublicKey:
    """Read a public key file (PEM, raw base64 or vkey)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the public key {path}: {exc.strerror}") from None
    return parse_public_key(data, source=str(path))
