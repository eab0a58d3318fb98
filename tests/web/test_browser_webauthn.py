"""Passkeys in a real browser: Debian's Chromium with a CDP virtual authenticator (ctap2, internal,
resident keys, user verification).

erin signs in with her one-time code, registers a passkey on /account, signs out, and signs in again
with the passkey alone as her second factor; then signs out everywhere. The site is
http://localhost:PORT (a secure context, and a valid RP ID; an IP address is not). Screenshots go
under the test's tmp dir (``screenshots/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.access import accounts, mfa, webauthn
from gpaisec.api import create_app
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace
from tests.api.conftest import PASSWORD, add_human, test_settings
from tests.live_server import live_server
from tests.web.browser_keys import enrol_browser
from tests.web.test_browser import CHROMIUM, LAUNCH_ARGS
from tests.web.test_browser import pytestmark as browser_marks

pytestmark = browser_marks


class Site:
    def __init__(self, ws: Workspace, secret: str, url: str) -> None:
        self.ws, self.secret, self.url = ws, secret, url


@pytest.fixture
def site(workspace: Workspace) -> Iterator[Site]:
    secret = add_human(workspace, "erin", ("admin", "reviewer"))
    # localhost, not 127.0.0.1: browsers refuse an IP address as a passkey's relying party.
    with live_server(create_app(workspace, test_settings()), host="localhost") as url:
        yield Site(workspace, secret, url)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # localhost must reach the server's IPv4 socket.
            args=[*LAUNCH_ARGS, "--host-resolver-rules=MAP localhost 127.0.0.1"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def virtual_authenticator(page: Any) -> tuple[Any, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    found = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(found["authenticatorId"])


def fill_login(page: Any, *, code: str | None) -> None:
    page.get_by_label("User name").fill("erin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Device (its name").fill("laptop-erin")
    if code is not None:
        page.get_by_label("One-time code").fill(code)


def test_register_a_passkey_and_sign_in_with_it(site: Site, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    cdp, authenticator = virtual_authenticator(page)

    # This browser's device key, enrolled for erin's laptop; then sign in with the one-time code.
    enrol_browser(page, site.url, site.ws, "laptop-erin")
    # The passkey button is there (the browser can do WebAuthn).
    page.goto(site.url + "/login")
    assert page.get_by_role("button", name="Sign in with a passkey").is_visible()
    fill_login(page, code=mfa.totp_code(site.secret, utcnow()))
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(site.url + "/")

    # Register a passkey on /account (the sign-in's second factor is fresh).
    page.goto(site.url + "/account")
    assert "No passkey yet" in page.inner_text("main")
    page.get_by_role("button", name="Register a passkey").click()
    page.wait_for_url(site.url + "/account?done=registered")
    assert "passkey registered" in page.inner_text("main")
    (passkey,) = webauthn.list_passkeys(site.ws, "erin")
    assert passkey.id in page.inner_text("main")
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(creds) == 1
    assert creds[0]["isResidentCredential"] is True
    page.screenshot(path=str(shots / "account-with-passkey.png"), full_page=True)

    # Sign out, then sign in with the passkey instead of a code.
    page.get_by_role("banner").get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.url + "/login")
    fill_login(page, code=None)
    page.screenshot(path=str(shots / "login-passkey.png"), full_page=True)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(site.url + "/")
    page.goto(site.url + "/account")
    main = page.inner_text("main")
    assert "never" not in main  # the passkey was used
    sessions = accounts.list_sessions(site.ws, "erin")
    assert len(sessions) == 1
    assert sessions[0].mfa_at is not None
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert creds[0]["signCount"] >= 1

    # A wrong password with the passkey reads like any failure.
    page.get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_url(site.url + "/login")
    assert accounts.list_sessions(site.ws, "erin") == []
    fill_login(page, code=None)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_selector("p.error")
    assert "sign-in failed" in page.inner_text("main")
    page.screenshot(path=str(shots / "login-failed.png"), full_page=True)
    assert csp_errors == []
