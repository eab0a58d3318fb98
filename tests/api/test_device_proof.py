"""The device proof over HTTP: a challenge endpoint, and ``device_proof`` on POST /session.

Every malformed proof is a clean 4xx (401 after an audited refusal, 422 from the schema, 429 once
throttled), never a 5xx; a wrong proof reads exactly like a wrong password.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.access import accounts, mfa
from gpaisec.store.base import utcnow
from tests import devices
from tests.api.conftest import PASSWORD, World, browser


def post(http: TestClient, proof: Any, *, username: str = "alice", password: str = PASSWORD) -> Any:
    body: dict[str, Any] = {
        "username": username,
        "password": password,
        "totp_code": None,
        "device": "laptop-alice",
    }
    if proof is not ...:
        body["device_proof"] = proof
    return http.post("/api/v1/session", json=body)


def test_the_challenge_endpoint(client: TestClient, world: World) -> None:
    r = client.post("/api/v1/session/device-challenge")
    assert r.status_code == 200
    body = r.json()
    assert body["challenge_id"].startswith("dc1_")
    assert len(base64.b64decode(body["challenge"])) == 32
    assert client.post("/api/v1/session/device-challenge").json()["challenge"] != body["challenge"]
    schema = client.get("/api/openapi.json").json()
    assert "DeviceProofBody" in schema["components"]["schemas"]
    assert "security" not in schema["paths"]["/api/v1/session/device-challenge"]["post"]


def test_a_wrong_proof_reads_like_a_wrong_password(app: FastAPI, world: World) -> None:
    http = browser(app)
    stranger = devices.signer("laptop-of-nobody")
    good = devices.proof_json(http, "alice", "laptop-alice")
    answers = {
        "no proof": post(http, ...),
        "a stranger's key": post(http, devices.proof_json(http, "alice", "laptop-alice", key=stranger)),
        "bob's key": post(http, devices.proof_json(http, "alice", "laptop-bob")),
        "not base64": post(http, {**good, "signature": "%%%%"}),
        "wrong password": post(
            http, devices.proof_json(http, "alice", "laptop-alice"), password="not it at all"
        ),
    }
    shapes = {(r.status_code, r.text, r.headers["content-type"]) for r in answers.values()}
    assert len(shapes) == 1, answers
    assert next(iter(shapes))[0] == 401
    # Five failures: alice is throttled now. bob, with the right proof, password and code, is in.
    code = mfa.totp_code(world.secrets["bob"], utcnow())
    r = http.post(
        "/api/v1/session",
        json={
            "username": "bob",
            "password": PASSWORD,
            "totp_code": code,
            "device": "laptop-bob",
            "device_proof": devices.proof_json(http, "bob", "laptop-bob"),
        },
    )
    assert r.status_code == 201, r.text
    assert accounts.list_sessions(world.ws, "bob")[0].device == "laptop-bob"


_text = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
    st.from_regex(r"dc1_[A-Za-z0-9_-]{0,90}", fullmatch=True),
    st.binary(min_size=0, max_size=80).map(lambda b: base64.b64encode(b).decode()),
)
_value = st.one_of(_text, st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.booleans())
_proof = st.one_of(
    st.fixed_dictionaries({"fingerprint": _text, "challenge_id": _text, "signature": _text}),
    st.fixed_dictionaries({"fingerprint": _value, "challenge_id": _value, "signature": _value}),
    st.dictionaries(st.sampled_from(["fingerprint", "challenge_id", "signature", "extra"]), _value),
    _value,
)


def test_malformed_proofs_are_a_clean_4xx(app: FastAPI, world: World) -> None:
    http = browser(app)
    seen: set[int] = set()

    @given(proof=_proof, username=st.sampled_from(["alice", "bob", "nobody", "al\x00ice"]))
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(proof: Any, username: str) -> None:
        r = http.post(
            "/api/v1/session",
            json={
                "username": username,
                "password": PASSWORD,
                "device": "laptop-alice",
                "device_proof": proof,
            },
        )
        assert 400 <= r.status_code < 500, (proof, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        seen.add(r.status_code)

    check()
    # A lone surrogate in JSON (an escape no client library would send) is refused cleanly too.
    raw = '{"username": "al\\ud800ice", "password": "x", "device": "d", "device_proof": %s}'
    for proof in ('{"fingerprint": "\\ud800", "challenge_id": "\\ud800", "signature": "\\ud800"}', "null"):
        r = http.post("/api/v1/session", content=raw % proof, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
    assert 422 in seen
    assert seen & {401, 429}
    assert accounts.list_sessions(world.ws, "alice") == []
