"""The one exception root.

Every error a user can cause or meet derives from :class:`GpaisecError`. The CLI catches only this
root, prints :meth:`GpaisecError.diagnostics` on one line (more with ``--verbose``) and exits with
:attr:`GpaisecError.exit_code`; the API maps the same root to problem+json. Anything else that
escapes is a bug and is shown as one.

Exit codes (documented in the README):
  0 success; 1 a check or verification found a problem; 2 bad input or usage;
  3 configuration or environment (workspace, database, permissions); 4 integrity failure
  (tampered audit log, bad signature, corrupt data); 5 not found; 6 denied by policy.
"""

from __future__ import annotations

__all__ = [
    "AuditIntegrityError",
    "CatalogError",
    "ConfigError",
    "ConflictError",
    "DeniedError",
    "GpaisecError",
    "InputError",
    "IntegrityError",
    "NotFoundError",
    "SchemaTooNewError",
    "StoreError",
]


class GpaisecError(Exception):
    """Root of every user-facing error.

    ``message`` says what is wrong; ``hint`` says what to do about it.
    """

    exit_code: int = 1
    title: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """One line for the user: what is wrong, then what to do."""
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(GpaisecError):
    """The input given (argument, file, value) is not acceptable."""

    exit_code = 2
    title = "bad input"


class ConfigError(GpaisecError):
    """The workspace, settings or environment cannot be used."""

    exit_code = 3
    title = "configuration error"


class StoreError(ConfigError):
    """The database cannot be opened or used."""

    title = "database error"


class SchemaTooNewError(StoreError):
    """The database was written by a newer gpaisec; refusing to touch it."""


class CatalogError(ConfigError):
    """A catalog data file is missing, malformed or inconsistent."""

    title = "catalog error"


class IntegrityError(GpaisecError):
    """Data failed an integrity check (digest, signature, MAC)."""

    exit_code = 4
    title = "integrity failure"


class AuditIntegrityError(IntegrityError):
    """The audit log does not verify. ``first_bad`` names the first entry that fails, if known."""

    title = "audit log does not verify"

    def __init__(self, message: str, *, first_bad: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.first_bad = first_bad


class NotFoundError(GpaisecError):
    """A named object does not exist."""

    exit_code = 5
    title = "not found"


class ConflictError(InputError):
    """The operation conflicts with existing state (duplicate name, wrong lifecycle state)."""

    title = "conflict"


class DeniedError(GpaisecError):
    """A policy decision denied the operation."""

    exit_code = 6
    title = "denied"
