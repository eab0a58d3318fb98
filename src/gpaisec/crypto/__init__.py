"""Encryption of unreleased model parameters at rest (Code of Practice, security appendix 4.2(3)-(4)).

How it fits together: each file is sealed (:func:`seal_file`) under a fresh random 256-bit data
key with AES-256-GCM in authenticated chunks (format: :mod:`gpaisec.crypto.sealed`,
``docs/sealed-format.md``); the data key is stored in the file's header only wrapped by a
key-encryption key (KEK) that stays inside a key provider (:class:`KeyProvider`: local key file,
PKCS#11 HSM or TPM 2.0). Opening (:func:`open_file`, :func:`unseal_to`) verifies the header and
every chunk and never yields unauthenticated plaintext; :func:`memory_dir` unseals into memory
only. Rotation adds a KEK version and :func:`rewrap` rewrites only a file's key slot.
"""

from gpaisec.crypto.files import (
    SealedReader,
    SealResult,
    find_sealed,
    inspect,
    open_file,
    retirable_versions,
    rewrap,
    seal_directory,
    seal_file,
    seal_to,
    unseal_to,
    versions_in_use,
)
from gpaisec.crypto.keys import (
    AuditHook,
    KeyProvider,
    KeyUnavailableError,
    SecretSource,
    WrappedKey,
    audit_to_workspace,
    secret_from_env,
    secret_from_prompt,
)
from gpaisec.crypto.sealed import SealedIntegrityError

__all__ = [
    "AuditHook",
    "KeyProvider",
    "KeyUnavailableError",
    "SealResult",
    "SealedIntegrityError",
    "SealedReader",
    "SecretSource",
    "WrappedKey",
    "audit_to_workspace",
    "find_sealed",
    "inspect",
    "open_file",
    "retirable_versions",
    "rewrap",
    "seal_directory",
    "seal_file",
    "seal_to",
    "secret_from_env",
    "secret_from_prompt",
    "unseal_to",
    "versions_in_use",
]
