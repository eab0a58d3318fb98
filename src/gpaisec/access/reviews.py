"""Authorisation reviews (A4.3(1): at least every six months) and who can reach unreleased weights.

A principal *can reach* unreleased weights when its account is enabled and it holds an active grant
on an unreleased version, holds the role ``break_glass``, or (a service account) holds a live token
with a weights scope. A review campaign lists every such principal; a reviewer decides keep or
revoke for each (revoke ends its grants and tokens and drops the role ``break_glass``); the campaign
closes when every item is decided.

*Non-hardened access* (A4.3(4)) here means access that does not go through the read-only sealed
stream: an active write or export grant, or the role ``break_glass``. :func:`sweep_findings` opens a
finding when the number of people with it exceeds the configured limit (default 10), and when no
review has been closed in the last six months.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import selectinload

from gpaisec.access.accounts import get_account
from gpaisec.access.grants import _revoke, effective_state
from gpaisec.access.models import Account, Grant, ReviewCampaign, ReviewItem, ServiceToken
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, DeniedError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.models import ModelVersion
from gpaisec.weights.registry import open_finding
from gpaisec.workspace import Workspace

__all__ = [
    "NON_HARDENED_LIMIT",
    "REVIEW_INTERVAL",
    "close_review",
    "decide_item",
    "last_closed_review",
    "non_hardened_people",
    "principals_with_access",
    "start_review",
    "sweep_findings",
]

REVIEW_INTERVAL = dt.timedelta(days=183)
NON_HARDENED_LIMIT = 10
WEIGHT_SCOPES = ("weights:read", "weights:write", "weights:export")


def principals_with_access(s: DBSession, now: dt.datetime) -> list[dict[str, Any]]:
    """Every enabled account that can reach unreleased weights, with how (sorted by user name)."""
    unreleased = set(s.scalars(select(ModelVersion.id).where(ModelVersion.released.is_(False))))
    accounts = list(
        s.scalars(
            select(Account)
            .options(selectinload(Account.person), selectinload(Account.owner))
            .where(Account.disabled_at.is_(None))
            .order_by(Account.username)
        )
    )
    grants = list(s.scalars(select(Grant).options(selectinload(Grant.approvals))))
    tokens = list(
        s.scalars(
            select(ServiceToken).where(ServiceToken.revoked_at.is_(None), ServiceToken.expires_at > now)
        )
    )
    out = []
    for a in accounts:
        mine = [
            g
            for g in grants
            if (
                g.service_account_id == a.id
                if a.kind == "service"
                else g.requester_id == a.id and not g.service_account_id
            )
            and g.version_id in unreleased
            and effective_state(g, now) == "active"
        ]
        scopes = sorted(
            {sc for t in tokens if t.account_id == a.id for sc in t.scopes if sc in WEIGHT_SCOPES}
        )
        break_glass = a.kind == "human" and "break_glass" in a.roles
        if not (mine or break_glass or scopes):
            continue
        out.append(
            {
                "account": a,
                "username": a.username,
                "kind": a.kind,
                "person": a.person.name if a.person else (a.owner.name if a.owner else None),
                "grants": mine,
                "scopes": scopes,
                "break_glass": break_glass,
                "non_hardened": break_glass or any(g.action in ("write", "export") for g in mine),
            }
        )
    return out


def non_hardened_people(s: DBSession, now: dt.datetime) -> list[str]:
    """Names of the people with non-hardened access (service accounts count as their owner)."""
    return sorted({p["person"] or p["username"] for p in principals_with_access(s, now) if p["non_hardened"]})


def last_closed_review(s: DBSession) -> ReviewCampaign | None:
    return s.scalars(
        select(ReviewCampaign)
        .where(ReviewCampaign.closed_at.is_not(None))
        .order_by(ReviewCampaign.closed_at.desc())
    ).first()


def _campaign(s: DBSession, campaign_id: str) -> ReviewCampaign:
    c = s.scalars(
        select(ReviewCampaign)
        .options(selectinload(ReviewCampaign.items))
        .where(ReviewCampaign.id == campaign_id)
    ).first()
    if c is None:
        raise NotFoundError(f"no review {campaign_id}", hint="see `gpaisec access review start`")
    return c


def start_review(ws: Workspace, *, now: dt.datetime | None = None) -> ReviewCampaign:
    """Open a campaign listing every principal that can reach unreleased weights (one open at a time)."""
    now = now or utcnow()
    with ws.transaction() as s:
        if s.scalars(select(ReviewCampaign).where(ReviewCampaign.closed_at.is_(None))).first() is not None:
            raise ConflictError("a review is already open", hint="close it before starting another")
        c = ReviewCampaign(id=new_id("rev"), started_at=now, started_by=ws.actor)
        for p in principals_with_access(s, now):
            c.items.append(
                ReviewItem(
                    id=new_id("ri"),
                    account_id=p["account"].id,
                    principal=p["username"],
                    kind=p["kind"],
                    access={
                        "person": p["person"],
                        "grants": [g.id for g in p["grants"]],
                        "scopes": p["scopes"],
                        "break_glass": p["break_glass"],
                        "non_hardened": p["non_hardened"],
                    },
                )
            )
        s.add(c)
        record(
            s,
            actor=ws.actor,
            action="review.start",
            object=f"review:{c.id}",
            details={"principals": [i.principal for i in c.items]},
        )
    return c


def decide_item(
    ws: Workspace,
    campaign_id: str,
    principal: str,
    decision: str,
    *,
    reason: str,
    reviewer: str | None = None,
) -> ReviewItem:
    """Keep or revoke one principal's access; revoke ends its grants and tokens now."""
    if decision not in ("keep", "revoke"):
        raise InputError(f"decision must be keep or revoke, not {decision!r}")
    if len(reason.strip()) < 5:
        raise InputError("a review decision needs a reason")
    now = utcnow()
    who = reviewer or ws.actor
    with ws.transaction() as s:
        c = _campaign(s, campaign_id)
        if c.closed_at is not None:
            raise ConflictError(f"review {campaign_id} is closed")
        item = next((i for i in c.items if i.principal == principal), None)
        if item is None:
            raise NotFoundError(f"{principal} is not in review {campaign_id}")
        if who in (principal, f"user:{principal}"):
            raise DeniedError("nobody reviews their own access")
        item.decision, item.reason, item.reviewer, item.decided_at = decision, reason.strip(), who, now
        revoked: list[str] = []
        if decision == "revoke":
            account = get_account(s, principal)
            for g in s.scalars(
                select(Grant).where(
                    (Grant.service_account_id == account.id) | (Grant.requester_id == account.id),
                    Grant.state.in_(("requested", "active")),
                )
            ):
                _revoke(s, g, now, who, f"revoked by review {c.id}")
                revoked.append(g.id)
            for t in s.scalars(
                select(ServiceToken).where(
                    ServiceToken.account_id == account.id, ServiceToken.revoked_at.is_(None)
                )
            ):
                t.revoked_at = now
                revoked.append(t.id)
            if "break_glass" in account.roles:
                account.roles = [r for r in account.roles if r != "break_glass"]
                revoked.append("role:break_glass")
        record(
            s,
            actor=who,
            action="review.decide",
            object=f"review:{c.id}",
            details={"principal": principal, "decision": decision, "reason": item.reason, "revoked": revoked},
        )
    return item


def close_review(ws: Workspace, campaign_id: str, *, now: dt.datetime | None = None) -> ReviewCampaign:
    now = now or utcnow()
    with ws.transaction() as s:
        c = _campaign(s, campaign_id)
        if c.closed_at is not None:
            raise ConflictError(f"review {campaign_id} is already closed")
        open_items = [i.principal for i in c.items if i.decision is None]
        if open_items:
            raise ConflictError(
                f"review {campaign_id} has undecided principals: {', '.join(open_items)}",
                hint="decide each with `gpaisec access review decide`",
            )
        c.closed_at, c.closed_by = now, ws.actor
        record(
            s,
            actor=ws.actor,
            action="review.close",
            object=f"review:{c.id}",
            details={
                "kept": [i.principal for i in c.items if i.decision == "keep"],
                "revoked": [i.principal for i in c.items if i.decision == "revoke"],
            },
        )
    return c


def get_review(ws: Workspace, campaign_id: str) -> ReviewCampaign:
    with ws.reader() as s:
        return _campaign(s, campaign_id)


def list_reviews(ws: Workspace) -> list[ReviewCampaign]:
    """Every review with its items, newest first."""
    with ws.reader() as s:
        q = select(ReviewCampaign).options(selectinload(ReviewCampaign.items))
        return list(s.scalars(q.order_by(ReviewCampaign.started_at.desc())))


def sweep_findings(
    ws: Workspace, *, limit: int = NON_HARDENED_LIMIT, now: dt.datetime | None = None
) -> list[str]:
    """Open findings for an overdue review and for too many people with non-hardened access."""
    now = now or utcnow()
    opened: list[str] = []
    with ws.transaction() as s:
        last = last_closed_review(s)
        if last is None or last.closed_at is None or now - last.closed_at > REVIEW_INTERVAL:
            since = last.closed_at.date().isoformat() if last and last.closed_at else "never"
            f, new = open_finding(
                s,
                ws,
                kind="access_review_overdue",
                severity="medium",
                summary=f"no authorisation review closed in the last six months (last: {since})",
                dedupe_key="access_review_overdue",
                now=now,
            )
            if new:
                opened.append(f.id)
        people = non_hardened_people(s, now)
        if len(people) > limit:
            f, new = open_finding(
                s,
                ws,
                kind="non_hardened_access",
                severity="high",
                summary=f"{len(people)} people have non-hardened access to weights (limit {limit})",
                dedupe_key="non_hardened_access",
                details={"people": people, "limit": limit},
                now=now,
            )
            if new:
                opened.append(f.id)
    return opened
