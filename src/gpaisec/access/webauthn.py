"""WebAuthn (passkeys, security keys): the phishing-resistant second factor.

Two ceremonies, each in two steps, with the browser (``navigator.credentials``) in between:

* Registration: :func:`begin_registration` returns the creation options as JSON;
  :func:`finish_registration` verifies the authenticator's attestation and stores its public key.
* Authentication: :func:`begin_authentication` returns the request options as JSON (the account's
  credentials are allowed); :func:`finish_authentication` verifies the signed assertion.

Rules, checked on every finish (cryptographic checks by py_webauthn):

1. Challenges are random (64 bytes), kept server-side (one pending per account and ceremony), valid for
   :data:`CHALLENGE_LIFETIME` and single use: finishing takes the challenge away *before* verifying, in
   its own transaction, so a failed or replayed response can never use it again. Starting a ceremony
   again replaces the pending challenge.
2. The origin and the RP ID hash must match the configured ones (phishing resistance).
3. User presence *and* user verification (PIN or biometric) are required: the authenticator alone is
   not enough.
4. The signature counter must increase (unless the authenticator keeps none, i.e. it stays 0). A counter
   that does not increase after a valid signature means the credential may have been cloned: refused,
   audited, and a finding (``cloned_authenticator``) is opened.

Every finish is audited (``mfa.webauthn.register``/``mfa.webauthn.authenticate``, or the same with
``.denied`` and the reason); a refusal raises :class:`WebAuthnError`, a :class:`~gpaisec.access.mfa.MfaError`.
Only public material is stored (credential ids, COSE public keys, counters).

:func:`begin_authentication` lists an account's credential ids: call it only after the password step,
as the sign-in does for TOTP. Not yet wired into :func:`gpaisec.access.accounts.authenticate`, the
API or the CLI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DBSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json, parse_registration_credential_json
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gpaisec.access.accounts import Refusal, get_account, guarded
from gpaisec.access.mfa import MfaError
from gpaisec.access.models import Account, WebAuthnChallenge, WebAuthnCredential
from gpaisec.audit.service import record
from gpaisec.errors import DeniedError, InputError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import Workspace

__all__ = [
    "ALGORITHMS",
    "CHALLENGE_LIFETIME",
    "WebAuthnError",
    "begin_authentication",
    "begin_registration",
    "finish_authentication",
    "finish_registration",
]

CHALLENGE_LIFETIME = dt.timedelta(minutes=5)
TIMEOUT_MS = 120_000  # the browser's hint; the server-side expiry is what counts
# EdDSA, ES256, RS256 (no SHA-1 or PKCS#1 variants with weaker hashes).
ALGORITHMS = [
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
_TRANSPORTS = {t.value for t in AuthenticatorTransport}
REGISTER = "register"
AUTHENTICATE = "authenticate"

T = TypeVar("T")


class WebAuthnError(MfaError):
    """A WebAuthn response was refused (wrong, expired, replayed, unverified or from a cloned key)."""

    def __init__(self, message: str = "the security key's response was refused") -> None:
        DeniedError.__init__(
            self, message, hint="start again and confirm on your security key with its PIN or biometric"
        )


# --- helpers ---------------------------------------------------------------------------------------


def _check_origin(origin: str, rp_id: str) -> None:
    """The origin is https (http only on localhost) and its host is the RP ID or below it."""
    parts = urlsplit(origin)
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and host == "localhost")
    if not secure or not rp_id or not (host == rp_id or host.endswith("." + rp_id)):
        raise InputError(
            f"origin {origin!r} cannot use RP ID {rp_id!r}",
            hint="the origin must be https://<rp_id> or a subdomain of it (http only for localhost)",
        )


def _human(s: DBSession, username: str) -> Account:
    account = get_account(s, username)
    if account.kind != "human" or account.disabled_at is not None:
        raise DeniedError(f"{username} cannot use a security key", hint="only active human accounts can")
    return account


def _new_challenge(s: DBSession, account_id: str, purpose: str, challenge: bytes, now: dt.datetime) -> None:
    row = s.get(WebAuthnChallenge, (account_id, purpose))
    if row is None:
        s.add(
            WebAuthnChallenge(
                account_id=account_id,
                purpose=purpose,
                challenge=challenge,
                created_at=now,
                expires_at=now + CHALLENGE_LIFETIME,
            )
        )
    else:
        row.challenge, row.created_at, row.expires_at = challenge, now, now + CHALLENGE_LIFETIME


def _take_challenge(ws: Workspace, username: str, purpose: str, now: dt.datetime) -> bytes | None:
    """Remove the pending challenge (committed at once) and return it, or None if none is live.

    The delete names the challenge it read, so of two concurrent finishers only one gets it.
    """
    with ws.transaction() as s:
        account = _human(s, username)
        row = s.get(WebAuthnChallenge, (account.id, purpose))
        if row is None:
            return None
        challenge, expires_at = row.challenge, row.expires_at
        taken = s.execute(
            delete(WebAuthnChallenge).where(
                WebAuthnChallenge.account_id == account.id,
                WebAuthnChallenge.purpose == purpose,
                WebAuthnChallenge.challenge == challenge,
            )
        )
        if getattr(taken, "rowcount", 0) != 1 or expires_at <= now:
            return None
    return challenge


def _finish(
    ws: Workspace,
    username: str,
    purpose: str,
    action: str,
    now: dt.datetime,
    check: Callable[[DBSession, Account, bytes], T],
) -> T:
    challenge = _take_challenge(ws, username, purpose, now)
    obj = f"account:{username}"

    def operation(s: DBSession) -> T:
        if challenge is None:
            raise Refusal(
                WebAuthnError("no live challenge: it expired, was used already, or was never issued"),
                action=f"{action}.denied",
                object=obj,
            )
        return check(s, _human(s, username), challenge)

    return guarded(ws, ws.actor, operation)


def _text(value: object) -> str:
    """An enum's value (py_webauthn sometimes hands over the plain string instead)."""
    return str(getattr(value, "value", value))


# --- registration ----------------------------------------------------------------------------------


def begin_registration(
    ws: Workspace, username: str, *, rp_id: str, rp_name: str, origin: str, now: dt.datetime | None = None
) -> str:
    """Start registering a security key for ``username``; returns the options for the browser (JSON)."""
    _check_origin(origin, rp_id)
    now = now or utcnow()
    with ws.transaction() as s:
        account = _human(s, username)
        existing = s.scalars(
            select(WebAuthnCredential.credential_id).where(WebAuthnCredential.account_id == account.id)
        )
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=rp_name,
            user_name=username,
            user_id=account.id.encode(),  # opaque, not personal data
            user_display_name=account.person.name if account.person else username,
            timeout=TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in existing],
            supported_pub_key_algs=ALGORITHMS,
        )
        _new_challenge(s, account.id, REGISTER, options.challenge, now)
    return options_to_json(options)


def finish_registration(
    ws: Workspace,
    username: str,
    response_json: str,
    *,
    rp_id: str,
    origin: str,
    now: dt.datetime | None = None,
) -> str:
    """Verify the browser's registration response and store the key; returns the credential's id here."""
    now = now or utcnow()
    action = "mfa.webauthn.register"
    obj = f"account:{username}"

    def check(s: DBSession, account: Account, challenge: bytes) -> str:
        try:
            credential: RegistrationCredential = parse_registration_credential_json(response_json)
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                require_user_presence=True,
                require_user_verification=True,
                supported_pub_key_algs=ALGORITHMS,
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise Refusal(
                WebAuthnError(f"the registration response was refused: {exc}"),
                action=f"{action}.denied",
                object=obj,
            ) from None
        if not verified.user_verified:  # also checked by py_webauthn; kept explicit
            raise Refusal(WebAuthnError("the user was not verified"), action=f"{action}.denied", object=obj)
        taken = s.scalars(
            select(WebAuthnCredential).where(WebAuthnCredential.credential_id == verified.credential_id)
        ).first()
        if taken is not None:
            raise Refusal(
                WebAuthnError("this security key credential is already registered"),
                action=f"{action}.denied",
                object=obj,
            )
        transports = [
            t.value for t in (credential.response.transports or []) if isinstance(t, AuthenticatorTransport)
        ]
        row = WebAuthnCredential(
            id=new_id("wan"),
            account_id=account.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=transports,
            created_at=now,
        )
        s.add(row)
        record(
            s,
            actor=ws.actor,
            action=action,
            object=obj,
            details={"credential": row.id, "aaguid": verified.aaguid, "fmt": _text(verified.fmt)},
        )
        return row.id

    return _finish(ws, username, REGISTER, action, now, check)


# --- authentication --------------------------------------------------------------------------------


def begin_authentication(ws: Workspace, username: str, *, rp_id: str, now: dt.datetime | None = None) -> str:
    """Start a WebAuthn sign-in for ``username``; returns the request options for the browser (JSON)."""
    now = now or utcnow()
    with ws.transaction() as s:
        account = _human(s, username)
        creds = list(s.scalars(select(WebAuthnCredential).where(WebAuthnCredential.account_id == account.id)))
        if not creds:
            raise WebAuthnError(f"{username} has no security key registered")
        options = generate_authentication_options(
            rp_id=rp_id,
            timeout=TIMEOUT_MS,
            allow_credentials=[
                PublicKeyCredentialDescriptor(
                    id=c.credential_id,
                    transports=[AuthenticatorTransport(t) for t in c.transports if t in _TRANSPORTS],
                )
                for c in creds
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        _new_challenge(s, account.id, AUTHENTICATE, options.challenge, now)
    return options_to_json(options)


def finish_authentication(
    ws: Workspace,
    username: str,
    response_json: str,
    *,
    rp_id: str,
    origin: str,
    now: dt.datetime | None = None,
) -> None:
    """Verify the browser's assertion; returns quietly or raises :class:`WebAuthnError` (audited)."""
    now = now or utcnow()
    action = "mfa.webauthn.authenticate"
    obj = f"account:{username}"

    def refuse(reason: str, **details: object) -> Refusal:
        return Refusal(WebAuthnError(reason), action=f"{action}.denied", object=obj, details=dict(details))

    def check(s: DBSession, account: Account, challenge: bytes) -> None:
        try:
            credential: AuthenticationCredential = parse_authentication_credential_json(response_json)
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise refuse(f"the authentication response was refused: {exc}") from None
        row = s.scalars(
            select(WebAuthnCredential).where(
                WebAuthnCredential.account_id == account.id,
                WebAuthnCredential.credential_id == credential.raw_id,
            )
        ).first()
        if row is None:
            raise refuse("the security key is not registered for this account")
        try:
            # The counter is checked below, after the signature, so that a regression is told apart.
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=row.public_key,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise refuse(f"the authentication response was refused: {exc}", credential=row.id) from None
        if not verified.user_verified:  # also checked by py_webauthn; kept explicit
            raise refuse("the user was not verified", credential=row.id)
        new, old = verified.new_sign_count, row.sign_count
        if (new > 0 or old > 0) and new <= old:
            raise Refusal(
                WebAuthnError(
                    "the security key's signature counter did not increase: it may have been cloned"
                ),
                action=f"{action}.denied",
                object=obj,
                details={"credential": row.id, "sign_count": new, "stored_sign_count": old},
                finding={
                    "kind": "cloned_authenticator",
                    "severity": "high",
                    "summary": (
                        f"security key {row.id} of {account.username} sent signature counter {new} "
                        f"after {old}: possibly cloned"
                    ),
                    "dedupe_key": f"cloned_authenticator:{row.id}",
                    "details": {
                        "account": account.username,
                        "credential": row.id,
                        "sign_count": new,
                        "stored_sign_count": old,
                    },
                    "now": now,
                },
            )
        row.sign_count = new
        row.last_used_at = now
        record(
            s,
            actor=ws.actor,
            action=action,
            object=obj,
            details={"credential": row.id, "sign_count": new},
        )

    _finish(ws, username, AUTHENTICATE, action, now, check)
