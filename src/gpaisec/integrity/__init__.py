"""Integrity of model weights: hash a model directory, sign the result, verify a copy.

Three steps, as in OpenSSF Model Signing (OMS), whose signature format this package writes and
reads without needing model-signing itself:

1. **Hash.** :func:`hash_directory` walks a model directory and returns a :class:`Manifest`:
   the digest of every file (or of every shard of every file), together with the
   :class:`HashParams` that shaped them (algorithm, method, shard size, symlink policy, ignored
   paths). BLAKE3 is the default and hashes a large file on all cores; SHA-256 is there for
   interoperability. :meth:`Manifest.digest` is a canonical digest of the whole manifest, and
   :meth:`Manifest.diff` names the changed, missing and extra files between two manifests.
2. **Sign.** :func:`sign` hashes a directory (or takes a manifest) and writes an OMS signature:
   an in-toto statement in a DSSE envelope inside a sigstore bundle, signed with an EC key.
3. **Verify.** :func:`verify` checks a signature against a public key and a directory against
   the signed manifest. It returns the verified manifest or raises
   :class:`VerificationError` (an :class:`~gpaisec.errors.IntegrityError`) saying whether the
   format, the key, the signature or the content is at fault, with the differences listed.
   :func:`check_directory` does the content half against a manifest already trusted.

Everything else lives in ``_``-prefixed modules and may change.
"""

from gpaisec.integrity._check import check_directory
from gpaisec.integrity._engine import ProgressCallback, hash_directory, hash_file
from gpaisec.integrity._errors import Problem, VerificationError
from gpaisec.integrity._manifest import (
    ALGORITHMS,
    DEFAULT_IGNORE_PATHS,
    DEFAULT_SHARD_SIZE,
    METHODS,
    Algorithm,
    FileDigest,
    HashParams,
    HexDigest,
    Manifest,
    ManifestDiff,
    ManifestDigest,
    Method,
    Resource,
)
from gpaisec.integrity._oms import (
    BUNDLE_MEDIA_TYPE,
    PREDICATE_TYPE,
    public_key_hint,
    sign,
    statement_for,
    verify,
    verify_signature,
)
from gpaisec.integrity._progress import terminal_progress

__all__ = [
    "ALGORITHMS",
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_IGNORE_PATHS",
    "DEFAULT_SHARD_SIZE",
    "METHODS",
    "PREDICATE_TYPE",
    "Algorithm",
    "FileDigest",
    "HashParams",
    "HexDigest",
    "Manifest",
    "ManifestDiff",
    "ManifestDigest",
    "Method",
    "Problem",
    "ProgressCallback",
    "Resource",
    "VerificationError",
    "check_directory",
    "hash_directory",
    "hash_file",
    "public_key_hint",
    "sign",
    "statement_for",
    "terminal_progress",
    "verify",
    "verify_signature",
]
