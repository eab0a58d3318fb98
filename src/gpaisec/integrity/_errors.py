"""The integrity area's error: a model that does not verify, with what exactly went wrong."""

from __future__ import annotations

import enum

from gpaisec.errors import IntegrityError
from gpaisec.integrity._manifest import ManifestDiff

__all__ = ["Problem", "VerificationError"]


class Problem(enum.StrEnum):
    """Which check failed."""

    CONTENT = "content"
    """The files differ from the signed or expected manifest (see ``diff``)."""
    SIGNATURE = "signature"
    """The signature does not verify over its payload."""
    KEY = "key"
    """The signature names another public key than the one given."""
    FORMAT = "format"
    """The signature file is unreadable, malformed or of an unsupported kind."""


class VerificationError(IntegrityError):
    """A model failed verification. ``problem`` says which check; ``diff`` lists changed files.

    ``diff`` is set (and non-empty) exactly when ``problem`` is :attr:`Problem.CONTENT`.
    """

    title = "model does not verify"

    def __init__(
        self,
        message: str,
        *,
        problem: Problem,
        diff: ManifestDiff | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.problem = problem
        self.diff = diff
