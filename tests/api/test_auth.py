"""Signing in and out, cookies, CSRF, bearer tokens, throttling and what failures reveal."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.access import mfa
from gpaisec.api import Settings, create_app
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace
from tests.api.conftest import PASSWORD, World, browser, sign_in


def test_sign_in_with_totp_gives_a_cookie_session(client: TestClient, world: World) -> None:
    code = mfa.totp_code(world.secrets["alice"], utcnow())
    r = client.post(
        "/api/v1/session",
        json={"username": "alice", "password": PASSWORD, "totp_code": code, "device": "laptop-alice"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["username"] == "alice"
    assert body["mfa_at"]
    assert body["csrf_token"]
    assert "token" not in body
    assert PASSWORD not in r.text
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("gpaisec-session="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session.replace("Strict", "strict")
    csrf = next(c for c in cookies if c.startswith("gpaisec-csrf="))
    assert "HttpOnly" not in csrf
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json() | {"session_id": None} == {
        "username": "alice",
        "kind": "human",
        "person": "Person alice",
        "roles": ["weights_user"],
        "scopes": [],
        "via": "session",
        "session_id": None,
    }


def test_secure_cookies_outside_development(workspace: Workspace, world: World) -> None:
    settings = Settings.load(workspace.keys_dir, environ={})
    assert settings.secure_cookies
    c = TestClient(create_app(workspace, settings), base_url="https://testserver")
    code = mfa.totp_code(world.secrets["bob"], utcnow())
    r = c.post(
        "/api/v1/session",
        json={"username": "bob", "password": PASSWORD, "totp_code": code, "device": "laptop-bob"},
    )
    assert r.status_code == 201, r.text
    cookies = r.headers.get_list("set-cookie")
    session = next(x for x in cookies if x.startswith("__Host-gpaisec-session="))
    assert "Secure" in session
    assert "HttpOnly" in session
    assert "Path=/" in session
    assert "strict" in session.lower()
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_unsafe_methods_need_the_csrf_header(client: TestClient, world: World) -> None:
    csrf = sign_in(client, world, "alice")
    body = {"scope": "atlas:v3", "action": "read", "duration_seconds": 3600, "reason": "evaluate the v3 run"}
    r = client.post("/api/v1/access/requests", json=body)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "CSRF token missing or wrong"
    r = client.post("/api/v1/access/requests", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/api/v1/access/requests", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "requested"


def test_a_csrf_token_is_bound_to_its_session(app: FastAPI, world: World) -> None:
    a, b = browser(app), browser(app)
    csrf_alice = sign_in(a, world, "alice")
    sign_in(b, world, "bob")
    r = b.delete("/api/v1/session", headers={"X-CSRF-Token": csrf_alice})
    assert r.status_code == 403


def test_bearer_service_tokens_need_no_csrf(client: TestClient, world: World) -> None:
    auth = {"Authorization": f"Bearer {world.token}"}
    me = client.get("/api/v1/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["kind"] == "service"
    assert me.json()["scopes"] == ["weights:read"]
    r = client.post(
        "/api/v1/access/decide",
        json={"principal": "pep", "action": "read", "resource": "atlas:v3", "device": "gateway-1"},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "deny"  # no grant yet
    for bad in ("Bearer gpst_nope", "Basic Zm9vOmJhcg==", "Bearer "):
        r = client.get("/api/v1/me", headers={"Authorization": bad})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_sign_out_ends_the_session(client: TestClient, world: World) -> None:
    csrf = sign_in(client, world, "alice")
    r = client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert any(c.startswith("gpaisec-session=") for c in r.headers.get_list("set-cookie"))
    client.cookies.clear()
    assert client.get("/api/v1/me").status_code == 401


def test_a_signed_out_token_is_refused_even_if_replayed(client: TestClient, world: World) -> None:
    csrf = sign_in(client, world, "alice")
    stolen = dict(client.cookies)
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.clear()
    client.cookies.update(stolen)
    assert client.get("/api/v1/me").status_code == 401


def _attempt(client: TestClient, username: str, password: str, code: str | None = None) -> tuple[int, str]:
    r = client.post(
        "/api/v1/session",
        json={"username": username, "password": password, "totp_code": code, "device": f"laptop-{username}"},
    )
    return r.status_code, r.text


def test_failures_do_not_reveal_whether_the_user_exists(client: TestClient, world: World) -> None:
    wrong_password = _attempt(client, "alice", "not the password at all")
    unknown_user = _attempt(client, "mallory", "not the password at all")
    wrong_code = _attempt(client, "bob", PASSWORD, "000000")
    no_code = _attempt(client, "carol", PASSWORD)
    assert wrong_password[0] == 401
    assert wrong_password == unknown_user == wrong_code == no_code


def test_brute_force_sign_in_is_throttled(client: TestClient, world: World) -> None:
    statuses = [_attempt(client, "alice", f"guess number {i}")[0] for i in range(8)]
    assert statuses[:5] == [401] * 5
    assert 429 in statuses[5:]
    r = client.post(
        "/api/v1/session",
        json={"username": "alice", "password": PASSWORD, "totp_code": None, "device": "laptop-alice"},
    )
    # Even the right password waits: the throttle is checked before any password work.
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["retry_after"] == int(r.headers["retry-after"])
    # An unknown name is throttled the same way after the same number of failures.
    unknown = [_attempt(client, "mallory", f"guess number {i}")[0] for i in range(8)]
    assert unknown[:5] == [401] * 5
    assert 429 in unknown[5:]


def test_password_spraying_from_one_source_is_throttled(client: TestClient, world: World) -> None:
    # A different name each time: only the per-source counter can stop it (20 free failures).
    statuses = [_attempt(client, f"user{i}", "Winter2026!")[0] for i in range(23)]
    assert statuses[:20] == [401] * 20
    assert 429 in statuses[20:]
