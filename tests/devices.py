"""Device keys for tests: a key pair per device name, and proofs of possession for signing in.

Keys are derived from the device's name (``signer("laptop-alice")`` is the same key in every test),
so a test that enrolled a device can sign for it anywhere without passing keys around. Only tests
do this: a real device key is random (``gpaisec access device-key DEVICE --generate``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gpaisec.access import accounts, mfa
from gpaisec.access.device_keys import Algorithm, DeviceProof, DeviceSigner
from gpaisec.workspace import Workspace

__all__ = ["enrol", "proof", "proof_json", "sign_in", "signer"]

_TICKS = itertools.count(1)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def signer(device: str, algorithm: Algorithm = "ed25519") -> DeviceSigner:
    """The test key of ``device`` (the same for the same name and algorithm)."""
    seed = hashlib.sha256(f"gpaisec-test-device:{algorithm}:{device}".encode()).digest()
    if algorithm == "ed25519":
        return DeviceSigner(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    return DeviceSigner(
        ec.derive_private_key(int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())
    )


def enrol(ws: Workspace, device: str, algorithm: Algorithm = "ed25519") -> DeviceSigner:
    """Enrol ``device``'s test key (the device must be registered) and return it."""
    key = signer(device, algorithm)
    accounts.enrol_device_key(ws, device, key.public.pem)
    return key


def proof(
    ws: Workspace,
    username: str,
    device: str,
    *,
    key: DeviceSigner | None = None,
    now: dt.datetime | None = None,
) -> DeviceProof:
    """A fresh challenge signed for ``username`` by ``device``'s test key.

    With ``now`` (a test's own clock), the challenge is issued a few microseconds after it, a little
    later on each call: an account accepts only challenges issued after the last one it used, and
    tests often sign in twice at one ``now``.
    """
    if now is not None:
        now += dt.timedelta(microseconds=next(_TICKS))
    challenge = accounts.device_challenge(ws, now=now)
    return (key or signer(device)).prove(challenge.id, challenge.challenge, username)


def proof_json(http: Any, username: str, device: str, *, key: DeviceSigner | None = None) -> dict[str, str]:
    """``device_proof`` for ``POST /api/v1/session``, over a challenge asked of the API by ``http``."""
    r = http.post("/api/v1/session/device-challenge")
    assert r.status_code == 200, r.text
    body = r.json()
    made = (key or signer(device)).prove(body["challenge_id"], base64.b64decode(body["challenge"]), username)
    return {
        "fingerprint": made.fingerprint,
        "challenge_id": made.challenge_id,
        "signature": base64.b64encode(made.signature).decode(),
    }


def sign_in(
    ws: Workspace,
    username: str,
    password: str,
    second_factor: str | mfa.SecondFactor | None,
    device: str,
    **kwargs: Any,
) -> accounts.Login:
    """:func:`accounts.authenticate` with a fresh proof by ``device``'s test key."""
    made = proof(ws, username, device, now=kwargs.get("now"))
    return accounts.authenticate(ws, username, password, second_factor, device, device_proof=made, **kwargs)
