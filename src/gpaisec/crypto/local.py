"""Local key provider: KEKs in a key file encrypted under a passphrase (argon2id), mode 0600.

For development and small deployments; the Code's measure (keys on a TPM or HSM) needs
:mod:`.hsm` or :mod:`.tpm`. One file per key id, ``<directory>/<key_id>.kek``, JSON::

    {"format": "gpaisec-kek-v1", "key_id": ..., "kdf": {"alg": "argon2id", "time_cost": ..,
     "memory_kib": .., "parallelism": .., "salt": b64}, "versions": {"1": {"kek": b64(nonce||ct),
     "created": iso}}}

Each KEK version is 32 random bytes, AES-256-GCM-encrypted under the argon2id key with associated
data ``key_id|version``. Data keys are wrapped with AES-256-GCM under the KEK (random nonce,
associated data ``gpaisec-dek|key_id|version``). The passphrase comes from a
:data:`~gpaisec.crypto.keys.SecretSource` (environment variable or prompt), never argv.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gpaisec.crypto.keys import (
    AuditHook,
    KeyUnavailableError,
    SecretSource,
    WrappedKey,
    check_data_key,
    check_key_id,
    emit,
)
from gpaisec.errors import ConfigError, ConflictError, InputError, IntegrityError

__all__ = ["ALGORITHM", "Argon2Params", "LocalKeyProvider", "WrongPassphraseError"]

ALGORITHM: Final = "local-aes-256-gcm"
_FORMAT: Final = "gpaisec-kek-v1"


class WrongPassphraseError(InputError):
    """The passphrase does not open the key file (or the key file was altered)."""

    title = "wrong passphrase"


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost; the defaults follow RFC 9106's second recommended option (64 MiB, t=3)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"), validate=True)


class LocalKeyProvider:
    """KEKs in passphrase-protected files under ``directory``."""

    kind = "local"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        passphrase: SecretSource,
        *,
        audit: AuditHook | None = None,
        params: Argon2Params | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._passphrase = passphrase
        self._audit = audit
        self._params = params or Argon2Params()
        self._cache: dict[str, tuple[bytes, dict[str, Any]]] = {}

    # -- key file ---------------------------------------------------------------------------
    def _path(self, key_id: str) -> Path:
        return self.directory / f"{check_key_id(key_id)}.kek"

    def _derive(self, kdf: dict[str, Any]) -> bytes:
        secret = self._passphrase()
        return hash_secret_raw(
            secret,
            _unb64(kdf["salt"]),
            time_cost=kdf["time_cost"],
            memory_cost=kdf["memory_kib"],
            parallelism=kdf["parallelism"],
            hash_len=32,
            type=Type.ID,
        )

    def _load(self, key_id: str) -> tuple[bytes, dict[str, Any]]:
        if key_id in self._cache:
            return self._cache[key_id]
        path = self._path(key_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise KeyUnavailableError(
                f"no local key {key_id!r} in {self.directory}", hint="create it with `gpaisec keys init`"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_mode & 0o077 or st.st_uid != os.getuid():
                raise ConfigError(
                    f"key file {path} is accessible to others (mode {stat.S_IMODE(st.st_mode):04o})",
                    hint=f"chmod 600 {path}",
                )
            try:
                doc = json.loads(fh.read())
                if doc.get("format") != _FORMAT or doc.get("key_id") != key_id:
                    raise ValueError("wrong format or key id")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConfigError(f"key file {path} is malformed: {exc}") from None
        kek_key = self._derive(doc["kdf"])
        self._cache[key_id] = (kek_key, doc)
        return kek_key, doc

    def _store(self, key_id: str, doc: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(key_id)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _kek(self, key_id: str, version: int) -> bytes:
        kek_key, doc = self._load(key_id)
        entry = doc["versions"].get(str(version))
        if entry is None:
            raise KeyUnavailableError(f"local key {key_id!r} has no version {version}")
        blob = _unb64(entry["kek"])
        try:
            return AESGCM(kek_key).decrypt(blob[:12], blob[12:], f"{key_id}|{version}".encode())
        except InvalidTag:
            self._cache.pop(key_id, None)
            raise WrongPassphraseError(
                f"the passphrase does not open key file {self._path(key_id)} (or the file was altered)"
            ) from None

    def _add_version(self, key_id: str, kek_key: bytes, doc: dict[str, Any]) -> int:
        version = max((int(v) for v in doc["versions"]), default=0) + 1
        nonce = os.urandom(12)
        ct = AESGCM(kek_key).encrypt(nonce, os.urandom(32), f"{key_id}|{version}".encode())
        doc["versions"][str(version)] = {
            "kek": _b64(nonce + ct),
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        self._store(key_id, doc)
        self._cache[key_id] = (kek_key, doc)
        return version

    # -- KeyProvider ------------------------------------------------------------------------
    def create(self, key_id: str) -> int:
        if self._path(key_id).exists():
            raise ConflictError(f"local key {key_id!r} already exists", hint="rotate it instead")
        emit(self._audit, "key.create", provider=self.kind, key_id=key_id, version=1)
        p = self._params
        kdf = {
            "alg": "argon2id",
            "time_cost": p.time_cost,
            "memory_kib": p.memory_kib,
            "parallelism": p.parallelism,
            "salt": _b64(os.urandom(16)),
        }
        doc: dict[str, Any] = {"format": _FORMAT, "key_id": key_id, "kdf": kdf, "versions": {}}
        return self._add_version(key_id, self._derive(kdf), doc)

    def rotate(self, key_id: str) -> int:
        kek_key, doc = self._load(key_id)
        self._kek(key_id, self.current_version(key_id))  # the passphrase must open the current version
        version = self.current_version(key_id) + 1
        emit(self._audit, "key.rotate", provider=self.kind, key_id=key_id, version=version)
        return self._add_version(key_id, kek_key, doc)

    def versions(self, key_id: str) -> list[int]:
        _, doc = self._load(key_id)
        return sorted(int(v) for v in doc["versions"])

    def current_version(self, key_id: str) -> int:
        vs = self.versions(key_id)
        if not vs:
            raise KeyUnavailableError(f"local key {key_id!r} has no versions")
        return vs[-1]

    def retire(self, key_id: str, version: int) -> None:
        kek_key, doc = self._load(key_id)
        if version == self.current_version(key_id):
            raise ConflictError(
                f"version {version} is the current version of {key_id!r}", hint="rotate first"
            )
        if str(version) not in doc["versions"]:
            raise KeyUnavailableError(f"local key {key_id!r} has no version {version}")
        emit(self._audit, "key.retire", provider=self.kind, key_id=key_id, version=version)
        del doc["versions"][str(version)]
        self._store(key_id, doc)

    def wrap(self, key_id: str, data_key: bytes, *, version: int | None = None) -> WrappedKey:
        check_data_key(data_key)
        v = self.current_version(key_id) if version is None else version
        kek = self._kek(key_id, v)
        emit(self._audit, "key.wrap", provider=self.kind, key_id=key_id, version=v)
        nonce = os.urandom(12)
        ct = AESGCM(kek).encrypt(nonce, data_key, f"gpaisec-dek|{key_id}|{v}".encode())
        return WrappedKey(key_id, v, ALGORITHM, nonce + ct)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise KeyUnavailableError(f"the local provider cannot unwrap {wrapped.algorithm!r} keys")
        kek = self._kek(wrapped.key_id, wrapped.version)
        emit(self._audit, "key.unwrap", provider=self.kind, key_id=wrapped.key_id, version=wrapped.version)
        blob = wrapped.blob
        try:
            return AESGCM(kek).decrypt(
                blob[:12], blob[12:], f"gpaisec-dek|{wrapped.key_id}|{wrapped.version}".encode()
            )
        except (InvalidTag, ValueError):
            raise IntegrityError(
                f"the data key wrapped under {wrapped.key_id!r} v{wrapped.version} does not unwrap"
            ) from None
