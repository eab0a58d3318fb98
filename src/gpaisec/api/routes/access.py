"""Grants (requests, approvals, revocations), the decision endpoint and authorisation reviews."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from gpaisec.access import accounts, grants, reviews
from gpaisec.access.decide import prepare_decision
from gpaisec.access.models import Grant, ReviewCampaign
from gpaisec.api.deps import Caller, CurrentCaller, Ident, Reviewer, SessionCaller, run_db
from gpaisec.api.schemas import (
    ApproveBody,
    DecideBody,
    DecisionPublic,
    GrantCreate,
    GrantPublic,
    GrantRowPublic,
    ReasonBody,
    ReviewDecisionBody,
    ReviewItemPublic,
    ReviewPublic,
)
from gpaisec.errors import DeniedError, NotFoundError

router = APIRouter(prefix="/access", tags=["access"])

__all__ = ["client_ip", "decide_as", "router"]

# Who sees every grant (and, for software with a token, may revoke any): those who decide or review access.
OVERSEERS = frozenset({"approver", "reviewer", "admin"})
GrantState = Annotated[list[str] | None, Query(description="Only grants in these states (repeatable).")]


def _grant(g: Grant) -> GrantPublic:
    return GrantPublic(
        id=g.id, state=g.state, action=g.action, requested_at=g.requested_at, expires_at=g.expires_at
    )


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=GrantPublic,
    summary="Request a time-bound grant (two other approvers must approve it)",
)
def request_grant(body: GrantCreate, caller: SessionCaller) -> GrantPublic:
    g = grants.request_grant(
        caller.workspace,
        caller.username,
        body.scope,
        body.action,
        duration=dt.timedelta(seconds=body.duration_seconds),
        reason=body.reason,
        service_account=body.service_account,
    )
    return _grant(g)


@router.get("/requests", response_model=list[GrantRowPublic], summary="List grants with their state now")
def list_requests(caller: CurrentCaller, state: GrantState = None) -> list[GrantRowPublic]:
    rows = grants.list_grants(caller.workspace, states=state)
    if not caller.roles & OVERSEERS:
        rows = [r for r in rows if caller.username in (r["requester"], r["service_account"])]
    return [GrantRowPublic.model_validate(r) for r in rows]


@router.post(
    "/requests/{grant_id}/approve",
    response_model=GrantPublic,
    summary="Approve a grant (role approver; a second factor within the last 5 minutes)",
)
def approve(grant_id: Ident, body: ApproveBody, caller: SessionCaller) -> GrantPublic:
    assert caller.session_token is not None
    if body.totp_code:
        accounts.step_up(caller.workspace, caller.session_token, body.totp_code)
    return _grant(grants.approve_grant(caller.workspace, grant_id, session_token=caller.session_token))


@router.post("/requests/{grant_id}/deny", response_model=GrantPublic, summary="Turn a request down")
def deny(grant_id: Ident, body: ReasonBody, caller: SessionCaller) -> GrantPublic:
    assert caller.session_token is not None
    return _grant(
        grants.deny_grant(caller.workspace, grant_id, session_token=caller.session_token, reason=body.reason)
    )


@router.post(
    "/requests/{grant_id}/revoke",
    response_model=GrantPublic,
    summary="Revoke a grant now (its requester, one of its approvers, or an admin)",
)
def revoke(grant_id: Ident, body: ReasonBody, caller: CurrentCaller) -> GrantPublic:
    if caller.session_token is not None:
        # A person: the service decides (an admin, an approver of this grant, or its requester).
        g = grants.revoke_grant(
            caller.workspace, grant_id, reason=body.reason, session_token=caller.session_token
        )
        return _grant(g)
    # Software with a token: overseeing roles, or its own grant.
    if not caller.roles & OVERSEERS:
        row = next((r for r in grants.list_grants(caller.workspace) if r["id"] == grant_id), None)
        if row is None:
            raise NotFoundError(f"no grant {grant_id}")
        if caller.username not in (row["requester"], row["service_account"]):
            raise DeniedError(f"{caller.username} may revoke only their own grants")
    g = grants.revoke_grant(caller.workspace, grant_id, reason=body.reason, actor=caller.actor)
    return _grant(g)


def _client_ip(request: Request) -> str:
    return client_ip(request.client.host if request.client else "")


def client_ip(host: str) -> str:
    """The peer's address as an IP address string ("0.0.0.0" if it is not one)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "0.0.0.0"  # noqa: S104 - "unknown address", never a bind address


@router.post(
    "/decide",
    response_model=DecisionPublic,
    summary="Decide (and audit) whether a principal may read, write or export a model version now",
)
async def decide(body: DecideBody, request: Request, caller: CurrentCaller) -> DecisionPublic:
    # Software with a bearer token usually never gets here: api.fastpath answers it with decide_as.
    return await decide_as(caller, body, _client_ip(request))


async def decide_as(caller: Caller, body: DecideBody, client_ip: str) -> DecisionPublic:
    """The decision for ``body``, asked by ``caller``, once its audit event is committed."""
    # People ask about themselves; service accounts (policy enforcement points) and admins about anyone.
    own = body.principal == caller.username
    if not own and caller.kind != "service" and "admin" not in caller.roles:
        raise DeniedError(
            f"{caller.username} may ask only about their own access",
            hint="decisions for others are for service accounts and admins",
        )
    ws = caller.workspace
    pending = await run_db(
        ws,
        prepare_decision,
        ws,
        body.principal,
        body.action,
        body.resource,
        session=caller.session_token if own and caller.via == "session" else None,
        explain=body.explain,
        device=body.device,
        source_ip=body.source_ip or client_ip,
    )
    # The answer leaves only once its audit event is committed (fail closed: AuditWriteError, 503).
    await ws.audit_writer().append_async([pending.event])
    d = pending.decision
    return DecisionPublic(
        decision="allow" if d.allowed else "deny",
        allowed=d.allowed,
        determining_policies=list(d.determining_policies),
        reasons=list(d.reasons),
        errors=list(d.errors),
        break_glass=d.break_glass,
    )


def _review(c: ReviewCampaign, *, items: bool) -> ReviewPublic:
    return ReviewPublic(
        id=c.id,
        started_at=c.started_at,
        started_by=c.started_by,
        closed_at=c.closed_at,
        closed_by=c.closed_by,
        items=[
            ReviewItemPublic(
                principal=i.principal,
                kind=i.kind,
                access=i.access,
                decision=i.decision,
                reviewer=i.reviewer,
                reason=i.reason,
                decided_at=i.decided_at,
            )
            for i in c.items
        ]
        if items
        else None,
    )


@router.get("/reviews", response_model=list[ReviewPublic], summary="List authorisation reviews, newest first")
def list_reviews(caller: Reviewer) -> list[ReviewPublic]:
    return [_review(c, items=False) for c in reviews.list_reviews(caller.workspace)]


@router.post(
    "/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    summary="Start a review of every principal that can reach unreleased weights",
)
def start_review(caller: Reviewer) -> ReviewPublic:
    return _review(reviews.start_review(caller.workspace), items=True)


@router.get("/reviews/{review_id}", response_model=ReviewPublic, summary="One review with its items")
def get_review(review_id: Ident, caller: Reviewer) -> ReviewPublic:
    return _review(reviews.get_review(caller.workspace, review_id), items=True)


@router.post(
    "/reviews/{review_id}/decisions",
    response_model=ReviewItemPublic,
    summary="Keep or revoke one principal's access",
)
def decide_review_item(review_id: Ident, body: ReviewDecisionBody, caller: Reviewer) -> ReviewItemPublic:
    i = reviews.decide_item(
        caller.workspace, review_id, body.principal, body.decision, reason=body.reason, reviewer=caller.actor
    )
    return ReviewItemPublic(
        principal=i.principal,
        kind=i.kind,
        access=i.access,
        decision=i.decision,
        reviewer=i.reviewer,
        reason=i.reason,
        decided_at=i.decided_at,
    )


@router.post("/reviews/{review_id}/close", response_model=ReviewPublic, summary="Close a decided review")
def close_review(review_id: Ident, caller: Reviewer) -> ReviewPublic:
    return _review(reviews.close_review(caller.workspace, review_id), items=False)
