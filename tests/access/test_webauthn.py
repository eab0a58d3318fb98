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

from gpaisec.access import accounts, mfa, webauthn
from gpaisec.access.mfa import MfaError
from gpaisec.access.mfa import totp_code as mfa_code
from gpaisec.access.models import WebAuthnChallenge, WebAuthnCredential
from gpaisec.access.ratelimit import ACCOUNT_POLICY, ThrottledError
from gpaisec.errors import ConflictError, DeniedError, InputError, NotFoundError
from gpaisec.store.base import utcnow
from gpaisec.weights.models import Finding
from gpaisec.workspace import Workspace
from tests import devices
from tests.access.test_accounts import (  # noqa: F401
    PASSWORD,
    actions,
    add_device,
    add_human,
    audit,
    fast_hashes,
)

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
        self.user_handle: bytes | None = None  # kept from create(), as a passkey (resident key) does

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
        user = json.loads(options_json)["user"]
        self.user_handle = unb64url(user["id"])
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
        user_handle: bytes | None = None,
    ) -> str:
        """The response of navigator.credentials.get(): a signature over authData || sha256(clientData)."""
        allowed = [c["id"] for c in json.loads(options_json).get("allowCredentials", [])]
        # An empty list asks for a discoverable credential (a passkey) of the RP, which names its user.
        assert b64url(self.credential_id) in allowed or (not allowed and self.user_handle is not None)
        if counter is None:
            self.counter += 1
            counter = self.counter
        user_handle = user_handle or self.user_handle
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
                    **({"userHandle": b64url(user_handle)} if user_handle else {}),
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


# --- passkeys at sign-in, step-up, and a person's own passkeys ---------------------------------------

RP = webauthn.RelyingParty(rp_id=RP_ID, origin=ORIGIN, name=RP_NAME)


def with_passkey(ws: Workspace, username: str, *, totp: bool = False) -> SoftAuthenticator:
    add_human(ws, username, totp=totp)
    device = SoftAuthenticator()
    register(ws, username, device)
    return device


def passkey_login(
    ws: Workspace, username: str, device: SoftAuthenticator, laptop: str, password: str = PASSWORD, **kw: Any
) -> accounts.Login:
    options = webauthn.begin_sign_in(ws, username, password, rp_id=RP_ID)
    assertion = webauthn.Assertion(device.get(options, **kw), RP)
    return devices.sign_in(ws, username, password, assertion, laptop)


def challenges(ws: Workspace) -> int:
    """Pending passkey challenges (not the device proof's record of the last challenge used)."""
    with ws.reader() as s:
        query = select(WebAuthnChallenge).where(
            WebAuthnChallenge.purpose.not_like(f"{accounts.DEVICE_CHALLENGE_PURPOSE}:%")
        )
        return len(s.scalars(query).all())


def test_sign_in_with_a_passkey_instead_of_a_code(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    device = with_passkey(workspace, "alice")
    options = json.loads(webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID))
    assert options["allowCredentials"] == []  # names no credential: nothing to learn before the finish
    assert options["userVerification"] == "required"
    assert options["rpId"] == RP_ID
    lg = passkey_login(workspace, "alice", device, "laptop-1")
    assert lg.session.mfa_at is not None
    logins = [json.loads(bytes(e.entry))["details"] for e in audit(workspace) if e.action == "login"]
    assert logins[-1]["factor"] == "webauthn"
    assert stored(workspace).sign_count == 1  # the signature counter moved on
    assert challenges(workspace) == 0


def test_a_passkey_only_account_cannot_sign_in_without_it(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    with_passkey(workspace, "alice")
    with pytest.raises(accounts.SignInError):
        devices.sign_in(workspace, "alice", PASSWORD, None, "laptop-1")
    with pytest.raises(accounts.SignInError):
        devices.sign_in(workspace, "alice", PASSWORD, "123456", "laptop-1")


def test_begin_answers_alike_and_keeps_a_challenge_only_for_the_right_password(workspace: Workspace) -> None:
    with_passkey(workspace, "alice")
    add_human(workspace, "bob", totp=True)  # right password, but no passkey
    base = challenges(workspace)
    shapes = []
    for user, password in (
        ("mallory", PASSWORD),
        ("alice", "not the password at all"),
        ("bob", PASSWORD),
        ("ali\x00ce", PASSWORD),
    ):
        options = json.loads(webauthn.begin_sign_in(workspace, user, password, rp_id=RP_ID))
        shapes.append({k: (v if k != "challenge" else len(v)) for k, v in options.items()})
        assert challenges(workspace) == base
    right = json.loads(webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID))
    shapes.append({k: (v if k != "challenge" else len(v)) for k, v in right.items()})
    assert all(shape == shapes[0] for shape in shapes)
    assert challenges(workspace) == base + 1
    fails = [json.loads(bytes(e.entry))["details"] for e in audit(workspace) if e.action == "login.fail"]
    assert [f["via"] for f in fails] == ["webauthn"] * 3  # mallory, alice's wrong password, the NUL name


def test_every_passkey_sign_in_failure_says_the_same(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    device = with_passkey(workspace, "alice")
    other = with_passkey(workspace, "bob")
    texts = set()

    def fail(user: str, password: str, response: str) -> None:
        with pytest.raises(accounts.SignInError) as info:
            devices.sign_in(workspace, user, password, webauthn.Assertion(response, RP), "laptop-1")
        texts.add(info.value.diagnostics())
        accounts.throttle(workspace).reset_account(user)  # more cases than free attempts

    options = webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID)
    good = device.get(options)
    fail("mallory", PASSWORD, good)  # unknown user
    fail("alice", "not the password at all", good)  # wrong password: the challenge stays, untouched
    devices.sign_in(workspace, "alice", PASSWORD, webauthn.Assertion(good, RP), "laptop-1")
    fail("alice", PASSWORD, good)  # a response is good for one sign-in only
    options = webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID)
    fail("alice", PASSWORD, device.get(options, flags=UP))  # user not verified
    options = webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID)
    fail("alice", PASSWORD, other.get(options))  # bob's passkey for alice's sign-in
    options = webauthn.begin_sign_in(workspace, "alice", PASSWORD, rp_id=RP_ID)
    fail("alice", PASSWORD, device.get(options, user_handle=b"acc_somebody_else"))
    fail("alice", PASSWORD, "{not json")
    assert len(texts) == 1


def stored_for(ws: Workspace, username: str) -> WebAuthnCredential:
    with ws.reader() as s:
        account = accounts.get_account(s, username)
        row = s.scalars(select(WebAuthnCredential).where(WebAuthnCredential.account_id == account.id)).one()
        s.expunge(row)
        return row


def test_begin_is_throttled_for_everyone_alike(workspace: Workspace) -> None:
    # Every begin counts in the sign-in's throttle, right password or wrong: the same number of begins
    # is throttled at the same point, so the throttle cannot say which password was right.
    free = ACCOUNT_POLICY.free_attempts
    for name, right in (("alice", True), ("bob", False)):
        with_passkey(workspace, name)
        for i in range(free):
            password = PASSWORD if right and i % 2 else "not the password at all"
            webauthn.begin_sign_in(workspace, name, password, rp_id=RP_ID)
        with pytest.raises(ThrottledError):
            webauthn.begin_sign_in(workspace, name, PASSWORD, rp_id=RP_ID)
        with pytest.raises(ThrottledError):
            accounts.throttle(workspace).check(name, "local")


def test_step_up_with_a_passkey(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    device = with_passkey(workspace, "alice")
    lg = passkey_login(workspace, "alice", device, "laptop-1")
    later = utcnow() + dt.timedelta(minutes=10)
    options = json.loads(webauthn.begin_step_up(workspace, lg.token, rp_id=RP_ID, now=later))
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(device.credential_id)]
    response = device.get(json.dumps(options))
    sess = accounts.step_up(workspace, lg.token, webauthn.Assertion(response, RP), now=later)
    assert sess.mfa_at == later
    with pytest.raises(MfaError):  # the same response again: its challenge was taken
        accounts.step_up(workspace, lg.token, webauthn.Assertion(response, RP), now=later)
    assert "session.mfa.fail" in actions(workspace)


def test_registering_a_passkey_needs_a_fresh_second_factor(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    t0 = utcnow()
    lg = devices.sign_in(workspace, "alice", PASSWORD, mfa_code(secret, t0), "laptop-1", now=t0)
    device = SoftAuthenticator()
    stale = t0 + webauthn.FRESH_MFA + dt.timedelta(seconds=1)
    with pytest.raises(DeniedError, match="second factor confirmed in the last 5 minutes"):
        webauthn.begin_passkey_registration(workspace, lg.token, RP, now=stale)
    assert "mfa.webauthn.register.denied" in actions(workspace)
    options = json.loads(webauthn.begin_passkey_registration(workspace, lg.token, RP, now=t0))
    assert options["authenticatorSelection"]["residentKey"] == "required"
    passkey = webauthn.finish_passkey_registration(
        workspace, lg.token, device.create(json.dumps(options)), RP, now=t0
    )
    (listed,) = webauthn.list_passkeys(workspace, "alice")
    assert listed.id == passkey
    assert listed.last_used_at is None
    assert "mfa.webauthn.register" in actions(workspace)


def test_removing_passkeys_never_removes_the_last_factor(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    first = with_passkey(workspace, "alice")
    lg = passkey_login(workspace, "alice", first, "laptop-1")
    second = SoftAuthenticator()
    p2 = webauthn.finish_passkey_registration(
        workspace, lg.token, second.create(webauthn.begin_passkey_registration(workspace, lg.token, RP)), RP
    )
    p1 = next(p.id for p in webauthn.list_passkeys(workspace, "alice") if p.id != p2)
    with pytest.raises(NotFoundError):
        webauthn.remove_passkey(workspace, lg.token, "wan_not_mine")
    webauthn.remove_passkey(workspace, lg.token, p1)
    assert [p.id for p in webauthn.list_passkeys(workspace, "alice")] == [p2]
    with pytest.raises(ConflictError, match="only second factor"):
        webauthn.remove_passkey(workspace, lg.token, p2)
    assert "mfa.webauthn.remove" in actions(workspace)
    assert "mfa.webauthn.remove.denied" in actions(workspace)
    # Stale: even a removal that would be allowed needs a fresh second factor.
    later = utcnow() + webauthn.FRESH_MFA + dt.timedelta(minutes=1)
    with pytest.raises(DeniedError, match="second factor confirmed"):
        webauthn.remove_passkey(workspace, lg.token, p2, now=later)


def test_another_persons_passkey_cannot_be_removed(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_device(workspace, "laptop-2")
    alice = with_passkey(workspace, "alice", totp=True)
    bob = with_passkey(workspace, "bob", totp=True)
    passkey_login(workspace, "alice", alice, "laptop-1")
    lg_bob = passkey_login(workspace, "bob", bob, "laptop-2")
    (alices,) = webauthn.list_passkeys(workspace, "alice")
    with pytest.raises(NotFoundError):
        webauthn.remove_passkey(workspace, lg_bob.token, alices.id)
    assert len(webauthn.list_passkeys(workspace, "alice")) == 1


def test_recovery_codes_stand_in_for_a_lost_passkey(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    device = with_passkey(workspace, "alice")
    lg = passkey_login(workspace, "alice", device, "laptop-1")
    codes = mfa.regenerate_recovery_codes(workspace, "alice")
    accounts.logout(workspace, lg.token)
    # The passkey is lost: a recovery code signs her in (once).
    devices.sign_in(workspace, "alice", PASSWORD, codes[0], "laptop-1")
    with pytest.raises(accounts.SignInError):
        devices.sign_in(workspace, "alice", PASSWORD, "123456", "laptop-1")  # no TOTP enrolled
