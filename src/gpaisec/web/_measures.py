"""A measure's (or security objective's) page: the Code in our words, verdict, reasons, evidence, history.

People who answer for compliance (roles admin and reviewer) attach an attestation and upload a document
here; both go through :mod:`gpaisec.compliance.service`, so they are hashed, stored under their SHA-256
and audited exactly as ``gpaisec attest`` and ``gpaisec evidence add`` do.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from gpaisec.api.deps import Caller
from gpaisec.catalog import load_catalog
from gpaisec.compliance import assessment, service
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import DeniedError, GpaisecError, InputError, NotFoundError
from gpaisec.web import _session as sess
from gpaisec.web._common import Route, page, problem, render, status_of, text

__all__ = ["MAX_UPLOAD", "ROUTES"]

ATTESTERS = frozenset({"admin", "reviewer"})
MAX_UPLOAD = 50 * 1024 * 1024  # bytes: evidence documents, not datasets
FORM_OVERHEAD = 64 * 1024  # the form's other fields and multipart framing
HISTORY_RUNS = 12
CLAIMS = (Verdict.met, Verdict.partly_met, Verdict.not_met, Verdict.not_applicable)
_ITEM = re.compile(r"^[A-Za-z0-9_.()-]{1,32}$")
_FILENAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _item(item_id: str) -> Any:
    if not _ITEM.match(item_id):
        raise NotFoundError(f"no measure or objective {item_id[:40]!r}", hint="pick one on the Overview")
    return load_catalog().get(item_id)


def _measure_data(caller: Caller, item_id: str) -> dict[str, Any]:
    ws = caller.workspace
    item = _item(item_id)
    current = None
    history: list[dict[str, Any]] = []
    for run in assessment.history(ws, limit=HISTORY_RUNS):
        report = assessment.load_report(ws, run["run_id"])
        result = next((r for r in report.results if r.item_id == item.id), None)
        if result is None:
            continue
        if current is None:
            current = (report, result)
        history.append({"run_id": report.run_id, "at": report.finished_at, "verdict": result.verdict})
    return {
        "item": item,
        "current": current,
        "history": history,
        "evidence": service.list_evidence(ws, item.id),
        "attestations": service.list_attestations(ws, item.id),
        "controls": service.list_controls(ws, item.id),
        "claims": CLAIMS,
        "now": dt.datetime.now(dt.UTC),
    }


def _when(value: object) -> dt.datetime | None:
    given = text(value, "date")
    if given is None:
        return None
    try:
        day = dt.date.fromisoformat(given)
    except ValueError:
        raise InputError("dates are YYYY-MM-DD, for example 2027-06-30") from None
    return dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=dt.UTC)


def upload_limit(request: Request) -> int:
    """Bytes a document may have here: :data:`MAX_UPLOAD`, or less if the server's request limit
    (``GPAISEC_MAX_REQUEST_BYTES``, which the guard enforces first) leaves less room."""
    settings = request.app.state.gpaisec.settings
    return max(1, min(MAX_UPLOAD, int(settings.max_request_bytes) - FORM_OVERHEAD))


def _save_upload(upload: UploadFile, folder: Path, limit: int) -> Path:
    """The uploaded file under a safe name in ``folder``; refuses one over ``limit`` bytes."""
    name = _FILENAME.sub("_", Path(upload.filename or "document").name)[:100].strip("._") or "document"
    target = folder / name
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise InputError(
                    f"the document is larger than {_size(limit)}",
                    hint="attach large evidence with `gpaisec evidence add --file`",
                )
            out.write(chunk)
    if size == 0:
        raise InputError("the uploaded document is empty", hint="choose the file again")
    return target


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n // 1024} KiB" if n >= 1024 else f"{n} bytes"


def _act(caller: Caller, item_id: str, form: dict[str, Any], limit: int) -> str:
    ws = caller.workspace
    item = _item(item_id)
    op = form.get("op")
    if op == "attest":
        claim = form.get("claim")
        if claim not in {c.value for c in CLAIMS}:
            raise InputError("choose the verdict the attestation claims")
        statement = text(form.get("statement"), "statement") or ""
        att = service.attest(
            ws,
            item.id,
            claim=Verdict(claim),
            statement=statement,
            attested_by=caller.username,
            role=text(form.get("role"), "role") or "",
            valid_until=_when(form.get("valid_until")),
        )
        return f"attestation {att.id} recorded; it counts from the next assessment"
    if op == "upload":
        upload = form.get("document")
        if not isinstance(upload, UploadFile):
            raise InputError("choose a document to upload")
        title = text(form.get("title"), "title") or upload.filename or "document"
        with tempfile.TemporaryDirectory(prefix="gpaisec-upload-") as tmp:
            path = _save_upload(upload, Path(tmp), limit)
            ev = service.add_evidence(
                ws,
                [item.id],
                title=title,
                source=f"dashboard upload by {caller.username}",
                path=path,
                expires_at=_when(form.get("expires_at")),
            )
        return f"document stored as evidence {ev.id} (sha256 {ev.content_sha256[:16]}…)"
    raise InputError("unknown action on this page", hint="reload the page and try again")


@page(sess.STAFF)
async def measure_page(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    item_id = str(request.path_params.get("item_id", ""))
    notice = error = None
    status = 200
    if request.method == "POST":
        try:
            if not caller.roles & ATTESTERS:
                raise _not_allowed(caller)
            notice = await run_in_threadpool(_act, caller, item_id, form, upload_limit(request))
        except GpaisecError as exc:
            error, status = exc.diagnostics(), status_of(exc)
        finally:
            for value in form.values():
                if isinstance(value, UploadFile):
                    await value.close()
    try:
        data = await run_in_threadpool(_measure_data, caller, item_id)
    except GpaisecError as exc:
        return problem(request, caller, status_of(exc), exc.title, exc.diagnostics())
    return render(
        request,
        "measure.html",
        caller,
        status=status,
        title=f"{data['item'].id} {data['item'].title}",
        notice=notice,
        error=error,
        may_attest=bool(caller.roles & ATTESTERS),
        max_upload=_size(upload_limit(request)),
        **data,
    )


def _not_allowed(caller: Caller) -> GpaisecError:
    return DeniedError(
        f"{caller.username} may not attest or add evidence",
        hint="attestations and documents are added by an admin or a reviewer",
    )


ROUTES: tuple[Route, ...] = (("/measures/{item_id}", ("GET", "POST"), measure_page),)
