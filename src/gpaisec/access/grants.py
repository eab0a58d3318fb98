"""Time-bound grants to unreleased weights, approved by two other people (A4.1(1), A4.3(1)).

Lifecycle: ``requested`` -> ``active`` (on the second distinct approval) -> ``expired`` (time passes)
or ``revoked``; a request an approver turns down is ``denied``. Expiry is computed from
``expires_at`` wherever a grant is read (:func:`effective_state`); :func:`sweep_expired` also marks
the rows, for lists and reports.

Approving (:func:`approve_grant`), each step with its own refusal:

1. The approver is the account of a live session, enabled, with the role ``approver``.
2. The approver is not the requester (nobody approves their own grant).
3. The approver has not approved this grant before (two *distinct* approvers).
4. The approver's session passed a second factor within the last five minutes.
5. The grant is still ``requested``.

Every refusal raises :class:`~gpaisec.errors.DeniedError` or :class:`~gpaisec.errors.InputError` with
the reason and is audited (``grant.*.denied``) in a transaction of its own.

Break-glass (:func:`break_glass`): a person in the role ``break_glass`` with fresh MFA gets an active
grant at once (never for export, at most four hours); it opens a critical finding, is audited as an
alert, and must be reviewed afterwards (:func:`review_break_glass`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import selectinload

from gpaisec.access.accounts import Refusal, get_account, guarded, resolve_session
from gpaisec.access.models import Account, Grant, GrantApproval
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, DeniedError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.models import Location, ModelVersion
from gpaisec.weights.registry import get_location, get_version, open_finding
from gpaisec.workspace import Workspace

__all__ = [
    "ACTIONS",
    "APPROVAL_MFA_MAX_AGE",
    "MAX_DURATION",
    "REQUIRED_APPROVALS",
    "approve_grant",
    "break_glass",
    "deny_grant",
    "effective_state",
    "get_grant",
    "list_grants",
    "request_grant",
    "review_break_glass",
    "revoke_grant",
    "sweep_expired",
]

ACTIONS = ("read", "write", "export")
MAX_DURATION = dt.timedelta(days=7)
BREAK_GLASS_MAX = dt.timedelta(hours=4)
APPROVAL_MFA_MAX_AGE = dt.timedelta(minutes=5)
REQUIRED_APPROVALS = 2
MIN_REASON = 10


def effective_state(grant: Grant, now: dt.datetime | None = None) -> str:
    """The state now: an active grant past its ``expires_at`` is expired, whether swept or not."""
    now = now or utcnow()
    if grant.state == "active" and grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return grant.state


def get_grant(s: DBSession, grant_id: str) -> Grant:
    g = s.scalars(
        select(Grant)
        .options(
            selectinload(Grant.approvals).selectinload(GrantApproval.approver),
            selectinload(Grant.requester),
            selectinload(Grant.service_account),
        )
        .where(Grant.id == grant_id)
    ).first()
    if g is None:
        raise NotFoundError(f"no grant {grant_id}", hint="see `gpaisec access list`")
    return g


def _scope(s: DBSession, scope: str) -> tuple[ModelVersion, Location | None]:
    """``MODEL:VERSION`` or ``MODEL:VERSION@LOCATION`` (a location approved for that version)."""
    ref, sep, where = scope.partition("@")
    version = get_version(s, ref.strip())
    if not sep:
        return version, None
    loc = get_location(s, where.strip())
    if version.id not in {a.version_id for a in loc.approvals}:
        raise InputError(f"{loc.label} is not an approved location of {version.ref}")
    return version, loc


def _scope_label(g: Grant, s: DBSession) -> str:
    version = s.get(ModelVersion, g.version_id)
    ref = version.ref if version is not None else g.version_id
    if g.location_id:
        loc = s.get(Location, g.location_id)
        return f"{ref}@{loc.label if loc else g.location_id}"
    return ref


def request_grant(
    ws: Workspace,
    requester: str,
    scope: str,
    action: str,
    *,
    duration: dt.timedelta,
    reason: str,
    service_account: str | None = None,
    max_duration: dt.timedelta = MAX_DURATION,
    now: dt.datetime | None = None,
) -> Grant:
    """Ask for ``action`` on ``scope`` for ``duration`` (at most ``max_duration``, default 7 days)."""
    now = now or utcnow()
    actor = f"user:{requester}"

    def run(s: DBSession) -> Grant:
        who = get_account(s, requester)
        obj = f"account:{requester}"

        def refuse(error: InputError | DeniedError) -> Refusal:
            return Refusal(
                error, action="grant.request.denied", object=obj, details={"scope": scope, "action": action}
            )

        if who.kind != "human" or who.disabled_at is not None:
            raise refuse(
                DeniedError(f"{requester} is not an enabled person's account; only people request grants")
            )
        if action not in ACTIONS:
            raise refuse(InputError(f"unknown action {action!r}", hint=f"one of {', '.join(ACTIONS)}"))
        if not dt.timedelta(0) < duration <= max_duration:
            raise refuse(
                InputError(
                    f"a grant lasts at most {_human(max_duration)}; asked for {_human(duration)}",
                    hint="ask for the time the work needs; renew with a new request",
                )
            )
        if len(reason.strip()) < MIN_REASON:
            raise refuse(InputError("a grant needs a reason", hint=f"at least {MIN_REASON} characters"))
        version, loc = _scope(s, scope)
        svc_id = None
        if service_account is not None:
            svc = get_account(s, service_account)
            if svc.kind != "service" or svc.owner_id != who.person_id:
                raise refuse(DeniedError(f"{service_account} is not a service account owned by {requester}"))
            svc_id = svc.id
        g = Grant(
            id=new_id("gr"),
            requester_id=who.id,
            service_account_id=svc_id,
            version_id=version.id,
            location_id=loc.id if loc else None,
            action=action,
            duration_seconds=int(duration.total_seconds()),
            reason=reason.strip(),
            state="requested",
            break_glass=False,
            requested_at=now,
        )
        s.add(g)
        record(
            s,
            actor=actor,
            action="grant.request",
            object=f"grant:{g.id}",
            details={
                "scope": scope,
                "action": action,
                "duration_seconds": g.duration_seconds,
                "reason": g.reason,
                "service_account": service_account,
            },
        )
        return g

    return guarded(ws, actor, run)


def _human(d: dt.timedelta) -> str:
    hours = d.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"


def approve_grant(
    ws: Workspace, grant_id: str, *, session_token: str, now: dt.datetime | None = None
) -> Grant:
    """Approve as the account of ``session_token``; the second distinct approval activates the grant."""
    now = now or utcnow()
    # Step 1: a live session (its account, its last MFA).
    sess = resolve_session(ws, session_token, now=now)
    approver = sess.account
    actor = f"user:{approver.username}"

    def run(s: DBSession) -> Grant:
        g = get_grant(s, grant_id)
        obj = f"grant:{g.id}"

        def refuse(error: DeniedError | ConflictError) -> Refusal:
            return Refusal(
                error, action="grant.approve.denied", object=obj, details={"approver": approver.username}
            )

        if "approver" not in approver.roles:
            raise refuse(DeniedError(f"{approver.username} does not hold the role approver"))
        # Step 2: not the requester (nor, for a service account's grant, its owner: the same person).
        if g.requester_id == approver.id:
            raise refuse(DeniedError("nobody approves their own grant", hint="ask two other approvers"))
        # Step 3: distinct approvers.
        if any(a.approver_id == approver.id for a in g.approvals):
            raise refuse(
                DeniedError(
                    f"{approver.username} already approved this grant",
                    hint="a second, different approver is needed",
                )
            )
        # Step 4: fresh MFA.
        if sess.mfa_at is None or not dt.timedelta(0) <= now - sess.mfa_at <= APPROVAL_MFA_MAX_AGE:
            raise refuse(
                DeniedError(
                    "approving needs a second factor within the last 5 minutes",
                    hint="confirm a fresh one-time code (`gpaisec access approve` asks for one)",
                )
            )
        # Step 5: the grant's state.
        state = effective_state(g, now)
        if state != "requested":
            raise refuse(ConflictError(f"grant {g.id} is {state}, not requested"))
        g.approvals.append(
            GrantApproval(grant_id=g.id, approver_id=approver.id, approved_at=now, mfa_at=sess.mfa_at)
        )
        count = len({a.approver_id for a in g.approvals})
        if count >= REQUIRED_APPROVALS:
            g.state = "active"
            g.not_before = now
            g.expires_at = now + dt.timedelta(seconds=g.duration_seconds)
        record(
            s,
            actor=actor,
            action="grant.approve",
            object=obj,
            details={
                "approvals": count,
                "active": g.state == "active",
                "expires_at": g.expires_at.isoformat() if g.expires_at else None,
                "mfa_at": sess.mfa_at.isoformat(),
            },
        )
        return g

    return guarded(ws, actor, run)


def deny_grant(ws: Workspace, grant_id: str, *, session_token: str, reason: str) -> Grant:
    """An approver turns a request down."""
    sess = resolve_session(ws, session_token)
    who = sess.account
    actor = f"user:{who.username}"

    def run(s: DBSession) -> Grant:
        g = get_grant(s, grant_id)
        if "approver" not in who.roles or g.requester_id == who.id:
            raise Refusal(
                DeniedError(f"{who.username} may not decide this grant"),
                action="grant.deny.denied",
                object=f"grant:{g.id}",
            )
        if g.state != "requested":
            raise ConflictError(f"grant {g.id} is {g.state}, not requested")
        g.state = "denied"
        record(s, actor=actor, action="grant.deny", object=f"grant:{g.id}", details={"reason": reason})
        return g

    return guarded(ws, actor, run)


def revoke_grant(
    ws: Workspace,
    grant_id: str,
    *,
    reason: str,
    actor: str | None = None,
    session_token: str | None = None,
) -> Grant:
    """End a requested or active grant now.

    With ``session_token`` (the CLI), the revoker is that session's account, and it must be an admin,
    an approver of this grant, or the grant's requester (giving up one's own access is always
    allowed); anyone else is refused and audited (``grant.revoke.denied``). Without it the caller
    has already decided who may revoke (the API and the pages check roles; reviews revoke through
    their own decisions).
    """
    now = utcnow()
    who = actor or ws.actor
    revoker: Account | None = None
    if session_token is not None:
        revoker = resolve_session(ws, session_token, now=now).account
        who = f"user:{revoker.username}"

    def run(s: DBSession) -> Grant:
        g = get_grant(s, grant_id)
        if revoker is not None:
            approvers = {a.approver_id for a in g.approvals}
            allowed = "admin" in revoker.roles or revoker.id in approvers or revoker.id == g.requester_id
            if not allowed:
                raise Refusal(
                    DeniedError(
                        f"{revoker.username} may not revoke grant {g.id}",
                        hint="an admin, an approver of this grant or its requester revokes it",
                    ),
                    action="grant.revoke.denied",
                    object=f"grant:{g.id}",
                    details={"revoker": revoker.username, "revoke_reason": reason},
                )
        state = effective_state(g, now)
        if state not in ("requested", "active"):
            raise ConflictError(f"grant {g.id} is {state}; nothing to revoke")
        _revoke(s, g, now, who, reason)
        return g

    return guarded(ws, who, run)


def _revoke(s: DBSession, g: Grant, now: dt.datetime, who: str, reason: str) -> None:
    """Revoke inside the caller's transaction (used by reviews too)."""
    g.state, g.revoked_at, g.revoked_by = "revoked", now, who
    record(s, actor=who, action="grant.revoke", object=f"grant:{g.id}", details={"reason": reason})


def sweep_expired(ws: Workspace, *, now: dt.datetime | None = None) -> list[str]:
    """Mark active grants past their ``expires_at`` as expired; one audit event for the sweep."""
    now = now or utcnow()
    with ws.transaction() as s:
        due = list(
            s.scalars(
                select(Grant).where(Grant.state == "active", Grant.expires_at <= now).order_by(Grant.id)
            )
        )
        for g in due:
            g.state = "expired"
        if due:
            record(
                s,
                actor=ws.actor,
                action="grant.expire",
                object="grants",
                details={"grants": [g.id for g in due]},
            )
    return [g.id for g in due]


def break_glass(
    ws: Workspace,
    *,
    session_token: str,
    scope: str,
    action: str,
    reason: str,
    duration: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
) -> Grant:
    """Emergency access: active at once, a critical finding and an audit alert; review it afterwards."""
    now = now or utcnow()
    sess = resolve_session(ws, session_token, now=now)
    who = sess.account
    actor = f"user:{who.username}"

    def run(s: DBSession) -> Grant:
        obj = f"account:{who.username}"

        def refuse(error: DeniedError | InputError) -> Refusal:
            return Refusal(
                error,
                action="grant.break_glass.denied",
                object=obj,
                details={"scope": scope, "action": action},
            )

        if "break_glass" not in who.roles:
            raise refuse(DeniedError(f"{who.username} does not hold the role break_glass"))
        if action not in ("read", "write"):
            raise refuse(InputError("break-glass covers read and write only; export needs an approved grant"))
        if not dt.timedelta(0) < duration <= BREAK_GLASS_MAX:
            raise refuse(InputError(f"break-glass lasts at most {_human(BREAK_GLASS_MAX)}"))
        if len(reason.strip()) < MIN_REASON:
            raise refuse(InputError("break-glass needs a reason", hint=f"at least {MIN_REASON} characters"))
        if sess.mfa_at is None or not dt.timedelta(0) <= now - sess.mfa_at <= APPROVAL_MFA_MAX_AGE:
            raise refuse(DeniedError("break-glass needs a second factor within the last 5 minutes"))
        version, loc = _scope(s, scope)
        g = Grant(
            id=new_id("gr"),
            requester_id=who.id,
            version_id=version.id,
            location_id=loc.id if loc else None,
            action=action,
            duration_seconds=int(duration.total_seconds()),
            reason=reason.strip(),
            state="active",
            break_glass=True,
            requested_at=now,
            not_before=now,
            expires_at=now + duration,
        )
        s.add(g)
        record(
            s,
            actor=actor,
            action="grant.break_glass",
            object=f"grant:{g.id}",
            details={
                "alert": True,
                "scope": scope,
                "action": action,
                "reason": g.reason,
                "expires_at": g.expires_at.isoformat() if g.expires_at else None,
            },
        )
        open_finding(
            s,
            ws,
            kind="break_glass",
            severity="critical",
            summary=f"break-glass {action} of {scope} by {who.username}: {g.reason}",
            dedupe_key=f"break_glass:{g.id}",
            version_id=version.id,
            details={"grant": g.id, "account": who.username},
            now=now,
        )
        return g

    return guarded(ws, actor, run)


def review_break_glass(ws: Workspace, grant_id: str, *, reviewer: str, notes: str) -> Grant:
    """Record the after-the-fact review of a break-glass grant (by someone other than its user)."""
    now = utcnow()
    actor = f"user:{reviewer}"

    def run(s: DBSession) -> Grant:
        g = get_grant(s, grant_id)
        who = get_account(s, reviewer)
        if not g.break_glass:
            raise InputError(f"grant {g.id} is not a break-glass grant")
        if g.reviewed_at is not None:
            raise ConflictError(f"grant {g.id} was already reviewed")
        if who.id == g.requester_id or not {"reviewer", "approver"} & set(who.roles):
            raise Refusal(
                DeniedError(f"{reviewer} may not review this break-glass use"),
                action="grant.break_glass.review.denied",
                object=f"grant:{g.id}",
            )
        if len(notes.strip()) < MIN_REASON:
            raise InputError("a review needs notes", hint=f"at least {MIN_REASON} characters")
        g.reviewed_at, g.reviewed_by = now, reviewer
        if effective_state(g, now) == "active":
            _revoke(s, g, now, actor, "break-glass reviewed and closed")
        record(
            s,
            actor=actor,
            action="grant.break_glass.review",
            object=f"grant:{g.id}",
            details={"notes": notes.strip()},
        )
        return g

    return guarded(ws, actor, run)


def list_grants(ws: Workspace, *, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Grants with their effective state, newest first, as plain data for faces."""
    now = utcnow()
    with ws.reader() as s:
        rows = list(
            s.scalars(
                select(Grant)
                .options(
                    selectinload(Grant.approvals).selectinload(GrantApproval.approver),
                    selectinload(Grant.requester),
                    selectinload(Grant.service_account),
                )
                .order_by(Grant.requested_at.desc())
            )
        )
        out = []
        for g in rows:
            state = effective_state(g, now)
            if states and state not in states:
                continue
            out.append(
                {
                    "id": g.id,
                    "requester": g.requester.username,
                    "service_account": g.service_account.username if g.service_account else None,
                    "scope": _scope_label(g, s),
                    "action": g.action,
                    "state": state,
                    "break_glass": g.break_glass,
                    "approvers": [a.approver.username for a in g.approvals],
                    "requested_at": g.requested_at,
                    "expires_at": g.expires_at,
                    "reason": g.reason,
                }
            )
        return out


def account_grants(s: DBSession, account: Account) -> list[Grant]:
    """Every grant naming the account (as requester or as the service account), for decide and reviews."""
    q = select(Grant).options(selectinload(Grant.approvals).selectinload(GrantApproval.approver))
    if account.kind == "service":
        q = q.where(Grant.service_account_id == account.id)
    else:
        q = q.where(Grant.requester_id == account.id, Grant.service_account_id.is_(None))
    return list(s.scalars(q.order_by(Grant.requested_at.desc())))
