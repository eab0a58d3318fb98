"""People, accounts, service tokens, device keys and sign-in.

Every change is one transaction with one audit event. Secrets never reach the audit log: passwords
are hashed with argon2id (:mod:`gpaisec.access.passwords`), tokens are random and stored as
SHA-256, and the plaintext is returned once to the caller.

Device keys (:mod:`gpaisec.access.device_keys`): a registered device has one or more enrolled public
keys (Ed25519 or ECDSA P-256; :func:`enrol_device_key`, :func:`revoke_device_key`). The client keeps
the private key (the CLI in a 0600 file, a browser as a non-extractable WebCrypto key) and proves it
holds it at every sign-in: it asks for a challenge (:func:`device_challenge`: 32 random bytes and an
id that carries them with their issue time under an HMAC of a server secret; nothing is stored), and
signs ``b"gpaisec-device-proof-v1\\0" || challenge || fingerprint || username``
(:func:`gpaisec.access.device_keys.proof_message`).

Signing in (:func:`authenticate`), each step with its own failure:

1. Throttle: the account name and the source are checked against the failure counters before any
   other work (:class:`~gpaisec.access.ratelimit.ThrottledError`).
2. Device proof, before any password work: (a) the challenge id is ours (HMAC) and at most
   :data:`DEVICE_CHALLENGE_LIFETIME` old; (b) the fingerprint names an enrolled, unrevoked, usable key
   of the device named in the request, a managed device not retired; (c) the signature verifies with
   that key over the challenge, the fingerprint and the user name; (d) the challenge is used: the
   account keeps, per key, the issue time of the last challenge it used (``webauthn_challenges``,
   purpose ``device:<key id>``) and accepts only a later one, committed at once, so a proof is good for
   one try (a replay, or an older challenge answered after a newer one, is refused). A missing or
   failed proof is audited (``login.fail``, step ``device``) and answered with the same
   :class:`SignInError` as a wrong password, *without* looking at the password: the answer (and its
   time) depends only on the proof, which the caller made, never on whether the password is right. It
   counts against the source's throttle only: anyone can fail a proof for any name, so it must not lock
   the person out.
3. Password: verified against the account's argon2id hash; an unknown or disabled account does the
   same work on a dummy hash, and both fail with the same :class:`WrongPasswordError`.
4. Second factor: an account with a confirmed authenticator or a passkey must give a TOTP code
   (replay-protected), a recovery code, or a passkey's assertion (:class:`~gpaisec.access.mfa.MfaError`;
   see :mod:`gpaisec.access.webauthn` for beginning a passkey sign-in).
5. Device: the proven key is still unrevoked (else as step 2), and its device still managed and
   not retired (``login.denied`` with the reason; only if it changed since step 2).
6. No sharing: the account must not be active on another device, and the device must not be in use
   by another account. Either is refused, audited and opens a finding (shared_account,
   shared_device): A4.1(1) forbids shared accounts and devices.
7. The session is created with a random token (returned once, stored hashed), bound to the proven
   device key; ``mfa_at`` records when the second factor was checked.

Steps 2-4 fail with one :class:`SignInError` (what was wrong is in the audit log only): telling a
wrong password from a wrong second factor or device proof would confirm a guessed password.

A refusal is audited in a transaction of its own, since the operation's transaction rolls back.

:func:`logout_all` ("sign out everywhere") ends every live session of an account, audited.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import selectinload

from gpaisec.access import device_keys, mfa
from gpaisec.access.device_keys import DeviceProof
from gpaisec.access.models import (
    Account,
    DeviceKey,
    LoginThrottle,
    Person,
    ServiceToken,
    Session,
    WebAuthnChallenge,
)
from gpaisec.access.passwords import (
    DEFAULT_HASH_PARAMS,
    HashParams,
    PasswordContext,
    PasswordPolicy,
    WrongPasswordError,
    check_password,
    hash_password,
    verify_dummy,
    verify_password,
)
from gpaisec.access.ratelimit import ACCOUNT_POLICY, SOURCE_POLICY, AttemptRecord, BackoffPolicy, Throttle
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, DeniedError, GpaisecError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.store.fastsql import Query, read_transaction
from gpaisec.weights.models import Device
from gpaisec.weights.registry import get_device, open_finding
from gpaisec.workspace import Workspace

__all__ = [
    "DEVICE_CHALLENGE_LIFETIME",
    "DEVICE_CHALLENGE_PURPOSE",
    "HUMAN_ROLES",
    "SCOPES",
    "DeviceChallenge",
    "DeviceProof",
    "Login",
    "Refusal",
    "SessionInfo",
    "SignInError",
    "TokenHolder",
    "add_person",
    "add_service_account",
    "add_user",
    "authenticate",
    "authenticate_token",
    "check_sign_in_password",
    "device_challenge",
    "disable_account",
    "enrol_device_key",
    "get_account",
    "get_person",
    "guarded",
    "issue_token",
    "list_accounts",
    "list_device_keys",
    "list_people",
    "list_sessions",
    "logout",
    "logout_all",
    "plausible_username",
    "resolve_session",
    "revoke_device_key",
    "set_person",
    "step_up",
    "throttle",
]

# Roles the default policies act on (approver, break_glass, reviewer, admin), and job roles that describe
# people for reviews and reports (access to weights itself always needs a two-person grant).
HUMAN_ROLES = (
    "approver",
    "break_glass",
    "reviewer",
    "admin",
    "weights_user",
    "researcher",
    "engineer",
    "security",
    "auditor",
    "contractor",
)
SCOPES = ("weights:read", "weights:write", "weights:export")
SESSION_LIFETIME = dt.timedelta(hours=12)
MAX_TOKEN_LIFETIME = dt.timedelta(days=90)
TOKEN_PREFIX = "gpst_"  # noqa: S105 - a label, not a secret
# Argon2 parameters for new password hashes (tests swap in HashParams.unsafe_fast()).
HASH_PARAMS: HashParams = DEFAULT_HASH_PARAMS
PASSWORD_POLICY = PasswordPolicy()

T = TypeVar("T")


# --- refusals: audited even though the operation rolls back ----------------------------------------


class Refusal(Exception):
    """Raised inside an operation's transaction to refuse it; :func:`guarded` audits and re-raises.

    ``finding`` holds keyword arguments for :func:`gpaisec.weights.registry.open_finding`.
    """

    def __init__(
        self,
        error: GpaisecError,
        *,
        action: str,
        object: str,
        details: dict[str, Any] | None = None,
        finding: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.action = action
        self.object = object
        self.details = details or {}
        self.finding = finding


def guarded(ws: Workspace, actor: str, operation: Callable[[DBSession], T]) -> T:
    """Run ``operation`` in one transaction; a :class:`Refusal` is audited in a second one, then raised."""
    try:
        with ws.transaction() as s:
            return operation(s)
    except Refusal as refusal:
        with ws.transaction() as s:
            record(
                s,
                actor=actor,
                action=refusal.action,
                object=refusal.object,
                details={"reason": refusal.error.message, **refusal.details},
            )
            if refusal.finding is not None:
                open_finding(s, ws, **refusal.finding)
        raise refusal.error from None


# --- lookups ---------------------------------------------------------------------------------------


def get_person(s: DBSession, name: str) -> Person:
    person = s.scalars(select(Person).where(Person.name == name)).first()
    if person is None:
        raise NotFoundError(f"no person {name!r}", hint="add them with `gpaisec people add`")
    return person


def get_account(s: DBSession, username: str) -> Account:
    account = s.scalars(
        select(Account).options(selectinload(Account.person)).where(Account.username == username)
    ).first()
    if account is None:
        raise NotFoundError(f"no account {username!r}", hint="see `gpaisec users list`")
    return account


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _username(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100 or not all(c.isalnum() or c in "._-@" for c in value):
        raise InputError(f"user name {value!r} is not usable", hint="use 1-100 letters, digits and . _ - @")
    if value.startswith("-"):
        raise InputError(f"user name {value!r} may not start with '-'")
    return value


def _roles(roles: Iterable[str]) -> list[str]:
    out = sorted(set(roles))
    unknown = [r for r in out if r not in HUMAN_ROLES]
    if unknown:
        raise InputError(f"unknown role {unknown[0]!r}", hint=f"roles are {', '.join(HUMAN_ROLES)}")
    return out


def _flush_unique(s: DBSession, message: str, hint: str) -> None:
    try:
        s.flush()
    except DBIntegrityError:
        raise ConflictError(message, hint=hint) from None


# --- people ----------------------------------------------------------------------------------------


def add_person(
    ws: Workspace,
    name: str,
    *,
    email: str = "",
    organisation: str = "",
    background_check_valid_until: dt.datetime | None = None,
    insider_training_valid_until: dt.datetime | None = None,
) -> Person:
    name = name.strip()
    if not name or len(name) > 200:
        raise InputError("a person needs a name of 1-200 characters")
    person = Person(
        id=new_id("per"),
        name=name,
        email=email.strip(),
        organisation=organisation.strip(),
        background_check_valid_until=background_check_valid_until,
        insider_training_valid_until=insider_training_valid_until,
        created_at=utcnow(),
    )
    with ws.transaction() as s:
        s.add(person)
        _flush_unique(s, f"person {name!r} already exists", "see `gpaisec people list`")
        record(
            s,
            actor=ws.actor,
            action="person.add",
            object=f"person:{person.id}",
            details={
                "name": name,
                "organisation": person.organisation,
                "background_check_valid_until": _iso(background_check_valid_until),
                "insider_training_valid_until": _iso(insider_training_valid_until),
            },
        )
    return person


def set_person(
    ws: Workspace,
    name: str,
    *,
    background_check_valid_until: dt.datetime | None = None,
    insider_training_valid_until: dt.datetime | None = None,
) -> Person:
    """Record a new background-check or training date (from the people area's records)."""
    with ws.transaction() as s:
        person = get_person(s, name)
        changes: dict[str, Any] = {}
        if background_check_valid_until is not None:
            person.background_check_valid_until = background_check_valid_until
            changes["background_check_valid_until"] = _iso(background_check_valid_until)
        if insider_training_valid_until is not None:
            person.insider_training_valid_until = insider_training_valid_until
            changes["insider_training_valid_until"] = _iso(insider_training_valid_until)
        if not changes:
            raise InputError("nothing to change")
        record(s, actor=ws.actor, action="person.update", object=f"person:{person.id}", details=changes)
    return person


def list_people(ws: Workspace) -> list[Person]:
    with ws.reader() as s:
        return list(s.scalars(select(Person).order_by(Person.name)))


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


# --- accounts --------------------------------------------------------------------------------------


def add_user(
    ws: Workspace, username: str, *, person: str, password: str, roles: Sequence[str] = ()
) -> Account:
    """A human account for ``person`` (one per person), with a password that meets the policy."""
    username = _username(username)
    role_list = _roles(roles)
    with ws.transaction() as s:
        who = get_person(s, person)
        # The policy runs before any write; WeakPasswordError never contains the password.
        check_password(
            password,
            policy=PASSWORD_POLICY,
            context=PasswordContext(user_name=username, person_name=who.name, organisation=who.organisation),
        )
        account = Account(
            id=new_id("acc"),
            username=username,
            kind="human",
            person_id=who.id,
            roles=role_list,
            password_hash=hash_password(password, params=HASH_PARAMS),
            created_at=utcnow(),
        )
        s.add(account)
        _flush_unique(
            s,
            f"user name {username!r} is taken, or {who.name} already has an account",
            "one human account per person; shared accounts are not allowed (A4.1(1))",
        )
        record(
            s,
            actor=ws.actor,
            action="account.add",
            object=f"account:{username}",
            details={"kind": "human", "person": who.id, "roles": role_list},
        )
    return account


def add_service_account(ws: Workspace, username: str, *, owner: str) -> Account:
    """A workload identity owned by an accountable person; it signs in with tokens only."""
    username = _username(username)
    with ws.transaction() as s:
        who = get_person(s, owner)
        account = Account(
            id=new_id("acc"),
            username=username,
            kind="service",
            owner_id=who.id,
            roles=[],
            password_hash=None,
            created_at=utcnow(),
        )
        s.add(account)
        _flush_unique(s, f"user name {username!r} is taken", "choose another name")
        record(
            s,
            actor=ws.actor,
            action="account.add",
            object=f"account:{username}",
            details={"kind": "service", "owner": who.id},
        )
    return account


def set_roles(ws: Workspace, username: str, roles: Sequence[str]) -> Account:
    role_list = _roles(roles)
    with ws.transaction() as s:
        account = get_account(s, username)
        if account.kind != "human":
            raise InputError("roles are for human accounts; service accounts have token scopes")
        before = list(account.roles)
        account.roles = role_list
        record(
            s,
            actor=ws.actor,
            action="account.roles",
            object=f"account:{username}",
            details={"before": before, "after": role_list},
        )
    return account


def disable_account(ws: Workspace, username: str, *, reason: str) -> Account:
    """Disable an account: its sessions and tokens are revoked with it."""
    now = utcnow()
    with ws.transaction() as s:
        account = get_account(s, username)
        if account.disabled_at is not None:
            raise ConflictError(f"account {username!r} is already disabled")
        account.disabled_at = now
        _revoke_credentials(s, account.id, now)
        record(
            s,
            actor=ws.actor,
            action="account.disable",
            object=f"account:{username}",
            details={"reason": reason},
        )
    return account


def _revoke_credentials(s: DBSession, account_id: str, now: dt.datetime) -> None:
    for sess in s.scalars(
        select(Session).where(Session.account_id == account_id, Session.revoked_at.is_(None))
    ):
        sess.revoked_at = now
    for tok in s.scalars(
        select(ServiceToken).where(ServiceToken.account_id == account_id, ServiceToken.revoked_at.is_(None))
    ):
        tok.revoked_at = now


def list_accounts(ws: Workspace) -> list[Account]:
    with ws.reader() as s:
        return list(
            s.scalars(
                select(Account)
                .options(selectinload(Account.person), selectinload(Account.owner))
                .order_by(Account.username)
            )
        )


# --- service tokens --------------------------------------------------------------------------------


def issue_token(
    ws: Workspace, username: str, *, scopes: Sequence[str], lifetime: dt.timedelta = dt.timedelta(days=30)
) -> tuple[ServiceToken, str]:
    """A new token for a service account. Returns the row and the token, which is shown once."""
    bad = [x for x in scopes if x not in SCOPES]
    if bad or not scopes:
        raise InputError(
            f"unknown or missing scope {bad[0] if bad else ''!r}", hint=f"scopes: {', '.join(SCOPES)}"
        )
    if not dt.timedelta(0) < lifetime <= MAX_TOKEN_LIFETIME:
        raise InputError(f"a token lives at most {MAX_TOKEN_LIFETIME.days} days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with ws.transaction() as s:
        account = get_account(s, username)
        if account.kind != "service" or account.disabled_at is not None:
            raise InputError(
                f"{username!r} is not an enabled service account", hint="humans sign in with `gpaisec login`"
            )
        row = ServiceToken(
            id=new_id("tok"),
            account_id=account.id,
            hash=_token_hash(token),
            scopes=sorted(set(scopes)),
            created_at=now,
            expires_at=now + lifetime,
        )
        s.add(row)
        record(
            s,
            actor=ws.actor,
            action="token.issue",
            object=f"account:{username}",
            details={"token": row.id, "scopes": row.scopes, "expires_at": row.expires_at.isoformat()},
        )
    return row, token


@dataclass(frozen=True)
class TokenHolder:
    """Who a live bearer token speaks for (:func:`authenticate_token`)."""

    account_id: str
    username: str
    kind: str
    token_id: str
    scopes: tuple[str, ...]
    expires_at: dt.datetime


# Every request from software starts here: one indexed lookup on the driver's connection.
_TOKEN = Query(
    select(
        ServiceToken.id,
        ServiceToken.scopes,
        ServiceToken.expires_at,
        ServiceToken.revoked_at,
        Account.id.label("account_id"),
        Account.username,
        Account.kind,
        Account.disabled_at,
    )
    .join(Account, Account.id == ServiceToken.account_id)
    .where(ServiceToken.hash == bindparam("hash"))
)


def authenticate_token(ws: Workspace, token: str, *, now: dt.datetime | None = None) -> TokenHolder:
    """The account a bearer token speaks for; refused if unknown, expired, revoked or disabled.

    The token is looked up by its SHA-256 (the only form stored), so the lookup reveals nothing
    about tokens that exist.
    """
    now = now or utcnow()
    with read_transaction(ws.engine) as r:
        row = r.first(_TOKEN, hash=_token_hash(token))
    if row is None or row.revoked_at is not None or row.expires_at <= now or row.disabled_at is not None:
        raise DeniedError("the token is unknown, expired or revoked", hint="ask the owner for a new token")
    return TokenHolder(
        account_id=row.account_id,
        username=row.username,
        kind=row.kind,
        token_id=row.id,
        scopes=tuple(row.scopes),
        expires_at=row.expires_at,
    )


# --- device keys -----------------------------------------------------------------------------------

#: How long a device challenge may be answered.
DEVICE_CHALLENGE_LIFETIME = dt.timedelta(minutes=2)
#: How far in the future a challenge's issue time may lie (clocks of several API processes).
DEVICE_CHALLENGE_SKEW = dt.timedelta(seconds=30)
#: The purpose prefix under which the last device challenge an account used with a key is kept
#: (webauthn_challenges; see device_challenge_purpose).
DEVICE_CHALLENGE_PURPOSE = "device"
_CHALLENGE_PREFIX = "dc1_"
_CHALLENGE_MAC = b"gpaisec-device-challenge-v1\x00"


@dataclass(frozen=True)
class DeviceChallenge:
    """A fresh challenge for a device proof: ``id`` goes back with the proof, ``challenge`` is signed."""

    id: str
    challenge: bytes
    expires_at: dt.datetime


def _challenge_key(ws: Workspace) -> bytes:
    # Derived from the throttle's secret, which every process of one deployment already shares.
    return hmac.new(_throttle_key(ws), b"device-challenge", hashlib.sha256).digest()


def device_challenge(ws: Workspace, *, now: dt.datetime | None = None) -> DeviceChallenge:
    """A new device challenge (:data:`DEVICE_CHALLENGE_LIFETIME` to answer it; one use per account).

    Nothing is stored: the id carries the issue time and the random challenge under an HMAC of a
    server secret, so asking for challenges costs no database work and needs no user name. Single use
    is enforced when a proof is accepted (see :func:`authenticate`).
    """
    now = now or utcnow()
    issued = int(now.timestamp() * 1_000_000).to_bytes(8, "big")
    challenge = secrets.token_bytes(device_keys.CHALLENGE_BYTES)
    body = issued + challenge
    mac = hmac.new(_challenge_key(ws), _CHALLENGE_MAC + body, hashlib.sha256).digest()[:16]
    token = base64.urlsafe_b64encode(body + mac).decode("ascii").rstrip("=")
    return DeviceChallenge(
        id=_CHALLENGE_PREFIX + token, challenge=challenge, expires_at=now + DEVICE_CHALLENGE_LIFETIME
    )


def _open_challenge(ws: Workspace, challenge_id: str, now: dt.datetime) -> tuple[dt.datetime, bytes]:
    """The issue time and challenge of ``challenge_id`` if we issued it and it is live."""
    token = challenge_id.removeprefix(_CHALLENGE_PREFIX)
    if token == challenge_id or len(token) > 100:
        raise device_keys.DeviceProofError("the challenge id is not one this server issues")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    body, mac = raw[:-16], raw[-16:]
    expected = hmac.new(_challenge_key(ws), _CHALLENGE_MAC + body, hashlib.sha256).digest()[:16]
    if len(raw) != 8 + device_keys.CHALLENGE_BYTES + 16 or not hmac.compare_digest(mac, expected):
        raise device_keys.DeviceProofError("the challenge id is not one this server issued")
    issued = dt.datetime.fromtimestamp(int.from_bytes(body[:8], "big") / 1_000_000, dt.UTC)
    if issued > now + DEVICE_CHALLENGE_SKEW:
        raise device_keys.DeviceProofError("the challenge was issued in the future")
    if now - issued > DEVICE_CHALLENGE_LIFETIME:
        raise device_keys.DeviceProofError("the challenge has expired")
    return issued, body[8:]


def enrol_device_key(ws: Workspace, device: str, public_key: str | bytes) -> DeviceKey:
    """Bind a public key (:func:`gpaisec.access.device_keys.parse_public_key`: Ed25519 or ECDSA
    P-256, PEM or OpenSSH) to a registered device; its sessions prove they hold the private key."""
    parsed = device_keys.parse_public_key(public_key)
    with ws.transaction() as s:
        dev = get_device(s, device)
        if dev.retired_at is not None:
            raise InputError(f"device {dev.name} is retired", hint="keys are enrolled for devices in use")
        key = DeviceKey(
            id=new_id("dk"),
            device_id=dev.id,
            fingerprint=parsed.fingerprint,
            public_key=parsed.pem,
            created_at=utcnow(),
        )
        s.add(key)
        _flush_unique(s, "this public key is already enrolled", "each device has its own key")
        record(
            s,
            actor=ws.actor,
            action="device_key.enrol",
            object=f"device:{dev.name}",
            details={"fingerprint": key.fingerprint, "algorithm": parsed.algorithm},
        )
    return key


def revoke_device_key(ws: Workspace, fingerprint: str, *, reason: str) -> DeviceKey:
    """Revoke a device key: it proves nothing from now on, and the sessions bound to it end."""
    fingerprint = fingerprint.strip()
    now = utcnow()
    with ws.transaction() as s:
        key = s.scalars(select(DeviceKey).where(DeviceKey.fingerprint == fingerprint)).first()
        if key is None:
            raise NotFoundError(f"no device key {fingerprint!r}", hint="see `gpaisec access device-keys`")
        if key.revoked_at is not None:
            raise ConflictError(f"device key {fingerprint} is already revoked")
        key.revoked_at = now
        ended = list(
            s.scalars(_active_sessions(s, now).where(Session.device_key_id == key.id).order_by(Session.id))
        )
        for row in ended:
            row.revoked_at = now
        dev = s.get(Device, key.device_id)
        record(
            s,
            actor=ws.actor,
            action="device_key.revoke",
            object=f"device:{dev.name if dev else '?'}",
            details={"fingerprint": fingerprint, "reason": reason, "sessions": [x.id for x in ended]},
        )
    return key


def list_device_keys(ws: Workspace, device: str | None = None) -> list[tuple[DeviceKey, str]]:
    """Enrolled device keys (revoked ones too) with their device's name, newest first."""
    with ws.reader() as s:
        query = select(DeviceKey, Device.name).join(Device, Device.id == DeviceKey.device_id)
        if device is not None:
            query = query.where(Device.id == get_device(s, device).id)
        rows = s.execute(query.order_by(DeviceKey.created_at.desc()))
        return [(key, name) for key, name in rows]


@dataclass(frozen=True)
class _ProvenKey:
    """A device key whose holder has just signed a live challenge for this account."""

    key_id: str
    device_id: str
    fingerprint: str


def _check_device_proof(
    ws: Workspace, username: str, device: str, proof: device_keys.DeviceProof | None, now: dt.datetime
) -> _ProvenKey:
    """Steps 2a-2d of :func:`authenticate`; each failure is a :class:`DeviceProofError`."""
    if proof is None:
        raise device_keys.DeviceProofError("no device proof was given")
    # 2a: the challenge is one we issued, and it is live.
    issued, challenge = _open_challenge(ws, proof.challenge_id, now)
    # 2b: the key: enrolled and unrevoked, on the device the caller named (by name or fingerprint).
    fingerprint = device_keys.parse_fingerprint(proof.fingerprint)
    with ws.reader() as s:
        row = s.scalars(select(DeviceKey).where(DeviceKey.fingerprint == fingerprint)).first()
        if row is None or row.revoked_at is not None:
            raise device_keys.DeviceProofError(f"the device key {fingerprint} is not enrolled or is revoked")
        dev = s.get(Device, row.device_id)
        if dev is None or device not in (dev.name, row.fingerprint):
            raise device_keys.DeviceProofError(
                f"the device key {fingerprint} is not a key of the device named in the request"
            )
        # Before the password, like every device check: the device's state is no secret to whoever
        # holds its key, and a refusal after the password would tell them the password was right.
        if dev.retired_at is not None or not dev.managed:
            state = "retired" if dev.retired_at is not None else "not managed"
            raise device_keys.DeviceProofError(f"device {dev.name} is {state}")
        proven = _ProvenKey(key_id=row.id, device_id=dev.id, fingerprint=row.fingerprint)
        stored = row.public_key
    try:
        key = device_keys.parse_public_key(stored)
    except InputError:
        key = None
    if key is None or key.fingerprint != fingerprint:  # enrolled before keys were parsed: re-enrol
        raise device_keys.DeviceProofError(f"the stored key {fingerprint} is unusable; enrol the key again")
    # 2c: the signature, over the challenge, the fingerprint and the user name.
    device_keys.verify_proof(
        key, device_keys.proof_message(challenge, fingerprint, username), proof.signature
    )
    # 2d: single use: the account keeps the issue time of the last challenge it used, and only a
    # later one is accepted (a replay, or an older challenge answered late, is refused). Committed now,
    # whatever happens next, so a proof is good for one try.
    _use_challenge(ws, username, proven.key_id, issued, challenge)
    return proven


def device_challenge_purpose(key_id: str) -> str:
    """The ``webauthn_challenges`` purpose that records the last challenge used with a device key:
    per account *and* key, so the holder of one key can never void the challenge of another."""
    return f"{DEVICE_CHALLENGE_PURPOSE}:{key_id}"


def _use_challenge(ws: Workspace, username: str, key_id: str, issued: dt.datetime, challenge: bytes) -> None:
    if not plausible_username(username):
        return
    purpose = device_challenge_purpose(key_id)
    try:
        with ws.transaction() as s:
            account_id = s.scalar(select(Account.id).where(Account.username == username))
            if account_id is None:
                return  # no account to sign in to: the password step fails
            values = {
                "challenge": challenge,
                "created_at": issued,
                "expires_at": issued + DEVICE_CHALLENGE_LIFETIME,
            }
            taken = s.execute(
                update(WebAuthnChallenge)
                .where(
                    WebAuthnChallenge.account_id == account_id,
                    WebAuthnChallenge.purpose == purpose,
                    WebAuthnChallenge.created_at < issued,
                )
                .values(**values)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return
            if s.get(WebAuthnChallenge, (account_id, purpose)) is not None:
                raise device_keys.DeviceProofError("the challenge was used already (or a later one was)")
            s.add(WebAuthnChallenge(account_id=account_id, purpose=purpose, **values))
            s.flush()
    except DBIntegrityError:  # a concurrent first use of a challenge by this account
        raise device_keys.DeviceProofError("the challenge was used already (or a later one was)") from None


# --- throttling ------------------------------------------------------------------------------------


class DatabaseAttemptStore:
    """The throttle's counters in the ``login_throttle`` table, each update in its own transaction."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def get(self, key: str) -> AttemptRecord | None:
        with self._ws.reader() as s:
            row = s.get(LoginThrottle, key)
            return None if row is None else AttemptRecord(row.failures, row.last_failure, row.expires)

    def update(
        self, key: str, change: Callable[[AttemptRecord | None], AttemptRecord | None]
    ) -> AttemptRecord | None:
        for attempt in range(2):  # a concurrent first insert of the same key: read it and retry
            try:
                with self._ws.transaction() as s:
                    row = s.get(LoginThrottle, key, with_for_update=True)
                    current = (
                        None if row is None else AttemptRecord(row.failures, row.last_failure, row.expires)
                    )
                    new = change(current)
                    if new is None:
                        if row is not None:
                            s.delete(row)
                    elif row is None:
                        s.add(
                            LoginThrottle(
                                key=key,
                                failures=new.failures,
                                last_failure=new.last_failure,
                                expires=new.expires,
                            )
                        )
                    else:
                        row.failures, row.last_failure, row.expires = (
                            new.failures,
                            new.last_failure,
                            new.expires,
                        )
                    return new
            except DBIntegrityError:
                if attempt:
                    raise
        return None  # pragma: no cover

    def purge(self, now: float) -> int:
        with self._ws.transaction() as s:
            result = s.execute(delete(LoginThrottle).where(LoginThrottle.expires <= now))
            return int(getattr(result, "rowcount", 0) or 0)


def _throttle_key(ws: Workspace) -> bytes:
    """The HMAC key of the throttle's counters (GPAISEC_THROTTLE_KEY hex, or keys/throttle.key, 0600)."""
    env = os.environ.get("GPAISEC_THROTTLE_KEY")
    if env:
        try:
            return bytes.fromhex(env)
        except ValueError:
            raise InputError("GPAISEC_THROTTLE_KEY must be hex") from None
    path = ws.keys_dir / "throttle.key"
    if not path.exists():
        ws.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def throttle(
    ws: Workspace,
    *,
    purpose: str = "",
    account_policy: BackoffPolicy = ACCOUNT_POLICY,
    source_policy: BackoffPolicy = SOURCE_POLICY,
) -> Throttle:
    """The sign-in throttle; another ``purpose`` gets counters of its own (a key derived from the same
    secret)."""
    key = _throttle_key(ws)
    if purpose:
        key = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    return Throttle(
        DatabaseAttemptStore(ws), key_secret=key, account_policy=account_policy, source_policy=source_policy
    )


# --- sign-in ---------------------------------------------------------------------------------------


class SignInError(WrongPasswordError):
    """Sign-in failed: one error for an unknown user, a wrong password and a wrong second factor."""

    def __init__(self) -> None:
        GpaisecError.__init__(
            self,
            "sign-in failed: the user name, password or second factor is wrong",
            hint="check them and try again; each further failure makes the wait before the next try longer",
        )


@dataclass(frozen=True)
class Login:
    """A new session and its token (shown once; only its hash is stored)."""

    session: Session
    token: str


@dataclass(frozen=True)
class SessionInfo:
    """A live session as its person sees it (no token, no hash)."""

    id: str
    device: str
    source: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    mfa_at: dt.datetime | None
    expires_at: dt.datetime


def _active_sessions(s: DBSession, now: dt.datetime) -> Any:
    return select(Session).where(Session.revoked_at.is_(None), Session.expires_at > now)


def plausible_username(username: str) -> bool:
    """False for a name no account can have (control characters, NUL, absurd length).

    Such a name is an unknown account: it never reaches the database (PostgreSQL rejects NUL with an
    error) and costs the same dummy work.
    """
    return 0 < len(username) <= 200 and not any(ord(c) < 32 or ord(c) == 127 for c in username)


def password_account(s: DBSession, username: str, password: str) -> tuple[Account | None, bool]:
    """The human account named ``username`` (or None) and whether ``password`` is right for it and it is
    enabled; the same password work whether or not the account exists. Writes nothing."""
    account = (
        s.scalars(select(Account).where(Account.username == username, Account.kind == "human")).first()
        if plausible_username(username)
        else None
    )
    try:
        if account is None or account.password_hash is None:
            verify_dummy(password, params=HASH_PARAMS)
        verify_password(account.password_hash, password)
        if account.disabled_at is not None:
            raise WrongPasswordError()
    except WrongPasswordError:
        return account, False
    return account, True


def check_sign_in_password(s: DBSession, username: str, password: str, *, details: dict[str, Any]) -> Account:
    """Step 2 of signing in, in the caller's transaction: the enabled human account, or a
    :class:`Refusal` (``login.fail``) holding :class:`WrongPasswordError` after the same work."""
    account, ok = password_account(s, username, password)
    if not ok or account is None:
        obj = f"account:{account.username}" if account is not None else "account:?"  # never echo input
        raise Refusal(
            WrongPasswordError(), action="login.fail", object=obj, details={**details, "step": "password"}
        )
    return account


def authenticate(
    ws: Workspace,
    username: str,
    password: str,
    second_factor: str | mfa.SecondFactor | None,
    device: str,
    *,
    device_proof: device_keys.DeviceProof | None,
    source: str = "local",
    now: dt.datetime | None = None,
) -> Login:
    """Sign in; see the module docstring for the steps. Returns the session and its token.

    ``device`` names the device (its name, or its key's fingerprint); ``device_proof`` is the
    signature of a challenge from :func:`device_challenge` by that device's enrolled key (None is
    refused like a wrong one). ``second_factor`` is a one-time or recovery code, or a passkey's
    assertion (:class:`gpaisec.access.webauthn.Assertion`). Every failure of steps 2-4 is one
    :class:`SignInError`.
    """
    now = now or utcnow()
    gate = throttle(ws)
    # Step 1: throttle, before any work.
    gate.check(username, source)
    seeds = _seed_sealer(ws)  # outside any transaction (a key provider audits its unwrap in its own)
    # Step 2: the device proof, before any password work (see the module docstring).
    try:
        proven = _check_device_proof(ws, username, device, device_proof, now)
    except device_keys.DeviceProofError as exc:
        _refuse_device_proof(ws, username, device_proof, exc, source)
        # Against the source only: a proof anyone can fail for any name must not lock its person out.
        gate.record_source_failure(source)
        raise SignInError() from None
    # A passkey's challenge is taken away now, in a transaction of its own (one try per challenge),
    # but only for the right password: otherwise anyone could burn a person's pending challenge. The
    # check costs the same password work whether it passes or not, and step 3 repeats it.
    if second_factor is not None and not isinstance(second_factor, str):
        with ws.reader() as s:
            _, right = password_account(s, username, password)
        if right:
            second_factor.claim(ws, username, now)
        else:
            second_factor.claim_nothing()

    def sign_in(s: DBSession) -> Login:
        # Step 3: password (dummy work for an unknown account; the same error either way).
        account = check_sign_in_password(s, username, password, details={"source": source})
        obj = f"account:{account.username}"
        # Step 4: second factor.
        mfa_at: dt.datetime | None = None
        if mfa.is_enrolled(s, account.id):
            try:
                if not second_factor:
                    raise mfa.MfaError("a second factor is required for this account")
                factor = mfa.verify_second_factor(s, account, second_factor, now, seeds=seeds)
            except mfa.MfaError as exc:
                raise Refusal(
                    exc, action="login.fail", object=obj, details={"source": source, "step": "mfa"}
                ) from None
            mfa_at = now
        else:
            factor = "none"
        # Step 5: the proven key and its device, as they are now: the key unrevoked, the device
        # managed and in use.
        key = s.get(DeviceKey, proven.key_id)
        dev = s.get(Device, proven.device_id)
        if key is None or dev is None or key.revoked_at is not None:
            raise Refusal(
                device_keys.DeviceProofError(f"the device key {proven.fingerprint} was revoked"),
                action="login.fail",
                object=obj,
                details={"source": source, "step": "device", "fingerprint": proven.fingerprint},
            )
        if dev.retired_at is not None or not dev.managed:
            raise Refusal(
                DeniedError(
                    f"device {dev.name} is {'retired' if dev.retired_at is not None else 'not managed'}",
                    hint="sign in from a managed device in use (A4.2(2): no weights on unmanaged devices)",
                ),
                action="login.denied",
                object=obj,
                details={"device": dev.name, "fingerprint": key.fingerprint},
            )
        # Step 6: no shared accounts or devices.
        active = list(s.scalars(_active_sessions(s, now).options(selectinload(Session.device_key))))
        elsewhere = sorted(
            {
                x.device_key.device_id
                for x in active
                if x.account_id == account.id and x.device_key.device_id != dev.id
            }
        )
        if elsewhere:
            others = [d.name for d in s.scalars(select(Device).where(Device.id.in_(elsewhere)))]
            raise Refusal(
                DeniedError(
                    f"{account.username} is already signed in on another device ({', '.join(others)})",
                    hint="sign out there first; accounts are never shared (A4.1(1))",
                ),
                action="login.denied",
                object=obj,
                details={"device": dev.name, "other_devices": others},
                finding={
                    "kind": "shared_account",
                    "severity": "high",
                    "summary": (
                        f"account {account.username} active on {dev.name} and {', '.join(others)} at once"
                    ),
                    "dedupe_key": f"shared_account:{account.id}",
                    "device_id": dev.id,
                    "details": {"account": account.username, "devices": [dev.name, *others]},
                    "now": now,
                },
            )
        users = sorted(
            {x.account_id for x in active if x.device_key.device_id == dev.id and x.account_id != account.id}
        )
        if users:
            names = [a.username for a in s.scalars(select(Account).where(Account.id.in_(users)))]
            raise Refusal(
                DeniedError(
                    f"device {dev.name} is in use by another account",
                    hint="one person per device at a time; the other account must sign out (A4.1(1))",
                ),
                action="login.denied",
                object=obj,
                details={"device": dev.name, "other_accounts": names},
                finding={
                    "kind": "shared_device",
                    "severity": "high",
                    "summary": f"device {dev.name} used by {account.username} and {', '.join(names)} at once",
                    "dedupe_key": f"shared_device:{dev.id}",
                    "device_id": dev.id,
                    "details": {"device": dev.name, "accounts": [account.username, *names]},
                    "now": now,
                },
            )
        # Step 7: the session.
        token = secrets.token_urlsafe(32)
        session = Session(
            id=new_id("ses"),
            account_id=account.id,
            device_key_id=key.id,
            token_hash=_token_hash(token),
            source=source[:100],
            created_at=now,
            last_seen_at=now,
            mfa_at=mfa_at,
            expires_at=now + SESSION_LIFETIME,
        )
        s.add(session)
        record(
            s,
            actor=f"user:{account.username}",
            action="login",
            object=obj,
            details={
                "session": session.id,
                "device": dev.name,
                "fingerprint": key.fingerprint,
                "factor": factor,
                "source": source,
            },
        )
        return Login(session=session, token=token)

    try:
        login = guarded(ws, "anonymous", sign_in)
    except (WrongPasswordError, mfa.MfaError, device_keys.DeviceProofError):
        gate.record_failure(username, source)
        raise SignInError() from None
    gate.record_success(username, source)
    return login


def _refuse_device_proof(
    ws: Workspace,
    username: str,
    proof: device_keys.DeviceProof | None,
    error: device_keys.DeviceProofError,
    source: str,
) -> None:
    """Audit a refused device proof (``login.fail``, step ``device``) in a transaction of its own."""

    def refuse(s: DBSession) -> None:
        account = (
            s.scalars(select(Account).where(Account.username == username)).first()
            if plausible_username(username)
            else None
        )
        details: dict[str, Any] = {"source": source, "step": "device"}
        if proof is not None and device_keys.FINGERPRINT.fullmatch(proof.fingerprint):
            details["fingerprint"] = proof.fingerprint  # only a well-formed one: never echo input
        raise Refusal(
            error,
            action="login.fail",
            object=f"account:{account.username}" if account is not None else "account:?",
            details=details,
        )

    with contextlib.suppress(device_keys.DeviceProofError):
        guarded(ws, "anonymous", refuse)


#: How stale a session's ``last_seen_at`` may get before a request records its use again.
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)


def resolve_session(ws: Workspace, token: str, *, now: dt.datetime | None = None) -> Session:
    """The live session of ``token``, with its account and device key loaded.

    Reads only, except when the session's ``last_seen_at`` is more than LAST_SEEN_RESOLUTION old:
    then one small write records the use (a page of the dashboard makes several API calls; each
    writing, and on SQLite fsyncing, would make every one of them a write transaction).
    """
    now = now or utcnow()
    with ws.reader() as s:
        sess = s.scalars(
            select(Session)
            .options(
                selectinload(Session.account).selectinload(Account.person), selectinload(Session.device_key)
            )
            .where(Session.token_hash == _token_hash(token))
        ).first()
    if sess is None or sess.revoked_at is not None or sess.expires_at <= now:
        raise DeniedError(
            "the session is unknown, expired or signed out", hint="sign in with `gpaisec login`"
        )
    if sess.account.disabled_at is not None:
        raise DeniedError("the account is disabled")
    if now - sess.last_seen_at >= LAST_SEEN_RESOLUTION:
        with ws.transaction() as w:
            w.execute(
                update(Session)
                .where(Session.id == sess.id, Session.last_seen_at < now)
                .values(last_seen_at=now)
            )
        sess.last_seen_at = now
    return sess


def _seed_sealer(ws: Workspace) -> mfa.SeedSealer | None:
    """The workspace's TOTP seed sealer if its key exists and opens, else None: the check then finds
    the key itself, makes one only to seal a legacy plaintext seed (a sealed seed never makes a new
    key), and fails a one-time code closed with its reason audited; passkeys and recovery codes work
    regardless."""
    try:
        return mfa.seed_sealer(ws, create=False)
    except GpaisecError:
        return None


def step_up(
    ws: Workspace, token: str, code: str | mfa.SecondFactor, *, now: dt.datetime | None = None
) -> Session:
    """Check a fresh second factor (a code or a passkey's assertion) for a live session and record
    its time (``mfa_at``).

    Failures are throttled per account (counters of their own, with the sign-in's back-off), so a
    stolen session cannot guess its way to a fresh second factor.
    """
    now = now or utcnow()
    sess = resolve_session(ws, token, now=now)
    username = sess.account.username
    gate = throttle(ws, purpose="step-up")
    where = f"session:{sess.id}"
    gate.check(username, where)
    if not isinstance(code, str):
        code.claim(ws, username, now)
    seeds = _seed_sealer(ws)

    def check(s: DBSession) -> Session:
        row = s.get(Session, sess.id)
        assert row is not None
        try:
            factor = mfa.verify_second_factor(s, row.account, code, now, seeds=seeds)
        except mfa.MfaError as exc:
            raise Refusal(exc, action="session.mfa.fail", object=f"account:{username}") from None
        row.mfa_at = now
        record(
            s,
            actor=f"user:{username}",
            action="session.mfa",
            object=f"account:{username}",
            details={"session": row.id, "factor": factor},
        )
        return row

    try:
        done = guarded(ws, f"user:{username}", check)
    except mfa.MfaError:
        gate.record_failure(username, where)
        raise
    gate.record_success(username, where)
    return done


def logout(ws: Workspace, token: str) -> None:
    now = utcnow()
    with ws.transaction() as s:
        sess = s.scalars(select(Session).where(Session.token_hash == _token_hash(token))).first()
        if sess is None or sess.revoked_at is not None:
            return
        sess.revoked_at = now
        account = s.get(Account, sess.account_id)
        name = account.username if account else "?"
        record(
            s, actor=f"user:{name}", action="logout", object=f"account:{name}", details={"session": sess.id}
        )


def logout_all(ws: Workspace, token: str, *, now: dt.datetime | None = None) -> int:
    """Sign out everywhere: end every live session of the account of ``token`` (this one too).

    Returns how many sessions ended; one audit event names them. An unknown or ended ``token`` is
    refused, as for any signed-in operation.
    """
    now = now or utcnow()
    sess = resolve_session(ws, token, now=now)
    username = sess.account.username
    with ws.transaction() as s:
        account = get_account(s, username)
        ended = list(s.scalars(_active_sessions(s, now).where(Session.account_id == account.id)))
        for row in ended:
            row.revoked_at = now
        record(
            s,
            actor=f"user:{username}",
            action="logout.all",
            object=f"account:{username}",
            details={"sessions": sorted(x.id for x in ended)},
        )
    return len(ended)


def list_sessions(ws: Workspace, username: str, *, now: dt.datetime | None = None) -> list[SessionInfo]:
    """The live sessions of ``username``, newest first."""
    now = now or utcnow()
    with ws.reader() as s:
        account = get_account(s, username)
        rows = s.scalars(
            _active_sessions(s, now)
            .where(Session.account_id == account.id)
            .options(selectinload(Session.device_key))
            .order_by(Session.created_at.desc())
        )
        out = []
        for row in rows:
            dev = s.get(Device, row.device_key.device_id)
            out.append(
                SessionInfo(
                    id=row.id,
                    device=dev.name if dev is not None else "?",
                    source=row.source,
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    mfa_at=row.mfa_at,
                    expires_at=row.expires_at,
                )
            )
        return out
