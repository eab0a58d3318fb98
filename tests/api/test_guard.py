"""The guard middleware's security headers replace whatever the app set, once each."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from gpaisec.api.middleware import JSON_CSP, GuardMiddleware


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"cache-control", b"max-age=60"),
        (b"X-Frame-Options", b"SAMEORIGIN"),
        (b"x-frame-options", b"ALLOWALL"),
        (b"x-app", b"kept"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(scheme: str, guard: GuardMiddleware | None = None) -> list[tuple[bytes, bytes]]:
    guard = guard or GuardMiddleware(_app, max_request_bytes=1000, tls=False, docs_paths=("/docs",))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "scheme": scheme, "headers": []}
    asyncio.run(guard(scope, receive, send))
    return list(sent[0]["headers"])


def test_the_guard_replaces_the_apps_own_security_headers_once_each() -> None:
    guard = GuardMiddleware(_app, max_request_bytes=1000, tls=False, docs_paths=("/docs",))
    for _ in range(2):  # the second answer comes from the guard's cache of encoded headers
        headers = _call("http", guard)
        names = [k.lower() for k, _ in headers]
        assert len(names) == len(set(names)), headers
        got = {k.lower(): v for k, v in headers}
        assert got[b"cache-control"] == b"no-store"
        assert got[b"x-frame-options"] == b"DENY"
        assert got[b"content-security-policy"] == JSON_CSP.encode()
        assert got[b"x-app"] == b"kept"
        assert got[b"content-type"] == b"text/plain"
        assert b"strict-transport-security" not in got


def test_https_answers_carry_hsts_and_plain_ones_do_not_after_either_was_cached() -> None:
    guard = GuardMiddleware(_app, max_request_bytes=1000, tls=False, docs_paths=("/docs",))
    for _ in range(2):
        assert b"strict-transport-security" in {k for k, _ in _call("https", guard)}
        assert b"strict-transport-security" not in {k for k, _ in _call("http", guard)}
