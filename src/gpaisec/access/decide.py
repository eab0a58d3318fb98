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
break-glass decision is audited as an alert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import selectinload

from gpaisec.access import pdp as pdp_mod
from gpaisec.access.accounts import _token_hash, get_account
from gpaisec.access.grants import account_grants, effective_state
from gpaisec.access.models import Account, DeviceKey, Grant, ServiceToken, Session
from gpaisec.access.pdp import PDP, Decision, PolicySet
from gpaisec.audit.service import record
from gpaisec.errors import ConfigError, DeniedError, InputError
from gpaisec.store.base import utcnow
from gpaisec.weights.models import Device
from gpaisec.weights.registry import get_version
from gpaisec.workspace import Workspace

__all__ = ["POLICY_DIR", "check_access", "load_policies"]

POLICY_DIR = "policies"
_NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GRANT_STATE = {"requested": "pending", "active": "active", "expired": "expired", "revoked": "revoked"}


def load_policies(ws: Workspace) -> PolicySet:
    """The workspace's policy set (``<workspace>/policies``) if present, else the packaged one."""
    where = ws.home / POLICY_DIR
    if where.is_dir():
        return PolicySet.load(where)
    return PolicySet.load()


def _fail_closed(message: str) -> Decision:
    return Decision(
        False, (), (message,), (f"the policy set cannot be used, so every request is denied: {message}",)
    )


def _session_for(s: DBSession, account: Account, token_hash: str | None, now: dt.datetime) -> Session | None:
    q = (
        select(Session)
        .options(selectinload(Session.device_key))
        .where(Session.account_id == account.id, Session.revoked_at.is_(None), Session.expires_at > now)
    )
    if token_hash is not None:
        q = q.where(Session.token_hash == token_hash)
    return s.scalars(q.order_by(Session.created_at.desc())).first()


def _pick_grant(grants: list[Grant], version_id: str, action: str, now: dt.datetime) -> Grant | None:
    mine = [g for g in grants if g.version_id == version_id and g.action == action and g.location_id is None]
    active = [g for g in mine if effective_state(g, now) == "active"]
    others = [g for g in mine if g.state != "denied"]
    pool = active or others
    return pool[0] if pool else None


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
    """
    now = now or utcnow()
    if action not in ("read", "write", "export"):
        raise InputError(f"unknown action {action!r}", hint="read, write or export")
    try:
        ipaddress.ip_address(source_ip)
    except ValueError:
        raise InputError(f"{source_ip!r} is not an IP address") from None
    with ws.transaction() as s:
        account = get_account(s, username)
        version = get_version(s, version_ref)
        facts: dict[str, Any] = {"principal": username, "action": action, "version": version.ref}
        entities: list[dict[str, Any]] = []
        break_glass = False
        grant: Grant | None = None
        # Step 1: the principal.
        if account.kind == "human":
            person = account.person
            if person is None:  # pragma: no cover - a human account always has a person
                raise DeniedError(f"{username} has no person record")
            principal = pdp_mod.uid("Person", person.id)
            bg = person.background_check_valid_until or _NEVER
            training = person.insider_training_valid_until or _NEVER
            entities.append(
                pdp_mod.person_entity(
                    person.id,
                    background_check_valid_until=bg,
                    insider_training_valid_until=training,
                    roles=account.roles,
                )
            )
            entities += [
                {"uid": pdp_mod.uid("Role", r), "attrs": {}, "parents": []}
                for r in sorted(set(account.roles))
            ]
            facts["background_check_valid_until"] = bg.isoformat()
            facts["insider_training_valid_until"] = training.isoformat()
        else:
            scopes = sorted(
                {
                    sc
                    for t in s.scalars(
                        select(ServiceToken).where(
                            ServiceToken.account_id == account.id,
                            ServiceToken.revoked_at.is_(None),
                            ServiceToken.expires_at > now,
                        )
                    )
                    for sc in t.scopes
                }
            )
            principal = pdp_mod.uid("ServiceAccount", account.id)
            entities.append(pdp_mod.service_account_entity(account.id, scopes=scopes))
            facts["scopes"] = scopes
        # Step 2: the session.
        token_hash = None
        if session is not None:
            token_hash = _token_hash(session)
        sess = _session_for(s, account, token_hash, now)
        if session is not None and sess is None:
            decision = Decision(False, (), (), ("the session is unknown, expired, or not this account's",))
            return _audit(s, ws, username, action, version.ref, decision, facts, explain)
        mfa_age = -1
        dev: Device | None = None
        if sess is not None:
            if sess.mfa_at is not None:
                mfa_age = max(0, int((now - sess.mfa_at).total_seconds()))
            key = s.get(DeviceKey, sess.device_key_id)
            dev = s.get(Device, key.device_id) if key is not None and key.revoked_at is None else None
            facts["session"] = sess.id
        elif device is not None:
            dev = s.scalars(select(Device).where(Device.name == device)).first()
        facts["mfa_age_seconds"] = mfa_age
        # Step 3: the device.
        if dev is not None and dev.retired_at is None:
            device_id, managed = dev.id, dev.managed
            entities.append(
                pdp_mod.device_entity(
                    dev.id, managed=dev.managed, disk_encrypted=dev.disk_encrypted, edr=dev.edr
                )
            )
            facts["device"] = {"name": dev.name, "managed": dev.managed, "disk_encrypted": dev.disk_encrypted}
        else:
            device_id, managed = "unknown", False
            entities.append(pdp_mod.device_entity("unknown", managed=False, disk_encrypted=False, edr=False))
            facts["device"] = None
        # Step 4: the resource.
        resource = pdp_mod.uid("ModelVersion", version.id)
        entities.append(
            pdp_mod.model_version_entity(version.id, model=version.model.name, released=version.released)
        )
        # Step 5: the grant.
        grant = _pick_grant(account_grants(s, account), version.id, action, now)
        grant_id: str | None = None
        if grant is not None and grant.break_glass:
            break_glass = effective_state(grant, now) == "active"
            facts["break_glass_grant"] = grant.id
        elif grant is not None:
            grant_id = grant.id
            owner = grant.requester.person_id or grant.requester.id
            approvers = [a.approver.person_id or a.approver.id for a in grant.approvals]
            entities.append(
                pdp_mod.grant_entity(
                    grant.id,
                    requester=owner,
                    version=grant.version_id,
                    action=grant.action,
                    approvers=approvers,
                    not_before=grant.not_before or grant.requested_at,
                    expires=grant.expires_at or grant.requested_at,
                    state=_GRANT_STATE.get(effective_state(grant, now), "revoked"),
                    service_account=grant.service_account_id,
                )
            )
            facts["grant"] = {
                "id": grant.id,
                "state": effective_state(grant, now),
                "approvers": [a.approver.username for a in grant.approvals],
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            }
        # Step 6: the policies, then the decision.
        if account.disabled_at is not None:
            decision = Decision(False, (), (), (f"the account {username} is disabled",))
            return _audit(s, ws, username, action, version.ref, decision, facts, explain)
        try:
            policy_set = policies or load_policies(ws)
            engine = PDP(policy_set)
        except ConfigError as exc:
            decision = _fail_closed(exc.message)
            return _audit(s, ws, username, action, version.ref, decision, facts, explain)
        context = pdp_mod.request_context(
            device=device_id,
            device_managed=managed,
            mfa_age_seconds=mfa_age,
            source_ip=source_ip,
            now=now,
            grant=grant_id,
            break_glass=break_glass,
        )
        decision = engine.decide(principal, action, resource, entities, context)
        return _audit(s, ws, username, action, version.ref, decision, facts, explain)


def _audit(
    s: DBSession,
    ws: Workspace,
    username: str,
    action: str,
    ref: str,
    decision: Decision,
    facts: dict[str, Any],
    explain: bool,
) -> Decision:
    details: dict[str, Any] = {"principal": username, "action": action, **decision.as_dict(), "facts": facts}
    if decision.allowed and decision.break_glass:
        details["alert"] = "break_glass"
    record(s, actor=f"user:{username}", action="access.decide", object=f"version:{ref}", details=details)
    if explain:
        return dataclasses.replace(decision, reasons=(*decision.reasons, *_fact_lines(facts)))
    return decision


def _fact_lines(facts: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in facts.items():
        if key in ("principal", "action", "version"):
            continue
        lines.append(f"given: {key.replace('_', ' ')} = {value}")
    return lines
