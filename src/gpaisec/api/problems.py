"""Errors as RFC 9457 problem details (``application/problem+json``), in one place.

Every :class:`~gpaisec.errors.GpaisecError` maps to a status by its class (:func:`status_for`);
request validation errors are problems too (422, with the location of each error but never the
input, which may be a password); anything else is a bug, answered with a bare 500 and logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from gpaisec.access.mfa import MfaError
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.errors import (
    AuditIntegrityError,
    ConfigError,
    ConflictError,
    DeniedError,
    GpaisecError,
    InputError,
    IntegrityError,
    NotFoundError,
)

__all__ = [
    "PROBLEM_JSON",
    "AuthenticationError",
    "CsrfError",
    "install_handlers",
    "problem_response",
    "status_for",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("gpaisec.api")


class AuthenticationError(GpaisecError):
    """No credentials, or credentials that identify nobody (401)."""

    exit_code = 6
    title = "authentication required"


class CsrfError(DeniedError):
    """An unsafe request with a cookie session lacks the matching X-CSRF-Token header (403)."""

    title = "CSRF token missing or wrong"


# Most specific first: ConflictError is an InputError, MfaError a DeniedError, and so on.
_STATUS: tuple[tuple[type[GpaisecError], int], ...] = (
    (ThrottledError, 429),
    (AuthenticationError, 401),
    (WrongPasswordError, 401),
    (MfaError, 403),
    (CsrfError, 403),
    (ConflictError, 409),
    (InputError, 400),
    (NotFoundError, 404),
    (DeniedError, 403),
    (AuditIntegrityError, 500),
    (IntegrityError, 409),
    (ConfigError, 503),
)


def status_for(exc: GpaisecError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _slug(exc: GpaisecError) -> str:
    return re.sub(r"[^a-z0-9]+", "-", exc.title.lower()).strip("-") or "error"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def gpaisec_problem(exc: GpaisecError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, ThrottledError):
        headers["Retry-After"] = str(exc.retry_after)
        extra["retry_after"] = exc.retry_after
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gpaisec"'
    return problem_response(
        status,
        exc.title,
        exc.diagnostics(),
        type_=f"urn:gpaisec:problem:{_slug(exc)}",
        headers=headers,
        **extra,
    )


async def _on_gpaisec(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GpaisecError)
    if status_for(exc) >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.diagnostics())
    return gpaisec_problem(exc)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) if first["loc"] else "request"
    return problem_response(
        422,
        "invalid request",
        f"{where}: {first['msg']}",
        type_="urn:gpaisec:problem:invalid-request",
        errors=errors,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    title = {404: "not found", 405: "method not allowed", 413: "request too large"}.get(
        exc.status_code, "error"
    )
    return problem_response(exc.status_code, title, str(exc.detail), headers=headers)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GpaisecError, _on_gpaisec)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    # Anything else is a bug; GuardMiddleware (api/middleware.py) answers it with a bare 500.
