"""The key-provider interface: who holds the key-encryption keys (KEKs) that wrap data keys.

A sealed file's 32-byte data key is random per file and is stored only wrapped (encrypted) by a
KEK that never leaves its provider: a passphrase-protected key file (:mod:`.local`), a PKCS#11
token (:mod:`.hsm`) or a TPM 2.0 (:mod:`.tpm`). Each KEK is named by a key id and has numbered
versions; :meth:`KeyProvider.rotate` adds a version, :meth:`KeyProvider.retire` removes one that no
sealed file uses any more (see :func:`gpaisec.crypto.versions_in_use`).

Every use of a KEK (create, rotate, wrap, unwrap, retire) is reported to the provider's ``audit``
hook *before* the key is used, so an unaudited use cannot happen: if the hook raises, the
operation does not take place.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gpaisec.errors import ConfigError, InputError, NotFoundError

if TYPE_CHECKING:
    from gpaisec.workspace import Workspace

__all__ = [
    "DATA_KEY_BYTES",
    "AuditHook",
    "KeyProvider",
    "KeyUnavailableError",
    "SecretSource",
    "WrappedKey",
    "audit_to_workspace",
    "check_key_id",
    "secret_from_env",
    "secret_from_prompt",
]

DATA_KEY_BYTES = 32
"""Data keys are AES-256 keys."""

AuditHook = Callable[[str, dict[str, Any]], None]
"""Called as ``hook(action, details)``, e.g. ``("key.unwrap", {"key_id": ..., "version": ...})``."""

SecretSource = Callable[[], bytes]
"""Returns a passphrase or PIN when asked; never a command-line argument."""

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyUnavailableError(NotFoundError):
    """The provider does not hold the key id or key version asked for."""

    title = "key not available"


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped under one KEK version; ``algorithm`` names how (recorded in the header)."""

    key_id: str
    version: int
    algorithm: str
    blob: bytes = field(repr=False)


@runtime_checkable
class KeyProvider(Protocol):
    """Holds KEKs; wraps and unwraps data keys inside itself."""

    kind: str
    """Short name recorded in audit events: ``local``, ``pkcs11`` or ``tpm2``."""

    def create(self, key_id: str) -> int:
        """Create ``key_id`` with its first version (1); refuse an existing key id."""
        ...

    def rotate(self, key_id: str) -> int:
        """Create a new version of ``key_id`` and make it current; return its number."""
        ...

    def versions(self, key_id: str) -> list[int]:
        """The versions held for ``key_id``, ascending; KeyUnavailableError if none."""
        ...

    def current_version(self, key_id: str) -> int:
        """The version new data keys are wrapped under (the highest)."""
        ...

    def retire(self, key_id: str, version: int) -> None:
        """Destroy one version (never the current one)."""
        ...

    def wrap(self, key_id: str, data_key: bytes, *, version: int | None = None) -> WrappedKey:
        """Wrap a 32-byte data key under ``version`` (default: current)."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap; IntegrityError if the blob does not unwrap, KeyUnavailableError if no such KEK."""
        ...


def check_key_id(key_id: str) -> str:
    """Key ids become file names and token labels: 1-64 of ``A-Z a-z 0-9 . _ -``."""
    if not _KEY_ID.fullmatch(key_id):
        raise InputError(
            f"invalid key id {key_id!r}",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return key_id


def check_data_key(data_key: bytes) -> None:
    if len(data_key) != DATA_KEY_BYTES:
        raise InputError(f"a data key is {DATA_KEY_BYTES} bytes, not {len(data_key)}")


def secret_from_env(name: str) -> SecretSource:
    """Read the secret from environment variable ``name`` (the variable's *name* is configuration)."""

    def read() -> bytes:
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"environment variable {name} is not set", hint=f"export {name} or use a prompt"
            )
        return value.encode("utf-8")

    return read


def secret_from_prompt(prompt: str = "Passphrase: ") -> SecretSource:
    """Ask on the terminal without echo."""

    def read() -> bytes:
        try:
            value = getpass.getpass(prompt)
        except (EOFError, OSError):
            raise ConfigError(
                "no terminal to ask for the secret on", hint="name an environment variable instead"
            ) from None
        if not value:
            raise InputError("an empty secret was given")
        return value.encode("utf-8")

    return read


def audit_to_workspace(ws: Workspace, *, provider: str | None = None) -> AuditHook:
    """An audit hook that records each key use in ``ws``'s audit log, in its own transaction."""
    from gpaisec.audit.service import record

    def hook(action: str, details: dict[str, Any]) -> None:
        detail = dict(details)
        if provider is not None:
            detail.setdefault("provider", provider)
        with ws.transaction() as s:
            record(
                s, actor=ws.actor, action=action, object=f"key:{details.get('key_id', '?')}", details=detail
            )

    return hook


def emit(audit: AuditHook | None, action: str, **details: Any) -> None:
    """Report a key use before it happens (a raising hook stops the operation)."""
    if audit is not None:
        audit(action, details)
