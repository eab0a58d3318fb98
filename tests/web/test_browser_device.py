"""This browser's device key in a real browser: Debian's Chromium through Playwright.

erin makes the browser's key on /device (WebCrypto ECDSA P-256, non-extractable, kept in IndexedDB);
before an admin enrols its public key, signing in fails like any failure (audited: step ``device``);
once enrolled, the sign-in form's script signs a fresh challenge and erin is in, bound to that key.
A replaced key is not enrolled: signing in fails again. Screenshots go under the test's tmp dir.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.access import accounts, mfa
from gpaisec.access.device_keys import parse_public_key
from gpaisec.api import create_app
from gpaisec.audit.models import AuditEntry
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.api.conftest import PASSWORD, add_human, test_settings
from tests.live_server import live_server
from tests.web.browser_keys import make_browser_key
from tests.web.test_browser import CHROMIUM, LAUNCH_ARGS
from tests.web.test_browser import pytestmark as browser_marks

pytestmark = browser_marks


class Site:
    def __init__(self, ws: Workspace, secret: str, url: str) -> None:
        self.ws, self.secret, self.url = ws, secret, url


@pytest.fixture
def site(workspace: Workspace) -> Iterator[Site]:
    secret = add_human(workspace, "erin", ("admin", "reviewer"))
    registry.add_device(workspace, "browser-erin", managed=True, disk_encrypted=True)
    with live_server(create_app(workspace, test_settings())) as url:
        yield Site(workspace, secret, url)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def sign_in(page: Any, site: Site, *, later: int = 0) -> None:
    page.goto(site.url + "/login")
    page.get_by_label("User name").fill("erin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(
        mfa.totp_code(site.secret, utcnow() + dt.timedelta(seconds=later))
    )
    page.get_by_role("button", name="Sign in", exact=True).click()


def device_failures(ws: Workspace) -> list[dict[str, Any]]:
    with ws.reader() as s:
        rows = s.query(AuditEntry).order_by(AuditEntry.seq).all()
    events = [json.loads(bytes(e.entry)) for e in rows if e.action == "login.fail"]
    return [e["details"] for e in events if e["details"].get("step") == "device"]


def test_a_browser_key_is_made_enrolled_and_proves_the_device(
    site: Site, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    # No key yet: the page says so and offers to make one.
    page.goto(site.url + "/device")
    page.wait_for_selector("#device-none:not([hidden])")
    pem, fingerprint = make_browser_key(page, site.url)
    page.screenshot(path=str(shots / "device.png"), full_page=True)
    parsed = parse_public_key(pem)
    assert parsed.algorithm == "ecdsa-p256"
    assert parsed.fingerprint == fingerprint  # the browser and the server compute the same fingerprint

    # The private key is a non-extractable CryptoKey in IndexedDB: not even this origin's script reads it.
    stored = page.evaluate(
        """async () => {
            const db = await new Promise((ok, no) => {
                const r = indexedDB.open("gpaisec", 1); r.onsuccess = () => ok(r.result); r.onerror = no;
            });
            const rec = await new Promise((ok, no) => {
                const r = db.transaction("device-key").objectStore("device-key").get("current");
                r.onsuccess = () => ok(r.result); r.onerror = no;
            });
            let exported = true;
            try { await crypto.subtle.exportKey("pkcs8", rec.privateKey); } catch (e) { exported = false; }
            return {extractable: rec.privateKey.extractable, type: rec.privateKey.type, exported: exported};
        }"""
    )
    assert stored == {"extractable": False, "type": "private", "exported": False}

    # Not enrolled yet: the sign-in fails like any failure, and the audit log says why.
    sign_in(page, site)
    page.wait_for_selector("p.error")
    assert "sign-in failed" in page.inner_text("main")
    assert page.url == site.url + "/login"
    failures = device_failures(site.ws)
    assert failures[-1]["fingerprint"] == fingerprint
    assert "not enrolled" in failures[-1]["reason"]

    # An admin enrols it for the device; the device field may stay empty (the key names the device).
    accounts.enrol_device_key(site.ws, "browser-erin", pem)
    sign_in(page, site, later=30)
    page.wait_for_url(site.url + "/")
    (session,) = accounts.list_sessions(site.ws, "erin")
    assert session.device == "browser-erin"

    # A replaced key is a new, unenrolled key: signing in from this browser fails again.
    page.goto(site.url + "/account")
    page.get_by_role("banner").get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.url + "/login")
    page.goto(site.url + "/device")
    page.wait_for_selector("[data-device-key][data-ready]")
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Replace it with a new key").click()
    page.wait_for_function(
        "fp => document.getElementById('device-fingerprint').textContent !== fp", arg=fingerprint
    )
    before = len(device_failures(site.ws))
    sign_in(page, site, later=60)
    page.wait_for_selector("p.error")
    assert page.url == site.url + "/login"
    assert len(device_failures(site.ws)) == before + 1
    assert csp_errors == []
