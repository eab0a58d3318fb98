"""Who is calling: authentication, CSRF and roles, as ``Annotated`` dependency aliases.

Authenticating a request, each step with its own failure:

1. ``Authorization: Bearer <token>``: a service token (:func:`gpaisec.access.accounts.authenticate_token`).
   No cookie is consulted and no CSRF token is needed: a browser never sends this header by itself.
2. Otherwise the session cookie: a live session (:func:`gpaisec.access.accounts.resolve_session`).
3. For a cookie session, every unsafe method (anything but GET, HEAD, OPTIONS) must carry
   ``X-CSRF-Token`` equal to HMAC-SHA256(session secret, session token), compared in constant time
   (signed double-submit: the same value is in a readable cookie and in the sign-in answer).
4. Roles, where an endpoint needs them (:func:`require_roles`); refusals are 403.

Any failure of steps 1-2 is a 401 with the same shape; the caller learns nothing more.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from gpaisec.access import accounts
from gpaisec.api.problems import AuthenticationError, CsrfError
from gpaisec.api.settings import Settings
from gpaisec.errors import DeniedError
from gpaisec.workspace import Workspace

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "Admin",
    "ApiContext",
    "Auditor",
    "Caller",
    "Context",
    "CurrentCaller",
    "Reviewer",
    "SessionCaller",
    "Staff",
    "Ident",
    "QueryText",
    "acting_as",
    "csrf_token",
    "current_caller",
    "require_roles",
    "run_db",
    "token_caller",
]

T = TypeVar("T")

CSRF_HEADER = "X-CSRF-Token"
# Ids in paths (gr_..., fnd_..., rev_...): letters, digits and a few marks.
Ident = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Free-text filters: no control characters.
QueryText = Annotated[str | None, Query(max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$")]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ApiContext:
    """What every request shares: the workspace and the settings."""

    workspace: Workspace
    settings: Settings

    @property
    def session_cookie(self) -> str:
        return "__Host-gpaisec-session" if self.settings.secure_cookies else "gpaisec-session"

    @property
    def csrf_cookie(self) -> str:
        return "__Host-gpaisec-csrf" if self.settings.secure_cookies else "gpaisec-csrf"


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of one request, and the workspace acting as it."""

    username: str
    kind: str  # human | service
    roles: frozenset[str]
    scopes: frozenset[str]
    via: str  # session | token
    workspace: Workspace
    session_token: str | None = None
    session_id: str | None = None
    person: str | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.username}" if self.kind == "human" else f"service:{self.username}"


def acting_as(ws: Workspace, actor: str) -> Workspace:
    """The same workspace (engine, sessions, audit signer) with another actor for the audit log."""
    clone = copy.copy(ws)
    clone.actor = actor
    return clone


def csrf_token(secret: bytes, session_token: str) -> str:
    return hmac.new(secret, b"csrf\x00" + session_token.encode(), hashlib.sha256).hexdigest()


async def get_context(request: Request) -> ApiContext:
    ctx = request.app.state.gpaisec
    assert isinstance(ctx, ApiContext)
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


async def run_db(ws: Workspace, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a short store read from an async endpoint.

    On SQLite (a local file: a few indexed lookups take tens of microseconds) on the event loop's own
    thread, which costs less than handing it to a thread and back; on PostgreSQL (network round
    trips) in the thread pool, so that a slow database never stalls the loop. Writes (which may wait
    for the write lock) always go to the thread pool: use ``run_in_threadpool`` for them.
    """
    if ws.engine.dialect.name == "sqlite":
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def current_caller(request: Request, ctx: Context) -> Caller:
    ws = ctx.workspace
    # Step 1: a bearer service token.
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <service token>'")
        return await token_caller(ws, credential.strip())
    # Step 2: a session cookie.
    session_token = request.cookies.get(ctx.session_cookie)
    if not session_token:
        raise AuthenticationError(
            "not signed in", hint="POST /api/v1/session, or send a service token as 'Authorization: Bearer'"
        )
    try:
        # It may record the session's last use (a write, once a minute): in the thread pool on every backend.
        sess = await run_in_threadpool(accounts.resolve_session, ws, session_token)
    except DeniedError as exc:
        raise AuthenticationError(exc.message, hint="sign in again: POST /api/v1/session") from None
    # Step 3: CSRF for unsafe methods.
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        expected = csrf_token(ctx.settings.session_secret, session_token)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise CsrfError(
                f"this request needs the {CSRF_HEADER} header",
                hint="send the csrf_token from the sign-in answer (also in the csrf cookie)",
            )
    account = sess.account
    caller = Caller(
        username=account.username,
        kind=account.kind,
        roles=frozenset(account.roles),
        scopes=frozenset(),
        via="session",
        workspace=ws,
        session_token=session_token,
        session_id=sess.id,
        person=account.person.name if account.person else None,
    )
    return _with_workspace(caller)


async def token_caller(ws: Workspace, credential: str) -> Caller:
    """The caller a bearer token speaks for (step 1); AuthenticationError (401) if none."""
    try:
        holder = await run_db(ws, accounts.authenticate_token, ws, credential)
    except DeniedError as exc:
        raise AuthenticationError(exc.message, hint=exc.hint) from None
    caller = Caller(
        username=holder.username,
        kind=holder.kind,
        roles=frozenset(),
        scopes=frozenset(holder.scopes),
        via="token",
        workspace=ws,
    )
    return _with_workspace(caller)


def _with_workspace(caller: Caller) -> Caller:
    return dataclasses.replace(caller, workspace=acting_as(caller.workspace, caller.actor))


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require_roles(*roles: str) -> object:
    """A dependency: the caller must hold one of ``roles`` (service tokens hold none)."""
    wanted = frozenset(roles)

    async def check(caller: CurrentCaller) -> Caller:  # async: no thread for a set test
        # Step 4: roles.
        if not caller.roles & wanted:
            raise DeniedError(
                f"{caller.username} does not hold the role {' or '.join(sorted(wanted))}",
                hint="an administrator assigns roles",
            )
        return caller

    return Depends(check)


async def _session_only(caller: CurrentCaller) -> Caller:
    if caller.via != "session":
        raise DeniedError(
            "this needs a person's signed-in session, not a service token",
            hint="sign in: POST /api/v1/session",
        )
    return caller


SessionCaller = Annotated[Caller, Depends(_session_only)]
Admin = Annotated[Caller, require_roles("admin")]
Reviewer = Annotated[Caller, require_roles("reviewer", "admin")]
# There is no separate auditor role yet: reviewers (who run the authorisation reviews) and admins read
# the audit log.
Auditor = Annotated[Caller, require_roles("reviewer", "admin")]
Staff = Annotated[Caller, require_roles("admin", "approver", "reviewer")]
