"""One pure-ASGI middleware around every request: body size limit, security headers, last-resort 500.

It sits inside Starlette's outermost error middleware, so even the answer to a bug carries the
security headers, and a bug's answer says nothing about internals.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpaisec.api.problems import PROBLEM_JSON

__all__ = ["DOCS_CSP", "JSON_CSP", "GuardMiddleware", "RequestTooLarge"]

log = logging.getLogger("gpaisec.api")

JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The interactive documentation page loads Swagger UI from its CDN and runs one inline script.
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"


class RequestTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_request_bytes: int, tls: bool, docs_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.tls = tls
        self.docs_paths = docs_paths
        self._cache: dict[tuple[bool, bool], tuple[list[tuple[bytes, bytes]], frozenset[bytes]]] = {}

    def _headers(self, scope: Scope) -> list[tuple[str, str]]:
        csp = DOCS_CSP if scope.get("path") in self.docs_paths else JSON_CSP
        out = [
            ("Content-Security-Policy", csp),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
            # Every answer may hold data of a signed-in person: never store it anywhere.
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        if self.tls or scope.get("scheme") == "https":
            out.append(("Strict-Transport-Security", HSTS))
        return out

    def _encoded(self, scope: Scope) -> tuple[list[tuple[bytes, bytes]], frozenset[bytes]]:
        """:meth:`_headers` as ASGI header pairs and their names, built once per kind of answer."""
        key = (scope.get("path") in self.docs_paths, scope.get("scheme") == "https")
        found = self._cache.get(key)
        if found is None:
            pairs = [(k.lower().encode(), v.encode()) for k, v in self._headers(scope)]
            found = self._cache[key] = (pairs, frozenset(k for k, _ in pairs))
        return list(found[0]), found[1]

    async def _problem(self, send: Send, scope: Scope, status: int, title: str, detail: str) -> None:
        problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        body = json.dumps(problem).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in self._headers(scope)]
        headers += [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_request_bytes
        too_large = f"the request body is larger than {limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._problem(send, scope, 413, "request too large", too_large)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        started = False
        extra, names = self._encoded(scope)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Ours replace any the app set (as MutableHeaders' __setitem__ would, in one pass).
                message["headers"] = [
                    h for h in message.get("headers", ()) if h[0].lower() not in names
                ] + extra
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await self._problem(send, scope, 500, "internal error", "the server failed to handle the request")
