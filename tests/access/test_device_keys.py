"""Device keys and the proof of possession at sign-in: every wrong proof is denied and audited."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gpaisec.access import accounts, device_keys, passwords
from gpaisec.access.device_keys import DeviceProof
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.errors import DeniedError, InputError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests import devices
from tests.access.test_accounts import (  # noqa: F401  (fast_hashes is an autouse fixture)
    PASSWORD,
    add_human,
    audit,
    fast_hashes,
)


def laptop(
    ws: Workspace, name: str, algorithm: device_keys.Algorithm = "ed25519"
) -> device_keys.DeviceSigner:
    registry.add_device(ws, name, managed=True, disk_encrypted=True)
    return devices.enrol(ws, name, algorithm)


def device_failures(ws: Workspace) -> list[dict[str, Any]]:
    """The details of each login.fail at the device step, oldest first."""
    events = [json.loads(bytes(e.entry)) for e in audit(ws) if e.action == "login.fail"]
    return [{"object": e["object"], **e["details"]} for e in events if e["details"].get("step") == "device"]


def attempt(ws: Workspace, proof: DeviceProof | None, *, device: str = "laptop-1", **kw: Any) -> None:
    accounts.authenticate(ws, "alice", PASSWORD, None, device, device_proof=proof, **kw)


def refused(ws: Workspace, proof: DeviceProof | None, why: str, **kw: Any) -> None:
    """The sign-in fails with the one SignInError; the audit log holds the reason."""
    before = len(device_failures(ws))
    with pytest.raises(accounts.SignInError):
        attempt(ws, proof, **kw)
    failures = device_failures(ws)
    assert len(failures) == before + 1
    assert why in failures[-1]["reason"], failures[-1]
    assert failures[-1]["object"] == "account:alice"


@pytest.fixture
def alice(workspace: Workspace) -> Workspace:
    laptop(workspace, "laptop-1")
    add_human(workspace, "alice", totp=False)
    return workspace


# --- the right proof -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_the_right_proof_signs_in_bound_to_the_key(workspace: Workspace, algorithm: Any) -> None:
    key = laptop(workspace, "laptop-1", algorithm)
    add_human(workspace, "alice", totp=False)
    lg = attempt_ok(workspace, devices.proof(workspace, "alice", "laptop-1", key=key))
    assert lg.session.device_key_id == accounts.list_device_keys(workspace, "laptop-1")[0][0].id
    login = [json.loads(bytes(e.entry)) for e in audit(workspace) if e.action == "login"][-1]
    assert login["details"]["fingerprint"] == key.fingerprint
    # The device may also be named by the key's fingerprint.
    accounts.logout(workspace, lg.token)
    proof = devices.proof(workspace, "alice", "laptop-1", key=key)
    accounts.authenticate(workspace, "alice", PASSWORD, None, key.fingerprint, device_proof=proof)


def attempt_ok(ws: Workspace, proof: DeviceProof, source: str = "local") -> accounts.Login:
    return accounts.authenticate(ws, "alice", PASSWORD, None, "laptop-1", device_proof=proof, source=source)


# --- each wrong proof: denied and audited ------------------------------------------------------------


def test_no_proof(alice: Workspace) -> None:
    refused(alice, None, "no device proof")


def test_a_key_that_is_not_enrolled(alice: Workspace) -> None:
    stranger = device_keys.generate_signer()
    refused(alice, devices.proof(alice, "alice", "laptop-1", key=stranger), "not enrolled")


def test_the_key_of_another_device(alice: Workspace) -> None:
    other = laptop(alice, "laptop-2")
    refused(alice, devices.proof(alice, "alice", "laptop-1", key=other), "not a key of the device")


def test_a_signature_over_another_challenge(alice: Workspace) -> None:
    signed = devices.proof(alice, "alice", "laptop-1")
    other = accounts.device_challenge(alice)
    swapped = DeviceProof(signed.fingerprint, other.id, signed.signature)
    refused(alice, swapped, "does not verify")


def test_a_signature_for_another_user(alice: Workspace) -> None:
    add_human(alice, "bob", totp=False)
    for_bob = devices.proof(alice, "bob", "laptop-1")
    refused(alice, for_bob, "does not verify")


def test_a_replayed_challenge(alice: Workspace) -> None:
    proof = devices.proof(alice, "alice", "laptop-1")
    lg = attempt_ok(alice, proof)
    accounts.logout(alice, lg.token)
    refused(alice, proof, "used already")


def test_an_older_challenge_after_a_newer_one_was_used(alice: Workspace) -> None:
    older = devices.proof(alice, "alice", "laptop-1")
    newer = devices.proof(alice, "alice", "laptop-1")
    accounts.logout(alice, attempt_ok(alice, newer).token)
    refused(alice, older, "used already")


def test_another_keys_holder_cannot_void_a_challenge_in_flight(alice: Workspace) -> None:
    """Bob, with his own enrolled key, uses a later challenge for the name alice (the password is
    wrong, but the proof is his and valid): alice's earlier challenge must still work."""
    laptop(alice, "laptop-bob")
    hers = devices.proof(alice, "alice", "laptop-1")
    his = devices.proof(alice, "alice", "laptop-bob")
    with pytest.raises(accounts.SignInError):
        accounts.authenticate(alice, "alice", "wrong password", None, "laptop-bob", device_proof=his)
    attempt_ok(alice, hers)


def test_a_proof_is_used_up_even_when_the_password_is_wrong(alice: Workspace) -> None:
    proof = devices.proof(alice, "alice", "laptop-1")
    with pytest.raises(accounts.SignInError):
        accounts.authenticate(alice, "alice", "wrong wrong wrong wrong", None, "laptop-1", device_proof=proof)
    refused(alice, proof, "used already")  # one try per proof, whatever went wrong


def test_an_expired_challenge(alice: Workspace) -> None:
    t0 = utcnow()
    stale = devices.proof(alice, "alice", "laptop-1", now=t0 - dt.timedelta(minutes=2, seconds=1))
    refused(alice, stale, "expired", now=t0)
    fresh = devices.proof(alice, "alice", "laptop-1", now=t0 - dt.timedelta(minutes=1, seconds=59))
    attempt_ok_at(alice, fresh, t0)


def attempt_ok_at(ws: Workspace, proof: DeviceProof, now: dt.datetime) -> None:
    accounts.authenticate(ws, "alice", PASSWORD, None, "laptop-1", device_proof=proof, now=now)


def test_a_challenge_from_the_future_or_forged(alice: Workspace) -> None:
    t0 = utcnow()
    early = devices.proof(alice, "alice", "laptop-1", now=t0 + dt.timedelta(minutes=1))
    refused(alice, early, "future", now=t0)
    good = devices.proof(alice, "alice", "laptop-1")
    raw = bytearray(base64.urlsafe_b64decode(good.challenge_id.removeprefix("dc1_") + "=="))
    raw[3] ^= 1  # another issue time under the same MAC
    forged = "dc1_" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    refused(alice, DeviceProof(good.fingerprint, forged, good.signature), "not one this server issued")
    refused(alice, DeviceProof(good.fingerprint, "nonsense", good.signature), "not one this server issues")


def test_a_revoked_key_signs_in_nowhere_and_its_sessions_end(alice: Workspace) -> None:
    key = devices.signer("laptop-1")
    lg = attempt_ok(alice, devices.proof(alice, "alice", "laptop-1"))
    accounts.revoke_device_key(alice, key.fingerprint, reason="laptop lost")
    with pytest.raises(DeniedError):
        accounts.resolve_session(alice, lg.token)
    refused(alice, devices.proof(alice, "alice", "laptop-1"), "revoked")
    revoke = [json.loads(bytes(e.entry)) for e in audit(alice) if e.action == "device_key.revoke"]
    assert revoke[0]["details"]["sessions"] == [lg.session.id]


def test_malformed_proof_fields(alice: Workspace) -> None:
    good = devices.proof(alice, "alice", "laptop-1")
    refused(alice, DeviceProof("sha256:XYZ", good.challenge_id, good.signature), "fingerprint is malformed")
    refused(alice, DeviceProof(good.fingerprint, good.challenge_id, b""), "not 64 bytes")
    refused(alice, DeviceProof(good.fingerprint, good.challenge_id, b"\0" * 64), "does not verify")


def test_an_unmanaged_device_is_refused_at_the_proof_whatever_the_password(alice: Workspace) -> None:
    registry.update_device(alice, "laptop-1", managed=False)
    # The same refusal with the right password as with a wrong one: nothing said about the password.
    refused(alice, devices.proof(alice, "alice", "laptop-1"), "device laptop-1 is not managed")
    with pytest.raises(accounts.SignInError):
        accounts.authenticate(
            alice,
            "alice",
            "not the password at all",
            None,
            "laptop-1",
            device_proof=devices.proof(alice, "alice", "laptop-1"),
        )
    assert not [e for e in audit(alice) if e.action == "login.denied"]


def test_bad_proofs_count_against_the_source_not_the_account(alice: Workspace) -> None:
    """Anyone can fail a proof for any name: that must not lock its person out."""
    outcomes = []
    for _ in range(50):
        try:
            attempt(alice, None, source="203.0.113.9")
        except (accounts.SignInError, ThrottledError) as exc:
            outcomes.append(type(exc))
    assert outcomes.count(accounts.SignInError) >= 3
    assert outcomes[-1] is ThrottledError  # the source is slowed down
    # alice, from her own address, is not held back by any of it.
    attempt_ok(alice, devices.proof(alice, "alice", "laptop-1"), source="198.51.100.7")


# --- what a bad proof reveals --------------------------------------------------------------------------


def test_a_bad_proof_never_reaches_the_password(alice: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision: the device proof is checked before any password work. With a bad proof, a right and
    a wrong password take the same path: no argon2 work at all, the same error, the same audit event
    (step "device"), the same throttle count. Only a caller with a valid proof (the enrolled device's
    private key) reaches the password, where the existing design (dummy work, one error) applies."""
    calls: list[str] = []
    real_verify, real_dummy = passwords.verify_password, passwords.verify_dummy

    def counting_verify(*a: Any, **k: Any) -> Any:
        calls.append("verify")
        return real_verify(*a, **k)

    def counting_dummy(*a: Any, **k: Any) -> Any:
        calls.append("dummy")
        return real_dummy(*a, **k)

    monkeypatch.setattr(accounts, "verify_password", counting_verify)
    monkeypatch.setattr(accounts, "verify_dummy", counting_dummy)
    stranger = device_keys.generate_signer()
    seen = []
    for password in (PASSWORD, "not the password at all"):
        bad = devices.proof(alice, "alice", "laptop-1", key=stranger)
        with pytest.raises(accounts.SignInError) as err:
            accounts.authenticate(alice, "alice", password, None, "laptop-1", device_proof=bad)
        failure = device_failures(alice)[-1]
        seen.append((err.value.message, err.value.hint, failure["step"], failure["object"]))
    assert calls == []
    assert seen[0] == seen[1]
    # The same proof from an unknown user's side: the same answer too.
    with pytest.raises(accounts.SignInError) as err:
        accounts.authenticate(
            alice, "mallory", PASSWORD, None, "laptop-1", device_proof=devices.proof(alice, "mallory", "x")
        )
    assert (err.value.message, err.value.hint) == seen[0][:2]
    assert device_failures(alice)[-1]["object"] == "account:?"
    # With a good proof, the password is checked (the existing, timing-safe path).
    with pytest.raises(accounts.SignInError):
        accounts.authenticate(
            alice, "alice", "not it", None, "laptop-1", device_proof=devices.proof(alice, "alice", "laptop-1")
        )
    assert calls == ["verify"]


# --- keys: formats accepted and refused ----------------------------------------------------------------


def _ssh(key: Any) -> str:
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _pem(key: Any) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize(
    "make", [ed25519.Ed25519PrivateKey.generate, lambda: ec.generate_private_key(ec.SECP256R1())]
)
def test_pem_and_openssh_of_one_key_have_one_fingerprint(make: Any) -> None:
    public = make().public_key()
    from_pem = device_keys.parse_public_key(_pem(public))
    from_ssh = device_keys.parse_public_key(_ssh(public) + " alice@laptop")
    assert from_pem.fingerprint == from_ssh.fingerprint
    assert from_pem.pem == from_ssh.pem
    assert device_keys.FINGERPRINT.fullmatch(from_pem.fingerprint)


REFUSED = {
    "empty": "",
    "junk": "hello world",
    "truncated PEM": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
    "bad base64 ssh": "ssh-ed25519 AAAA!!!!",
    "fake ssh": "ssh-ed25519 AAAAaliceKey",
    "private key": ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode(),
    "two lines": "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
    "binary": "\x00\x01\x02",
    "huge": "ssh-ed25519 " + "A" * 20_000,
}
UNSUPPORTED = {
    "rsa": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
    "rsa ssh": _ssh(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
    "p384": _pem(ec.generate_private_key(ec.SECP384R1()).public_key()),
}


@pytest.mark.parametrize("text", list(REFUSED.values()), ids=list(REFUSED))
def test_malformed_keys_are_refused_saying_what_is_accepted(workspace: Workspace, text: str) -> None:
    registry.add_device(workspace, "laptop-1", managed=True)
    with pytest.raises(InputError) as err:
        accounts.enrol_device_key(workspace, "laptop-1", text)
    assert "Ed25519 or ECDSA P-256" in err.value.diagnostics()
    assert "PEM" in err.value.diagnostics()
    assert "OpenSSH" in err.value.diagnostics()
    assert accounts.list_device_keys(workspace) == []


@pytest.mark.parametrize("text", list(UNSUPPORTED.values()), ids=list(UNSUPPORTED))
def test_unsupported_key_types_are_refused(workspace: Workspace, text: str) -> None:
    registry.add_device(workspace, "laptop-1", managed=True)
    with pytest.raises(InputError, match="not supported") as err:
        accounts.enrol_device_key(workspace, "laptop-1", text)
    assert "Ed25519 or ECDSA P-256" in err.value.diagnostics()


def test_a_stored_key_that_does_not_parse_proves_nothing(alice: Workspace) -> None:
    """A key stored before keys were parsed (free text) cannot be used: enrol it again."""
    from gpaisec.access.models import DeviceKey

    key = devices.signer("laptop-1")
    with alice.transaction() as s:
        row = s.query(DeviceKey).filter_by(fingerprint=key.fingerprint).one()
        row.public_key = "ssh-ed25519 AAAAaliceKey"
    refused(alice, devices.proof(alice, "alice", "laptop-1"), "unusable")


def test_private_key_files(tmp_path: Any) -> None:
    signer = device_keys.generate_signer("ecdsa-p256")
    path = tmp_path / "k" / "laptop.key"
    signer.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert device_keys.load_signer(path).fingerprint == signer.fingerprint
    with pytest.raises(InputError, match="never overwritten"):
        signer.save(path)
    path.chmod(0o644)
    with pytest.raises(InputError, match="readable by other users"):
        device_keys.load_signer(path)
    path.chmod(0o600)
    path.write_text("not a key")
    with pytest.raises(InputError, match="not a usable device private key"):
        device_keys.load_signer(path)
    with pytest.raises(InputError, match="cannot read"):
        device_keys.load_signer(tmp_path / "missing.key")
    with pytest.raises(InputError, match="cannot name a key file"):
        device_keys.default_key_path(tmp_path, "../etc/passwd")


WEAK_KEYS = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "hostile" / "ed25519-weak-keys.json").read_text()
)["keys"]


def _weak_pem(raw: bytes) -> str | None:
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:  # the library refuses it already
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize("weak", WEAK_KEYS, ids=[k["name"] + " " + k["hex"][:8] for k in WEAK_KEYS])
def test_ed25519_keys_of_small_order_are_refused(workspace: Workspace, weak: dict[str, str]) -> None:
    raw = bytes.fromhex(weak["hex"])
    assert device_keys.ed25519_small_order(raw)
    pem = _weak_pem(raw)
    if pem is None:
        return
    registry.add_device(workspace, "kiosk-1", managed=True, disk_encrypted=True)
    with pytest.raises(InputError, match="small order"):
        accounts.enrol_device_key(workspace, "kiosk-1", pem)


def test_a_stored_weak_key_cannot_sign_anyone_in(alice: Workspace) -> None:
    """With the identity as the key, R = identity and S = 0 verify every message: such a key stored
    before keys were checked (or put in the database some other way) must prove nothing."""
    from gpaisec.access.models import DeviceKey

    identity = bytes.fromhex(WEAK_KEYS[0]["hex"])
    pem = _weak_pem(identity)
    assert pem is not None
    key = devices.signer("laptop-1")
    with alice.transaction() as s:
        row = s.query(DeviceKey).filter_by(fingerprint=key.fingerprint).one()
        row.public_key = pem
        weak_fingerprint = (
            "sha256:"
            + hashlib.sha256(
                serialization.load_pem_public_key(pem.encode()).public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).hexdigest()
        )
        row.fingerprint = weak_fingerprint
    challenge_id = accounts.device_challenge(alice).id
    forged = DeviceProof(weak_fingerprint, challenge_id, identity + bytes(32))
    refused(alice, forged, "unusable")


def test_an_exclusive_write_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Any) -> None:
    from gpaisec._files import write_atomically

    path = tmp_path / "laptop.key"
    path.write_bytes(b"somebody else's key")  # created after any exists() check a caller made
    assert not write_atomically(path, b"new key", mode=0o600, exclusive=True)  # nothing written
    assert path.read_bytes() == b"somebody else's key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laptop.key"]  # no temporary file left
    assert write_atomically(tmp_path / "fresh.key", b"new key", mode=0o600, exclusive=True)
    assert (tmp_path / "fresh.key").read_bytes() == b"new key"
    assert (tmp_path / "fresh.key").stat().st_mode & 0o777 == 0o600
