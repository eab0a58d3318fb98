"""Who is looking at a page, and the CSRF tokens of its forms.

A page is signed in by the API's own session cookie (see :mod:`gpaisec.api.deps`); pages take no
service tokens, since software uses the API. Checking a page request, each step with its own failure:

1. The session cookie names a live session of a person (:func:`gpaisec.access.accounts.resolve_session`);
   otherwise the page sends the browser to ``/login`` and shows nothing.
2. On POST, the form's hidden ``csrf_token`` equals HMAC-SHA256(session secret, session token), the
   same value the API checks in ``X-CSRF-Token``, compared in constant time; otherwise 403.
3. The page's roles (:data:`STAFF`, :data:`AUDITORS`, :data:`ADMINS`); otherwise 403.

The sign-in form has no session yet: its token is an HMAC of a random nonce held in an ``HttpOnly``,
``SameSite=Strict`` cookie, so another site can neither read nor forge it (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from gpaisec.access import accounts
from gpaisec.api.deps import ApiContext, Caller, acting_as, csrf_token
from gpaisec.errors import DeniedError

__all__ = [
    "ADMINS",
    "AUDITORS",
    "CSRF_FIELD",
    "STAFF",
    "clear_session_cookies",
    "context",
    "form_csrf_ok",
    "login_csrf",
    "login_csrf_ok",
    "page_csrf",
    "set_session_cookies",
    "signed_in",
]

CSRF_FIELD = "csrf_token"
STAFF = frozenset({"admin", "approver", "reviewer"})
AUDITORS = frozenset({"admin", "reviewer"})
ADMINS = frozenset({"admin"})


def context(request: Request) -> ApiContext:
    ctx = request.app.state.gpaisec
    assert isinstance(ctx, ApiContext)
    return ctx


def _nonce_cookie(ctx: ApiContext) -> str:
    return "__Host-gpaisec-login" if ctx.settings.secure_cookies else "gpaisec-login"


def signed_in(request: Request) -> Caller | None:
    """Step 1: the person behind the session cookie, or None (no cookie, unknown, expired, revoked)."""
    ctx = context(request)
    token = request.cookies.get(ctx.session_cookie)
    if not token:
        return None
    try:
        sess = accounts.resolve_session(ctx.workspace, token)
    except DeniedError:
        return None
    account = sess.account
    if account.kind != "human":
        return None
    actor = f"user:{account.username}"
    return Caller(
        username=account.username,
        kind=account.kind,
        roles=frozenset(account.roles),
        scopes=frozenset(),
        via="session",
        workspace=acting_as(ctx.workspace, actor),
        session_token=token,
        session_id=sess.id,
        person=account.person.name if account.person else None,
    )


def page_csrf(request: Request, caller: Caller) -> str:
    assert caller.session_token is not None
    return csrf_token(context(request).settings.session_secret, caller.session_token)


def form_csrf_ok(request: Request, caller: Caller, given: object) -> bool:
    """Step 2: the form's token is the session's, compared in constant time."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), page_csrf(request, caller).encode())


def _login_token(ctx: ApiContext, nonce: str) -> str:
    mac = hmac.new(ctx.settings.session_secret, b"login-form\x00" + nonce.encode(), hashlib.sha256)
    return mac.hexdigest()


def login_csrf(request: Request, response: Response) -> str:
    """The sign-in form's token; sets a fresh nonce cookie when the browser has none."""
    ctx = context(request)
    nonce = request.cookies.get(_nonce_cookie(ctx))
    if not nonce or len(nonce) != 43:
        nonce = secrets.token_urlsafe(32)
        response.set_cookie(
            _nonce_cookie(ctx),
            nonce,
            max_age=3600,
            path="/",
            secure=ctx.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )
    return _login_token(ctx, nonce)


def login_csrf_ok(request: Request, given: object) -> bool:
    ctx = context(request)
    nonce = request.cookies.get(_nonce_cookie(ctx))
    if not nonce or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), _login_token(ctx, nonce).encode())


def set_session_cookies(request: Request, response: Response, token: str, max_age: int) -> None:
    """The same cookies as ``POST /api/v1/session``: the session (HttpOnly) and the readable CSRF one."""
    ctx = context(request)
    secure = ctx.settings.secure_cookies
    response.set_cookie(
        ctx.session_cookie, token, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )
    response.set_cookie(
        ctx.csrf_cookie,
        csrf_token(ctx.settings.session_secret, token),
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="strict",
    )
    response.delete_cookie(_nonce_cookie(ctx), path="/", secure=secure, httponly=True, samesite="strict")


def clear_session_cookies(request: Request, response: Response) -> None:
    ctx = context(request)
    secure = ctx.settings.secure_cookies
    for name, http_only in ((ctx.session_cookie, True), (ctx.csrf_cookie, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="strict")
