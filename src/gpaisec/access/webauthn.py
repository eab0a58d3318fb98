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

Signing in with a passkey (:func:`begin_sign_in`, then :func:`gpaisec.access.accounts.authenticate`
with an :class:`Assertion` as the second factor), each step with its own failure:

1. Throttle: the sign-in throttle is checked first (429 for everyone alike); every begin also counts
   in a begin-only throttle, whatever its outcome, so that beginning costs the caller the same
   whether the password was right or not.
2. Password: checked (argon2id; dummy work for an unknown account) *before* any challenge is stored.
3. The answer is always request options with a fresh random challenge and an empty
   ``allowCredentials`` (passkeys are discoverable credentials): the same shape for an unknown user,
   a wrong password and a right one. Only for a right password of an account with a passkey is the
   challenge kept; otherwise it is thrown away, and the finish fails like any other failure.
4. Finishing is an ordinary sign-in (password again, then the assertion instead of a one-time
   code, then device and sharing checks); the assertion's challenge is taken away before anything
   is verified, so a response is good for one try.

A signed-in person registers and removes their own passkeys (:func:`begin_passkey_registration`,
:func:`finish_passkey_registration`, :func:`remove_passkey`) only with a second factor confirmed in
the last :data:`FRESH_MFA` (refusals audited), and never removes their last second factor.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass
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
    PublicKeyCredentialRequestOptions,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gpaisec.access import accounts
from gpaisec.access.accounts import Refusal, get_account, guarded
from gpaisec.access.mfa import MfaError
from gpaisec.access.models import Account, Session, TotpCredential, WebAuthnChallenge, WebAuthnCredential
from gpaisec.access.ratelimit import BackoffPolicy, Throttle
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, DeniedError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import Workspace

__all__ = [
    "ALGORITHMS",
    "CHALLENGE_LIFETIME",
    "FRESH_MFA",
    "Assertion",
    "Passkey",
    "RelyingParty",
    "WebAuthnError",
    "begin_authentication",
    "begin_passkey_registration",
    "begin_registration",
    "begin_sign_in",
    "begin_step_up",
    "finish_authentication",
    "finish_passkey_registration",
    "finish_registration",
    "list_passkeys",
    "remove_passkey",
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
# Registering or removing a passkey needs a second factor confirmed this recently.
FRESH_MFA = dt.timedelta(minutes=5)
# Beginning a passkey sign-in costs a password hash: bounded per account name and per source, and
# counted for every begin alike (a right password must not cost less than a wrong one).
BEGIN_ACCOUNT_POLICY = BackoffPolicy(
    free_attempts=10,
    base_delay=1.0,
    max_delay=300.0,
    lockout_after=50,
    lockout_seconds=3600.0,
    forgive_every=60.0,
)
BEGIN_SOURCE_POLICY = BackoffPolicy(
    free_attempts=60,
    base_delay=1.0,
    max_delay=300.0,
    lockout_after=100,
    lockout_seconds=3600.0,
    forgive_every=10.0,
)

T = TypeVar("T")


class WebAuthnError(MfaError):
    """A WebAuthn response was refused (wrong, expired, replayed, unverified or from a cloned key)."""

    def __init__(
        self, message: str = "the security key's response was refused", *, credential: str | None = None
    ) -> None:
        DeniedError.__init__(
            self, message, hint="start again and confirm on your security key with its PIN or biometric"
        )
        self.credential = credential


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the RP ID (a domain) and the one origin the browser must report."""

    rp_id: str
    origin: str
    name: str = "gpaisec"

    def __post_init__(self) -> None:
        _check_origin(self.origin, self.rp_id)


@dataclass(frozen=True)
class Passkey:
    """What a person sees of one of their passkeys (public data only)."""

    id: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    transports: tuple[str, ...]
    sign_count: int


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


def _drop_challenge(s: DBSession, account_id: str, purpose: str) -> None:
    s.execute(
        delete(WebAuthnChallenge).where(
            WebAuthnChallenge.account_id == account_id, WebAuthnChallenge.purpose == purpose
        )
    )


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
                resident_key=ResidentKeyRequirement.REQUIRED,  # passkeys: sign-in lists no ids
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


# --- authentication ------------------------------------------------------------------------------


def _request_options(rp_id: str, creds: list[WebAuthnCredential]) -> PublicKeyCredentialRequestOptions:
    return generate_authentication_options(
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


def _credentials(s: DBSession, account_id: str) -> list[WebAuthnCredential]:
    return list(
        s.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.account_id == account_id)
            .order_by(WebAuthnCredential.created_at)
        )
    )


def begin_authentication(ws: Workspace, username: str, *, rp_id: str, now: dt.datetime | None = None) -> str:
    """Start a WebAuthn ceremony for ``username``; returns the request options for the browser (JSON).

    The options list the account's credentials: call it only for someone who has already proven who
    they are (a signed-in session's step-up); sign-in uses :func:`begin_sign_in`.
    """
    now = now or utcnow()
    with ws.transaction() as s:
        account = _human(s, username)
        creds = _credentials(s, account.id)
        if not creds:
            raise WebAuthnError(f"{username} has no security key registered")
        options = _request_options(rp_id, creds)
        _new_challenge(s, account.id, AUTHENTICATE, options.challenge, now)
    return options_to_json(options)


def _verify_assertion(
    s: DBSession,
    account: Account,
    response_json: str,
    challenge: bytes,
    *,
    rp_id: str,
    origin: str,
    now: dt.datetime,
) -> WebAuthnCredential:
    """Check an assertion in the caller's transaction; raises :class:`WebAuthnError`, or a
    :class:`Refusal` with a ``cloned_authenticator`` finding when the counter went backwards."""
    try:
        credential: AuthenticationCredential = parse_authentication_credential_json(response_json)
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnError(f"the authentication response was refused: {exc}") from None
    row = s.scalars(
        select(WebAuthnCredential).where(
            WebAuthnCredential.account_id == account.id,
            WebAuthnCredential.credential_id == credential.raw_id,
        )
    ).first()
    if row is None:
        raise WebAuthnError("the security key is not registered for this account")
    # A discoverable credential names its user: it must be this account (py_webauthn does not check).
    handle = credential.response.user_handle
    if handle is not None and not hmac.compare_digest(handle, account.id.encode()):
        raise WebAuthnError("the security key belongs to another account", credential=row.id)
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
        raise WebAuthnError(f"the authentication response was refused: {exc}", credential=row.id) from None
    if not verified.user_verified:  # also checked by py_webauthn; kept explicit
        raise WebAuthnError("the user was not verified", credential=row.id)
    new, old = verified.new_sign_count, row.sign_count
    if (new > 0 or old > 0) and new <= old:
        raise Refusal(
            WebAuthnError("the security key's signature counter did not increase: it may have been cloned"),
            action="mfa.webauthn.authenticate.denied",
            object=f"account:{account.username}",
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
    return row


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

    def check(s: DBSession, account: Account, challenge: bytes) -> None:
        try:
            row = _verify_assertion(s, account, response_json, challenge, rp_id=rp_id, origin=origin, now=now)
        except WebAuthnError as exc:
            details = {"credential": exc.credential} if exc.credential else {}
            raise Refusal(exc, action=f"{action}.denied", object=obj, details=details) from None
        record(
            s,
            actor=ws.actor,
            action=action,
            object=obj,
            details={"credential": row.id, "sign_count": row.sign_count},
        )

    _finish(ws, username, AUTHENTICATE, action, now, check)


class Assertion:
    """A passkey's assertion as the second factor of :func:`gpaisec.access.accounts.authenticate`
    or :func:`~gpaisec.access.accounts.step_up` (a :class:`gpaisec.access.mfa.SecondFactor`).

    ``claim`` takes the account's pending challenge away in a transaction of its own, before the
    sign-in's transaction, so that the response is good for one try whatever happens next; ``verify``
    checks the response against it in the sign-in's transaction.
    """

    kind = "webauthn"

    def __init__(self, response_json: str, rp: RelyingParty) -> None:
        self.response_json = response_json
        self.rp = rp
        self._challenge: bytes | None = None
        self._claimed = False

    def claim(self, ws: Workspace, username: str, now: dt.datetime) -> None:
        self._claimed = True
        if not accounts.plausible_username(username):
            return
        try:
            self._challenge = _take_challenge(ws, username, AUTHENTICATE, now)
        except (NotFoundError, DeniedError):  # unknown, disabled or a service account: nothing to take
            self._challenge = None

    def claim_nothing(self) -> None:
        """Claimed, with no challenge: the password was wrong, so a pending challenge stays untouched."""
        self._claimed = True
        self._challenge = None

    def verify(self, s: DBSession, account: Account, now: dt.datetime) -> str:
        if not self._claimed:
            raise WebAuthnError("the assertion was not claimed before verification")  # a bug: fail closed
        if self._challenge is None:
            raise WebAuthnError("no live challenge: it expired, was used already, or was never issued")
        challenge, self._challenge = self._challenge, None  # one verification per claim
        row = _verify_assertion(
            s, account, self.response_json, challenge, rp_id=self.rp.rp_id, origin=self.rp.origin, now=now
        )
        record(
            s,
            actor=f"user:{account.username}",
            action="mfa.webauthn.authenticate",
            object=f"account:{account.username}",
            details={"credential": row.id, "sign_count": row.sign_count},
        )
        return self.kind


def _begin_throttle(ws: Workspace) -> Throttle:
    return accounts.throttle(
        ws, purpose="webauthn-begin", account_policy=BEGIN_ACCOUNT_POLICY, source_policy=BEGIN_SOURCE_POLICY
    )


def begin_sign_in(
    ws: Workspace,
    username: str,
    password: str,
    *,
    rp_id: str,
    source: str = "local",
    now: dt.datetime | None = None,
) -> str:
    """Begin a passkey sign-in: the request options for ``navigator.credentials.get`` (JSON).

    See the module docstring: the answer has the same shape whoever asks; the challenge is kept only
    for the right password of an account with a passkey. Raises only
    :class:`~gpaisec.access.ratelimit.ThrottledError`.
    """
    now = now or utcnow()
    # Step 1: throttles (the sign-in's, then this one's, which counts every begin).
    accounts.throttle(ws).check(username, source)
    gate = _begin_throttle(ws)
    gate.check(username, source)
    gate.record_failure(username, source)
    # Step 3's options are made first, the same way for everyone.
    options = _request_options(rp_id, [])

    def begin(s: DBSession) -> None:
        # Step 2: the password. Right or wrong, one transaction with one audit event (and so one
        # signed checkpoint): the work, and so the time, does not say which.
        account, right = accounts.password_account(s, username, password)
        obj = f"account:{account.username}" if account is not None else "account:?"  # never echo input
        details = {"source": source, "via": "webauthn"}
        if account is not None and right:
            record(s, actor=f"user:{account.username}", action="login.begin", object=obj, details=details)
            if _credentials(s, account.id):
                _new_challenge(s, account.id, AUTHENTICATE, options.challenge, now)
        else:
            record(
                s, actor="anonymous", action="login.fail", object=obj, details={**details, "step": "password"}
            )

    with ws.transaction() as s:
        begin(s)
    # Every begin counts against the sign-in's own throttle as a failure, right password or not (a
    # different count would say which); the sign-in that finishes with the passkey clears it.
    accounts.throttle(ws).record_failure(username, source)
    return options_to_json(options)


def begin_step_up(ws: Workspace, session_token: str, *, rp_id: str, now: dt.datetime | None = None) -> str:
    """Request options for confirming a passkey in a signed-in session (lists the account's keys)."""
    sess = accounts.resolve_session(ws, session_token, now=now)
    return begin_authentication(ws, sess.account.username, rp_id=rp_id, now=now)


# --- a signed-in person's own passkeys ----------------------------------------------------------------


def _fresh_session(ws: Workspace, session_token: str, action: str, now: dt.datetime, purpose: str) -> Session:
    """The live session, refused (and audited) unless its second factor is at most FRESH_MFA old."""
    sess = accounts.resolve_session(ws, session_token, now=now)
    mfa_at = sess.mfa_at
    if mfa_at is None or not dt.timedelta(0) <= now - mfa_at <= FRESH_MFA:
        username = sess.account.username

        def refuse(s: DBSession) -> None:
            raise Refusal(
                DeniedError(
                    f"{purpose} needs a second factor confirmed in the last "
                    f"{int(FRESH_MFA.total_seconds() // 60)} minutes",
                    hint="confirm one first (POST /api/v1/session/mfa, or sign in again), then retry",
                ),
                action=f"{action}.denied",
                object=f"account:{username}",
                details={"session": sess.id},
            )

        guarded(ws, f"user:{username}", refuse)
    return sess


def begin_passkey_registration(
    ws: Workspace, session_token: str, rp: RelyingParty, *, now: dt.datetime | None = None
) -> str:
    """Creation options for a new passkey of the session's person (fresh second factor required)."""
    now = now or utcnow()
    sess = _fresh_session(ws, session_token, "mfa.webauthn.register", now, "registering a passkey")
    return begin_registration(
        ws, sess.account.username, rp_id=rp.rp_id, rp_name=rp.name, origin=rp.origin, now=now
    )


def finish_passkey_registration(
    ws: Workspace, session_token: str, response_json: str, rp: RelyingParty, *, now: dt.datetime | None = None
) -> str:
    """Store the new passkey of the session's person (fresh second factor still required)."""
    now = now or utcnow()
    sess = _fresh_session(ws, session_token, "mfa.webauthn.register", now, "registering a passkey")
    return finish_registration(
        ws, sess.account.username, response_json, rp_id=rp.rp_id, origin=rp.origin, now=now
    )


def list_passkeys(ws: Workspace, username: str) -> list[Passkey]:
    """The passkeys of ``username``, oldest first."""
    with ws.reader() as s:
        account = get_account(s, username)
        return [
            Passkey(
                id=c.id,
                created_at=c.created_at,
                last_used_at=c.last_used_at,
                transports=tuple(c.transports),
                sign_count=c.sign_count,
            )
            for c in _credentials(s, account.id)
        ]


def remove_passkey(
    ws: Workspace, session_token: str, passkey_id: str, *, now: dt.datetime | None = None
) -> None:
    """Remove one of the session's person's passkeys (fresh second factor; never the last factor)."""
    now = now or utcnow()
    sess = _fresh_session(ws, session_token, "mfa.webauthn.remove", now, "removing a passkey")
    username = sess.account.username
    obj = f"account:{username}"

    def remove(s: DBSession) -> None:
        account = get_account(s, username)
        # Two removals at once must not each see the other's passkey as the one that remains: lock
        # the account's row (PostgreSQL; SQLite's writers are already serialised by BEGIN IMMEDIATE).
        s.execute(select(Account.id).where(Account.id == account.id).with_for_update())
        row = s.scalars(
            select(WebAuthnCredential).where(
                WebAuthnCredential.account_id == account.id, WebAuthnCredential.id == passkey_id
            )
        ).first()
        if row is None:
            raise NotFoundError(
                f"{username} has no passkey {passkey_id!r}", hint="see GET /api/v1/me/passkeys"
            )
        totp = s.get(TotpCredential, account.id)
        others = [c for c in _credentials(s, account.id) if c.id != row.id]
        if not others and (totp is None or totp.confirmed_at is None):
            raise Refusal(
                ConflictError(
                    f"passkey {row.id} is {username}'s only second factor",
                    hint="register another passkey or a one-time code authenticator first",
                ),
                action="mfa.webauthn.remove.denied",
                object=obj,
                details={"credential": row.id},
            )
        s.delete(row)
        if not others:
            _drop_challenge(s, account.id, AUTHENTICATE)
        record(
            s,
            actor=f"user:{username}",
            action="mfa.webauthn.remove",
            object=obj,
            details={"credential": row.id},
        )

    guarded(ws, f"user:{username}", remove)
