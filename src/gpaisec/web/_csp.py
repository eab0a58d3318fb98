"""The pages' Content-Security-Policy, without loosening the API's.

The API's :class:`~gpaisec.api.middleware.GuardMiddleware` sets the strict JSON policy on every answer
(``default-src 'none'; form-action 'none'``), which would block the dashboard's stylesheet and forms.
The guard runs outside every route, so a page cannot set its own header: this wraps the finished
middleware stack and, for the dashboard's own paths only, replaces that one header with
:data:`PAGE_CSP`. Every other header the guard sets stays, and every other path keeps the JSON policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_CSP", "install_page_csp", "is_page_path"]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
STATIC_PREFIX = "/static/"


def _pattern(paths: frozenset[str]) -> re.Pattern[str]:
    """One regex for the route paths; a ``{name}`` segment matches one non-empty path segment."""
    parts = [re.sub(r"\\\{[A-Za-z_][A-Za-z0-9_]*\\\}", "[^/]+", re.escape(p)) for p in sorted(paths)]
    return re.compile("(?:" + "|".join(parts) + ")")


def is_page_path(path: str, pages: frozenset[str]) -> bool:
    """True for the dashboard's routes and stylesheet; the API, its docs and unknown paths are not."""
    if path.startswith(STATIC_PREFIX):
        return True
    return _pattern(pages).fullmatch(path) is not None


class PageCsp:
    def __init__(self, app: ASGIApp, pages: frozenset[str]) -> None:
        self.app = app
        self.pages = pages
        self.pattern = _pattern(pages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path.startswith(STATIC_PREFIX) or self.pattern.fullmatch(path)):
            await self.app(scope, receive, send)
            return

        async def send_page(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = PAGE_CSP
            await send(message)

        await self.app(scope, receive, send_page)


def install_page_csp(app: FastAPI, pages: frozenset[str]) -> None:
    """Wrap ``app``'s middleware stack (built on its first request) so that pages get :data:`PAGE_CSP`."""
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_page_csp() -> ASGIApp:
        return PageCsp(build(), pages)

    app.build_middleware_stack = build_with_page_csp  # type: ignore[method-assign]
