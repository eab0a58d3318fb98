"""The dashboard: server-rendered pages over the same service functions as the API.

:func:`mount` adds the pages (``/login``, ``/logout``, ``/``, ``/registry``, ``/audit``,
``/reports``) and their stylesheet (``/static/``) to the API's application. Pages use the API's
cookie session, so a person signed in on one is signed in on the other; every form carries a CSRF
token as a hidden field, checked on POST. Pages get their own Content-Security-Policy
(:data:`PAGE_CSP`); every other answer keeps the API's.
"""

from __future__ import annotations

from fastapi import FastAPI

from gpaisec.web._csp import PAGE_CSP, install_page_csp
from gpaisec.web._pages import PAGE_ROUTES, add_pages

__all__ = ["PAGE_CSP", "PAGE_ROUTES", "mount"]


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app`` (the API's application)."""
    add_pages(app)
    install_page_csp(app)
