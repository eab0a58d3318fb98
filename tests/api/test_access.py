"""Grants through the API: two approvers turn the requester's decision to allow; roles; reviews."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from gpaisec.audit.service import log
from gpaisec.workspace import Workspace
from tests.api.conftest import World, browser, sign_in

REQUEST = {"scope": "atlas:v3", "action": "read", "duration_seconds": 7200, "reason": "evaluate the v3 run"}


def decide(c: TestClient, csrf: str, principal: str = "alice") -> dict[str, object]:
    r = c.post(
        "/api/v1/access/decide",
        json={"principal": principal, "action": "read", "resource": "atlas:v3"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_two_approvers_turn_the_requesters_decision_to_allow(app: FastAPI, world: World) -> None:
    alice, bob, carol = browser(app), browser(app), browser(app)
    a, b, c = sign_in(alice, world, "alice"), sign_in(bob, world, "bob"), sign_in(carol, world, "carol")
    before = decide(alice, a)
    assert before["decision"] == "deny"
    r = alice.post("/api/v1/access/requests", json=REQUEST, headers={"X-CSRF-Token": a})
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    # The requester cannot approve; an approver cannot approve twice.
    r = alice.post(f"/api/v1/access/requests/{gid}/approve", json={}, headers={"X-CSRF-Token": a})
    assert r.status_code == 403
    r = bob.post(f"/api/v1/access/requests/{gid}/approve", json={}, headers={"X-CSRF-Token": b})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "requested"
    r = bob.post(f"/api/v1/access/requests/{gid}/approve", json={}, headers={"X-CSRF-Token": b})
    assert r.status_code == 403
    assert "already approved" in r.json()["detail"]
    r = carol.post(f"/api/v1/access/requests/{gid}/approve", json={}, headers={"X-CSRF-Token": c})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    after = decide(alice, a)
    assert after["decision"] == "allow", after
    assert after["determining_policies"]
    # The list shows both approvers; alice sees her own grant.
    (row,) = alice.get("/api/v1/access/requests").json()
    assert row["approvers"] == ["bob", "carol"]
    assert row["state"] == "active"
    # Revoking turns it back to deny.
    r = alice.post(
        f"/api/v1/access/requests/{gid}/revoke", json={"reason": "done with it"}, headers={"X-CSRF-Token": a}
    )
    assert r.status_code == 200, r.text
    assert decide(alice, a)["decision"] == "deny"


def test_approval_with_a_wrong_fresh_code_is_refused(app: FastAPI, world: World) -> None:
    alice, bob = browser(app), browser(app)
    a, b = sign_in(alice, world, "alice"), sign_in(bob, world, "bob")
    gid = alice.post("/api/v1/access/requests", json=REQUEST, headers={"X-CSRF-Token": a}).json()["id"]
    r = bob.post(
        f"/api/v1/access/requests/{gid}/approve", json={"totp_code": "000000"}, headers={"X-CSRF-Token": b}
    )
    assert r.status_code == 403
    assert r.json()["title"] == "second factor refused"


def test_people_ask_only_about_themselves(app: FastAPI, world: World) -> None:
    alice, erin = browser(app), browser(app)
    a, e = sign_in(alice, world, "alice"), sign_in(erin, world, "erin")
    r = alice.post(
        "/api/v1/access/decide",
        json={"principal": "bob", "action": "read", "resource": "atlas:v3"},
        headers={"X-CSRF-Token": a},
    )
    assert r.status_code == 403
    assert decide(erin, e, principal="bob")["decision"] == "deny"  # admins may ask about anyone


def test_roles_guard_the_overseeing_endpoints(app: FastAPI, world: World) -> None:
    alice = browser(app)
    a = sign_in(alice, world, "alice")
    for method, path in (
        ("GET", "/api/v1/audit/events"),
        ("GET", "/api/v1/audit/proof/0"),
        ("GET", "/api/v1/registry"),
        ("GET", "/api/v1/findings"),
        ("POST", "/api/v1/assessments"),
        ("POST", "/api/v1/access/reviews"),
        ("GET", "/api/v1/access/reviews"),
        ("POST", "/api/v1/findings/fnd_x/resolve"),
    ):
        r = alice.request(method, path, json={"reason": "a long enough reason"}, headers={"X-CSRF-Token": a})
        assert r.status_code == 403, (method, path, r.text)
    # A service token holds no roles.
    r = alice.get("/api/v1/audit/events", headers={"Authorization": f"Bearer {world.token}"})
    assert r.status_code == 403


def test_admin_assesses_reads_the_audit_log_and_proves_an_entry(app: FastAPI, world: World) -> None:
    erin = browser(app)
    e = sign_in(erin, world, "erin")
    assert erin.get("/api/v1/assessments/latest").status_code == 404
    r = erin.post("/api/v1/assessments", json={"chapter": "safety-security"}, headers={"X-CSRF-Token": e})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["summary"]["total"] > 0
    assert erin.get("/api/v1/assessments/latest").json()["run_id"] == run["run_id"]
    assert erin.get("/api/v1/assessments").json()[0]["run_id"] == run["run_id"]
    events = erin.get("/api/v1/audit/events", params={"action": "login", "limit": 5}).json()
    assert events
    assert events[-1]["actor"] == "user:erin"
    proof = erin.get(f"/api/v1/audit/proof/{events[-1]['seq']}")
    assert proof.status_code == 200, proof.text
    assert proof.json()["seq"] == events[-1]["seq"]
    # The assessment was audited as erin, not as the server's OS user.
    runs = erin.get("/api/v1/audit/events", params={"action": "assessment.run"}).json()
    assert [x["actor"] for x in runs] == ["user:erin"]
    assert erin.get("/api/v1/registry").status_code == 200
    assert erin.get("/api/v1/findings", params={"open_only": True}).status_code == 200


def test_a_review_round_trip(app: FastAPI, world: World) -> None:
    erin = browser(app)
    e = sign_in(erin, world, "erin")
    r = erin.post("/api/v1/access/reviews", headers={"X-CSRF-Token": e})
    assert r.status_code == 201, r.text
    review = r.json()
    principals = [i["principal"] for i in review["items"]]
    assert "pep" in principals  # a live token with a weights scope
    r = erin.post(
        f"/api/v1/access/reviews/{review['id']}/decisions",
        json={"principal": "pep", "decision": "revoke", "reason": "no longer used"},
        headers={"X-CSRF-Token": e},
    )
    assert r.status_code == 200, r.text
    assert r.json()["reviewer"] == "user:erin"
    for p in principals:
        if p != "pep":
            erin.post(
                f"/api/v1/access/reviews/{review['id']}/decisions",
                json={"principal": p, "decision": "keep", "reason": "still needed"},
                headers={"X-CSRF-Token": e},
            )
    r = erin.post(f"/api/v1/access/reviews/{review['id']}/close", headers={"X-CSRF-Token": e})
    assert r.status_code == 200, r.text
    assert r.json()["closed_by"] == "user:erin"
    assert [x["id"] for x in erin.get("/api/v1/access/reviews").json()] == [review["id"]]
    # Revoked by the review: the token no longer works.
    assert erin.get("/api/v1/me", headers={"Authorization": f"Bearer {world.token}"}).status_code == 401


def test_a_decision_that_cannot_be_audited_is_not_answered(
    app: FastAPI, world: World, workspace: Workspace
) -> None:
    alice = browser(app)
    a = sign_in(alice, world, "alice")
    before = len(log(workspace, action="access.decide", limit=None))
    decide(alice, a)
    assert len(log(workspace, action="access.decide", limit=None)) == before + 1
    # The audit log cannot take a checkpoint any more: the decision must fail closed, never 200.
    with workspace.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_checkpoint"))
    r = alice.post(
        "/api/v1/access/decide",
        json={"principal": "alice", "action": "read", "resource": "atlas:v3"},
        headers={"X-CSRF-Token": a},
    )
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "decision" not in r.json()
    assert "could not record" in r.json()["detail"]
