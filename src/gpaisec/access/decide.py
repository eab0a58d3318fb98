"""Access decisions over the live store: who may read, write or export which unreleased weights now.

:func:`check_access` builds what the PDP (:mod:`gpaisec.access.pdp`) needs and asks it:

1. Principal: a human account is its Person (vetting dates from the person record, roles from the
   account); a service account is a ServiceAccount with the scopes of its live tokens.
2. Session: the given session token (it must be this account's), else the account's newest live
   session. Its ``mfa_at`` gives the MFA age; its device key gives the device. Without a session the
   MFA age is -1 (never) and the device is unknown and unmanaged.
3. Device: managed, disk encryption and EDR from the device inventory (weights.Device).
4. Resource: the model version (released or not).
5. Grant: the account's grant for exactly this version and action: the active one, else the newest
   other one, so that a denial says why (pending, expired, revoked). An active break-glass grant
   makes the request a break-glass request instead.
6. Policies: the workspace's own set (``<workspace>/policies/*.cedar``) if there is one, else the
   packaged set. A set that cannot be loaded denies everything, with the reason; an empty set denies
   everything (Cedar denies by default).

Every decision is audited (``access.decide``) with the policies that determined it; an allowed
break-glass decision is audited as an alert. The decision is returned only once its audit event is
committed: decisions go to the workspace's group-commit writer (:mod:`gpaisec.audit.group`), which
commits many of them under one signed checkpoint. If the event cannot be committed,
:class:`~gpaisec.audit.group.AuditWriteError` is raised and no decision is returned (fail closed).

Nothing here is cached but by content: the facts are read from the store for every decision (a few
indexed single-row queries, in one read transaction), so a change committed before the decision
starts (a revoked grant, a lapsed check, an unmanaged device) is always seen. The policy set is
re-read from disk on every decision and re-parsed only when its text changes; the PDP parses each
distinct set of entities once (keyed by its JSON text).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Any, Final

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import aliased

from gpaisec.access import pdp as pdp_mod
from gpaisec.access.accounts import _token_hash
from gpaisec.access.models import Account, DeviceKey, Grant, GrantApproval, Person, ServiceToken, Session
from gpaisec.access.pdp import PDP, Decision, PolicySet
from gpaisec.audit.service import AuditEvent
from gpaisec.errors import ConfigError, DeniedError, InputError, NotFoundError
from gpaisec.store.base import utcnow
from gpaisec.store.fastsql import Query, Reader, read_transaction
from gpaisec.weights.models import Device, Location, LocationApproval, Model, ModelVersion
from gpaisec.weights.registry import parse_location, parse_version_ref
from gpaisec.workspace import Workspace

__all__ = [
    "POLICY_DIR",
    "PendingDecision",
    "check_access",
    "load_policies",
    "prepare_decision",
]

POLICY_DIR = "policies"
_NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GRANT_STATE = {"requested": "pending", "active": "active", "expired": "expired", "revoked": "revoked"}
_MAX_NAME: Final = 1000


def load_policies(ws: Workspace) -> PolicySet:
    """The workspace's policy set (``<workspace>/policies``) if present, else the packaged one.

    The files are read every time; they are parsed and validated again only when their text (or
    their schema's) differs from the last set loaded, so an edit takes effect on the next decision.
    """
    where = ws.home / POLICY_DIR
    if not where.is_dir():
        return PolicySet.load()
    files = sorted(where.glob("*.cedar"))
    schema = where / "schema.cedarschema"
    digest = hashlib.sha256()
    try:
        for f in [*files, schema] if schema.is_file() else files:
            data = f.read_bytes()
            digest.update(f.name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    except OSError:
        return PolicySet.load(where)  # let the loader say what cannot be read
    return _load_dir(str(where), digest.hexdigest())


@functools.lru_cache(maxsize=16)
def _load_dir(where: str, digest: str) -> PolicySet:
    # ``digest`` (of every file's name and bytes) is the cache key: same text, same parsed set.
    # A set that fails to load raises, and lru_cache keeps no failure.
    return PolicySet.load(Path(where))


def _fail_closed(message: str) -> Decision:
    return Decision(
        False, (), (message,), (f"the policy set cannot be used, so every request is denied: {message}",)
    )


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # and lone surrogates (undecodable bytes)


def _plausible(name: str) -> bool:
    """A name the store could hold: no control characters (PostgreSQL refuses NUL), bounded length."""
    return 0 < len(name) <= _MAX_NAME and _CONTROL.search(name) is None


@functools.lru_cache(maxsize=4096)
def _is_ip(text: str) -> bool:
    # Cached: a policy enforcement point asks from the same few addresses again and again.
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _effective(state: str, expires_at: dt.datetime | None, now: dt.datetime) -> str:
    """A grant's state now (as gpaisec.access.grants.effective_state): active past expiry is expired."""
    if state == "active" and expires_at is not None and expires_at <= now:
        return "expired"
    return state


_Requester = aliased(Account)
_Approver = aliased(Account)
_DEVICE_COLUMNS = (
    Device.id,
    Device.name,
    Device.managed,
    Device.disk_encrypted,
    Device.edr,
    Device.retired_at,
)

# The statements are built once and compiled once per dialect; each decision only binds its values
# and runs them on the driver's connection in one read transaction (gpaisec.store.fastsql).
_ACCOUNT = Query(
    select(
        Account.id,
        Account.kind,
        Account.roles,
        Account.disabled_at,
        Account.person_id,
        Person.background_check_valid_until,
        Person.insider_training_valid_until,
    )
    .outerjoin(Person, Person.id == Account.person_id)
    .where(Account.username == bindparam("username"))
)
_VERSION = Query(
    select(ModelVersion.id, ModelVersion.released, Model.name, ModelVersion.name)
    .join(Model, Model.id == ModelVersion.model_id)
    .where(Model.name == bindparam("model"), ModelVersion.name == bindparam("version"))
)
_SESSION = (
    select(Session.id, Session.mfa_at, DeviceKey.revoked_at.label("key_revoked_at"), *_DEVICE_COLUMNS)
    .outerjoin(DeviceKey, DeviceKey.id == Session.device_key_id)
    .outerjoin(Device, Device.id == DeviceKey.device_id)
    .where(
        Session.account_id == bindparam("account"),
        Session.revoked_at.is_(None),
        Session.expires_at > bindparam("now"),
    )
)
_NEWEST_SESSION = Query(_SESSION.order_by(Session.created_at.desc()).limit(1))
_TOKEN_SESSION = Query(_SESSION.where(Session.token_hash == bindparam("token_hash")).limit(1))
_DEVICE_BY_NAME = Query(select(*_DEVICE_COLUMNS).where(Device.name == bindparam("name")).limit(1))
_SCOPES = Query(
    select(ServiceToken.scopes).where(
        ServiceToken.account_id == bindparam("account"),
        ServiceToken.revoked_at.is_(None),
        ServiceToken.expires_at > bindparam("now"),
    )
)
_GRANTS = (
    select(
        Grant.id,
        Grant.state,
        Grant.break_glass,
        Grant.requested_at,
        Grant.not_before,
        Grant.expires_at,
        Grant.service_account_id,
        Grant.version_id,
        Grant.location_id,
        Grant.action,
        _Requester.id.label("requester_id"),
        _Requester.person_id.label("requester_person"),
    )
    .join(_Requester, _Requester.id == Grant.requester_id)
    .where(
        Grant.version_id == bindparam("version"),
        Grant.action == bindparam("action"),
        # A grant for the version covers it everywhere; one for a copy covers only that copy (asked
        # about by location; "" matches no location, so a request for the version gets version grants).
        or_(Grant.location_id.is_(None), Grant.location_id == bindparam("location")),
        Grant.state != "denied",
    )
)
_SERVICE_GRANTS = Query(
    _GRANTS.where(Grant.service_account_id == bindparam("account")).order_by(Grant.requested_at.desc())
)
_HUMAN_GRANTS = Query(
    _GRANTS.where(Grant.requester_id == bindparam("account"), Grant.service_account_id.is_(None)).order_by(
        Grant.requested_at.desc()
    )
)
_LOCATION_COLUMNS = (
    Location.id,
    Location.path,
    Location.retired_at,
    LocationApproval.version_id.label("approved_version"),
)


def _location_query(*extra: Any) -> Any:
    return (
        select(*_LOCATION_COLUMNS, *extra)
        .select_from(Location)
        .outerjoin(
            LocationApproval,
            and_(
                LocationApproval.location_id == Location.id,
                LocationApproval.version_id == bindparam("version"),
            ),
        )
        .where(Location.path == bindparam("path"))
        .limit(2)  # two rows for one place: refused (see _read_location)
    )


_LOCATION_ON_DEVICE = Query(
    _location_query(Device.retired_at.label("device_retired_at"))
    .join(Device, Device.id == Location.device_id)
    .where(Device.name == bindparam("device"))
)
_LOCATION_AT_URI = Query(_location_query().where(Location.device_id.is_(None)))
_APPROVALS = Query(
    select(_Approver.id, _Approver.person_id, _Approver.username)
    .select_from(GrantApproval)
    .join(_Approver, _Approver.id == GrantApproval.approver_id)
    .where(GrantApproval.grant_id == bindparam("grant"))
    .order_by(GrantApproval.approved_at)
)


def _read_account(r: Reader, username: str) -> Any:
    row = r.first(_ACCOUNT, username=username) if _plausible(username) else None
    if row is None:
        raise NotFoundError(f"no account {username!r}", hint="see `gpaisec users list`")
    return row


def _find_version(r: Reader, ref: str) -> Any:
    model_name, version = parse_version_ref(ref)
    return r.first(_VERSION, model=model_name, version=version) if _plausible(ref) else None


def _read_version(r: Reader, ref: str) -> Any:
    row = _find_version(r, ref)
    if row is None:
        raise NotFoundError(f"no version {ref}", hint="see `gpaisec models list`")
    return row


def _read_session(r: Reader, account_id: str, token_hash: str | None, now: dt.datetime) -> Any:
    """The session (the token's, else the newest live one) with its key's revocation and device."""
    if token_hash is None:
        return r.first(_NEWEST_SESSION, account=account_id, now=now)
    return r.first(_TOKEN_SESSION, account=account_id, now=now, token_hash=token_hash)


def _read_scopes(r: Reader, account_id: str, now: dt.datetime) -> list[str]:
    rows = r.all(_SCOPES, account=account_id, now=now)
    return sorted({sc for (scopes,) in rows for sc in scopes})


def _read_grant(
    r: Reader,
    account_id: str,
    kind: str,
    version_id: str,
    action: str,
    now: dt.datetime,
    location_id: str | None = None,
) -> tuple[Any, list[Any]] | None:
    """The grant for this version (or this copy of it, ``location_id``) and action: active first
    (one for the copy before one for the whole version), else the newest not denied; with its
    approvals (approver's person id or account id, and user name) in approval order."""
    q = _SERVICE_GRANTS if kind == "service" else _HUMAN_GRANTS
    rows = r.all(q, account=account_id, version=version_id, action=action, location=location_id or "")
    if not rows:
        return None
    active = [g for g in rows if _effective(g.state, g.expires_at, now) == "active"]
    active.sort(key=lambda g: g.location_id is None)  # stable: newest first within each kind
    grant = (active or rows)[0]
    return grant, r.all(_APPROVALS, grant=grant.id)


def _read_location(r: Reader, where: str, version_id: str) -> tuple[str, Any]:
    """The registered location ``where`` (``DEVICE:/path`` or a URI, written exactly as registered)
    and its row: ``approved_version`` is set if it is approved for ``version_id``; ``why_not``, if
    the copy cannot be used at all (retired, on a retired device, registered twice)."""
    spec = parse_location(where)
    canonical = spec.path if spec.device is None else f"{spec.device}:{spec.path}"
    if where != canonical:
        # A policy enforcement point opens the path it asked about: it must be the one decided on
        # (text normalisation of "..", "." or spaces is not what the file system does).
        raise InputError(f"{where!r} is not a location as registered", hint=f"write it as {canonical!r}")
    if not _plausible(spec.path) or (spec.device is not None and not _plausible(spec.device)):
        rows = []
    elif spec.device is None:
        rows = r.all(_LOCATION_AT_URI, path=spec.path, version=version_id)
    else:
        rows = r.all(_LOCATION_ON_DEVICE, path=spec.path, device=spec.device, version=version_id)
    if not rows:
        raise NotFoundError(f"no location {where}", hint="see `gpaisec locations list`")
    row = rows[0]
    if len(rows) > 1:
        why_not = "is registered more than once (retire the duplicate)"
    elif row.retired_at is not None:
        why_not = "is retired"
    elif getattr(row, "device_retired_at", None) is not None:
        why_not = f"is on a retired device ({spec.device})"
    elif row.approved_version is None:
        why_not = "is not approved for this version"
    else:
        why_not = None
    return canonical, (row, why_not)


def check_access(
    ws: Workspace,
    username: str,
    action: str,
    version_ref: str,
    *,
    session: str | None = None,
    explain: bool = False,
    device: str | None = None,
    source_ip: str = "127.0.0.1",
    now: dt.datetime | None = None,
    policies: PolicySet | None = None,
) -> Decision:
    """Decide whether ``username`` may ``action`` (read, write, export) the weights of ``version_ref``.

    ``session`` is a session token (default: the account's newest live session); ``device`` names the
    device for an account without a session (service accounts). With ``explain`` the decision's
    reasons end with the facts the PDP was given. Never raises for a denial: read ``allowed``.
    Raises :class:`~gpaisec.audit.group.AuditWriteError` if the decision could not be audited.
    """
    pending = prepare_decision(
        ws,
        username,
        action,
        version_ref,
        session=session,
        explain=explain,
        device=device,
        source_ip=source_ip,
        now=now,
        policies=policies,
    )
    # Returns only once the event is committed; raises AuditWriteError (fail closed) if it is not.
    ws.audit_writer().append([pending.event])
    return pending.decision


@dataclasses.dataclass(frozen=True)
class PendingDecision:
    """A decision and the audit event that must be committed before anyone acts on it."""

    decision: Decision
    event: AuditEvent


def prepare_decision(
    ws: Workspace,
    username: str,
    action: str,
    version_ref: str,
    *,
    session: str | None = None,
    explain: bool = False,
    device: str | None = None,
    source_ip: str = "127.0.0.1",
    now: dt.datetime | None = None,
    policies: PolicySet | None = None,
) -> PendingDecision:
    """The decision and its audit event, not yet recorded: the caller must commit the event (through
    the workspace's audit writer) before it answers. :func:`check_access` does both."""
    now = now or utcnow()
    if action not in ("read", "write", "export"):
        raise InputError(f"unknown action {action!r}", hint="read, write or export")
    if not _is_ip(source_ip):
        raise InputError(f"{source_ip!r} is not an IP address")
    with read_transaction(ws.engine) as r:
        decision, ref, facts = _decide(
            r, ws, username, action, version_ref, session, device, source_ip, now, policies
        )
    return _audited(username, action, ref, decision, facts, explain)


def _decide(
    s: Reader,
    ws: Workspace,
    username: str,
    action: str,
    version_ref: str,
    session: str | None,
    device: str | None,
    source_ip: str,
    now: dt.datetime,
    policies: PolicySet | None,
) -> tuple[Decision, str, dict[str, Any]]:
    account = _read_account(s, username)
    version_part, at, where = version_ref.partition("@")
    whole = _find_version(s, version_ref) if at else None  # a version whose name holds an "@"
    version = whole or _read_version(s, version_part)
    ref = f"{version[2]}:{version[3]}"
    location: Any = None
    if at and whole is None:
        where, (location, why_not) = _read_location(s, where, version.id)
        ref = f"{ref}@{where}"
    facts: dict[str, Any] = {"principal": username, "action": action, "version": ref}
    entities: list[dict[str, Any]] = []
    # Step 1: the principal.
    if account.kind == "human":
        if account.person_id is None:  # pragma: no cover - a human account always has a person
            raise DeniedError(f"{username} has no person record")
        principal = pdp_mod.uid("Person", account.person_id)
        bg = account.background_check_valid_until or _NEVER
        training = account.insider_training_valid_until or _NEVER
        roles = sorted(set(account.roles))
        entities.append(
            pdp_mod.person_entity(
                account.person_id,
                background_check_valid_until=bg,
                insider_training_valid_until=training,
                roles=roles,
            )
        )
        entities += [{"uid": pdp_mod.uid("Role", r), "attrs": {}, "parents": []} for r in roles]
        facts["background_check_valid_until"] = bg.isoformat()
        facts["insider_training_valid_until"] = training.isoformat()
    else:
        scopes = _read_scopes(s, account.id, now)
        principal = pdp_mod.uid("ServiceAccount", account.id)
        entities.append(pdp_mod.service_account_entity(account.id, scopes=scopes))
        facts["scopes"] = scopes
    # Step 2: the session.
    token_hash = _token_hash(session) if session is not None else None
    sess = _read_session(s, account.id, token_hash, now)
    if session is not None and sess is None:
        return (
            Decision(False, (), (), ("the session is unknown, expired, or not this account's",)),
            ref,
            facts,
        )
    mfa_age = -1
    dev: tuple[Any, ...] | None = None
    if sess is not None:
        if sess.mfa_at is not None:
            mfa_age = max(0, int((now - sess.mfa_at).total_seconds()))
        # The device of the session's key, unless the key was revoked.
        if sess.key_revoked_at is None and sess.id_1 is not None:  # id_1: the device's id
            dev = tuple(sess)[3:]
        facts["session"] = sess.id
    elif device is not None and _plausible(device):
        row = s.first(_DEVICE_BY_NAME, name=device)
        dev = tuple(row) if row is not None else None
    facts["mfa_age_seconds"] = mfa_age
    # Step 3: the device (columns: id, name, managed, disk_encrypted, edr, retired_at).
    if dev is not None and dev[5] is None:
        device_id, managed = dev[0], bool(dev[2])
        entities.append(
            pdp_mod.device_entity(dev[0], managed=managed, disk_encrypted=bool(dev[3]), edr=bool(dev[4]))
        )
        facts["device"] = {"name": dev[1], "managed": managed, "disk_encrypted": bool(dev[3])}
    else:
        device_id, managed = "unknown", False
        entities.append(pdp_mod.device_entity("unknown", managed=False, disk_encrypted=False, edr=False))
        facts["device"] = None
    # Step 4: the resource: the version, or one copy of it (a location approved for it).
    resource = pdp_mod.uid("ModelVersion", version.id)
    entities.append(pdp_mod.model_version_entity(version.id, model=version[2], released=bool(version[1])))
    if location is not None:
        if why_not is not None:
            why_not = why_not.replace("this version", f"{version[2]}:{version[3]}")
            return Decision(False, (), (), (f"the location {where} {why_not}",)), ref, facts
        resource = pdp_mod.uid("Location", location.id)
        entities.append(pdp_mod.location_entity(location.id, version=version.id))
    # Step 5: the grant.
    found = _read_grant(
        s, account.id, account.kind, version.id, action, now, location.id if location is not None else None
    )
    grant_id: str | None = None
    break_glass = False
    if found is not None and found[0].break_glass:
        grant = found[0]
        break_glass = _effective(grant.state, grant.expires_at, now) == "active"
        facts["break_glass_grant"] = grant.id
    elif found is not None:
        grant, approvals = found
        state = _effective(grant.state, grant.expires_at, now)
        grant_id = grant.id
        entities.append(
            pdp_mod.grant_entity(
                grant.id,
                requester=grant.requester_person or grant.requester_id,
                version=grant.version_id,
                action=grant.action,
                approvers=[a.person_id or a.id for a in approvals],
                not_before=grant.not_before or grant.requested_at,
                expires=grant.expires_at or grant.requested_at,
                state=_GRANT_STATE.get(state, "revoked"),
                location=grant.location_id,
                service_account=grant.service_account_id,
            )
        )
        facts["grant"] = {
            "id": grant.id,
            "state": state,
            "approvers": [a.username for a in approvals],
            "location": where if grant.location_id is not None else None,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        }
    # Step 6: the policies, then the decision.
    if account.disabled_at is not None:
        return Decision(False, (), (), (f"the account {username} is disabled",)), ref, facts
    try:
        engine = PDP(policies or load_policies(ws))
    except ConfigError as exc:
        return _fail_closed(exc.message), ref, facts
    context = pdp_mod.request_context(
        device=device_id,
        device_managed=managed,
        mfa_age_seconds=mfa_age,
        source_ip=source_ip,
        now=now,
        grant=grant_id,
        break_glass=break_glass,
    )
    return engine.decide(principal, action, resource, entities, context), ref, facts


def _audited(
    username: str,
    action: str,
    ref: str,
    decision: Decision,
    facts: dict[str, Any],
    explain: bool,
) -> PendingDecision:
    details: dict[str, Any] = {"principal": username, "action": action, **decision.as_dict(), "facts": facts}
    if decision.allowed and decision.break_glass:
        details["alert"] = "break_glass"
    event = AuditEvent(
        actor=f"user:{username}", action="access.decide", object=f"version:{ref}", details=details
    )
    if explain:
        decision = dataclasses.replace(decision, reasons=(*decision.reasons, *_fact_lines(facts)))
    return PendingDecision(decision, event)


def _fact_lines(facts: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in facts.items():
        if key in ("principal", "action", "version"):
            continue
        lines.append(f"given: {key.replace('_', ' ')} = {value}")
    return lines
