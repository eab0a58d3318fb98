"""Every protected operation refuses anonymous callers; errors are problems; headers on every answer."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.api import PUBLIC_OPERATIONS
from gpaisec.api.app import operations
from tests.api.conftest import World, browser, sign_in

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def test_the_route_walk_sees_the_api(app: FastAPI) -> None:
    ops = operations(app)
    assert len(ops) >= 20
    assert ("POST", "/api/v1/access/decide") in ops
    assert set(PUBLIC_OPERATIONS) <= set(ops)


def test_no_protected_operation_answers_without_authentication(app: FastAPI, client: TestClient) -> None:
    forged = browser(app)
    forged.cookies.set("gpaisec-session", "forged")
    checked = 0
    for method, path in operations(app):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        r = client.request(method, url, json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        # A wrong cookie is no better than none.
        r = forged.request(method, url, json={})
        assert r.status_code == 401, (method, path)
        checked += 1
    assert checked >= 20


def test_openapi_names_the_security_of_every_protected_operation(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"serviceToken", "sessionCookie"}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if (method.upper(), path) in PUBLIC_OPERATIONS:
                assert "security" not in op
            else:
                assert op["security"], (method, path)


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/nothing-here", "/api/openapi.json", "/api/docs"])
def test_security_headers_on_every_answer(client: TestClient, path: str) -> None:
    r = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value, name
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "strict-transport-security" not in r.headers  # plain HTTP in tests


def test_problem_shapes(client: TestClient, world: World) -> None:
    # 401
    r = client.get("/api/v1/me")
    assert r.json() == {
        "type": "urn:gpaisec:problem:authentication-required",
        "title": "authentication required",
        "status": 401,
        "detail": r.json()["detail"],
    }
    # 422: where and what, never the input (it may be a password)
    r = client.post("/api/v1/session", json={"username": "alice", "password": "hunter2-secret", "extra": 1})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert p["title"] == "invalid request"
    assert p["status"] == 422
    assert {tuple(e["loc"]) for e in p["errors"]} >= {("body", "device"), ("body", "extra")}
    assert "hunter2-secret" not in r.text
    # 404 from a service, through the one handler
    csrf = sign_in(client, world, "erin")
    r = client.post(
        "/api/v1/findings/fnd_nope/resolve",
        json={"reason": "fixed it properly"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 404
    assert r.json()["type"] == "urn:gpaisec:problem:not-found"
    assert "fnd_nope" in r.json()["detail"]
    # 409 from a service
    r = client.post("/api/v1/access/reviews", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    r = client.post("/api/v1/access/reviews", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409
    assert r.json()["title"] == "conflict"
    # 404 for an unknown path is a problem too
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_a_bug_is_a_bare_500(app: FastAPI, client: TestClient) -> None:
    def broken() -> None:
        raise RuntimeError("database password is swordfish")

    app.add_api_route("/api/v1/broken", broken)
    r = client.get("/api/v1/broken")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "swordfish" not in r.text
    assert "RuntimeError" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


def test_request_size_is_limited(client: TestClient) -> None:
    big = "x" * (2 * 1024 * 1024)
    r = client.post("/api/v1/session", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"

    def chunks() -> object:
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/api/v1/session", content=chunks(), headers={"content-type": "application/json"})  # type: ignore[arg-type]
    assert r.status_code == 413
