"""Signing in and out (one session or everywhere), the second-factor step-up, and my own passkeys.

Every sign-in proves the device: ``POST /session/device-challenge`` answers a fresh challenge (no
input, nothing stored; valid for 2 minutes and for one sign-in of an account), which the client signs
with its device's enrolled key (see :mod:`gpaisec.access.device_keys` for the exact message) and
sends in ``device_proof`` of ``POST /session``. A missing or wrong proof is the same 401 as a wrong
password.

Passkey sign-in is two calls: ``POST /session/webauthn`` (user name and password) answers request
options, always of the same shape (see :mod:`gpaisec.access.webauthn`), then ``POST /session`` with
the assertion in ``webauthn`` instead of ``totp_code``. Every failure of either is the same 401.

The relying party (RP ID and origin the browser must report) comes from ``GPAISEC_WEBAUTHN_ORIGIN``
(``https://host[:port]``; ``GPAISEC_WEBAUTHN_RP_ID`` to use a parent domain), or else from the
request's own origin, which must be https (http only on localhost).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response, status

from gpaisec.access import accounts, device_keys, webauthn
from gpaisec.access.mfa import MfaError, SecondFactor
from gpaisec.access.passwords import WrongPasswordError
from gpaisec.api.deps import ApiContext, Context, CurrentCaller, Ident, SessionCaller, csrf_token
from gpaisec.api.problems import AuthenticationError
from gpaisec.api.schemas import (
    DeviceChallengePublic,
    DeviceProofBody,
    MePublic,
    PasskeyCreate,
    PasskeyPublic,
    PasskeySignInBody,
    SessionCreate,
    SessionInfoPublic,
    SessionPublic,
    StepUpBody,
    WebAuthnOptionsPublic,
)
from gpaisec.api.settings import is_loopback
from gpaisec.errors import ConfigError

router = APIRouter(tags=["session"])

__all__ = ["ORIGIN_ENV", "RP_ID_ENV", "relying_party", "router"]

ORIGIN_ENV = "GPAISEC_WEBAUTHN_ORIGIN"
RP_ID_ENV = "GPAISEC_WEBAUTHN_RP_ID"


def _source(request: Request) -> str:
    # Behind a proxy, uvicorn (--behind-proxy) has already put the client's address here.
    return request.client.host if request.client else "unknown"


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def relying_party(request: Request) -> webauthn.RelyingParty:
    """The configured relying party (``GPAISEC_WEBAUTHN_ORIGIN``, optionally ``GPAISEC_WEBAUTHN_RP_ID``).

    Without a configured origin, passkeys work only on loopback, with the request's own origin: off
    loopback the Host header is the client's to choose, so it cannot say which origin to expect.
    """
    origin = os.environ.get(ORIGIN_ENV, "").strip().rstrip("/")
    if origin:
        rp_id = os.environ.get(RP_ID_ENV, "").strip() or (urlsplit(origin).hostname or "")
        return webauthn.RelyingParty(rp_id=rp_id, origin=origin)
    host = request.url.hostname or ""
    if host not in _LOOPBACK_HOSTS or not is_loopback_client(request):
        raise ConfigError(
            "passkeys are not configured for this server",
            hint=f"set {ORIGIN_ENV} to the dashboard's https origin (and {RP_ID_ENV} if it differs)",
        )
    return webauthn.RelyingParty(rp_id=host, origin=f"{request.url.scheme}://{request.url.netloc}")


def is_loopback_client(request: Request) -> bool:
    """The connection itself comes from this machine (not only a Host header that says so)."""
    return is_loopback(request.client.host if request.client else "")


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


def _assertion(request: Request, credential: dict[str, Any]) -> SecondFactor:
    return webauthn.Assertion(json.dumps(credential), relying_party(request))


def _sign_in_failed() -> AuthenticationError:
    # One answer for an unknown user, a wrong password, a wrong or missing second factor and a wrong
    # or missing device proof: telling them apart would confirm a guessed password.
    return AuthenticationError(
        "sign-in failed",
        hint="check the user name, password, second factor (one-time code or passkey) and device proof",
    )


def _device_proof(body: DeviceProofBody | None) -> device_keys.DeviceProof | None:
    if body is None:
        return None
    return device_keys.DeviceProof(
        fingerprint=body.fingerprint,
        challenge_id=body.challenge_id,
        signature=device_keys.decode_signature(body.signature),  # b"" if not base64: refused, audited
    )


@router.post(
    "/session/device-challenge",
    response_model=DeviceChallengePublic,
    summary="A fresh challenge for the device proof of a sign-in",
    description=(
        "Sign b'gpaisec-device-proof-v1\\0' + challenge (32 bytes) + the device key's fingerprint (ASCII) + "
        "the user name (UTF-8) with the device's enrolled key (Ed25519, or ECDSA P-256/SHA-256 as r||s) "
        "and send it in device_proof of POST /session before expires_at. Each challenge signs one sign-in "
        "of an account; a later challenge makes earlier ones of that account unusable once it is used."
    ),
)
def device_challenge(ctx: Context) -> DeviceChallengePublic:
    made = accounts.device_challenge(ctx.workspace)
    return DeviceChallengePublic(
        challenge_id=made.id,
        challenge=base64.b64encode(made.challenge).decode("ascii"),
        expires_at=made.expires_at,
    )


@router.post(
    "/session",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionPublic,
    summary="Sign in (password, one-time code or passkey, device proof)",
)
def sign_in(body: SessionCreate, request: Request, response: Response, ctx: Context) -> SessionPublic:
    factor: str | SecondFactor | None = body.totp_code
    if body.webauthn is not None:
        factor = _assertion(request, body.webauthn)
    try:
        login = accounts.authenticate(
            ctx.workspace,
            body.username,
            body.password,
            factor,
            body.device,
            device_proof=_device_proof(body.device_proof),
            source=_source(request),
        )
    except (WrongPasswordError, MfaError):
        raise _sign_in_failed() from None
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


@router.post(
    "/session/webauthn",
    response_model=WebAuthnOptionsPublic,
    summary="Begin signing in with a passkey (user name and password first)",
    description=(
        "Answers options for navigator.credentials.get(), the same way whether or not the user exists "
        "and the password is right; only then is the challenge kept. Send the assertion to POST /session "
        "(with the password and device again) within 5 minutes."
    ),
)
def begin_passkey_sign_in(body: PasskeySignInBody, request: Request, ctx: Context) -> WebAuthnOptionsPublic:
    rp = relying_party(request)
    options = webauthn.begin_sign_in(
        ctx.workspace, body.username, body.password, rp_id=rp.rp_id, source=_source(request)
    )
    return WebAuthnOptionsPublic(public_key=json.loads(options))


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out this session, or every session of mine (?everywhere=true)",
)
def sign_out(
    caller: SessionCaller,
    ctx: Context,
    everywhere: Annotated[
        bool, Query(description="End every session of my account, on every device.")
    ] = False,
) -> Response:
    assert caller.session_token is not None
    if everywhere:
        accounts.logout_all(caller.workspace, caller.session_token)
    else:
        accounts.logout(caller.workspace, caller.session_token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_cookies(response, ctx)
    return response


@router.post("/session/mfa", response_model=SessionPublic, summary="Confirm a fresh second factor")
def step_up(body: StepUpBody, request: Request, caller: SessionCaller, ctx: Context) -> SessionPublic:
    assert caller.session_token is not None
    factor: str | SecondFactor
    if body.webauthn is not None:
        factor = _assertion(request, body.webauthn)
    else:
        assert body.code is not None  # the schema asks for exactly one
        factor = body.code
    sess = accounts.step_up(caller.workspace, caller.session_token, factor)
    return SessionPublic(
        username=caller.username,
        session_id=sess.id,
        expires_at=sess.expires_at,
        mfa_at=sess.mfa_at,
        csrf_token=csrf_token(ctx.settings.session_secret, caller.session_token),
    )


@router.post(
    "/session/mfa/webauthn",
    response_model=WebAuthnOptionsPublic,
    summary="Begin confirming a fresh second factor with a passkey",
)
def begin_passkey_step_up(request: Request, caller: SessionCaller) -> WebAuthnOptionsPublic:
    assert caller.session_token is not None
    rp = relying_party(request)
    options = webauthn.begin_step_up(caller.workspace, caller.session_token, rp_id=rp.rp_id)
    return WebAuthnOptionsPublic(public_key=json.loads(options))


@router.get("/me", response_model=MePublic, summary="Who is calling")
async def me(caller: CurrentCaller) -> MePublic:
    return MePublic(
        username=caller.username,
        kind="service" if caller.kind == "service" else "human",
        person=caller.person,
        roles=sorted(caller.roles),
        scopes=sorted(caller.scopes),
        via="token" if caller.via == "token" else "session",
        session_id=caller.session_id,
    )


@router.get("/me/sessions", response_model=list[SessionInfoPublic], summary="My live sessions")
def my_sessions(caller: SessionCaller) -> list[SessionInfoPublic]:
    return [
        SessionInfoPublic(
            id=x.id,
            device=x.device,
            source=x.source,
            created_at=x.created_at,
            last_seen_at=x.last_seen_at,
            mfa_at=x.mfa_at,
            expires_at=x.expires_at,
            current=x.id == caller.session_id,
        )
        for x in accounts.list_sessions(caller.workspace, caller.username)
    ]


def _passkey(p: webauthn.Passkey) -> PasskeyPublic:
    return PasskeyPublic(
        id=p.id,
        created_at=p.created_at,
        last_used_at=p.last_used_at,
        transports=list(p.transports),
        sign_count=p.sign_count,
    )


@router.get("/me/passkeys", response_model=list[PasskeyPublic], summary="My passkeys")
def my_passkeys(caller: SessionCaller) -> list[PasskeyPublic]:
    return [_passkey(p) for p in webauthn.list_passkeys(caller.workspace, caller.username)]


@router.post(
    "/me/passkeys/options",
    response_model=WebAuthnOptionsPublic,
    summary="Begin registering a passkey (needs a second factor in the last 5 minutes)",
)
def begin_passkey_registration(request: Request, caller: SessionCaller) -> WebAuthnOptionsPublic:
    assert caller.session_token is not None
    options = webauthn.begin_passkey_registration(
        caller.workspace, caller.session_token, relying_party(request)
    )
    return WebAuthnOptionsPublic(public_key=json.loads(options))


@router.post(
    "/me/passkeys",
    status_code=status.HTTP_201_CREATED,
    response_model=PasskeyPublic,
    summary="Finish registering a passkey",
)
def finish_passkey_registration(
    body: PasskeyCreate, request: Request, caller: SessionCaller
) -> PasskeyPublic:
    assert caller.session_token is not None
    new = webauthn.finish_passkey_registration(
        caller.workspace, caller.session_token, json.dumps(body.credential), relying_party(request)
    )
    return next(_passkey(p) for p in webauthn.list_passkeys(caller.workspace, caller.username) if p.id == new)


@router.delete(
    "/me/passkeys/{passkey_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove one of my passkeys (needs a second factor in the last 5 minutes)",
)
def remove_passkey(passkey_id: Ident, caller: SessionCaller) -> Response:
    assert caller.session_token is not None
    webauthn.remove_passkey(caller.workspace, caller.session_token, passkey_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
