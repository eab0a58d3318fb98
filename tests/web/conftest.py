"""The dashboard over the API's test world (tests/api/conftest.py): alice, bob, carol, erin, ``pep``."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gpaisec.access import mfa
from gpaisec.store.base import utcnow
from tests import devices
from tests.api.conftest import (  # noqa: F401  (fixtures used by the tests here)
    PASSWORD,
    World,
    app,
    browser,
    client,
    fast_hashes,
    world,
)


def proof_form(http: TestClient, username: str, device: str) -> dict[str, str]:
    """The hidden device_* fields of /login, as device.js fills them."""
    proof = devices.proof_json(http, username, device)
    return {
        "device_fingerprint": proof["fingerprint"],
        "device_challenge_id": proof["challenge_id"],
        "device_signature": proof["signature"],
    }


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def page_sign_in(http: TestClient, people: World, username: str) -> str:
    """Sign in through the /login form; returns the CSRF token the pages' forms carry."""
    r = http.get("/login")
    assert r.status_code == 200
    code = mfa.totp_code(people.secrets[username], utcnow())
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
    assert r.headers["location"] == "/"
    return form_csrf(http.get("/reports").text)
