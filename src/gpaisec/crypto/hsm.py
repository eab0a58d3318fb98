"""PKCS#11 key provider: KEKs are AES-256 keys inside a token (HSM); wrapping happens in the token.

Each KEK version is a token object labelled ``gpaisec:<key_id>:v<version>``, generated inside the
token with ``CKA_EXTRACTABLE=false`` and ``CKA_SENSITIVE=true`` (it can never leave it) and only
the wrap/unwrap capabilities. A data key is imported as a session object and wrapped by the token
with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649); unwrapping creates a session object whose value is read
back and the object destroyed. The PIN comes from a :data:`~gpaisec.crypto.keys.SecretSource`.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from gpaisec.crypto.keys import (
    AuditHook,
    KeyUnavailableError,
    SecretSource,
    WrappedKey,
    check_data_key,
    check_key_id,
    emit,
)
from gpaisec.errors import ConfigError, ConflictError, IntegrityError

__all__ = ["ALGORITHM", "DEFAULT_LIBRARY", "Pkcs11KeyProvider"]

ALGORITHM: Final = "pkcs11-aes-key-wrap-pad"
DEFAULT_LIBRARY: Final = "/usr/lib/softhsm/libsofthsm2.so"
_LABEL = re.compile(r"gpaisec:(?P<kid>[A-Za-z0-9._-]+):v(?P<v>[0-9]+)")


def _label(key_id: str, version: int) -> str:
    return f"gpaisec:{key_id}:v{version}"


class Pkcs11KeyProvider:
    """KEKs in the PKCS#11 token ``token_label`` reached through ``library``."""

    kind = "pkcs11"

    def __init__(
        self,
        token_label: str,
        pin: SecretSource,
        *,
        library: str | Path = DEFAULT_LIBRARY,
        audit: AuditHook | None = None,
    ) -> None:
        self.token_label = token_label
        self.library = str(library)
        self._pin = pin
        self._audit = audit
        self._session: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        if self._session is None:
            try:
                lib = pkcs11.lib(self.library)
                token = lib.get_token(token_label=self.token_label)
                self._session = token.open(user_pin=self._pin().decode("utf-8"), rw=True)
            except (PKCS11Error, RuntimeError, OSError) as exc:
                raise ConfigError(
                    f"cannot open PKCS#11 token {self.token_label!r} ({self.library}): {type(exc).__name__}",
                    hint="check the library path, token label and PIN",
                ) from None
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Pkcs11KeyProvider:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _find(self, key_id: str, version: int) -> Any:
        keys = list(
            self._open().get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: _label(key_id, version)}
            )
        )
        if not keys:
            raise KeyUnavailableError(f"token {self.token_label!r} holds no key {key_id!r} v{version}")
        if len(keys) > 1:
            raise ConfigError(
                f"token {self.token_label!r} holds {len(keys)} keys labelled {_label(key_id, version)}"
            )
        return keys[0]

    def _generate(self, key_id: str, version: int) -> int:
        self._open().generate_key(
            KeyType.AES,
            256,
            label=_label(key_id, version),
            store=True,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
            },
        )
        return version

    def versions(self, key_id: str) -> list[int]:
        check_key_id(key_id)
        with self._lock:
            found = []
            for obj in self._open().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
                m = _LABEL.fullmatch(str(obj.label or ""))
                if m and m["kid"] == key_id:
                    found.append(int(m["v"]))
        if not found:
            raise KeyUnavailableError(f"token {self.token_label!r} holds no key {key_id!r}")
        return sorted(found)

    def current_version(self, key_id: str) -> int:
        return self.versions(key_id)[-1]

    def create(self, key_id: str) -> int:
        try:
            self.versions(key_id)
        except KeyUnavailableError:
            emit(self._audit, "key.create", provider=self.kind, key_id=key_id, version=1)
            with self._lock:
                return self._generate(key_id, 1)
        raise ConflictError(
            f"token {self.token_label!r} already holds key {key_id!r}", hint="rotate it instead"
        )

    def rotate(self, key_id: str) -> int:
        version = self.current_version(key_id) + 1
        emit(self._audit, "key.rotate", provider=self.kind, key_id=key_id, version=version)
        with self._lock:
            return self._generate(key_id, version)

    def retire(self, key_id: str, version: int) -> None:
        if version == self.current_version(key_id):
            raise ConflictError(
                f"version {version} is the current version of {key_id!r}", hint="rotate first"
            )
        with self._lock:
            key = self._find(key_id, version)
            emit(self._audit, "key.retire", provider=self.kind, key_id=key_id, version=version)
            key.destroy()

    def wrap(self, key_id: str, data_key: bytes, *, version: int | None = None) -> WrappedKey:
        check_data_key(data_key)
        v = self.current_version(key_id) if version is None else version
        with self._lock:
            kek = self._find(key_id, v)
            emit(self._audit, "key.wrap", provider=self.kind, key_id=key_id, version=v)
            dk = self._open().create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: bytes(data_key),
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                }
            )
            try:
                blob = kek.wrap_key(dk, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                dk.destroy()
        return WrappedKey(key_id, v, ALGORITHM, bytes(blob))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != ALGORITHM:
            raise KeyUnavailableError(f"the PKCS#11 provider cannot unwrap {wrapped.algorithm!r} keys")
        with self._lock:
            kek = self._find(wrapped.key_id, wrapped.version)
            emit(
                self._audit, "key.unwrap", provider=self.kind, key_id=wrapped.key_id, version=wrapped.version
            )
            try:
                dk = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    wrapped.blob,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                    store=False,
                    template={
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                        Attribute.TOKEN: False,
                    },
                )
            except PKCS11Error as exc:
                raise IntegrityError(
                    f"the data key wrapped under {wrapped.key_id!r} v{wrapped.version} does not unwrap"
                    f" ({type(exc).__name__})"
                ) from None
            try:
                value = bytes(dk[Attribute.VALUE])
            finally:
                dk.destroy()
        return value
