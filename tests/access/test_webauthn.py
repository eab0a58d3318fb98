"""WebAuthn ceremonies against a software authenticator (EC P-256, attestation "none")."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from gpaisec.access import webauthn
from gpaisec.access.mfa import MfaError
from gpaisec.access.models import WebAuthnChallenge, WebAuthnCredential
from gpaisec.errors import InputError
from gpaisec.store.base import utcnow
from gpaisec.weights.models import Finding
from gpaisec.workspace import Workspace
from tests.access.test_accounts import actions, add_human, audit, fast_hashes  # noqa: F401

RP_ID = "gpaisec.example"
RP_NAME = "gpaisec"
ORIGIN = "https://gpaisec.example"
UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """A minimal CTAP2-like authenticator: one P-256 credential, a signature counter, UV on demand."""

    def __init__(self, rp_id: str = RP_ID) -> None:
        self.rp_id = rp_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.aaguid = bytes(16)
        self.counter = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def _auth_data(self, flags: int, counter: int, attested: bytes = b"") -> bytes:
        rp_id_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + counter.to_bytes(4, "big") + attested

    @staticmethod
    def _client_data(kind: str, options_json: str, origin: str) -> bytes:
        challenge = json.loads(options_json)["challenge"]
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(self, options_json: str, *, origin: str = ORIGIN, flags: int = UP | UV | AT) -> str:
        """The response of navigator.credentials.create(), as the browser would send it."""
        client_data = self._client_data("webauthn.create", options_json, origin)
        attested = (
            self.aaguid + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key()
        )
        auth_data = self._auth_data(flags, self.counter, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["usb"],
                },
                "clientExtensionResults": {},
            }
        )

    def get(
        self,
        options_json: str,
        *,
        origin: str = ORIGIN,
        flags: int = UP | UV,
        counter: int | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """The response of navigator.credentials.get(): a signature over authData || sha256(clientData)."""
        allowed = [c["id"] for c in json.loads(options_json).get("allowCredentials", [])]
        assert b64url(self.credential_id) in allowed
        if counter is None:
            self.counter += 1
            counter = self.counter
        client_data = self._client_data("webauthn.get", options_json, origin)
        auth_data = self._auth_data(flags, counter)
        signature = (key or self.key).sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                },
                "clientExtensionResults": {},
            }
        )


def register(ws: Workspace, username: str, device: SoftAuthenticator) -> str:
    options = webauthn.begin_registration(ws, username, rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN)
    return webauthn.finish_registration(ws, username, device.create(options), rp_id=RP_ID, origin=ORIGIN)


def sign_in(ws: Workspace, username: str, device: SoftAuthenticator, **kw: Any) -> None:
    options = webauthn.begin_authentication(ws, username, rp_id=RP_ID)
    webauthn.finish_authentication(ws, username, device.get(options, **kw), rp_id=RP_ID, origin=ORIGIN)


def denials(ws: Workspace, action: str) -> list[str]:
    return [str(json.loads(bytes(e.entry))["details"].get("reason")) for e in audit(ws) if e.action == action]


def stored(ws: Workspace) -> WebAuthnCredential:
    with ws.reader() as s:
        row = s.scalars(select(WebAuthnCredential)).one()
        s.expunge(row)
        return row


def test_register_then_authenticate(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    options = json.loads(
        webauthn.begin_registration(workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN)
    )
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["rp"] == {"id": RP_ID, "name": RP_NAME}
    cred_id = register(workspace, "alice", device)
    row = stored(workspace)
    assert row.id == cred_id
    assert row.credential_id == device.credential_id
    assert row.transports == ["usb"]
    assert "mfa.webauthn.register" in actions(workspace)

    # Registering the same key again: excluded in the options, refused if sent anyway.
    options2 = webauthn.begin_registration(workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN)
    assert json.loads(options2)["excludeCredentials"][0]["id"] == b64url(device.credential_id)
    with pytest.raises(webauthn.WebAuthnError, match="already registered"):
        webauthn.finish_registration(workspace, "alice", device.create(options2), rp_id=RP_ID, origin=ORIGIN)

    options3 = json.loads(webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID))
    assert options3["userVerification"] == "required"
    assert options3["allowCredentials"][0]["transports"] == ["usb"]
    sign_in(workspace, "alice", device)
    sign_in(workspace, "alice", device)
    row = stored(workspace)
    assert row.sign_count == 2
    assert row.last_used_at is not None
    assert actions(workspace).count("mfa.webauthn.authenticate") == 2
    with workspace.reader() as s:  # every finished ceremony took its challenge away
        assert s.scalars(select(WebAuthnChallenge)).all() == []


def test_refusals_are_mfa_errors_and_audited(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    with pytest.raises(MfaError, match="no security key"):
        webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(InputError):
        webauthn.begin_registration(
            workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin="http://gpaisec.example"
        )
    with pytest.raises(InputError):
        webauthn.begin_registration(
            workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin="https://gpaisec.example.evil"
        )
    device = SoftAuthenticator()
    register(workspace, "alice", device)
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError):
        webauthn.finish_authentication(workspace, "alice", "{not json", rp_id=RP_ID, origin=ORIGIN)
    # A signature by another key.
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    forged = device.get(options, key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(webauthn.WebAuthnError):
        webauthn.finish_authentication(workspace, "alice", forged, rp_id=RP_ID, origin=ORIGIN)
    # An assertion for another relying party (wrong RP ID hash).
    other = SoftAuthenticator(rp_id="evil.example")
    other.credential_id, other.key = device.credential_id, device.key
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError, match="RP ID"):
        webauthn.finish_authentication(workspace, "alice", other.get(options), rp_id=RP_ID, origin=ORIGIN)
    assert len(denials(workspace, "mfa.webauthn.authenticate.denied")) == 3
    assert stored(workspace).last_used_at is None


def test_a_challenge_is_single_use(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    register(workspace, "alice", device)
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    response = device.get(options)
    webauthn.finish_authentication(workspace, "alice", response, rp_id=RP_ID, origin=ORIGIN)
    # The same response again: its challenge is gone.
    with pytest.raises(webauthn.WebAuthnError, match="no live challenge"):
        webauthn.finish_authentication(workspace, "alice", response, rp_id=RP_ID, origin=ORIGIN)
    # The same response against a fresh challenge: the challenge does not match.
    webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError, match="challenge"):
        webauthn.finish_authentication(workspace, "alice", response, rp_id=RP_ID, origin=ORIGIN)
    # A failed attempt uses the challenge up too: a correct response to it is refused afterwards.
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError):
        webauthn.finish_authentication(
            workspace, "alice", device.get(options, flags=UP), rp_id=RP_ID, origin=ORIGIN
        )
    with pytest.raises(webauthn.WebAuthnError, match="no live challenge"):
        webauthn.finish_authentication(workspace, "alice", device.get(options), rp_id=RP_ID, origin=ORIGIN)
    assert stored(workspace).sign_count == 1


def test_user_verification_is_required(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    options = webauthn.begin_registration(workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN)
    with pytest.raises(webauthn.WebAuthnError, match="verif"):
        webauthn.finish_registration(
            workspace, "alice", device.create(options, flags=UP | AT), rp_id=RP_ID, origin=ORIGIN
        )
    assert "mfa.webauthn.register.denied" in actions(workspace)
    register(workspace, "alice", device)
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError, match="verif"):
        webauthn.finish_authentication(
            workspace, "alice", device.get(options, flags=UP), rp_id=RP_ID, origin=ORIGIN
        )
    assert denials(workspace, "mfa.webauthn.authenticate.denied")


def test_wrong_origin_is_refused(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    options = webauthn.begin_registration(workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN)
    with pytest.raises(webauthn.WebAuthnError, match="origin"):
        webauthn.finish_registration(
            workspace,
            "alice",
            device.create(options, origin="https://gpaisec.example.phish"),
            rp_id=RP_ID,
            origin=ORIGIN,
        )
    register(workspace, "alice", device)
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID)
    with pytest.raises(webauthn.WebAuthnError, match="origin"):
        webauthn.finish_authentication(
            workspace,
            "alice",
            device.get(options, origin="https://phish.example"),
            rp_id=RP_ID,
            origin=ORIGIN,
        )
    assert any("origin" in r for r in denials(workspace, "mfa.webauthn.authenticate.denied"))


def test_sign_count_regression_is_refused_and_a_finding(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    register(workspace, "alice", device)
    sign_in(workspace, "alice", device, counter=5)
    for counter in (5, 3):  # the same counter again, then a lower one: a clone's signatures
        with pytest.raises(webauthn.WebAuthnError, match="cloned"):
            sign_in(workspace, "alice", device, counter=counter)
    assert stored(workspace).sign_count == 5
    with workspace.reader() as s:
        findings = list(s.scalars(select(Finding).where(Finding.kind == "cloned_authenticator")))
    assert len(findings) == 1  # deduplicated per credential
    assert findings[0].severity == "high"
    assert "alice" in findings[0].summary
    assert "finding.open" in actions(workspace)
    sign_in(workspace, "alice", device, counter=6)


def test_an_authenticator_without_a_counter_is_accepted(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    register(workspace, "alice", device)
    sign_in(workspace, "alice", device, counter=0)
    sign_in(workspace, "alice", device, counter=0)
    assert stored(workspace).sign_count == 0


def test_challenges_expire_after_five_minutes(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    device = SoftAuthenticator()
    t0 = utcnow()
    options = webauthn.begin_registration(
        workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN, now=t0
    )
    with pytest.raises(webauthn.WebAuthnError, match="expired"):
        webauthn.finish_registration(
            workspace,
            "alice",
            device.create(options),
            rp_id=RP_ID,
            origin=ORIGIN,
            now=t0 + webauthn.CHALLENGE_LIFETIME + dt.timedelta(seconds=1),
        )
    options = webauthn.begin_registration(
        workspace, "alice", rp_id=RP_ID, rp_name=RP_NAME, origin=ORIGIN, now=t0
    )
    webauthn.finish_registration(
        workspace,
        "alice",
        device.create(options),
        rp_id=RP_ID,
        origin=ORIGIN,
        now=t0 + webauthn.CHALLENGE_LIFETIME - dt.timedelta(seconds=1),
    )
    options = webauthn.begin_authentication(workspace, "alice", rp_id=RP_ID, now=t0)
    with pytest.raises(webauthn.WebAuthnError, match="expired"):
        webauthn.finish_authentication(
            workspace,
            "alice",
            device.get(options),
            rp_id=RP_ID,
            origin=ORIGIN,
            now=t0 + dt.timedelta(minutes=6),
        )
    assert stored(workspace).last_used_at is None
