"""Sign-in with a passkey, my account page and "sign out everywhere", over the pages (SQLite and PostgreSQL).

The passkey is the software authenticator of tests/access/test_webauthn.py; the site is reached as
https://gpaisec.example, the relying party's origin.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.access import accounts, mfa
from gpaisec.store.base import utcnow
from gpaisec.web import PAGE_CSP
from tests.access.test_webauthn import SoftAuthenticator
from tests.api.test_auth import make_mfa_stale
from tests.web.conftest import PASSWORD, World, form_csrf, proof_form

SITE = "https://gpaisec.example"


@pytest.fixture(autouse=True)
def configured_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relying party is configured (off loopback the Host header cannot say which origin to expect)."""
    monkeypatch.setenv("GPAISEC_WEBAUTHN_ORIGIN", SITE)


def site(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=SITE, raise_server_exceptions=False)


def page_login(http: TestClient, world: World, username: str, *, later: int = 0) -> str:
    r = http.get("/login")
    code = mfa.totp_code(world.secrets[username], utcnow() + dt.timedelta(seconds=later))
    r = http.post(
        "/login",
        data={
            "csrf_token": form_csrf(r.text),
            "username": username,
            "password": PASSWORD,
            "totp_code": code,
            "device": f"laptop-{username}",
            **proof_form(http, username, f"laptop-{username}"),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return form_csrf(http.get("/account").text)


def error_of(html: str) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', html)
    assert found, "the page shows no error"
    return found.group(1)


def register_passkey(http: TestClient, csrf: str) -> SoftAuthenticator:
    device = SoftAuthenticator()
    options = http.post("/api/v1/me/passkeys/options", headers={"X-CSRF-Token": csrf}).json()["public_key"]
    created = json.loads(device.create(json.dumps(options)))
    r = http.post("/api/v1/me/passkeys", json={"credential": created}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return device


def test_the_login_page_offers_a_passkey_and_keeps_the_code_form(client: TestClient) -> None:
    r = client.get("/login")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == PAGE_CSP
    assert '<script src="/static/webauthn.js" defer></script>' in r.text
    assert 'href="/static/signin.css"' in r.text
    assert 'id="passkey-signin" hidden' in r.text  # shown by the script only where passkeys work
    assert 'name="totp_code"' in r.text
    assert 'name="webauthn"' in r.text
    assert "<script>" not in r.text  # nothing inline (CSP)
    assert "style=" not in r.text
    for asset, kind in (("/static/webauthn.js", "javascript"), ("/static/signin.css", "text/css")):
        got = client.get(asset)
        assert got.status_code == 200
        assert kind in got.headers["content-type"]


def test_sign_in_with_a_passkey_through_the_login_form(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = page_login(http, world, "alice")
    device = register_passkey(http, csrf)
    assert "never" in http.get("/account").text  # listed, not used yet
    http.post("/logout", data={"csrf_token": csrf})
    http.cookies.clear()

    login = http.get("/login")
    options = http.post("/api/v1/session/webauthn", json={"username": "alice", "password": PASSWORD})
    assertion = device.get(json.dumps(options.json()["public_key"]))
    form = {
        "csrf_token": form_csrf(login.text),
        "username": "alice",
        "password": PASSWORD,
        "totp_code": "",
        "webauthn": assertion,
        "device": "laptop-alice",
        **proof_form(http, "alice", "laptop-alice"),
    }
    r = http.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = http.get("/account")
    assert page.status_code == 200
    assert "never" not in page.text  # the passkey's last use is shown now

    # The same assertion again (a new browser): refused like any other failure.
    other = site(app)
    login = other.get("/login")
    fresh = {"csrf_token": form_csrf(login.text), **proof_form(other, "alice", "laptop-alice")}
    r = other.post("/login", data=form | fresh, follow_redirects=False)
    assert r.status_code == 401
    assert "sign-in failed: check the user name, password, second factor and this browser" in r.text
    wrong_code = other.post(
        "/login",
        data=form
        | {"webauthn": "", "totp_code": "000000", "csrf_token": form_csrf(login.text)}
        | proof_form(other, "alice", "laptop-alice"),
        follow_redirects=False,
    )
    assert wrong_code.status_code == 401
    assert error_of(wrong_code.text) == error_of(r.text)


def test_my_account_shows_sessions_and_passkeys_and_removes_one(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = page_login(http, world, "bob")
    page = http.get("/account")
    assert page.status_code == 200
    assert "No passkey yet" in page.text
    assert "laptop-bob" in page.text
    assert "this one" in page.text
    assert f'data-csrf="{csrf}"' in page.text
    register_passkey(http, csrf)
    register_passkey(http, csrf)
    ids = [p["id"] for p in http.get("/api/v1/me/passkeys").json()]
    page = http.get("/account")
    assert all(i in page.text for i in ids)
    # Without the form's token: refused, nothing removed.
    r = http.post(f"/account/passkeys/{ids[0]}/remove", data={}, follow_redirects=False)
    assert r.status_code == 403
    r = http.post(f"/account/passkeys/{ids[0]}/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "passkey removed" in http.get(r.headers["location"]).text
    assert [p["id"] for p in http.get("/api/v1/me/passkeys").json()] == ids[1:]
    # Someone else's passkey id: not found, and still there.
    carol = site(app)
    csrf_carol = page_login(carol, world, "carol")
    r = carol.post(f"/account/passkeys/{ids[1]}/remove", data={"csrf_token": csrf_carol})
    assert r.status_code == 404
    assert [p["id"] for p in http.get("/api/v1/me/passkeys").json()] == ids[1:]


def test_a_stale_second_factor_is_confirmed_on_the_page(app: FastAPI, world: World) -> None:
    http = site(app)
    csrf = page_login(http, world, "carol")
    register_passkey(http, csrf)
    (passkey,) = [p["id"] for p in http.get("/api/v1/me/passkeys").json()]
    make_mfa_stale(world, "carol")
    page = http.get("/account")
    assert "needs a second factor confirmed in the last 5 minutes" in page.text
    r = http.post(f"/account/passkeys/{passkey}/remove", data={"csrf_token": csrf})
    assert r.status_code == 403
    assert "second factor confirmed in the last 5 minutes" in r.text
    code = mfa.totp_code(world.secrets["carol"], utcnow() + dt.timedelta(seconds=30))
    assert http.post("/account/mfa", data={"csrf_token": csrf, "code": "000000"}).status_code == 403
    r = http.post("/account/mfa", data={"csrf_token": csrf, "code": code}, follow_redirects=False)
    assert r.status_code == 303
    assert "second factor confirmed" in http.get(r.headers["location"]).text
    r = http.post(f"/account/passkeys/{passkey}/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303


def test_sign_out_everywhere_from_the_page(app: FastAPI, world: World) -> None:
    here, there = site(app), site(app)
    csrf = page_login(here, world, "erin")
    page_login(there, world, "erin", later=30)
    assert here.get("/account").text.count("laptop-erin") == 2
    assert here.post("/account/logout-all", data={}).status_code == 403  # no token, no effect
    assert there.get("/account").status_code == 200
    r = here.post("/account/logout-all", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    for browser in (here, there):
        r = browser.get("/account", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login"
    assert accounts.list_sessions(world.ws, "erin") == []
