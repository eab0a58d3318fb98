"""Check a model directory against a manifest already trusted (stored, or read from a signature)."""

from __future__ import annotations

import os

from gpaisec.integrity._engine import ProgressCallback, hash_tree
from gpaisec.integrity._errors import Problem, VerificationError
from gpaisec.integrity._manifest import Manifest

__all__ = ["check_directory"]


def check_directory(
    model_dir: str | os.PathLike[str],
    expected: Manifest,
    *,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> Manifest:
    """Hash ``model_dir`` with ``expected.params`` and raise unless it matches ``expected``.

    For a manifest the caller already trusts (the registry's copy). Returns the fresh manifest,
    which then equals ``expected``.

    Raises:
        VerificationError: problem CONTENT, with ``diff`` naming changed, missing and extra files.
        InputError: the directory cannot be hashed with those parameters.
    """
    # Step 1: hash the directory again with the parameters recorded in the expected manifest.
    actual = hash_tree(model_dir, expected.params, progress=progress, workers=workers)
    # Step 2: every expected file must be there with the expected content, and nothing more.
    diff = expected.diff(actual)
    if not diff.empty:
        raise VerificationError(
            f"model {os.fspath(model_dir)!r} does not match the expected manifest: {diff.summary()}",
            problem=Problem.CONTENT,
            diff=diff,
            hint="the model files changed; restore them from a trusted copy, or review and re-register",
        )
    return actual
