"""The dashboard's read-mostly pages: overview, registry, audit, reports.

Each calls the same service function as the matching API endpoint.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gpaisec.api.deps import Caller
from gpaisec.audit import service as audit
from gpaisec.audit._note import vkey as signed_note_vkey
from gpaisec.compliance import assessment, deadlines
from gpaisec.compliance.assessment import CHAPTERS, Report
from gpaisec.compliance.reports import render_text
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import GpaisecError, InputError, NotFoundError
from gpaisec.store.base import utcnow
from gpaisec.web import _session as sess
from gpaisec.web._common import IDENT, Route, page, problem, render, status_of, text
from gpaisec.weights import registry

__all__ = ["ROUTES"]

DOWNLOADS = {
    "html": ("text/html; charset=utf-8", "html"),
    "json": ("application/json", "json"),
    "oscal": ("application/json", "oscal.json"),
}
SEVERITIES = ("critical", "high", "medium", "low", "info")
SHOWN_VERDICTS = (Verdict.met, Verdict.partly_met, Verdict.not_met, Verdict.no_evidence)

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
        "deadlines": deadlines.upcoming(ws),
        "now": utcnow(),
    }


@page(sess.STAFF)
async def overview(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    data = await run_in_threadpool(_overview_data, caller)
    return render(request, "overview.html", caller, title="Overview", **data)


# -- registry ------------------------------------------------------------------------------------


def _registry_data(caller: Caller) -> dict[str, Any]:
    ws = caller.workspace
    view = registry.registry_view(ws)
    models: dict[str, list[dict[str, Any]]] = {}
    for v in view:
        models.setdefault(str(v["version"]).split(":", 1)[0], []).append(v)
    return {"models": models, "findings": registry.list_findings(ws, open_only=True)}


@page(sess.STAFF)
async def registry_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    status = 200
    if request.method == "POST":
        if not caller.roles & sess.ADMINS:
            return problem(request, caller, 403, "not allowed", "only an admin resolves findings")
        finding_id, reason = form.get("finding_id"), form.get("reason")
        try:
            if not isinstance(finding_id, str) or not IDENT.match(finding_id):
                raise InputError("no such finding")
            if not isinstance(reason, str) or not reason.strip():
                raise InputError("give a reason for resolving the finding")
            done = await run_in_threadpool(
                registry.resolve_finding, caller.workspace, finding_id, reason=reason.strip()
            )
            notice = f"finding {done.id} resolved"
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
    data = await run_in_threadpool(_registry_data, caller)
    return render(
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
    vkey = None
    key = audit.trusted_key(caller.workspace)
    if proof is not None and key is not None:
        vkey = signed_note_vkey(str(proof["origin"]), key)
    return {"events": events, "proof": proof, "proof_seq": seq, "vkey": vkey}


@page(sess.AUDITORS)
async def audit_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    q = request.query_params
    filters: dict[str, str | None] = {}
    try:
        for name in ("actor", "action", "object"):
            filters[name] = text(q.get(name), name)
        raw = q.get("proof")
        seq = None
        if raw:
            if not raw.isdigit() or len(raw) > 18:
                raise InputError("proof must be an event's sequence number")
            seq = int(raw)
        data = await run_in_threadpool(_audit_data, caller, filters, seq)
    except GpaisecError as exc:
        return render(
            request,
            "audit.html",
            caller,
            status=status_of(exc),
            title="Audit log",
            error=exc.diagnostics(),
            filters=filters,
            events=[],
            proof=None,
        )
    return render(request, "audit.html", caller, title="Audit log", filters=filters, **data)


# -- reports -------------------------------------------------------------------------------------


@page(sess.STAFF)
async def reports(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    notice = error = None
    status = 200
    if request.method == "POST":
        if not caller.roles & sess.ADMINS:
            return problem(request, caller, 403, "not allowed", "only an admin runs assessments")
        chapter = form.get("chapter", "safety-security")
        try:
            if chapter not in CHAPTERS:
                raise InputError(f"chapter must be one of {', '.join(CHAPTERS)}")
            report = await run_in_threadpool(assessment.assess, caller.workspace, chapter=str(chapter))
            notice = f"assessment {report.run_id} finished"
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
    runs = await run_in_threadpool(assessment.history, caller.workspace, 20)
    return render(
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


@page(sess.STAFF)
async def download(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    fmt = request.query_params.get("format", "html")
    run_id = request.query_params.get("run") or None
    try:
        if fmt not in DOWNLOADS:
            raise InputError(f"format must be one of {', '.join(DOWNLOADS)}")
        if run_id is not None and not IDENT.match(run_id):
            raise InputError("no such assessment run")
        report = await run_in_threadpool(_load, caller, run_id)
        body = await run_in_threadpool(render_text, report, fmt)
    except GpaisecError as exc:
        return problem(request, caller, status_of(exc), exc.title, exc.diagnostics())
    media, ext = DOWNLOADS[fmt]
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="gpaisec-{report.run_id}.{ext}"'},
    )


ROUTES: tuple[Route, ...] = (
    ("/", ("GET",), overview),
    ("/registry", ("GET", "POST"), registry_page),
    ("/audit", ("GET",), audit_page),
    ("/reports", ("GET", "POST"), reports),
    ("/reports/download", ("GET",), download),
)
