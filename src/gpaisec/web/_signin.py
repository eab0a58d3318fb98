"""Sign-in, sign-out and my account (the API's cookie session, so one sign-in serves both).

``/login`` takes a one-time code, or a passkey's assertion that ``/static/webauthn.js`` puts in the
form's hidden ``webauthn`` field after asking the API for options (``POST /api/v1/session/webauthn``).
Every sign-in also proves the device: ``/static/device.js`` asks the API for a challenge
(``POST /api/v1/session/device-challenge``), signs it with this browser's device key (a
non-extractable WebCrypto ECDSA P-256 key kept in IndexedDB) and puts the proof in the form's hidden
``device_*`` fields; without JavaScript there is no proof, and signing in fails like any other
failure. ``/device`` makes the browser's key and shows its public key (PEM) and fingerprint, for an
admin to enrol with ``gpaisec access device-key DEVICE FILE``.

``/account`` shows my sessions and passkeys, confirms a fresh second factor, removes a passkey
(registering one needs the browser's passkey dialogue, so webauthn.js does it through the API) and
signs me out everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gpaisec.access import accounts, device_keys, webauthn
from gpaisec.access.mfa import MfaError, SecondFactor
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.api.deps import Caller
from gpaisec.api.routes.session import relying_party
from gpaisec.errors import GpaisecError
from gpaisec.store.base import utcnow
from gpaisec.web import _session as sess
from gpaisec.web._common import IDENT, Refused, Route, guard, page, problem, render, status_of

__all__ = ["ROUTES"]

MAX_ASSERTION = 16_384  # characters of a passkey's assertion (a few hundred bytes in practice)
PROOF_FIELDS = ("device_fingerprint", "device_challenge_id", "device_signature")
DONE = {"mfa": "second factor confirmed", "registered": "passkey registered", "removed": "passkey removed"}


async def login(request: Request) -> Response:
    if request.method == "GET":
        caller = await run_in_threadpool(sess.signed_in, request)
        if caller is not None:
            return RedirectResponse("/", status_code=303)
        return render(request, "login.html", None)
    form = dict(await request.form())
    username = form.get("username")
    fields = [form.get(k) for k in ("username", "password", "totp_code", "device")]
    proof_fields = [form.get(k) for k in PROOF_FIELDS]
    again = {"username": username if isinstance(username, str) else "", "device": form.get("device") or ""}
    if not sess.login_csrf_ok(request, form.get(sess.CSRF_FIELD)):
        return render(
            request, "login.html", None, status=403, error="the form expired; try again", form=again
        )
    assertion = form.get("webauthn") or ""
    if not all(isinstance(f, str) for f in fields) or not isinstance(assertion, str):
        return render(request, "login.html", None, status=400, error="fill in every field", form=again)
    user, password, code, device = (str(f) for f in fields)
    proof = _device_proof(proof_fields)
    device = device or (proof.fingerprint if proof else "")
    source = request.client.host if request.client else "unknown"
    ctx = sess.context(request)
    try:
        factor: str | SecondFactor | None = code or None
        if assertion:
            if len(assertion) > MAX_ASSERTION:
                raise accounts.SignInError()
            factor = webauthn.Assertion(assertion, relying_party(request))
        signed = await run_in_threadpool(
            accounts.authenticate,
            ctx.workspace,
            user,
            password,
            factor,
            device,
            device_proof=proof,
            source=source,
        )
    except (WrongPasswordError, MfaError):
        # One answer for an unknown user, a wrong password, a wrong code or passkey and a wrong or
        # missing device proof, as the API gives.
        return render(
            request,
            "login.html",
            None,
            status=401,
            error="sign-in failed: check the user name, password, second factor and this browser's device"
            " key",
            form=again,
        )
    except ThrottledError as exc:
        page_ = render(request, "login.html", None, status=429, error=exc.diagnostics(), form=again)
        page_.headers["Retry-After"] = str(exc.retry_after)
        return page_
    except GpaisecError as exc:
        return render(request, "login.html", None, status=status_of(exc), error=exc.diagnostics(), form=again)
    max_age = max(1, int((signed.session.expires_at - signed.session.created_at).total_seconds()))
    response = RedirectResponse("/", status_code=303)
    sess.set_session_cookies(request, response, signed.token, max_age)
    return response


def _device_proof(fields: Sequence[object]) -> device_keys.DeviceProof | None:
    """The proof from the form's hidden fields (device.js fills them), or None if any is missing."""
    if not all(isinstance(f, str) and f for f in fields):
        return None
    fingerprint, challenge_id, signature = (str(f) for f in fields)
    return device_keys.DeviceProof(
        fingerprint=fingerprint[:100],
        challenge_id=challenge_id[:200],
        signature=device_keys.decode_signature(signature),
    )


async def device(request: Request) -> Response:
    """This browser's device key: made, kept and shown by device.js (the page itself holds no secret)."""
    caller = await run_in_threadpool(sess.signed_in, request)
    return render(request, "device.html", caller, title="This browser's device key")


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


def _account_values(caller: Caller) -> dict[str, Any]:
    sessions = accounts.list_sessions(caller.workspace, caller.username)
    mine = next((x for x in sessions if x.id == caller.session_id), None)
    mfa_at = mine.mfa_at if mine else None
    now = utcnow()
    fresh = mfa_at is not None and dt.timedelta(0) <= now - mfa_at <= webauthn.FRESH_MFA
    return {
        "title": "My account",
        "sessions": sessions,
        "passkeys": webauthn.list_passkeys(caller.workspace, caller.username),
        "fresh": fresh,
        "mfa_at": mfa_at.isoformat(timespec="seconds") if mfa_at else None,
        "fresh_until": (mfa_at + webauthn.FRESH_MFA).isoformat(timespec="seconds") if mfa_at else None,
        "fresh_minutes": int(webauthn.FRESH_MFA.total_seconds() // 60),
    }


async def _account_page(
    request: Request,
    caller: Caller,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    values = await run_in_threadpool(_account_values, caller)
    return render(request, "account.html", caller, status=status, notice=notice, error=error, **values)


@page(None)
async def account(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    return await _account_page(request, caller, notice=DONE.get(request.query_params.get("done", "")))


@page(None)
async def account_mfa(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    code = form.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        return await _account_page(request, caller, status=400, error="type a one-time or recovery code")
    assert caller.session_token is not None
    try:
        await run_in_threadpool(accounts.step_up, caller.workspace, caller.session_token, code)
    except GpaisecError as exc:
        return await _account_page(request, caller, status=status_of(exc), error=exc.diagnostics())
    return RedirectResponse("/account?done=mfa", status_code=303)


@page(None)
async def account_remove_passkey(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    passkey = request.path_params.get("passkey_id", "")
    if not isinstance(passkey, str) or not IDENT.match(passkey):
        return problem(request, caller, 404, "not found", "no such passkey")
    assert caller.session_token is not None
    try:
        await run_in_threadpool(webauthn.remove_passkey, caller.workspace, caller.session_token, passkey)
    except GpaisecError as exc:
        return await _account_page(request, caller, status=status_of(exc), error=exc.diagnostics())
    return RedirectResponse("/account?done=removed", status_code=303)


@page(None)
async def account_logout_all(request: Request, caller: Caller, form: dict[str, Any]) -> Response:
    assert caller.session_token is not None
    await run_in_threadpool(accounts.logout_all, caller.workspace, caller.session_token)
    response = RedirectResponse("/login", status_code=303)
    sess.clear_session_cookies(request, response)
    return response


ROUTES: tuple[Route, ...] = (
    ("/login", ("GET", "POST"), login),
    ("/device", ("GET",), device),
    ("/logout", ("GET", "POST"), logout),
    ("/account", ("GET",), account),
    ("/account/mfa", ("POST",), account_mfa),
    ("/account/passkeys/{passkey_id}/remove", ("POST",), account_remove_passkey),
    ("/account/logout-all", ("POST",), account_logout_all),
)
