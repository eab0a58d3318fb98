"""The dashboard in a real browser: Playwright for Python driving Debian's Chromium (/usr/bin/chromium).

A live uvicorn server on a loopback port serves ``create_app``; erin (admin) signs in with her one-time
code, a discovery run finds a planted copy of atlas:v3 on an unmanaged laptop, an assessment run from
the Reports page turns A4.2(2) red on the overview, and every page is photographed under the test's
tmp dir (``screenshots/``). Skipped, saying why, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.access import mfa
from gpaisec.api import create_app
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.weights.artifacts import register_version
from gpaisec.weights.discovery import discover
from gpaisec.workspace import Workspace
from tests.api.conftest import PASSWORD, PEOPLE, add_human, test_settings
from tests.live_server import live_server
from tests.web.browser_keys import enrol_browser
from tests.weights.conftest import make_model, reshard, write_shards

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install -y chromium"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="needs Playwright for Python: pip install 'playwright>=1.45,<2' (never `playwright install`)",
    ),
    pytest.mark.slow,
    # One database is enough for the browser: the pages' logic runs on both in test_pages.py.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


class Site:
    def __init__(self, ws: Workspace, root: Path, secret: str, url: str) -> None:
        self.ws, self.root, self.secret, self.url = ws, root, secret, url


@pytest.fixture
def site(workspace: Workspace, tmp_path: Path) -> Iterator[Site]:
    """atlas:v3 registered from a managed GPU node and approved there; erin is an admin; a live server."""
    srv = tmp_path / "gpu-node-17" / "srv" / "ckpt" / "atlas"
    v3 = srv / "v3"
    write_shards(v3, reshard(make_model(3, layers=2, dim=64), 2), "model-{i:05d}-of-{n:05d}.safetensors")
    registry.add_model(workspace, "atlas", training_flop=3.2e25)
    registry.add_device(workspace, "gpu-node-17", managed=True, disk_encrypted=True)
    registry.add_device(workspace, "laptop-9", managed=False)
    register_version(workspace, "atlas", "v3", source=v3)
    registry.add_location(workspace, f"gpu-node-17:{srv}", approve=["atlas:v3"])
    discover(workspace, [tmp_path / "gpu-node-17"], device="gpu-node-17")
    secret = add_human(workspace, "erin", ("admin", "reviewer"))

    with live_server(create_app(workspace, test_settings())) as url:
        yield Site(workspace, tmp_path, secret, url)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
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


def plant_copy(site: Site) -> None:
    """A shard of atlas:v3, renamed, on an unmanaged laptop; a confirmed discovery run finds it."""
    laptop = site.root / "laptop-9"
    (laptop / "Downloads").mkdir(parents=True)
    shard = next((site.root / "gpu-node-17" / "srv" / "ckpt" / "atlas" / "v3").glob("model-00001*"))
    shutil.copy(shard, laptop / "Downloads" / "holiday.bin")
    result = discover(site.ws, [laptop], device="laptop-9", confirm=True)
    assert result.new_findings


def test_sign_in_and_a_planted_copy_turns_a4_2_2_red(site: Site, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    # Signed out, the overview sends the browser to the sign-in page.
    page.goto(site.url + "/")
    assert page.url == site.url + "/login"
    page.screenshot(path=str(shots / "login.png"), full_page=True)

    # This browser's device key, enrolled for erin's laptop (tests/web/test_browser_device.py).
    enrol_browser(page, site.url, site.ws, "laptop-erin")

    # Sign in with the one-time code; the form's script proves the device.
    page.goto(site.url + "/login")
    page.get_by_label("User name").fill("erin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(mfa.totp_code(site.secret, utcnow()))
    page.get_by_label("Device (its name").fill("laptop-erin")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(site.url + "/")
    assert "No assessment has been run yet" in page.inner_text("main")

    # An assessment before the planted copy: every copy is where it is approved.
    page.get_by_role("navigation").get_by_role("link", name="Reports").click()
    page.get_by_role("button", name="Run an assessment").click()
    page.wait_for_selector("p.notice")
    page.goto(site.url + "/")
    cell = page.locator('[data-item="A4.2(2)"]')
    assert cell.get_attribute("data-verdict") == "met"

    # Plant a copy, run discovery, assess again from the Reports page: A4.2(2) is red.
    plant_copy(site)
    page.goto(site.url + "/reports")
    page.get_by_role("button", name="Run an assessment").click()
    page.wait_for_selector("p.notice")
    page.screenshot(path=str(shots / "reports.png"), full_page=True)
    page.goto(site.url + "/")
    cell = page.locator('[data-item="A4.2(2)"]')
    assert cell.get_attribute("data-verdict") == "not_met"
    colour = cell.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(207, 34, 46)"  # the stylesheet loaded under the page CSP: not met is red
    assert "not met" in cell.inner_text()
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.set_viewport_size({"width": 2560, "height": 1440})
    page.screenshot(path=str(shots / "overview-wall.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})

    # The registry shows the unapproved copy and its finding; resolve it with a reason.
    page.goto(site.url + "/registry")
    text = page.inner_text("main")
    assert "laptop-9" in text
    assert "not approved" in text
    page.screenshot(path=str(shots / "registry.png"), full_page=True)
    form = page.locator("table.findings form").first
    form.get_by_label("Reason").fill("laptop wiped and reimaged by IT")
    form.get_by_role("button", name="Resolve").click()
    page.wait_for_selector("p.notice")
    assert "resolved" in page.inner_text("p.notice")

    # The audit log: filter, then an inclusion proof.
    page.goto(site.url + "/audit")
    page.get_by_label("Action").fill("finding.resolve")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit?**")
    page.locator("table.events a").first.click()
    page.wait_for_selector("section.proof")
    assert "Inclusion proof" in page.inner_text("section.proof")
    # The proof checks in the page (WebCrypto: SHA-256 fold, then the checkpoint's Ed25519 signature).
    page.get_by_role("button", name="Check in this browser").click()
    page.wait_for_selector("#proof-result.good, #proof-result.bad")
    assert "good" in (page.get_attribute("#proof-result", "class") or ""), page.inner_text("#proof-result")
    verdict = page.inner_text("#proof-result")
    assert verdict.startswith("Verified: entry "), verdict
    assert "signature verifies" in verdict
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    # One changed hash in the proof, or another key, and the page says it does not verify.
    original = page.input_value("#proof-json")
    proof = json.loads(original)
    if proof["proof"]:
        first = proof["proof"][0]
        proof["proof"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    else:
        proof["tree_size"] += 1
    page.fill("#proof-json", json.dumps(proof))
    page.get_by_role("button", name="Check in this browser").click()
    page.wait_for_selector("#proof-result.bad")
    assert "Not verified" in page.inner_text("#proof-result")
    page.fill("#proof-json", original)
    vkey = page.input_value("#proof-vkey")
    name, key_hash, _key = vkey.split("+", 2)  # the key's base64 may itself hold "+"
    other = base64.b64encode(b"\x01" + b"\xfb" * 32).decode()  # a key whose base64 has "+" in it
    assert "+" in other
    page.fill("#proof-vkey", f"{name}+{key_hash}+{other}")
    page.get_by_role("button", name="Check in this browser").click()
    page.wait_for_selector("#proof-result.bad")
    # Parsed (a "+" in the key is no parse error), then refused: the key is not the one named.
    assert "hash does not match its key" in page.inner_text("#proof-result")

    # A measure's page, from the overview's grid.
    page.goto(site.url + "/")
    page.locator('[data-item="A4.2(2)"] a').click()
    page.wait_for_url("**/measures/A4.2(2)")
    assert "Prevent copies to unmanaged devices" in page.inner_text("h1")
    page.screenshot(path=str(shots / "measure.png"), full_page=True)

    # Access, and an access review started from its page.
    page.get_by_role("navigation").get_by_role("link", name="Access").click()
    page.wait_for_url(site.url + "/access")
    page.screenshot(path=str(shots / "access.png"), full_page=True)
    page.goto(site.url + "/access/reviews")
    page.get_by_role("button", name="Start a review now").click()
    page.wait_for_selector("p.notice")
    page.locator("#campaigns a").first.click()
    page.wait_for_selector("h1")
    assert "Review" in page.inner_text("h1")
    page.screenshot(path=str(shots / "review.png"), full_page=True)

    # Sign out: back to the sign-in page, and the overview is gone.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.url + "/login")
    page.goto(site.url + "/")
    assert page.url == site.url + "/login"

    assert csp_errors == []
    names = sorted(p.name for p in shots.iterdir())
    pages = [
        "access",
        "audit",
        "login",
        "measure",
        "overview-wall",
        "overview",
        "registry",
        "reports",
        "review",
    ]
    assert names == [f"{name}.png" for name in pages]
    assert all((shots / n).stat().st_size > 1000 for n in names)


@pytest.fixture
def chromium_browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in_page(browser: Any, site: Site, username: str, secret: str, *, at: dt.datetime) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    enrol_browser(page, site.url, site.ws, f"laptop-{username}")  # each context: a browser of its own
    page.goto(site.url + "/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(mfa.totp_code(secret, at))
    page.get_by_label("Device (its name").fill(f"laptop-{username}")
    with page.expect_navigation():  # after the script has signed the device challenge
        page.get_by_role("button", name="Sign in", exact=True).click()
    assert "/login" not in page.url, page.inner_text("main")
    return page


def test_two_approvers_in_the_browser_turn_the_requesters_check_to_allow(
    site: Site, chromium_browser: Any, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    secrets = {name: add_human(site.ws, name, roles) for name, roles in PEOPLE.items() if name != "erin"}
    now = utcnow()
    alice = sign_in_page(chromium_browser, site, "alice", secrets["alice"], at=now)
    bob = sign_in_page(chromium_browser, site, "bob", secrets["bob"], at=now)
    carol = sign_in_page(chromium_browser, site, "carol", secrets["carol"], at=now)

    def check(page: Any) -> str:
        page.goto(site.url + "/access")
        form = page.locator("form").filter(has=page.get_by_role("button", name="Check my access"))
        form.get_by_label("Model version").select_option("atlas:v3")
        form.get_by_label("Action").select_option("read")
        form.get_by_role("button", name="Check my access").click()
        page.wait_for_selector("#decision")
        return str(page.get_attribute("#decision", "class"))

    assert "deny" in check(alice)
    alice.get_by_label("For how many hours (at most 168)").fill("4")
    alice.locator("#req-reason").fill("evaluation run 42 on the red-team set")
    alice.get_by_role("button", name="Send request").click()
    alice.wait_for_selector("p.notice")
    alice.screenshot(path=str(shots / "access-requester.png"), full_page=True)

    # Each approver types a fresh code (the next 30-second step: the sign-in code is spent).
    for page, name in ((bob, "bob"), (carol, "carol")):
        page.goto(site.url + "/access")
        row = page.locator("#waiting tbody tr").first
        row.get_by_label("One-time code").fill(mfa.totp_code(secrets[name], now + dt.timedelta(seconds=30)))
        row.get_by_role("button", name="Approve").click()
        page.wait_for_selector("p.notice")
        if name == "bob":
            assert "needs one more approver" in page.inner_text("p.notice")
            page.screenshot(path=str(shots / "access-approver.png"), full_page=True)
    assert "is now active" in carol.inner_text("p.notice")

    assert "allow" in check(alice)
    assert alice.locator("#mine tbody tr").first.get_attribute("data-state") == "active"
    alice.screenshot(path=str(shots / "access-allowed.png"), full_page=True)
    assert sorted(p.name for p in shots.iterdir()) == [
        "access-allowed.png",
        "access-approver.png",
        "access-requester.png",
    ]
