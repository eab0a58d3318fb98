"""The dashboard: server-rendered pages over the same service functions as the API.

:func:`mount` adds the pages and their static files (``/static/``) to the API's application. Pages
use the API's cookie session, so a person signed in on one is signed in on the other; every form
carries a CSRF token as a hidden field, checked on POST. Pages get their own Content-Security-Policy
(:data:`PAGE_CSP`); every other answer keeps the API's.

Each page module lists its routes as ``ROUTES``; :data:`PAGE_ROUTES` gathers every (path, methods),
which the signed-out walk in the tests covers.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from gpaisec.web import _access_pages, _measures, _pages, _signin
from gpaisec.web._common import Route
from gpaisec.web._csp import PAGE_CSP, install_page_csp

__all__ = ["PAGE_CSP", "PAGE_ROUTES", "mount"]

_ALL: tuple[Route, ...] = (*_signin.ROUTES, *_pages.ROUTES, *_measures.ROUTES, *_access_pages.ROUTES)
PAGE_ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = tuple((path, methods) for path, methods, _ in _ALL)


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app`` (the API's application)."""
    for path, methods, endpoint in _ALL:
        app.add_route(path, endpoint, methods=list(methods), include_in_schema=False)
    app.mount("/static", StaticFiles(packages=[("gpaisec.web", "static")]), name="static")
    install_page_csp(app, frozenset(path for path, _ in PAGE_ROUTES))
