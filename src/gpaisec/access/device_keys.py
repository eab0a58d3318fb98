"""Device keys: the public keys that bind sessions to registered devices, and the proof of possession.

A pure module: bytes, text and paths in, values out; no database work (the challenge and the checks
against the registry are in :mod:`gpaisec.access.accounts`).

Accepted public keys (:func:`parse_public_key`): **Ed25519** and **ECDSA P-256**, written as PEM
(SubjectPublicKeyInfo, ``-----BEGIN PUBLIC KEY-----``) or as an OpenSSH public key line
(``ssh-ed25519 AAAA…``, ``ecdsa-sha2-nistp256 AAAA…``). Anything else (RSA, other curves, a private
key, a certificate, malformed text) is refused with an :class:`~gpaisec.errors.InputError` that says
what is accepted.

Fingerprint: ``sha256:`` and the hex SHA-256 of the key's DER SubjectPublicKeyInfo, so one key has one
fingerprint whichever format it came in (a browser computes it from WebCrypto's
``exportKey("spki")``).

Proof of possession: the server hands out a fresh challenge (32 random bytes, single use, short
expiry); the device signs :func:`proof_message`::

    b"gpaisec-device-proof-v1\\x00" || challenge (32 bytes) || fingerprint (71 ASCII bytes)
        || username (UTF-8)

The first three parts have fixed lengths, so the message reads one way only. Signatures: Ed25519
(64 bytes), or ECDSA P-256 over SHA-256 written as ``r || s`` (64 bytes, IEEE P1363: what WebCrypto
gives; :class:`DeviceSigner` converts from DER). :func:`verify_proof` raises, never returns a bool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gpaisec._files import read_private_file, write_atomically
from gpaisec.errors import DeniedError, InputError

__all__ = [
    "ACCEPTED",
    "CHALLENGE_BYTES",
    "DOMAIN",
    "FINGERPRINT",
    "Algorithm",
    "DeviceProof",
    "DeviceProofError",
    "DevicePublicKey",
    "DeviceSigner",
    "decode_signature",
    "default_key_path",
    "generate_signer",
    "load_signer",
    "parse_fingerprint",
    "parse_public_key",
    "proof_message",
    "verify_proof",
]

Algorithm = Literal["ed25519", "ecdsa-p256"]
DOMAIN = b"gpaisec-device-proof-v1\x00"
CHALLENGE_BYTES = 32
SIGNATURE_BYTES = 64
MAX_KEY_TEXT = 16_384  # characters of a public key file (an Ed25519 or P-256 key takes about 200)
ACCEPTED = (
    "an Ed25519 or ECDSA P-256 public key, as PEM (-----BEGIN PUBLIC KEY-----) "
    "or OpenSSH (ssh-ed25519 AAAA... or ecdsa-sha2-nistp256 AAAA...)"
)
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_P256 = ec.SECP256R1


class DeviceProofError(DeniedError):
    """A device proof is missing, malformed, stale, replayed or signed with the wrong key."""

    title = "device proof refused"

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="sign a fresh challenge with this device's enrolled key")


@dataclass(frozen=True)
class DevicePublicKey:
    """A parsed device public key: its algorithm, canonical PEM (SPKI) and fingerprint."""

    algorithm: Algorithm
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
    pem: str
    fingerprint: str


@dataclass(frozen=True)
class DeviceProof:
    """What a client sends to prove it holds a device key: which key, which challenge, the signature."""

    fingerprint: str
    challenge_id: str
    signature: bytes


def _refuse(what: str) -> InputError:
    return InputError(f"{what}: not a usable device key", hint=f"give {ACCEPTED}")


# Edwards25519 (RFC 8032 5.1): the field prime, the curve constant d and a square root of -1.
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1)


def _ed25519_decode(raw: bytes) -> tuple[int, int] | None:
    """The point encoded by ``raw`` (RFC 8032 5.1.3), or None if it is not a canonical encoding of
    a point on the curve."""
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if len(raw) != 32 or y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif v * x * x % _P != u:
        return None
    if x == 0 and sign:
        return None
    return (_P - x if x & 1 != sign else x), y


def _ed25519_add(p: tuple[int, int], q: tuple[int, int]) -> tuple[int, int]:
    """Twisted Edwards addition (a = -1); complete on this curve (d is not a square)."""
    (x1, y1), (x2, y2) = p, q
    t = _D * x1 * x2 * y1 * y2 % _P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P,
        (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P,
    )


def ed25519_small_order(raw: bytes) -> bool:
    """Whether ``raw`` encodes a point of small order (8 times it is the identity), or no canonical
    point at all. A small-order public key verifies forged signatures (with the identity as key, the
    signature R = identity, S = 0 verifies every message), so such keys are refused, as libsodium does."""
    point = _ed25519_decode(raw)
    if point is None:
        return True
    for _ in range(3):
        point = _ed25519_add(point, point)
    return point == _IDENTITY


def _public(key: object) -> tuple[Algorithm, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if ed25519_small_order(raw):
            raise _refuse("the Ed25519 key is a point of small order (any signature could be forged for it)")
        return "ed25519", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _P256):
        return "ecdsa-p256", key
    name = type(key).__name__.removesuffix("PublicKey").removeprefix("_")
    curve = getattr(getattr(key, "curve", None), "name", "")
    raise _refuse(f"the key type ({name}{' ' + curve if curve else ''}) is not supported")


def _describe(key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> DevicePublicKey:
    algorithm, key = _public(key)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return DevicePublicKey(
        algorithm=algorithm,
        key=key,
        pem=pem.decode("ascii").strip(),
        fingerprint="sha256:" + hashlib.sha256(der).hexdigest(),
    )


def parse_public_key(text: str | bytes) -> DevicePublicKey:
    """The device key in ``text`` (PEM or one OpenSSH line); else :class:`InputError` saying what is
    accepted."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise _refuse("the key is not text (PEM or OpenSSH)") from None
    text = text.strip()
    if not text:
        raise _refuse("the public key is empty")
    if len(text) > MAX_KEY_TEXT:
        raise _refuse("the public key is too long")
    data = text.encode("ascii", "replace")
    loaded: object
    try:
        if text.startswith("-----BEGIN PUBLIC KEY-----"):
            loaded = serialization.load_pem_public_key(data)
        elif text.startswith("-----BEGIN"):
            kind = text.split("-----")[1].removeprefix("BEGIN ").strip().lower() or "PEM block"
            raise _refuse(f"the file holds a {kind}, not a public key")
        elif text.startswith(("ssh-", "ecdsa-")) and "\n" not in text:
            loaded = serialization.load_ssh_public_key(data)
        else:
            raise _refuse("the text is neither a PEM public key nor an OpenSSH public key line")
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise _refuse("the public key is malformed") from None
    return _describe(loaded)  # type: ignore[arg-type]  # _public() refuses any other type


def parse_fingerprint(value: str) -> str:
    """``value`` if it is a fingerprint as :func:`parse_public_key` writes it; else
    :class:`DeviceProofError`."""
    if not FINGERPRINT.fullmatch(value):
        raise DeviceProofError("the device key fingerprint is malformed (expected sha256:<64 hex digits>)")
    return value


def proof_message(challenge: bytes, fingerprint: str, username: str) -> bytes:
    """The bytes a device signs to prove it holds its key (see the module docstring)."""
    if len(challenge) != CHALLENGE_BYTES:
        raise DeviceProofError("the challenge has the wrong length")
    name = username.encode("utf-8", "surrogatepass")  # a lone surrogate: refused later, never a crash
    return DOMAIN + challenge + parse_fingerprint(fingerprint).encode("ascii") + name


def decode_signature(text: str) -> bytes:
    """A signature from base64 or base64url text (padding optional); b"" if it is neither."""
    if len(text) > 200:
        return b""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def verify_proof(key: DevicePublicKey, message: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``message`` with ``key``; raises :class:`DeviceProofError`."""
    if len(signature) != SIGNATURE_BYTES:
        raise DeviceProofError(f"the signature is not {SIGNATURE_BYTES} bytes")
    try:
        if isinstance(key.key, ed25519.Ed25519PublicKey):
            key.key.verify(signature, message)
        else:
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise DeviceProofError("the signature does not verify with the device key") from None


# --- the client's side: the private key --------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSigner:
    """A device's private key, held by the client (the CLI, a bench, a test)."""

    private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

    @property
    def public(self) -> DevicePublicKey:
        return _describe(self.private_key.public_key())

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign(self, message: bytes) -> bytes:
        """Ed25519, or ECDSA P-256/SHA-256 as ``r || s`` (64 bytes)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        r, s = decode_dss_signature(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def prove(self, challenge_id: str, challenge: bytes, username: str) -> DeviceProof:
        """Sign ``challenge`` (as the server handed it out) for signing in as ``username``."""
        fingerprint = self.fingerprint
        return DeviceProof(
            fingerprint=fingerprint,
            challenge_id=challenge_id,
            signature=self.sign(proof_message(challenge, fingerprint, username)),
        )

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def save(self, path: Path) -> None:
        """Write the private key to ``path`` (PKCS#8 PEM, mode 0600) atomically; never over a file."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not write_atomically(
            path, self.private_pem(), what="the device's private key", mode=0o600, exclusive=True
        ):
            raise InputError(
                f"{path} exists already; a device key is never overwritten",
                hint="move it away first, or give another path",
            )


def generate_signer(algorithm: Algorithm = "ed25519") -> DeviceSigner:
    """A new device key pair."""
    if algorithm == "ed25519":
        return DeviceSigner(ed25519.Ed25519PrivateKey.generate())
    if algorithm == "ecdsa-p256":
        return DeviceSigner(ec.generate_private_key(_P256()))
    raise InputError(f"unknown key algorithm {algorithm!r}", hint="use ed25519 or ecdsa-p256")


def load_signer(path: Path, passphrase: Callable[[], str] | None = None) -> DeviceSigner:
    """The device's private key from ``path`` (PKCS#8 PEM or OpenSSH); refused if others may read it.

    ``passphrase`` is asked only for an encrypted key.
    """
    data = read_private_file(
        path,
        "the device's private key",
        error=InputError,
        unreadable_hint="make one with `gpaisec access device-key DEVICE --generate`, or give --device-key",
    )
    is_ssh = data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    load = serialization.load_ssh_private_key if is_ssh else serialization.load_pem_private_key
    try:
        try:
            key: object = load(data, password=None)
        except TypeError:  # encrypted: ask for its passphrase (never a command-line argument)
            if passphrase is None:
                raise
            key = load(data, password=passphrase().encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(
            f"{path} is not a usable device private key",
            hint="give an Ed25519 or ECDSA P-256 private key (PKCS#8 PEM or OpenSSH), and its passphrase",
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, _P256)
    ):
        return DeviceSigner(key)
    raise InputError(f"{path}: the key type is not supported", hint=f"device keys are {ACCEPTED}")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def default_key_path(keys_dir: Path, device: str) -> Path:
    """Where ``gpaisec access device-key DEVICE --generate`` keeps the device's private key."""
    if not _SAFE_NAME.fullmatch(device):
        raise InputError(
            f"device name {device!r} cannot name a key file",
            hint="give the private key's path with --device-key PATH",
        )
    return keys_dir / "devices" / f"{device}.key"
