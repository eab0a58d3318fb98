"""Signed out, every page sends the browser to /login or answers 401/403, and shows no data."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.compliance import assessment
from gpaisec.web import PAGE_ROUTES
from gpaisec.weights import registry
from tests.web.conftest import World, browser

SECRET = "SECRET-MARKER-7f3a"


@pytest.mark.parametrize("cookie", [None, "forged"])
def test_every_page_route_refuses_a_stranger(app: FastAPI, world: World, cookie: str | None) -> None:
    ws = world.ws
    with ws.transaction() as s:
        registry.open_finding(
            s, ws, kind="unregistered_location", severity="high", summary=SECRET, dedupe_key=SECRET
        )
    report = assessment.assess(ws)
    stranger: TestClient = browser(app)
    if cookie:
        stranger.cookies.set("gpaisec-session", cookie)
    walked = 0
    for path, methods in PAGE_ROUTES:
        for method in methods:
            url = path + ("?format=json&run=" + report.run_id if path == "/reports/download" else "")
            form = {"reason": "stick wiped clean", "chapter": "all"}
            r = stranger.request(method, url, data=form, follow_redirects=False)
            if path == "/login":
                assert r.status_code == (200 if method == "GET" else 403), (method, path)
            elif path == "/device":  # the browser's own key, made before anyone signs in; no data
                assert r.status_code == 200, (method, path)
            elif method == "GET":
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"] == "/login"
            else:
                assert r.status_code in (401, 403), (method, path, r.status_code)
            for leak in (SECRET, report.run_id, "atlas", "A4.2"):
                assert leak not in r.text, (method, path, leak)
            walked += 1
    assert walked >= 10
    assert assessment.history(ws)[0]["run_id"] == report.run_id  # the POST /reports did not run one
    assert registry.list_findings(ws, open_only=True)


def test_the_walk_covers_every_page_route(app: FastAPI) -> None:
    from starlette.routing import Route

    mounted = {
        (r.path, m)
        for r in app.routes
        if type(r) is Route and not r.path.startswith("/api")
        for m in (r.methods or ())
        if m != "HEAD"
    }
    walked = {(p, m) for p, ms in PAGE_ROUTES for m in ms}
    assert mounted == walked
