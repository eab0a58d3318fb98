"""Sign-in and sign-out pages (the API's cookie session, so one sign-in serves both)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gpaisec.access import accounts
from gpaisec.access.mfa import MfaError
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.errors import GpaisecError
from gpaisec.web import _session as sess
from gpaisec.web._common import Refused, Route, guard, render, status_of

__all__ = ["ROUTES"]


async def login(request: Request) -> Response:
    if request.method == "GET":
        caller = await run_in_threadpool(sess.signed_in, request)
        if caller is not None:
            return RedirectResponse("/", status_code=303)
        return render(request, "login.html", None)
    form = dict(await request.form())
    username = form.get("username")
    fields = [form.get(k) for k in ("username", "password", "totp_code", "device")]
    again = {"username": username if isinstance(username, str) else "", "device": form.get("device") or ""}
    if not sess.login_csrf_ok(request, form.get(sess.CSRF_FIELD)):
        return render(
            request, "login.html", None, status=403, error="the form expired; try again", form=again
        )
    if not all(isinstance(f, str) for f in fields):
        return render(request, "login.html", None, status=400, error="fill in every field", form=again)
    user, password, code, device = (str(f) for f in fields)
    source = request.client.host if request.client else "unknown"
    ctx = sess.context(request)
    try:
        signed = await run_in_threadpool(
            accounts.authenticate, ctx.workspace, user, password, code or None, device, source=source
        )
    except (WrongPasswordError, MfaError):
        # One answer for an unknown user, a wrong password and a wrong code, as the API gives.
        return render(
            request,
            "login.html",
            None,
            status=401,
            error="sign-in failed: check the user name, password and one-time code",
            form=again,
        )
    except ThrottledError as exc:
        page = render(request, "login.html", None, status=429, error=exc.diagnostics(), form=again)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except GpaisecError as exc:
        return render(request, "login.html", None, status=status_of(exc), error=exc.diagnostics(), form=again)
    max_age = max(1, int((signed.session.expires_at - signed.session.created_at).total_seconds()))
    response = RedirectResponse("/", status_code=303)
    sess.set_session_cookies(request, response, signed.token, max_age)
    return response


async def logout(request: Request) -> Response:
    try:
        caller, _ = await guard(request, None)
    except Refused as refused:
        return refused.response
    if request.method == "GET":
        return render(request, "logout.html", caller)
    assert caller.session_token is not None
    await run_in_threadpool(accounts.logout, caller.workspace, caller.session_token)
    response = RedirectResponse("/login", status_code=303)
    sess.clear_session_cookies(request, response)
    return response


ROUTES: tuple[Route, ...] = (
    ("/login", ("GET", "POST"), login),
    ("/logout", ("GET", "POST"), logout),
)
