"""Schemathesis over the OpenAPI schema: no 5xx ever, and no 2xx without authentication.

Each operation is called with generated input twice: anonymously (it must answer 401, or a 4xx
from routing or validation, and never a 2xx unless it is public) and as an admin with a cookie
session and its CSRF token (it must never answer 5xx).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from gpaisec.api import PUBLIC_OPERATIONS
from tests.api.conftest import World, browser, sign_in


def fuzz(operation: Any, admin: TestClient, csrf: str, seen: list[int]) -> None:
    public = (operation.method.upper(), operation.path) in PUBLIC_OPERATIONS
    # Signing the admin out would turn every later call into a 401; sign-out has its own tests.
    sign_out = (operation.method.upper(), operation.path) == ("DELETE", "/api/v1/session")

    @given(case=operation.as_strategy())
    @settings(
        max_examples=8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        anonymous = case.call()
        where = (case.method, case.formatted_path)
        assert anonymous.status_code < 500, (*where, anonymous.status_code, anonymous.text)
        if not public:
            assert anonymous.status_code in (401, 404, 405), (*where, anonymous.status_code)
        if sign_out:
            return
        headers = dict(case.headers or {})
        headers["X-CSRF-Token"] = csrf
        authed = case.call(headers=headers, cookies=dict(admin.cookies))
        assert authed.status_code < 500, (*where, authed.status_code, authed.text)
        seen.append(authed.status_code)

    check()


def test_no_server_errors_and_no_anonymous_success(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server with passkeys configured (without, their endpoints answer 503: not configured).
    monkeypatch.setenv("GPAISEC_WEBAUTHN_ORIGIN", "https://gpaisec.example")
    admin = browser(app)
    csrf = sign_in(admin, world, "erin")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    seen: list[int] = []
    for operation in operations:
        fuzz(operation, admin, csrf, seen)
    # The admin's session was really used: many generated requests succeeded.
    assert sum(200 <= x < 300 for x in seen) >= 20, sorted(set(seen))
