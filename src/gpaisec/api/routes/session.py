"""Signing in and out, and the second-factor step-up of a live session."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from gpaisec.access import accounts
from gpaisec.access.mfa import MfaError
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.api.deps import ApiContext, Context, CurrentCaller, SessionCaller, csrf_token
from gpaisec.api.problems import AuthenticationError
from gpaisec.api.schemas import MePublic, SessionCreate, SessionPublic, StepUpBody

router = APIRouter(tags=["session"])

__all__ = ["router"]


def _source(request: Request) -> str:
    # Behind a proxy, uvicorn (--behind-proxy) has already put the client's address here.
    return request.client.host if request.client else "unknown"


def _set_cookies(response: Response, ctx: ApiContext, token: str, max_age: int) -> str:
    csrf = csrf_token(ctx.settings.session_secret, token)
    secure = ctx.settings.secure_cookies
    response.set_cookie(
        ctx.session_cookie, token, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token; useless to another site.
    response.set_cookie(
        ctx.csrf_cookie, csrf, max_age=max_age, path="/", secure=secure, httponly=False, samesite="strict"
    )
    return csrf


def _clear_cookies(response: Response, ctx: ApiContext) -> None:
    secure = ctx.settings.secure_cookies
    for name, http_only in ((ctx.session_cookie, True), (ctx.csrf_cookie, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="strict")


@router.post(
    "/session",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionPublic,
    summary="Sign in (password, one-time code, device)",
)
def sign_in(body: SessionCreate, request: Request, response: Response, ctx: Context) -> SessionPublic:
    try:
        login = accounts.authenticate(
            ctx.workspace, body.username, body.password, body.totp_code, body.device, source=_source(request)
        )
    except (WrongPasswordError, MfaError):
        # One answer for an unknown user, a wrong password and a wrong or missing code: telling them
        # apart would confirm a guessed password.
        raise AuthenticationError(
            "sign-in failed", hint="check the user name, password and one-time code"
        ) from None
    sess = login.session
    max_age = max(1, int((sess.expires_at - sess.created_at).total_seconds()))
    csrf = _set_cookies(response, ctx, login.token, max_age)
    return SessionPublic(
        username=body.username,
        session_id=sess.id,
        expires_at=sess.expires_at,
        mfa_at=sess.mfa_at,
        csrf_token=csrf,
    )


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out this session")
def sign_out(caller: SessionCaller, ctx: Context) -> Response:
    assert caller.session_token is not None
    accounts.logout(caller.workspace, caller.session_token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_cookies(response, ctx)
    return response


@router.post("/session/mfa", response_model=SessionPublic, summary="Confirm a fresh second factor")
def step_up(body: StepUpBody, caller: SessionCaller, ctx: Context) -> SessionPublic:
    assert caller.session_token is not None
    sess = accounts.step_up(caller.workspace, caller.session_token, body.code)
    return SessionPublic(
        username=caller.username,
        session_id=sess.id,
        expires_at=sess.expires_at,
        mfa_at=sess.mfa_at,
        csrf_token=csrf_token(ctx.settings.session_secret, caller.session_token),
    )


@router.get("/me", response_model=MePublic, summary="Who is calling")
def me(caller: CurrentCaller) -> MePublic:
    return MePublic(
        username=caller.username,
        kind="service" if caller.kind == "service" else "human",
        person=caller.person,
        roles=sorted(caller.roles),
        scopes=sorted(caller.scopes),
        via="token" if caller.via == "token" else "session",
        session_id=caller.session_id,
    )
