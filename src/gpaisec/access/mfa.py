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

TOTP seeds are sealed at rest (:class:`SeedSealer`): the verifier needs the seed itself, so it is
stored encrypted, ``v1:`` + base64(nonce || AES-256-GCM ciphertext) (:mod:`gpaisec.crypto.fieldseal`),
under the workspace's MFA seed key ``<workspace>/keys/mfa-seed.key`` (0600, created with the first
enrolment). If the workspace's key configuration has a key named ``mfa-kek`` (``gpaisec keys init
--label mfa-kek --provider tpm|pkcs11|local``), that file holds the seed key only wrapped by it. The
associated data names the row (``totp_credentials.secret`` of this account), so a sealed seed copied
to another account's row, or into another workspace, does not open. A seed that does not open (wrong
or missing key, altered value, unknown version) fails closed: :class:`SeedSealError`, an
:class:`MfaError`, so sign-in refuses as for a wrong code and its audit event gives the reason. The
seed itself never appears in a log, an audit event or an error message.

Seeds from before migration 0006 are plaintext (no ``v1:``). Each is sealed the first time it is
used for a code (audited as ``mfa.totp.reseal``), and :func:`seal_legacy_seeds` seals all of them at
once; a plaintext seed is accepted only together with its sealing, in the same transaction.

Every process that verifies codes needs the seed key: :func:`seed_sealer` loads it (outside any
transaction: a key provider audits its unwrap) and remembers it for the workspace's database; a
SQLite workspace in its default layout is found from the database file without it.

WebAuthn/passkeys
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
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyotp
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gpaisec.access.models import Account, RecoveryCode, TotpCredential, WebAuthnCredential
from gpaisec.audit.service import record
from gpaisec.crypto import fieldseal
from gpaisec.crypto.keys import WrappedKey
from gpaisec.errors import ConflictError, DeniedError, GpaisecError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import DB_FILE, Workspace

__all__ = [
    "ISSUER",
    "RECOVERY_CODES",
    "SEED_KEK",
    "SEED_KEY_FILE",
    "STEP_SECONDS",
    "MfaError",
    "ResealReport",
    "SecondFactor",
    "SeedSealError",
    "SeedSealer",
    "confirm_totp",
    "enrol_totp",
    "is_enrolled",
    "regenerate_recovery_codes",
    "seal_legacy_seeds",
    "seed_sealer",
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
SEED_KEY_FILE = "mfa-seed.key"
"""The MFA seed key's file in the workspace's keys directory."""
SEED_KEK = "mfa-kek"
"""The label of the key-encryption key that wraps the seed key, where the workspace has one."""


class MfaError(DeniedError):
    """A second factor was wrong, expired or used before."""

    title = "second factor refused"

    def __init__(self, message: str = "the one-time code is wrong, expired or was already used") -> None:
        super().__init__(message, hint="wait for the next code of your authenticator app and try again")


class SeedSealError(MfaError):
    """A stored TOTP seed does not open: the seed key is missing or wrong, or the value was altered,
    copied from another row or written in an unknown format. Sign-in fails closed."""

    title = "authenticator seed does not open"

    def __init__(self, message: str) -> None:
        DeniedError.__init__(
            self,
            message,
            hint=f"restore keys/{SEED_KEY_FILE} from the workspace's backup, or have an administrator "
            "reset the authenticator and enrol it again",
        )


_SEED = re.compile(r"[A-Z2-7]{16,128}=*")


def _checked_seed(seed: str) -> str:
    if not _SEED.fullmatch(seed):
        raise SeedSealError("the stored authenticator seed is malformed: neither sealed nor a base32 seed")
    return seed


def _associated_data(account_id: str) -> bytes:
    # The row the seed belongs to: a copy in another account's row (or another workspace) won't open.
    return b"gpaisec|totp_credentials.secret|" + account_id.encode("utf-8")


class SeedSealer:
    """Seals and opens TOTP seeds under one workspace's MFA seed key."""

    def __init__(self, key: fieldseal.FieldKey) -> None:
        self._key = key

    @property
    def key(self) -> fieldseal.FieldKey:
        return self._key

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def seal(self, account_id: str, seed: str) -> str:
        """The stored form of ``seed`` for the credential of ``account_id``."""
        return fieldseal.seal(self._key, _checked_seed(seed).encode("ascii"), _associated_data(account_id))

    def open(self, cred: TotpCredential) -> str:
        """The seed of ``cred``; a legacy plaintext seed is returned as it is (see :func:`is_sealed`).

        Raises :class:`SeedSealError`; its message never holds the stored value.
        """
        if not is_sealed(cred):
            return _checked_seed(cred.secret)
        try:
            raw = fieldseal.unseal(self._key, cred.secret, _associated_data(cred.account_id))
        except fieldseal.FieldSealError as exc:
            raise SeedSealError(f"the stored authenticator seed does not open: {exc.message}") from None
        try:
            return _checked_seed(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise SeedSealError("the stored authenticator seed is malformed") from None


def is_sealed(cred: TotpCredential) -> bool:
    """False for a plaintext seed from before migration 0006 (base32 holds no ``:``)."""
    return fieldseal.has_version(cred.secret)


# --- the seed key of each workspace ---------------------------------------------------------------
#
# The key is read once per process (again if its file changes) and remembered per database, so the
# verifier inside a sign-in's transaction (which is handed a session, not the workspace) finds it.

_keys_lock = threading.Lock()
_loaded: dict[Path, tuple[tuple[int, int, int, int], SeedSealer]] = {}
_homes: dict[str, tuple[Path, weakref.ref[Workspace]]] = {}


def _database(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _file_signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _wrap(ws: Workspace | None) -> Callable[[bytes], WrappedKey] | None:
    if ws is None:
        return None
    from gpaisec.crypto.config import list_keks, provider_for

    if SEED_KEK not in list_keks(ws):
        return None
    provider = provider_for(ws, SEED_KEK)
    return lambda key: provider.wrap(SEED_KEK, key)


def _unwrap(ws: Workspace | None) -> Callable[[WrappedKey], bytes] | None:
    if ws is None:
        return None
    from gpaisec.crypto.config import provider_for

    return lambda wrapped: provider_for(ws, wrapped.key_id).unwrap(wrapped)


def _load(keys_dir: Path, ws: Workspace | None, *, create: bool) -> SeedSealer:
    path = keys_dir / SEED_KEY_FILE
    signature = _file_signature(path)
    with _keys_lock:
        hit = _loaded.get(path)
    if hit is not None and signature is not None and hit[0] == signature:
        return hit[1]
    key = fieldseal.read_key_file(path, unwrap=_unwrap(ws)) if signature is not None else None
    if key is None:
        if not create:
            raise SeedSealError(f"the workspace has no MFA seed key ({path})")
        key = fieldseal.create_key_file(path, wrap=_wrap(ws), unwrap=_unwrap(ws))
    sealer = SeedSealer(key)
    signature = _file_signature(path)
    if signature is not None:
        with _keys_lock:
            _loaded[path] = (signature, sealer)
    return sealer


def seed_sealer(ws: Workspace, *, create: bool = True) -> SeedSealer:
    """The workspace's seed sealer, its key created on first need (``create``), and remembered for
    the workspace's database. Call outside a transaction: a key provider audits its unwrap in one of
    its own. Raises a :class:`~gpaisec.errors.GpaisecError` (ConfigError, SeedSealError...) with advice.
    """
    with _keys_lock:
        _homes[_database(ws.engine)] = (ws.keys_dir, weakref.ref(ws))
    sealer = _load(ws.keys_dir, ws, create=create)
    wrap = _wrap(ws)
    path = ws.keys_dir / SEED_KEY_FILE
    if wrap is not None and not fieldseal.is_wrapped(path):
        # A key-encryption key for the seed key was configured after the key was made: wrap it now.
        fieldseal.rewrite_wrapped(path, sealer.key, wrap)
    return sealer


def _sealer_for(s: Session, *, create: bool) -> SeedSealer:
    """The seed sealer of the workspace whose database ``s`` is on, or :class:`SeedSealError`."""
    engine = s.get_bind()
    assert isinstance(engine, Engine)
    with _keys_lock:
        home = _homes.get(_database(engine))
    ws: Workspace | None = None
    if home is not None:
        keys_dir, ref = home
        ws = ref()
    elif (
        engine.dialect.name == "sqlite" and engine.url.database and Path(engine.url.database).name == DB_FILE
    ):
        keys_dir = Path(engine.url.database).absolute().parent / "keys"  # the default layout
    else:
        raise SeedSealError(
            "this process has not loaded the workspace's MFA seed key (gpaisec.access.mfa.seed_sealer)"
        )
    try:
        return _load(keys_dir, ws, create=create)
    except SeedSealError:
        raise
    except GpaisecError as exc:
        raise SeedSealError(f"the MFA seed key cannot be used: {exc.message}") from None


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


def verify_totp(cred: TotpCredential, code: str, now: dt.datetime, *, seeds: SeedSealer) -> int:
    """Accept ``code`` for ``cred`` at ``now`` and mark its step used, or raise :class:`MfaError`.

    A legacy plaintext seed that accepts the code is sealed in place (the caller audits it, and only
    a committed transaction keeps it; see :func:`is_sealed`).
    """
    # Step 1: the shape of the code.
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        raise MfaError()
    # Step 2: open the seed (SeedSealError if it does not: fail closed).
    seed = seeds.open(cred)
    # Step 3: constant-time comparison with each step in the window (all compared, no early exit).
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS)
    current = _step(now)
    matched: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(str(totp.generate_otp(step)), code) and matched is None:
            matched = step
    if matched is None:
        raise MfaError()
    # Step 4: replay protection.
    if matched <= cred.last_used_step:
        raise MfaError("the one-time code was already used")
    # Step 5: remember the step, and seal a legacy plaintext seed.
    cred.last_used_step = matched
    if not is_sealed(cred):
        cred.secret = seeds.seal(cred.account_id, seed)
    return matched


def _verify_and_reseal(
    s: Session,
    cred: TotpCredential,
    code: str,
    now: dt.datetime,
    seeds: SeedSealer,
    *,
    actor: str,
    username: str,
) -> None:
    legacy = not is_sealed(cred)
    verify_totp(cred, code, now, seeds=seeds)
    if legacy:
        record(
            s,
            actor=actor,
            action="mfa.totp.reseal",
            object=f"account:{username}",
            details={"from": "plaintext", "key": seeds.key_id, "when": "first use"},
        )


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


def verify_second_factor(
    s: Session,
    account: Account,
    code: str | SecondFactor,
    now: dt.datetime,
    *,
    seeds: SeedSealer | None = None,
) -> str:
    """A TOTP code, a recovery code or another :class:`SecondFactor` (a passkey's assertion).

    Returns "totp", "recovery" or the other factor's name ("webauthn"). ``seeds`` is the workspace's
    :func:`seed_sealer` (found from ``s``'s database when not given).
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
    if seeds is None:
        seeds = _sealer_for(s, create=not is_sealed(cred))
    _verify_and_reseal(s, cred, code, now, seeds, actor=f"user:{account.username}", username=account.username)
    return "totp"


# --- service functions -----------------------------------------------------------------------------


def enrol_totp(ws: Workspace, username: str) -> str:
    """Start TOTP enrolment; returns the otpauth URI (holds the seed: show it to the user only)."""
    now = utcnow()
    seeds = seed_sealer(ws)
    with ws.transaction() as s:
        account = _account(s, username)
        cred = s.get(TotpCredential, account.id)
        if cred is not None and cred.confirmed_at is not None:
            raise ConflictError(
                f"{username} already has a confirmed authenticator",
                hint="an administrator must reset it before a new one is enrolled",
            )
        secret = pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends
        sealed = seeds.seal(account.id, secret)
        if cred is None:
            s.add(TotpCredential(account_id=account.id, secret=sealed, last_used_step=0, created_at=now))
        else:
            cred.secret, cred.created_at, cred.last_used_step = sealed, now, 0
        record(s, actor=ws.actor, action="mfa.totp.enrol", object=f"account:{username}", details={})
    return str(
        pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=username, issuer_name=ISSUER
        )
    )


def confirm_totp(ws: Workspace, username: str, code: str, *, now: dt.datetime | None = None) -> list[str]:
    """Confirm enrolment with a first code; returns the recovery codes (shown once, stored hashed)."""
    now = now or utcnow()
    seeds = seed_sealer(ws)
    try:
        with ws.transaction() as s:
            account = _account(s, username)
            cred = s.get(TotpCredential, account.id)
            if cred is None:
                raise ConflictError(f"{username} has no authenticator to confirm", hint="enrol one first")
            if cred.confirmed_at is not None:
                raise ConflictError(f"{username}'s authenticator is already confirmed")
            _verify_and_reseal(s, cred, code, now, seeds, actor=ws.actor, username=username)
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


@dataclass(frozen=True)
class ResealReport:
    """What :func:`seal_legacy_seeds` did: accounts whose seed it sealed, and those it could not read."""

    sealed: tuple[str, ...]
    unreadable: tuple[str, ...]


def seal_legacy_seeds(ws: Workspace) -> ResealReport:
    """Seal every TOTP seed still stored in plaintext (written before migration 0006), in one
    transaction, one ``mfa.totp.reseal`` event per account. A malformed plaintext value is left as
    it is (it never verifies a code) and named in the report. Safe to run again: sealed seeds are
    left alone."""
    seeds = seed_sealer(ws)
    sealed: list[str] = []
    unreadable: list[str] = []
    with ws.transaction() as s:
        rows = s.execute(
            select(TotpCredential, Account.username)
            .join(Account, Account.id == TotpCredential.account_id)
            .order_by(Account.username)
        ).all()
        for cred, username in rows:
            if is_sealed(cred):
                continue
            try:
                seed = seeds.open(cred)
            except SeedSealError:
                unreadable.append(username)
                continue
            cred.secret = seeds.seal(cred.account_id, seed)
            record(
                s,
                actor=ws.actor,
                action="mfa.totp.reseal",
                object=f"account:{username}",
                details={"from": "plaintext", "key": seeds.key_id, "when": "all at once"},
            )
            sealed.append(username)
    return ResealReport(tuple(sealed), tuple(unreadable))
