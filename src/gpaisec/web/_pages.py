"""The dashboard's pages: each calls the same service function as the matching API endpoint.

Routes are plain Starlette routes, outside the OpenAPI document and the API's operation walk; every
one of them starts with :func:`_guard` (signed in, CSRF on POST, roles), so none shows data to a
stranger. Errors of the services (:class:`~gpaisec.errors.GpaisecError`) are shown on the page with
their ``diagnostics()``; anything else is a bug and reaches the API's last-resort 500.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from gpaisec import __version__
from gpaisec.access import accounts
from gpaisec.access.mfa import MfaError
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.api.deps import Caller
from gpaisec.audit import service as audit
from gpaisec.compliance import assessment
from gpaisec.compliance.assessment import CHAPTERS, Report
from gpaisec.compliance.reports import render_text
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import DeniedError, GpaisecError, InputError, NotFoundError
from gpaisec.web import _session as sess
from gpaisec.weights import registry

__all__ = ["PAGE_ROUTES", "add_pages"]

Endpoint = Callable[[Request], Awaitable[Response]]

# Every (path, methods) the dashboard answers; the signed-out walk in tests/web covers each.
PAGE_ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/login", ("GET", "POST")),
    ("/logout", ("GET", "POST")),
    ("/", ("GET",)),
    ("/registry", ("GET", "POST")),
    ("/audit", ("GET",)),
    ("/reports", ("GET", "POST")),
    ("/reports/download", ("GET",)),
)
DOWNLOADS = {
    "html": ("text/html; charset=utf-8", "html"),
    "json": ("application/json", "json"),
    "oscal": ("application/json", "oscal.json"),
}
SEVERITIES = ("critical", "high", "medium", "low", "info")
SHOWN_VERDICTS = (Verdict.met, Verdict.partly_met, Verdict.not_met, Verdict.no_evidence)
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{0,300}$")
_IDENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_env = Environment(
    loader=PackageLoader("gpaisec.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class _Refused(Exception):
    """A page refused before doing anything; ``response`` says why."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def _render(
    request: Request,
    template: str,
    caller: Caller | None,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    response = HTMLResponse(status_code=status)
    csrf = sess.page_csrf(request, caller) if caller else sess.login_csrf(request, response)
    body = _env.get_template(template).render(
        caller=caller,
        csrf=csrf,
        csrf_field=sess.CSRF_FIELD,
        path=request.url.path,
        version=__version__,
        may=_may(caller),
        **values,
    )
    response.body = response.render(body)
    response.headers["content-length"] = str(len(response.body))
    return response


def _may(caller: Caller | None) -> dict[str, bool]:
    roles = caller.roles if caller else frozenset()
    return {
        "staff": bool(roles & sess.STAFF),
        "audit": bool(roles & sess.AUDITORS),
        "admin": bool(roles & sess.ADMINS),
    }


def _problem(request: Request, caller: Caller | None, status: int, title: str, detail: str) -> HTMLResponse:
    return _render(request, "error.html", caller, status=status, title=title, detail=detail)


async def _guard(request: Request, roles: frozenset[str] | None) -> tuple[Caller, dict[str, Any]]:
    """Steps 1-3 of :mod:`gpaisec.web._session` (``roles=None``: any signed-in person).

    Returns the caller and the POSTed form (empty on GET).
    """
    caller = await run_in_threadpool(sess.signed_in, request)
    # Step 1: signed in, or off to the sign-in page (a POST gets 401: its body is not replayed).
    if caller is None:
        if request.method == "GET":
            raise _Refused(RedirectResponse("/login", status_code=303))
        raise _Refused(_problem(request, None, 401, "not signed in", "sign in first"))
    form: dict[str, Any] = {}
    # Step 2: the form's CSRF token.
    if request.method == "POST":
        form = dict(await request.form())
        if not sess.form_csrf_ok(request, caller, form.get(sess.CSRF_FIELD)):
            raise _Refused(
                _problem(request, caller, 403, "CSRF token missing or wrong", "reload the page and try again")
            )
    # Step 3: roles.
    if roles is not None and not caller.roles & roles:
        raise _Refused(
            _problem(
                request,
                caller,
                403,
                "not allowed",
                f"{caller.username} does not hold the role {' or '.join(sorted(roles))}; "
                "an administrator assigns roles",
            )
        )
    return caller, form


def _page(roles: frozenset[str]) -> Callable[[Callable[..., Awaitable[Response]]], Endpoint]:
    def wrap(handler: Callable[..., Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                caller, form = await _guard(request, roles)
                return await handler(request, caller, form)
            except _Refused as refused:
                return refused.response

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


def _status(exc: GpaisecError) -> int:
    if isinstance(exc, ThrottledError):
        return 429
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, DeniedError | MfaError):
        return 403
    if isinstance(exc, InputError):
        return 400
    return 409


def _text(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TEXT.match(value):
        raise InputError(f"{what} must be at most 300 characters without control characters")
    return value


# -- sign-in and sign-out ------------------------------------------------------------------------


async def login(request: Request) -> Response:
    if request.method == "GET":
        caller = await run_in_threadpool(sess.signed_in, request)
        if caller is not None:
            return RedirectResponse("/", status_code=303)
        return _render(request, "login.html", None)
    form = dict(await request.form())
    username = form.get("username")
    fields = [form.get(k) for k in ("username", "password", "totp_code", "device")]
    again = {"username": username if isinstance(username, str) else "", "device": form.get("device") or ""}
    if not sess.login_csrf_ok(request, form.get(sess.CSRF_FIELD)):
        return _render(
            request, "login.html", None, status=403, error="the form expired; try again", form=again
        )
    if not all(isinstance(f, str) for f in fields):
        return _render(request, "login.html", None, status=400, error="fill in every field", form=again)
    user, password, code, device = (str(f) for f in fields)
    source = request.client.host if request.client else "unknown"
    ctx = sess.context(request)
    try:
        signed = await run_in_threadpool(
            accounts.authenticate, ctx.workspace, user, password, code or None, device, source=source
        )
    except (WrongPasswordError, MfaError):
        # One answer for an unknown user, a wrong password and a wrong code, as the API gives.
        return _render(
            request,
            "login.html",
            None,
            status=401,
            error="sign-in failed: check the user name, password and one-time code",
            form=again,
        )
    except ThrottledError as exc:
        page = _render(request, "login.html", None, status=429, error=exc.diagnostics(), form=again)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except GpaisecError as exc:
        return _render(request, "login.html", None, status=_status(exc), error=exc.diagnostics(), form=again)
    max_age = max(1, int((signed.session.expires_at - signed.session.created_at).total_seconds()))
    response = RedirectResponse("/", status_code=303)
    sess.set_session_cookies(request, response, signed.token, max_age)
    return response


async def logout(request: Request) -> Response:
    try:
        caller, _ = await _guard(request, None)
    except _Refused as refused:
        return refused.response
    if request.method == "GET":
        return _render(request, "logout.html", caller)
    assert caller.session_token is not None
    await run_in_threadpool(accounts.logout, caller.workspace, caller.session_token)
    response = RedirectResponse("/login", status_code=303)
    sess.clear_session_cookies(request, response)
    return response


# -- overview ------------------------------------------------------------------------------------


def _overview_data(caller: Caller) -> dict[str, Any]:
    ws = caller.workspace
    report = assessment.latest_report(ws)
    groups: dict[str, list[Any]] = {}
    if report is not None:
        for r in report.results:
            groups.setdefault(r.parent, []).append(r)
    findings = registry.list_findings(ws, open_only=True)
    by_severity = Counter(f.severity for f in findings)
    severities = [s for s in SEVERITIES if by_severity.get(s)] + sorted(set(by_severity) - set(SEVERITIES))
    return {
        "report": report,
        "groups": groups,
        "counts": report.summary if report else {},
        "verdicts": SHOWN_VERDICTS,
        "by_severity": [(s, by_severity[s]) for s in severities],
        "open_findings": len(findings),
        "history": assessment.history(ws, limit=10),
    }


@_page(sess.STAFF)
async def overview(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    data = await run_in_threadpool(_overview_data, caller)
    return _render(request, "overview.html", caller, title="Overview", **data)


# -- registry ------------------------------------------------------------------------------------


def _registry_data(caller: Caller) -> dict[str, Any]:
    ws = caller.workspace
    view = registry.registry_view(ws)
    models: dict[str, list[dict[str, Any]]] = {}
    for v in view:
        models.setdefault(str(v["version"]).split(":", 1)[0], []).append(v)
    return {"models": models, "findings": registry.list_findings(ws, open_only=True)}


@_page(sess.STAFF)
async def registry_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    status = 200
    if request.method == "POST":
        if not caller.roles & sess.ADMINS:
            return _problem(request, caller, 403, "not allowed", "only an admin resolves findings")
        finding_id, reason = form.get("finding_id"), form.get("reason")
        try:
            if not isinstance(finding_id, str) or not _IDENT.match(finding_id):
                raise InputError("no such finding")
            if not isinstance(reason, str) or not reason.strip():
                raise InputError("give a reason for resolving the finding")
            done = await run_in_threadpool(
                registry.resolve_finding, caller.workspace, finding_id, reason=reason.strip()
            )
            notice = f"finding {done.id} resolved"
        except GpaisecError as exc:
            error, status = exc.diagnostics(), _status(exc)
    data = await run_in_threadpool(_registry_data, caller)
    return _render(
        request, "registry.html", caller, status=status, title="Registry", notice=notice, error=error, **data
    )


# -- audit ---------------------------------------------------------------------------------------


def _audit_data(caller: Caller, filters: dict[str, str | None], seq: int | None) -> dict[str, Any]:
    events = audit.log(
        caller.workspace,
        actor=filters.get("actor"),
        action=filters.get("action"),
        object=filters.get("object"),
        limit=200,
    )
    proof = audit.prove(caller.workspace, seq).to_json() if seq is not None else None
    return {"events": events, "proof": proof, "proof_seq": seq}


@_page(sess.AUDITORS)
async def audit_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    q = request.query_params
    filters: dict[str, str | None] = {}
    try:
        for name in ("actor", "action", "object"):
            filters[name] = _text(q.get(name), name)
        raw = q.get("proof")
        seq = None
        if raw:
            if not raw.isdigit() or len(raw) > 18:
                raise InputError("proof must be an event's sequence number")
            seq = int(raw)
        data = await run_in_threadpool(_audit_data, caller, filters, seq)
    except GpaisecError as exc:
        return _render(
            request,
            "audit.html",
            caller,
            status=_status(exc),
            title="Audit log",
            error=exc.diagnostics(),
            filters=filters,
            events=[],
            proof=None,
        )
    return _render(request, "audit.html", caller, title="Audit log", filters=filters, **data)


# -- reports -------------------------------------------------------------------------------------


@_page(sess.STAFF)
async def reports(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    status = 200
    if request.method == "POST":
        if not caller.roles & sess.ADMINS:
            return _problem(request, caller, 403, "not allowed", "only an admin runs assessments")
        chapter = form.get("chapter", "safety-security")
        try:
            if chapter not in CHAPTERS:
                raise InputError(f"chapter must be one of {', '.join(CHAPTERS)}")
            report = await run_in_threadpool(assessment.assess, caller.workspace, chapter=str(chapter))
            notice = f"assessment {report.run_id} finished"
        except GpaisecError as exc:
            error, status = exc.diagnostics(), _status(exc)
    runs = await run_in_threadpool(assessment.history, caller.workspace, 20)
    return _render(
        request,
        "reports.html",
        caller,
        status=status,
        title="Reports",
        runs=runs,
        chapters=CHAPTERS,
        formats=tuple(DOWNLOADS),
        notice=notice,
        error=error,
    )


def _load(caller: Caller, run_id: str | None) -> Report:
    if run_id:
        return assessment.load_report(caller.workspace, run_id)
    report = assessment.latest_report(caller.workspace)
    if report is None:
        raise NotFoundError("no assessment has been run", hint="run one on /reports or `gpaisec assess`")
    return report


@_page(sess.STAFF)
async def download(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    fmt = request.query_params.get("format", "html")
    run_id = request.query_params.get("run") or None
    try:
        if fmt not in DOWNLOADS:
            raise InputError(f"format must be one of {', '.join(DOWNLOADS)}")
        if run_id is not None and not _IDENT.match(run_id):
            raise InputError("no such assessment run")
        report = await run_in_threadpool(_load, caller, run_id)
        text = await run_in_threadpool(render_text, report, fmt)
    except GpaisecError as exc:
        return _problem(request, caller, _status(exc), exc.title, exc.diagnostics())
    media, ext = DOWNLOADS[fmt]
    return Response(
        text,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="gpaisec-{report.run_id}.{ext}"'},
    )


_ENDPOINTS: dict[str, Endpoint] = {
    "/login": login,
    "/logout": logout,
    "/": overview,
    "/registry": registry_page,
    "/audit": audit_page,
    "/reports": reports,
    "/reports/download": download,
}


def add_pages(app: FastAPI) -> None:
    for path, methods in PAGE_ROUTES:
        app.add_route(path, _ENDPOINTS[path], methods=list(methods), include_in_schema=False)
    app.mount("/static", StaticFiles(packages=[("gpaisec.web", "static")]), name="static")
