"""Signing in and out, cookies, CSRF, bearer tokens, throttling and what failures reveal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpaisec.access import accounts, mfa
from gpaisec.access.models import Session
from gpaisec.api import Settings, create_app
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace
from tests import devices
from tests.access.test_webauthn import RP_ID, UP, SoftAuthenticator
from tests.api.conftest import PASSWORD, World, browser, sign_in


def test_sign_in_with_totp_gives_a_cookie_session(client: TestClient, world: World) -> None:
    code = mfa.totp_code(world.secrets["alice"], utcnow())
    r = client.post(
        "/api/v1/session",
        json={
            "username": "alice",
            "password": PASSWORD,
            "totp_code": code,
            "device": "laptop-alice",
            "device_proof": devices.proof_json(client, "alice", "laptop-alice"),
        },
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
        json={
            "username": "bob",
            "password": PASSWORD,
            "totp_code": code,
            "device": "laptop-bob",
            "device_proof": devices.proof_json(c, "bob", "laptop-bob"),
        },
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


def _attempt(
    client: TestClient, username: str, password: str, code: str | None = None, device: str | None = None
) -> tuple[int, str]:
    device = (
        device or f"laptop-{username}"
    )  # alice's is enrolled: her tries reach the password; mallory's is not
    r = client.post(
        "/api/v1/session",
        json={
            "username": username,
            "password": password,
            "totp_code": code,
            "device": device,
            "device_proof": devices.proof_json(client, username, device),
        },
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
        json={
            "username": "alice",
            "password": PASSWORD,
            "totp_code": None,
            "device": "laptop-alice",
            "device_proof": devices.proof_json(client, "alice", "laptop-alice"),
        },
    )
    # Even the right password waits: the throttle is checked before any password work.
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["retry_after"] == int(r.headers["retry-after"])
    # An unknown name, tried by the holder of an enrolled key (only such tries reach the password), is
    # throttled the same way after the same number of failures.
    unknown = [_attempt(client, "mallory", f"guess number {i}", device="laptop-alice")[0] for i in range(8)]
    assert unknown[:5] == [401] * 5
    assert 429 in unknown[5:]


def test_bad_device_proofs_are_throttled_by_source_and_lock_nobody_out(
    client: TestClient, world: World
) -> None:
    # Without an enrolled key (laptop-mallory is not one) every try fails at the proof, for a known
    # name as for an unknown one: only the source's counter moves (20 free failures), so strangers
    # cannot lock alice out, and the answers say nothing about which names exist.
    statuses = [_attempt(client, name, "x", device="laptop-mallory")[0] for name in ("alice", "mallory") * 11]
    assert statuses[:20] == [401] * 20
    assert 429 in statuses[20:]
    # (That alice herself, from another address, is then not held back: tests/access/test_device_keys.py.)


def test_password_spraying_from_one_source_is_throttled(client: TestClient, world: World) -> None:
    # A different name each time: only the per-source counter can stop it (20 free failures).
    statuses = [_attempt(client, f"user{i}", "Winter2026!")[0] for i in range(23)]
    assert statuses[:20] == [401] * 20
    assert 429 in statuses[20:]


# --- passkeys over the API (the software authenticator of tests/access/test_webauthn.py) ---------------

SITE = "https://gpaisec.example"  # the request's own origin is the relying party's


@pytest.fixture(autouse=True)
def configured_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relying party is configured (off loopback the Host header cannot say which origin to expect)."""
    monkeypatch.setenv("GPAISEC_WEBAUTHN_ORIGIN", SITE)


def site(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=SITE, raise_server_exceptions=False)


def sign_in_totp(http: TestClient, world: World, username: str) -> str:
    code = mfa.totp_code(world.secrets[username], utcnow())
    r = http.post(
        "/api/v1/session",
        json={
            "username": username,
            "password": PASSWORD,
            "totp_code": code,
            "device": f"laptop-{username}",
            "device_proof": devices.proof_json(http, username, f"laptop-{username}"),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["csrf_token"])


def add_passkey(http: TestClient, csrf: str) -> tuple[SoftAuthenticator, str]:
    device = SoftAuthenticator()
    r = http.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    options = r.json()["public_key"]
    assert options["rp"]["id"] == RP_ID
    assert options["authenticatorSelection"]["userVerification"] == "required"
    created = json.loads(device.create(json.dumps(options)))
    r = http.post("/api/v1/me/passkeys", json={"credential": created}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return device, str(r.json()["id"])


def begin(http: TestClient, username: str, password: str = PASSWORD) -> Any:
    r = http.post("/api/v1/session/webauthn", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r


def finish(http: TestClient, username: str, credential: str, password: str = PASSWORD) -> Any:
    return http.post(
        "/api/v1/session",
        json={
            "username": username,
            "password": password,
            "webauthn": json.loads(credential),
            "device": f"laptop-{username}",
            "device_proof": devices.proof_json(http, username, f"laptop-{username}"),
        },
    )


def test_register_a_passkey_then_sign_in_with_it(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = sign_in_totp(http, world, "alice")
    device, passkey = add_passkey(http, csrf)
    listed = http.get("/api/v1/me/passkeys").json()
    assert [p["id"] for p in listed] == [passkey]
    assert http.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    http.cookies.clear()

    options = begin(http, "alice").json()["public_key"]
    assert options["allowCredentials"] == []
    assert options["rpId"] == RP_ID
    r = finish(http, "alice", device.get(json.dumps(options)))
    assert r.status_code == 201, r.text
    assert r.json()["mfa_at"]
    me = http.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert http.get("/api/v1/me/passkeys").json()[0]["last_used_at"]


def test_passkey_sign_in_failures_all_look_the_same(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = sign_in_totp(http, world, "alice")
    device, _ = add_passkey(http, csrf)
    http.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    http.cookies.clear()
    # Beginning: the same status and shape for an unknown user, a wrong password and the right one.
    shapes = []
    for user, password in (("mallory", PASSWORD), ("alice", "not the password at all"), ("alice", PASSWORD)):
        body = begin(http, user, password).json()["public_key"]
        shapes.append(sorted((k, v if k != "challenge" else len(v)) for k, v in body.items()))
    assert shapes[0] == shapes[1] == shapes[2]
    # Finishing: one answer for each failure.
    good = device.get(json.dumps(begin(http, "alice").json()["public_key"]))
    answers = set()
    failures = [
        finish(http, "mallory", good),
        # A wrong password leaves the pending challenge alone (nobody can burn another's sign-in)...
        finish(http, "alice", good, password="not the password at all"),
    ]
    signed_in = finish(http, "alice", good)
    assert signed_in.status_code == 201, signed_in.text
    http.delete("/api/v1/session", headers={"X-CSRF-Token": signed_in.json()["csrf_token"]})
    http.cookies.clear()
    for r in (
        *failures,
        finish(http, "alice", good),  # ...but a challenge is good for one sign-in only
        finish(http, "alice", device.get(json.dumps(begin(http, "alice").json()["public_key"]), flags=UP)),
        finish(http, "alice", json.dumps({"id": "x", "rawId": "x", "type": "public-key", "response": {}})),
    ):
        answers.add((r.status_code, r.text, r.headers["content-type"]))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == 401
    assert http.get("/api/v1/me").status_code == 401


def test_both_factors_at_once_are_refused(client: TestClient, world: World) -> None:
    r = client.post(
        "/api/v1/session",
        json={
            "username": "alice",
            "password": PASSWORD,
            "totp_code": "123456",
            "webauthn": {"id": "x"},
            "device": "laptop-alice",
        },
    )
    assert r.status_code == 422
    assert PASSWORD not in r.text


def test_passkey_sign_in_is_throttled(app: FastAPI, world: World) -> None:
    http = site(app)
    statuses = [
        http.post("/api/v1/session/webauthn", json={"username": "bob", "password": f"guess {i}"}).status_code
        for i in range(12)
    ]
    # Wrong passwords count in the sign-in's own throttle (5 free tries), as they would at POST /session.
    assert statuses[:5] == [200] * 5
    assert set(statuses[5:]) == {429}
    assert (
        http.post("/api/v1/session/webauthn", json={"username": "bob", "password": PASSWORD}).status_code
        == 429
    )
    # Failed finishes count in the sign-in throttle, as failed codes do.
    fails = [finish(http, "carol", "{}", password=f"guess {i}").status_code for i in range(7)]
    assert fails[:5] == [401] * 5
    assert 429 in fails[5:]


def test_step_up_with_a_passkey(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = sign_in_totp(http, world, "bob")
    device, _ = add_passkey(http, csrf)
    before = http.get("/api/v1/me/sessions").json()[0]["mfa_at"]
    r = http.post("/api/v1/session/mfa/webauthn", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    options = r.json()["public_key"]
    assert len(options["allowCredentials"]) == 1
    response = json.loads(device.get(json.dumps(options)))
    r = http.post("/api/v1/session/mfa", json={"webauthn": response}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["mfa_at"] > before
    # Replayed: refused, as a problem.
    r = http.post("/api/v1/session/mfa", json={"webauthn": response}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert http.post("/api/v1/session/mfa", json={}, headers={"X-CSRF-Token": csrf}).status_code == 422


def make_mfa_stale(world: World, username: str) -> None:
    with world.ws.transaction() as s:
        account = accounts.get_account(s, username)
        for row in s.scalars(select(Session).where(Session.account_id == account.id)):
            row.mfa_at = utcnow() - dt.timedelta(minutes=30)


def test_passkeys_need_a_fresh_second_factor_and_the_last_factor_stays(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = sign_in_totp(http, world, "carol")
    _, first = add_passkey(http, csrf)
    _, second = add_passkey(http, csrf)
    make_mfa_stale(world, "carol")
    r = http.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert "second factor confirmed in the last 5 minutes" in r.json()["detail"]
    assert http.delete(f"/api/v1/me/passkeys/{first}", headers={"X-CSRF-Token": csrf}).status_code == 403
    code = mfa.totp_code(world.secrets["carol"], utcnow() + dt.timedelta(seconds=30))
    r = http.post("/api/v1/session/mfa", json={"code": code}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert http.delete(f"/api/v1/me/passkeys/{first}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert http.delete(f"/api/v1/me/passkeys/{first}", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert [p["id"] for p in http.get("/api/v1/me/passkeys").json()] == [second]
    # Someone else's session cannot see or remove carol's passkeys.
    other = site(app)
    csrf_erin = sign_in_totp(other, world, "erin")
    assert other.get("/api/v1/me/passkeys").json() == []
    r = other.delete(f"/api/v1/me/passkeys/{second}", headers={"X-CSRF-Token": csrf_erin})
    assert r.status_code == 404
    # Without the CSRF header, nothing happens.
    assert http.delete(f"/api/v1/me/passkeys/{second}").status_code == 403
    assert http.post("/api/v1/me/passkeys/options").status_code == 403


def test_sign_out_everywhere(app: FastAPI, world: World) -> None:
    a, b = browser(app), browser(app)
    csrf_a = sign_in(a, world, "alice")
    code = mfa.totp_code(world.secrets["alice"], utcnow() + dt.timedelta(seconds=30))  # not the same code
    r = b.post(
        "/api/v1/session",
        json={
            "username": "alice",
            "password": PASSWORD,
            "totp_code": code,
            "device": "laptop-alice",
            "device_proof": devices.proof_json(b, "alice", "laptop-alice"),
        },
    )
    assert r.status_code == 201  # the same device, a second browser
    bob = browser(app)
    sign_in(bob, world, "bob")
    sessions = a.get("/api/v1/me/sessions").json()
    assert len(sessions) == 2
    assert sum(x["current"] for x in sessions) == 1
    assert {x["device"] for x in sessions} == {"laptop-alice"}
    r = a.delete("/api/v1/session?everywhere=true", headers={"X-CSRF-Token": csrf_a})
    assert r.status_code == 204
    assert b.get("/api/v1/me").status_code == 401
    a.cookies.clear()
    assert a.get("/api/v1/me").status_code == 401
    assert bob.get("/api/v1/me").status_code == 200


def test_new_protected_endpoints_refuse_strangers_and_service_tokens(
    client: TestClient, world: World
) -> None:
    auth = {"Authorization": f"Bearer {world.token}"}
    for method, path in (
        ("GET", "/api/v1/me/sessions"),
        ("GET", "/api/v1/me/passkeys"),
        ("POST", "/api/v1/me/passkeys/options"),
        ("POST", "/api/v1/me/passkeys"),
        ("DELETE", "/api/v1/me/passkeys/wan_1"),
        ("POST", "/api/v1/session/mfa/webauthn"),
        ("DELETE", "/api/v1/session?everywhere=true"),
    ):
        r = client.request(method, path, json={"credential": {}})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
        assert client.request(method, path, json={"credential": {}}, headers=auth).status_code == 403


def test_a_configured_origin_is_the_only_one(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPAISEC_WEBAUTHN_ORIGIN", "https://dashboard.gpaisec.example")
    monkeypatch.setenv("GPAISEC_WEBAUTHN_RP_ID", RP_ID)
    http = site(app)
    csrf = sign_in_totp(http, world, "alice")
    device = SoftAuthenticator()
    options = http.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf}).json()["public_key"]
    # The page said it was https://gpaisec.example, not the configured origin: refused.
    created = json.loads(device.create(json.dumps(options), origin=SITE))
    r = http.post("/api/v1/me/passkeys", json={"credential": created}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert "origin" in r.json()["detail"]
    options = http.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf}).json()["public_key"]
    created = json.loads(device.create(json.dumps(options), origin="https://dashboard.gpaisec.example"))
    r = http.post("/api/v1/me/passkeys", json={"credential": created}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text


def test_a_configured_plain_http_origin_is_no_relying_party(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPAISEC_WEBAUTHN_ORIGIN", "http://testserver")
    csrf = sign_in(client, world, "alice")
    r = client.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400  # passkeys need https (http only on localhost)
    assert "origin" in r.json()["detail"]


def test_without_a_configured_origin_the_host_header_is_not_trusted(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPAISEC_WEBAUTHN_ORIGIN")
    monkeypatch.setenv("GPAISEC_WEBAUTHN_RP_ID", "gpaisec.example")  # ignored without an origin
    csrf = sign_in(client, world, "alice")
    for host in ("gpaisec.example", "user-content.gpaisec.example", "localhost"):
        r = client.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf, "Host": host})
        assert r.status_code >= 400, host  # the test client is not a loopback connection
        assert "GPAISEC_WEBAUTHN_ORIGIN" in r.json()["detail"], r.json()
    r = client.post("/api/v1/session/webauthn", json={"username": "alice", "password": "x" * 20})
    assert r.status_code >= 400
    assert "GPAISEC_WEBAUTHN_ORIGIN" in r.json()["detail"]
