"""An API over the ``workspace`` fixture (SQLite and PostgreSQL) with a small world of people.

alice (weights_user) requests; bob and carol approve; erin is admin and reviewer; ``pep`` is a
service account with a token, as a policy enforcement point would hold.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.access import accounts, mfa
from gpaisec.access.passwords import HashParams
from gpaisec.api import Settings, create_app
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests import devices

PASSWORD = "correct staple orbit lantern"
FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
PEOPLE = {
    "alice": ("weights_user",),
    "bob": ("approver",),
    "carol": ("approver",),
    "erin": ("admin", "reviewer"),
}


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "HASH_PARAMS", HashParams.unsafe_fast())


@dataclass
class World:
    ws: Workspace
    secrets: dict[str, str]
    token: str  # the service account's bearer token
    csrf: dict[str, str] = field(default_factory=dict)


def add_human(ws: Workspace, username: str, roles: tuple[str, ...]) -> str:
    accounts.add_person(
        ws,
        f"Person {username}",
        organisation="Example AI",
        background_check_valid_until=FAR,
        insider_training_valid_until=FAR,
    )
    accounts.add_user(ws, username, person=f"Person {username}", password=PASSWORD, roles=roles)
    uri = mfa.enrol_totp(ws, username)
    secret = uri.split("secret=")[1].split("&")[0]
    mfa.confirm_totp(ws, username, mfa.totp_code(secret, utcnow() - dt.timedelta(seconds=30)))
    registry.add_device(ws, f"laptop-{username}", managed=True, disk_encrypted=True)
    devices.enrol(ws, f"laptop-{username}")
    return secret


def make_world(ws: Workspace) -> World:
    registry.add_model(ws, "atlas")
    with ws.transaction() as s:
        registry.create_version(s, ws, "atlas", "v3")
    found = {name: add_human(ws, name, roles) for name, roles in PEOPLE.items()}
    accounts.add_service_account(ws, "pep", owner="Person erin")
    registry.add_device(ws, "gateway-1", managed=True, disk_encrypted=True)
    _, token = accounts.issue_token(ws, "pep", scopes=["weights:read"])
    return World(ws, found, token)


@pytest.fixture
def world(workspace: Workspace) -> World:
    return make_world(workspace)


def test_settings() -> Settings:
    return Settings(session_secret=secrets.token_bytes(32), secure_cookies=False)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def app(workspace: Workspace) -> FastAPI:
    return create_app(workspace, test_settings())


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def browser(app: FastAPI) -> TestClient:
    """Another browser on the same server: its own cookie jar."""
    return TestClient(app, raise_server_exceptions=False)


def sign_in(client: TestClient, world: World, username: str) -> str:
    """Sign ``username`` in on their laptop; returns the CSRF token (the cookie stays in ``client``)."""
    code = mfa.totp_code(world.secrets[username], utcnow())
    device = f"laptop-{username}"
    r = client.post(
        "/api/v1/session",
        json={
            "username": username,
            "password": PASSWORD,
            "totp_code": code,
            "device": device,
            "device_proof": devices.proof_json(client, username, device),
        },
    )
    assert r.status_code == 201, r.text
    csrf = str(r.json()["csrf_token"])
    world.csrf[username] = csrf
    return csrf
