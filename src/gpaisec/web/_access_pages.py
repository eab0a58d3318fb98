"""Access pages: my grants and requests, approvals with a fresh second factor, access reviews.

The same service functions as ``/api/v1/access``: :mod:`gpaisec.access.grants` for requests,
approvals (two distinct approvers, neither the requester, each with MFA in the last five minutes),
denials and revocations; :mod:`gpaisec.access.reviews` for the six-monthly reviews;
:func:`gpaisec.access.decide.check_access` for "may I, now?". Every action a service refuses is
audited by the service and shown on the page with what to do next.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gpaisec.access import accounts, grants, reviews
from gpaisec.access.decide import check_access
from gpaisec.access.models import ReviewCampaign
from gpaisec.api.deps import Caller
from gpaisec.api.routes.access import OVERSEERS  # who sees every grant
from gpaisec.errors import DeniedError, GpaisecError, InputError
from gpaisec.web._common import IDENT, Route, page, problem, render, status_of, text
from gpaisec.weights.models import ModelVersion

__all__ = ["ROUTES"]

REVIEWERS = frozenset({"reviewer", "admin"})
ACTIONS = ("read", "write", "export")
_CODE_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def _ident(value: object, what: str) -> str:
    if not isinstance(value, str) or not IDENT.match(value):
        raise InputError(f"{what} is missing or malformed", hint="reload the page and try again")
    return value


def _reason(value: object, what: str = "reason") -> str:
    given = text(value, what)
    if given is None or len(given.strip()) < 5:
        raise InputError(f"give a {what} of at least 5 characters")
    return given.strip()


def _code(value: object) -> str | None:
    """A one-time code or recovery code from a form, or None when the field was left empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not 6 <= len(value.strip()) <= 40 or set(value.strip()) - _CODE_CHARS:
        raise InputError("the one-time code must be the 6 digits your app shows (or a recovery code)")
    return value.strip()


def _scopes(caller: Caller) -> list[str]:
    with caller.workspace.reader() as s:
        rows = s.scalars(select(ModelVersion))
        return sorted(v.ref for v in rows)


def _access_data(caller: Caller) -> dict[str, Any]:
    ws = caller.workspace
    rows = grants.list_grants(ws)
    mine = [r for r in rows if caller.username in (r["requester"], r["service_account"])]
    waiting: list[dict[str, Any]] = []
    if "approver" in caller.roles:
        waiting = [
            r
            for r in rows
            if r["state"] == "requested"
            and r["requester"] != caller.username
            and caller.username not in r["approvers"]
            and not r["break_glass"]
        ]
    others = [r for r in rows if r not in mine] if caller.roles & OVERSEERS else []
    return {
        "mine": mine,
        "waiting": waiting,
        "others": others[:50],
        "scopes": _scopes(caller),
        "actions": ACTIONS,
        "max_hours": int(grants.MAX_DURATION.total_seconds() // 3600),
        "approvals_needed": grants.REQUIRED_APPROVALS,
    }


def _act(caller: Caller, form: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """One POSTed action on /access; returns a notice and, for a check, the decision."""
    ws, token = caller.workspace, caller.session_token
    op = form.get("op")
    if op == "request":
        scope = text(form.get("scope"), "scope")
        action = form.get("action")
        if scope is None:
            raise InputError("choose the model version to request")
        if action not in ACTIONS:
            raise InputError(f"action must be one of {', '.join(ACTIONS)}")
        try:
            hours = float(str(form.get("hours", "")))
        except ValueError:
            raise InputError("duration must be a number of hours, for example 8") from None
        if not 0 < hours <= 24 * 366:
            raise InputError("duration must be a positive number of hours")
        g = grants.request_grant(
            ws,
            caller.username,
            scope,
            str(action),
            duration=dt.timedelta(hours=hours),
            reason=_reason(form.get("reason")),
        )
        return (
            f"request {g.id} sent; it needs {grants.REQUIRED_APPROVALS} approvals from other approvers",
            None,
        )
    if op in ("approve", "deny", "revoke", "check") and token is None:
        raise DeniedError("this needs a signed-in session", hint="sign in again")
    assert token is not None
    if op == "approve":
        grant_id = _ident(form.get("grant_id"), "grant")
        code = _code(form.get("code"))
        if code is not None:
            accounts.step_up(ws, token, code)
        g = grants.approve_grant(ws, grant_id, session_token=token)
        if g.state == "active":
            return f"grant {g.id} approved: it is now active until {g.expires_at:%Y-%m-%d %H:%M} UTC", None
        return f"grant {g.id} approved: it needs one more approver", None
    if op == "deny":
        g = grants.deny_grant(
            ws, _ident(form.get("grant_id"), "grant"), session_token=token, reason=_reason(form.get("reason"))
        )
        return f"request {g.id} turned down", None
    if op == "revoke":
        grant_id = _ident(form.get("grant_id"), "grant")
        # The service decides: an admin, an approver of this grant, or its requester (refusals audited).
        g = grants.revoke_grant(ws, grant_id, reason=_reason(form.get("reason")), session_token=token)
        return f"grant {g.id} revoked", None
    if op == "check":
        scope = text(form.get("scope"), "scope")
        action = form.get("action")
        if scope is None or action not in ACTIONS:
            raise InputError("choose a model version and an action to check")
        d = check_access(ws, caller.username, str(action), scope, session=token, explain=False)
        decision = {
            "scope": scope,
            "action": action,
            "allowed": d.allowed,
            "reasons": list(d.reasons),
            "policies": list(d.determining_policies),
        }
        return None, decision
    raise InputError("unknown action on this page", hint="reload the page and try again")


@page(None)
async def access_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    decision = None
    status = 200
    if request.method == "POST":
        try:
            notice, decision = await run_in_threadpool(_act, caller, form)
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
    data = await run_in_threadpool(_access_data, caller)
    return render(
        request,
        "access.html",
        caller,
        status=status,
        title="Access",
        notice=notice,
        error=error,
        decision=decision,
        reviewer=bool(caller.roles & REVIEWERS),
        **data,
    )


# -- reviews -------------------------------------------------------------------------------------


@page(REVIEWERS)
async def reviews_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    status = 200
    if request.method == "POST":
        try:
            if form.get("op") != "start":
                raise InputError("unknown action on this page", hint="reload the page and try again")
            started = await run_in_threadpool(reviews.start_review, caller.workspace)
            c = await run_in_threadpool(reviews.get_review, caller.workspace, started.id)
            notice = f"review {c.id} started with {len(c.items)} principals to decide"
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
    campaigns = await run_in_threadpool(reviews.list_reviews, caller.workspace)
    return render(
        request,
        "reviews.html",
        caller,
        status=status,
        title="Access reviews",
        notice=notice,
        error=error,
        campaigns=campaigns,
    )


def _review_act(caller: Caller, review_id: str, form: dict[str, Any]) -> str:
    op = form.get("op")
    if op == "decide":
        principal = _ident(form.get("principal"), "principal")
        decision = form.get("decision")
        if decision not in ("keep", "revoke"):
            raise InputError("choose keep or revoke")
        reviews.decide_item(
            caller.workspace,
            review_id,
            principal,
            str(decision),
            reason=_reason(form.get("reason")),
            reviewer=caller.actor,
        )
        return f"{principal}: {decision}"
    if op == "close":
        reviews.close_review(caller.workspace, review_id)
        return f"review {review_id} closed"
    raise InputError("unknown action on this page", hint="reload the page and try again")


def _review(caller: Caller, review_id: str) -> ReviewCampaign:
    c = reviews.get_review(caller.workspace, review_id)
    return c


@page(REVIEWERS)
async def review_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    review_id = str(request.path_params.get("review_id", ""))
    if not IDENT.match(review_id):
        return problem(request, caller, 404, "no such review", "pick one from the Access reviews page")
    notice = error = None
    status = 200
    if request.method == "POST":
        try:
            notice = await run_in_threadpool(_review_act, caller, review_id, form)
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
    try:
        campaign = await run_in_threadpool(_review, caller, review_id)
    except GpaisecError as exc:
        return problem(request, caller, status_of(exc), exc.title, exc.diagnostics())
    return render(
        request,
        "review.html",
        caller,
        status=status,
        title=f"Review {campaign.id}",
        notice=notice,
        error=error,
        campaign=campaign,
        undecided=sum(1 for i in campaign.items if i.decision is None),
    )


ROUTES: tuple[Route, ...] = (
    ("/access", ("GET", "POST"), access_page),
    ("/access/reviews", ("GET", "POST"), reviews_page),
    ("/access/reviews/{review_id}", ("GET", "POST"), review_page),
)
