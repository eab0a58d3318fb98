"""``POST /api/v1/access/decide`` from software, answered without the framework's request machinery.

A policy enforcement point asks for a decision before every read of weights, so this one operation
carries most of the API's traffic. Through FastAPI (routing over every route, dependency solving,
response-model validation and serialisation, five middleware layers) a decision cost about 0.5 ms
of the interpreter's time beyond the decision itself. This ASGI layer sits just inside
:class:`~gpaisec.api.middleware.GuardMiddleware` (so the security headers, the body size limit and
the last-resort 500 apply as to everything else) and answers exactly one kind of request:

    POST /api/v1/access/decide, ``Authorization: Bearer …``, ``Content-Type: application/json``,
    a body that is a valid ``DecideBody``, from a token that authenticates and may ask.

It runs the same code as the FastAPI route (:func:`gpaisec.api.deps.token_caller`, then
:func:`gpaisec.api.routes.access.decide_as`) and answers with the same JSON. Anything else, and
every refusal before the decision is made (a bad token, an invalid body, an unknown principal, a
person asking about someone else), goes on to the FastAPI route with the body replayed, so every
error keeps its one canonical problem+json shape; nothing has been changed or recorded by then. An
error after the decision (its audit event could not be committed) is answered here, 503, and never
retried: the event may have been committed.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpaisec.api.deps import ApiContext, token_caller
from gpaisec.api.middleware import RequestTooLarge
from gpaisec.api.problems import gpaisec_problem, problem_response
from gpaisec.api.routes.access import client_ip, decide_as
from gpaisec.api.schemas import DecideBody
from gpaisec.audit.group import AuditWriteError
from gpaisec.errors import GpaisecError

__all__ = ["DecisionFastPath"]

log = logging.getLogger("gpaisec.api")


class DecisionFastPath:
    def __init__(self, app: ASGIApp, *, context: ApiContext, path: str) -> None:
        self.app = app
        self.context = context
        self.path = path
        self.served = 0  # decisions answered here (the rest went on to the route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        credential = _bearer(scope)
        if credential is None:
            await self.app(scope, receive, send)
            return
        try:
            body, messages = await _read_body(receive)
        except RequestTooLarge as exc:  # the guard's limit, answered as the route's 413 is
            await problem_response(413, "request too large", str(exc.detail))(scope, receive, send)
            return
        if body is None:  # the client went away: the route meets the same disconnect
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            parsed = DecideBody.model_validate_json(body)
            caller = await token_caller(self.context.workspace, credential)
        except (ValidationError, GpaisecError):
            await self.app(scope, _replay(messages, receive), send)
            return
        peer = scope.get("client")
        try:
            answer = await decide_as(caller, parsed, client_ip(peer[0] if peer else ""))
        except AuditWriteError as exc:
            log.error("POST %s: %s", self.path, exc.diagnostics())
            await gpaisec_problem(exc)(scope, _replay(messages, receive), send)
            return
        except GpaisecError:  # refused before anything was recorded: the route says why
            await self.app(scope, _replay(messages, receive), send)
            return
        self.served += 1
        payload = answer.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _bearer(scope: Scope) -> str | None:
    """The bearer credential, if the request has exactly the shape this path serves."""
    auth: bytes | None = None
    json_body = content_type_seen = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            if auth is not None:
                return None  # two Authorization headers: let the route refuse it
            auth = value
        elif name == b"content-type":
            if content_type_seen:
                return None  # two Content-Type headers: the route reads the first; let it decide
            content_type_seen = True
            json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
    if auth is None or not json_body:
        return None
    scheme, _, credential = auth.partition(b" ")
    if scheme.lower() != b"bearer" or not credential.strip():
        return None
    try:
        return credential.strip().decode("ascii")
    except UnicodeDecodeError:
        return None


async def _read_body(receive: Receive) -> tuple[bytes | None, list[Message]]:
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
