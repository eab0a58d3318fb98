"""The decision fast path (gpaisec.api.fastpath) answers exactly as the FastAPI route does.

Every request is sent to two apps over the same workspace: the real one, and one built without the
fast path. Status, content type and JSON body must be the same; each decision is audited once
whichever path answered; the fast path must actually have answered the plain successful requests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.api import Settings, create_app
from gpaisec.api.fastpath import DecisionFastPath
from gpaisec.audit.service import log
from gpaisec.workspace import Workspace
from tests.api.conftest import World, make_world, test_settings

URL = "/api/v1/access/decide"
GOOD = {"principal": "pep", "action": "read", "resource": "atlas:v3", "device": "gateway-1"}


@pytest.fixture
def world(workspace: Workspace) -> World:
    return make_world(workspace)


@pytest.fixture
def pair(world: World) -> Iterator[tuple[TestClient, TestClient, DecisionFastPath]]:
    fast, slow = _apps(world, test_settings())
    with (
        TestClient(fast, raise_server_exceptions=False) as f,
        TestClient(slow, raise_server_exceptions=False) as s,
    ):
        f.get("/api/v1/me")  # builds the middleware stack
        yield f, s, _fast_path(fast)


def _apps(world: World, settings: Settings) -> tuple[FastAPI, FastAPI]:
    """The real app, and one built without the fast path (every decision through the route)."""
    fast = create_app(world.ws, settings)
    slow = create_app(world.ws, settings)
    slow.user_middleware = [m for m in slow.user_middleware if m.cls is not DecisionFastPath]
    return fast, slow


def _fast_path(app: FastAPI) -> DecisionFastPath:
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, DecisionFastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, DecisionFastPath), "the app has no decision fast path"
    return layer


def _send(c: TestClient, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
    r = c.post(URL, content=body, headers=headers)
    try:
        parsed = r.json()
    except json.JSONDecodeError:
        parsed = r.text
    return r.status_code, r.headers.get("content-type", ""), parsed


def _decisions(ws: Workspace) -> int:
    return len(log(ws, action="access.decide", limit=None))


def _same(
    pair: tuple[TestClient, TestClient, DecisionFastPath], ws: Workspace, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    fast, slow, _ = pair
    before = _decisions(ws)
    got = _send(fast, body, headers)
    mid = _decisions(ws)
    want = _send(slow, body, headers)
    after = _decisions(ws)
    assert got == want
    # A decision is audited exactly once by whichever path made it, never twice; a refusal, never.
    assert mid - before == after - mid == (1 if got[0] == 200 else 0)
    return got[0], got[2]


def test_the_fast_path_answers_a_decision_as_the_route_does(
    pair: tuple[TestClient, TestClient, DecisionFastPath], world: World
) -> None:
    bearer = {"Authorization": f"Bearer {world.token}", "Content-Type": "application/json"}
    served = pair[2].served
    status, answer = _same(pair, world.ws, json.dumps(GOOD).encode(), bearer)
    assert status == 200
    assert answer["decision"] == "deny"  # pep holds no grant
    assert answer["reasons"]
    status, answer = _same(pair, world.ws, json.dumps({**GOOD, "explain": True}).encode(), bearer)
    assert status == 200
    assert any(r.startswith("given: device") for r in answer["reasons"])
    assert pair[2].served == served + 2  # both were answered by the fast path


@pytest.mark.parametrize(
    ("case", "body", "headers", "status"),
    [
        ("wrong token", GOOD, {"Authorization": "Bearer gpst_nope"}, 401),
        ("no token", GOOD, {}, 401),
        ("basic auth", GOOD, {"Authorization": "Basic cGVwOnB3"}, 401),
        ("unknown action", {**GOOD, "action": "delete"}, None, 422),
        ("missing resource", {"principal": "pep", "action": "read"}, None, 422),
        ("extra field", {**GOOD, "admin": True}, None, 422),
        ("unknown principal", {**GOOD, "principal": "mallory"}, None, 404),
        ("unknown version", {**GOOD, "resource": "atlas:v9"}, None, 404),
        ("bad source address", {**GOOD, "source_ip": "not-an-ip"}, None, 400),
        ("control character", {**GOOD, "principal": "pe\x00p"}, None, 422),
    ],
)
def test_refusals_are_the_routes_own(
    pair: tuple[TestClient, TestClient, DecisionFastPath],
    world: World,
    case: str,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = {"Content-Type": "application/json"} | (
        headers if headers is not None else {"Authorization": f"Bearer {world.token}"}
    )
    served = pair[2].served
    got, answer = _same(pair, world.ws, json.dumps(body).encode(), sent)
    assert got == status, (case, answer)
    assert answer["status"] == status
    assert pair[2].served == served  # a refusal always comes from the route


def test_not_json_is_left_to_the_route(
    pair: tuple[TestClient, TestClient, DecisionFastPath], world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.token}", "Content-Type": "text/plain"}
    status, _ = _same(pair, world.ws, json.dumps(GOOD).encode(), headers)
    assert status in (400, 415, 422)
    status, _ = _same(
        pair, world.ws, b'{"principal": "pep", "action": ', {**headers, "Content-Type": "application/json"}
    )
    assert status == 422


_text = st.one_of(
    st.sampled_from(["pep", "alice", "atlas:v3", "atlas", "read", "gateway-1", "", "::"]),
    st.text(max_size=12),
)
_value = st.one_of(_text, st.booleans(), st.none(), st.integers(-2, 2), st.lists(_text, max_size=2))
_bodies = st.one_of(
    st.fixed_dictionaries(
        {"principal": _text, "action": st.sampled_from(["read", "write", "export", "x"]), "resource": _text},
        optional={
            "explain": _value,
            "device": _value,
            "source_ip": st.sampled_from(["127.0.0.1", "::1", "x", ""]),
            "other": _value,
        },
    ),
    st.dictionaries(_text, _value, max_size=4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_body_gets_the_same_answer_either_way(
    pair: tuple[TestClient, TestClient, DecisionFastPath], world: World, body: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {world.token}", "Content-Type": "application/json"}
    status, _ = _same(pair, world.ws, json.dumps(body).encode(), headers)
    assert status in (200, 400, 403, 404, 422)


def test_an_unrecordable_decision_is_refused_either_way(
    pair: tuple[TestClient, TestClient, DecisionFastPath], world: World
) -> None:
    from sqlalchemy import text

    with world.ws.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_checkpoint"))  # no batch can be sealed now
    headers = {"Authorization": f"Bearer {world.token}", "Content-Type": "application/json"}
    status, answer = _same(pair, world.ws, json.dumps(GOOD).encode(), headers)
    assert status == 503
    assert answer["title"] == "audit log unavailable"
    assert "allowed" not in answer  # no decision leaves without its audit event


def test_an_oversized_chunked_body_is_413_either_way(world: World) -> None:
    settings_small = dataclasses.replace(test_settings(), max_request_bytes=1024)
    fast, slow = _apps(world, settings_small)
    headers = {"Authorization": "Bearer anything", "Content-Type": "application/json"}
    answers = []
    for app in (fast, slow):
        with TestClient(app, raise_server_exceptions=False) as c:
            # An iterator body goes out chunked, without Content-Length: only the read can tell.
            r = c.post(URL, content=iter([b" " * 601, b" " * 601]), headers=headers)
            answers.append((r.status_code, r.json()["title"]))
    assert answers[0] == answers[1] == (413, "request too large")


def test_two_content_types_are_left_to_the_route(
    pair: tuple[TestClient, TestClient, DecisionFastPath], world: World
) -> None:
    fast, slow, layer = pair
    served = layer.served
    headers = [
        ("Authorization", f"Bearer {world.token}"),
        ("Content-Type", "text/plain"),
        ("Content-Type", "application/json"),
    ]
    before = _decisions(world.ws)
    got = [c.post(URL, content=json.dumps(GOOD).encode(), headers=headers) for c in (fast, slow)]
    assert got[0].status_code == got[1].status_code
    assert got[0].json() == got[1].json()
    assert layer.served == served
    assert _decisions(world.ws) - before == (2 if got[0].status_code == 200 else 0)
