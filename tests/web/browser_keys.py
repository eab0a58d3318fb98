"""This browser's device key, made on /device by device.js (for the Playwright tests)."""

from __future__ import annotations

from typing import Any

from gpaisec.access import accounts
from gpaisec.workspace import Workspace


def make_browser_key(page: Any, url: str) -> tuple[str, str]:
    """Make this browser's device key on /device; returns its public key (PEM) and fingerprint."""
    page.goto(url + "/device")
    # device.js shows either the key (data-ready) or the button that makes one, once it has looked.
    page.wait_for_selector("#device-create:not([hidden]), [data-device-key][data-ready]")
    button = page.get_by_role("button", name="Make this browser's device key")
    if button.is_visible():
        button.click()
    page.wait_for_selector("[data-device-key][data-ready]")
    pem = page.locator("#device-pem").input_value()
    return pem, page.locator("#device-fingerprint").inner_text()


def enrol_browser(page: Any, url: str, ws: Workspace, device: str) -> str:
    """Make the browser's key and enrol it for ``device`` (as an admin would); returns the fingerprint."""
    pem, fingerprint = make_browser_key(page, url)
    accounts.enrol_device_key(ws, device, pem)
    return fingerprint
