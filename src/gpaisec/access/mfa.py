"""Second factors: TOTP (RFC 6238) with replay protection, and single-use recovery codes.

Enrolment is two steps: :func:`enrol_totp` makes a seed and returns its ``otpauth://`` URI (for an
authenticator app; the seed is never audited or logged), and :func:`confirm_totp` takes the first
code, which proves the app holds the seed, and returns ten recovery codes, shown once.

Verifying a TOTP code (:func:`verify_totp`), in the caller's transaction:

1. The code is six digits; anything else fails.
2. It is compared, in constant time, with the codes of the time steps now-1, now and now+1 (30 s
   steps, so clocks may drift by up to 30 s).
3. The matching step must be later than the last step this credential accepted: a code, or any
   earlier code, is never accepted twice (replay protection, RFC 6238 section 5.2).
4. The step is recorded as the last one used.

Recovery codes are 100-bit random values, stored as SHA-256 (a brute-force search of a 100-bit
space is infeasible, so a slow hash adds nothing); each works once.

The TOTP seed is stored in the database as it is, because the verifier needs it; protecting the
database (or sealing the seed under a workspace key) is the remaining defence. WebAuthn/passkeys
(phishing-resistant, the better factor) are registered and verified by :mod:`gpaisec.access.webauthn`;
sign-in and step-up take a passkey's assertion as a :class:`SecondFactor` through
:func:`verify_second_factor`. An account with a confirmed TOTP authenticator or any passkey is
enrolled: it cannot sign in without a second factor.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Protocol

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from gpaisec.access.models import Account, RecoveryCode, TotpCredential, WebAuthnCredential
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, DeniedError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import Workspace

__all__ = [
    "ISSUER",
    "RECOVERY_CODES",
    "STEP_SECONDS",
    "MfaError",
    "SecondFactor",
    "confirm_totp",
    "enrol_totp",
    "is_enrolled",
    "regenerate_recovery_codes",
    "totp_code",
    "use_recovery_code",
    "verify_second_factor",
    "verify_totp",
]

ISSUER = "gpaisec"
STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps either side of now
RECOVERY_CODES = 10


class MfaError(DeniedError):
    """A second factor was wrong, expired or used before."""

    title = "second factor refused"

    def __init__(self, message: str = "the one-time code is wrong, expired or was already used") -> None:
        super().__init__(message, hint="wait for the next code of your authenticator app and try again")


class SecondFactor(Protocol):
    """A second factor other than a typed code: a passkey's assertion
    (:class:`gpaisec.access.webauthn.Assertion`).

    ``claim`` runs before the sign-in's transaction, in transactions of its own (it takes away what
    must be single use, whatever happens next); ``verify`` runs inside it and returns the factor's
    name, or raises :class:`MfaError`.
    """

    kind: str

    def claim(self, ws: Workspace, username: str, now: dt.datetime) -> None: ...

    def claim_nothing(self) -> None: ...

    def verify(self, s: Session, account: Account, now: dt.datetime) -> str: ...


def _step(now: dt.datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def totp_code(secret: str, now: dt.datetime) -> str:
    """The code of ``secret`` at ``now`` (for tests and the demo)."""
    return str(pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(_step(now)))


def _account(s: Session, username: str) -> Account:
    account = s.scalars(select(Account).where(Account.username == username)).first()
    if account is None:
        raise NotFoundError(f"no account {username!r}", hint="see `gpaisec users list`")
    return account


def _hash_code(code: str) -> str:
    return hashlib.sha256(_normalise_recovery(code).encode()).hexdigest()


def _normalise_recovery(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


def _new_recovery_codes(s: Session, account_id: str, now: dt.datetime) -> list[str]:
    for old in s.scalars(select(RecoveryCode).where(RecoveryCode.account_id == account_id)):
        s.delete(old)
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]  # 100 bits
        codes.append("-".join(raw[i : i + 5] for i in range(0, 20, 5)))
    for code in codes:
        s.add(RecoveryCode(id=new_id("rc"), account_id=account_id, hash=_hash_code(code), created_at=now))
    return codes


# --- in the caller's transaction -------------------------------------------------------------------


def is_enrolled(s: Session, account_id: str) -> bool:
    """True if the account has a confirmed TOTP authenticator or a passkey: it needs a second factor."""
    cred = s.get(TotpCredential, account_id)
    if cred is not None and cred.confirmed_at is not None:
        return True
    passkey = s.scalars(
        select(WebAuthnCredential.id).where(WebAuthnCredential.account_id == account_id)
    ).first()
    return passkey is not None


def verify_totp(cred: TotpCredential, code: str, now: dt.datetime) -> int:
    """Accept ``code`` for ``cred`` at ``now`` and mark its step used, or raise :class:`MfaError`."""
    # Step 1: the shape of the code.
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        raise MfaError()
    # Step 2: constant-time comparison with each step in the window (all compared, no early exit).
    totp = pyotp.TOTP(cred.secret, digits=DIGITS, interval=STEP_SECONDS)
    current = _step(now)
    matched: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(str(totp.generate_otp(step)), code) and matched is None:
            matched = step
    if matched is None:
        raise MfaError()
    # Step 3: replay protection.
    if matched <= cred.last_used_step:
        raise MfaError("the one-time code was already used")
    # Step 4: remember the step.
    cred.last_used_step = matched
    return matched


def use_recovery_code(s: Session, account_id: str, code: str, now: dt.datetime) -> None:
    """Spend one unused recovery code of the account, or raise :class:`MfaError`."""
    digest = _hash_code(code)
    hit: RecoveryCode | None = None
    for rc in s.scalars(
        select(RecoveryCode).where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))
    ):
        if hmac.compare_digest(rc.hash, digest):
            hit = rc
    if hit is None:
        raise MfaError("the recovery code is wrong or was already used")
    hit.used_at = now


def verify_second_factor(s: Session, account: Account, code: str | SecondFactor, now: dt.datetime) -> str:
    """A TOTP code, a recovery code or another :class:`SecondFactor` (a passkey's assertion).

    Returns "totp", "recovery" or the other factor's name ("webauthn").
    """
    if not isinstance(code, str):
        return code.verify(s, account, now)
    if len(_normalise_recovery(code)) == 20:
        # Recovery codes stand in for any enrolled factor (a lost passkey as much as a lost phone).
        if not is_enrolled(s, account.id):
            raise MfaError("no second factor is enrolled for this account")
        use_recovery_code(s, account.id, code, now)
        return "recovery"
    cred = s.get(TotpCredential, account.id)
    if cred is None or cred.confirmed_at is None:
        raise MfaError("no one-time code authenticator is enrolled for this account")
    verify_totp(cred, code, now)
    return "totp"


# --- service functions -----------------------------------------------------------------------------


def enrol_totp(ws: Workspace, username: str) -> str:
    """Start TOTP enrolment; returns the otpauth URI (holds the seed: show it to the user only)."""
    now = utcnow()
    with ws.transaction() as s:
        account = _account(s, username)
        cred = s.get(TotpCredential, account.id)
        if cred is not None and cred.confirmed_at is not None:
            raise ConflictError(
                f"{username} already has a confirmed authenticator",
                hint="an administrator must reset it before a new one is enrolled",
            )
        secret = pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends
        if cred is None:
            s.add(TotpCredential(account_id=account.id, secret=secret, last_used_step=0, created_at=now))
        else:
            cred.secret, cred.created_at, cred.last_used_step = secret, now, 0
        record(s, actor=ws.actor, action="mfa.totp.enrol", object=f"account:{username}", details={})
    return str(
        pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=username, issuer_name=ISSUER
        )
    )


def confirm_totp(ws: Workspace, username: str, code: str, *, now: dt.datetime | None = None) -> list[str]:
    """Confirm enrolment with a first code; returns the recovery codes (shown once, stored hashed)."""
    now = now or utcnow()
    try:
        with ws.transaction() as s:
            account = _account(s, username)
            cred = s.get(TotpCredential, account.id)
            if cred is None:
                raise ConflictError(f"{username} has no authenticator to confirm", hint="enrol one first")
            if cred.confirmed_at is not None:
                raise ConflictError(f"{username}'s authenticator is already confirmed")
            verify_totp(cred, code, now)
            cred.confirmed_at = now
            codes = _new_recovery_codes(s, account.id, now)
            record(s, actor=ws.actor, action="mfa.totp.confirm", object=f"account:{username}", details={})
    except MfaError as exc:
        with ws.transaction() as s:
            record(
                s,
                actor=ws.actor,
                action="mfa.totp.confirm.denied",
                object=f"account:{username}",
                details={"reason": exc.message},
            )
        raise
    return codes


def regenerate_recovery_codes(ws: Workspace, username: str) -> list[str]:
    """Replace every recovery code of the account; returns the new ones (shown once)."""
    now = utcnow()
    with ws.transaction() as s:
        account = _account(s, username)
        if not is_enrolled(s, account.id):
            raise ConflictError(f"{username} has no confirmed authenticator", hint="enrol one first")
        codes = _new_recovery_codes(s, account.id, now)
        record(s, actor=ws.actor, action="mfa.recovery.regenerate", object=f"account:{username}", details={})
    return codes
