"""What every dashboard page shares: templates, the guard (signed in, CSRF, roles), errors as pages.

Routes are plain Starlette routes, outside the OpenAPI document and the API's operation walk; every
one of them starts with :func:`guard` (signed in, CSRF on POST, roles), so none shows data to a
stranger. Errors of the services (:class:`~gpaisec.errors.GpaisecError`) are shown on the page with
their ``diagnostics()``; anything else is a bug and reaches the API's last-resort 500.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gpaisec import __version__
from gpaisec.access.mfa import MfaError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.api.deps import Caller
from gpaisec.errors import DeniedError, GpaisecError, InputError, NotFoundError
from gpaisec.web import _session as sess

Endpoint = Callable[[Request], Awaitable[Response]]
# (path, methods, endpoint): each page module lists its own; gpaisec.web gathers them.
Route = tuple[str, tuple[str, ...], Endpoint]

TEXT = re.compile(r"^[^\x00-\x1f\x7f]{0,300}$")
IDENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_env = Environment(
    loader=PackageLoader("gpaisec.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Refused(Exception):
    """A page refused before doing anything; ``response`` says why."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def render(
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
        may=may(caller),
        **values,
    )
    response.body = response.render(body)
    response.headers["content-length"] = str(len(response.body))
    return response


def may(caller: Caller | None) -> dict[str, bool]:
    roles = caller.roles if caller else frozenset()
    return {
        "staff": bool(roles & sess.STAFF),
        "audit": bool(roles & sess.AUDITORS),
        "admin": bool(roles & sess.ADMINS),
    }


def problem(request: Request, caller: Caller | None, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", caller, status=status, title=title, detail=detail)


async def guard(request: Request, roles: frozenset[str] | None) -> tuple[Caller, dict[str, Any]]:
    """Steps 1-3 of :mod:`gpaisec.web._session` (``roles=None``: any signed-in person).

    Returns the caller and the POSTed form (empty on GET).
    """
    caller = await run_in_threadpool(sess.signed_in, request)
    # Step 1: signed in, or off to the sign-in page (a POST gets 401: its body is not replayed).
    if caller is None:
        if request.method == "GET":
            raise Refused(RedirectResponse("/login", status_code=303))
        raise Refused(problem(request, None, 401, "not signed in", "sign in first"))
    form: dict[str, Any] = {}
    # Step 2: the form's CSRF token.
    if request.method == "POST":
        form = dict(await request.form())
        if not sess.form_csrf_ok(request, caller, form.get(sess.CSRF_FIELD)):
            raise Refused(
                problem(request, caller, 403, "CSRF token missing or wrong", "reload the page and try again")
            )
    # Step 3: roles.
    if roles is not None and not caller.roles & roles:
        raise Refused(
            problem(
                request,
                caller,
                403,
                "not allowed",
                f"{caller.username} does not hold the role {' or '.join(sorted(roles))}; "
                "an administrator assigns roles",
            )
        )
    return caller, form


def page(roles: frozenset[str] | None) -> Callable[[Callable[..., Awaitable[Response]]], Endpoint]:
    def wrap(handler: Callable[..., Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                caller, form = await guard(request, roles)
                return await handler(request, caller, form)
            except Refused as refused:
                return refused.response

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


def status_of(exc: GpaisecError) -> int:
    if isinstance(exc, ThrottledError):
        return 429
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, DeniedError | MfaError):
        return 403
    if isinstance(exc, InputError):
        return 400
    return 409


def text(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TEXT.match(value):
        raise InputError(f"{what} must be at most 300 characters without control characters")
    return value
