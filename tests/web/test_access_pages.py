"""The Access pages over TestClient: two-person approval with a fresh code, "may I?", reviews."""

from __future__ import annotations

import datetime as dt
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpaisec.access import mfa
from gpaisec.audit import service as audit
from gpaisec.store.base import utcnow
from tests.web.conftest import World, browser, page_sign_in

_GRANT = re.compile(r'id="grant-([A-Za-z0-9_-]+)" data-state="([a-z_]+)"')


def fresh_code(world: World, username: str) -> str:
    """A code of the next 30-second step: the one used at sign-in may not be replayed."""
    return mfa.totp_code(world.secrets[username], utcnow() + dt.timedelta(seconds=30))


def post(http: TestClient, path: str, csrf: str, **fields: str) -> tuple[int, str]:
    r = http.post(path, data={"csrf_token": csrf, **fields})
    return r.status_code, r.text


def my_grants(http: TestClient) -> dict[str, str]:
    return dict(_GRANT.findall(http.get("/access").text))


def check(http: TestClient, csrf: str) -> str:
    status, html = post(http, "/access", csrf, op="check", scope="atlas:v3", action="read")
    assert status == 200, html
    found = re.search(r'<section class="decision (allow|deny)"', html)
    assert found, html
    return found.group(1)


def test_two_approvers_in_the_page_turn_the_requesters_check_to_allow(app: FastAPI, world: World) -> None:
    alice, bob, carol = browser(app), browser(app), browser(app)
    a = page_sign_in(alice, world, "alice")
    b = page_sign_in(bob, world, "bob")
    c = page_sign_in(carol, world, "carol")
    assert check(alice, a) == "deny"

    status, html = post(
        alice, "/access", a, op="request", scope="atlas:v3", action="read", hours="2", reason="eval run 42"
    )
    assert status == 200, html
    assert "needs 2 approvals" in html
    ((gid, state),) = my_grants(alice).items()
    assert state == "requested"
    # The requester sees no approve form for her own request and cannot approve it by hand.
    assert f'id="waiting-{gid}"' not in alice.get("/access").text
    status, html = post(alice, "/access", a, op="approve", grant_id=gid)
    assert status == 403

    # bob and carol see it waiting; each approves with a fresh code typed into the page.
    assert f'id="waiting-{gid}"' in bob.get("/access").text
    status, html = post(bob, "/access", b, op="approve", grant_id=gid, code=fresh_code(world, "bob"))
    assert status == 200, html
    assert "needs one more approver" in html
    assert f'id="waiting-{gid}"' not in bob.get("/access").text  # not twice
    status, html = post(bob, "/access", b, op="approve", grant_id=gid)
    assert status == 403
    assert "already approved" in html
    status, html = post(carol, "/access", c, op="approve", grant_id=gid, code=fresh_code(world, "carol"))
    assert status == 200, html
    assert "is now active" in html

    assert my_grants(alice)[gid] == "active"
    assert check(alice, a) == "allow"
    actions = [e.action for e in audit.log(world.ws, object=f"grant:{gid}", limit=50)]
    assert actions.count("grant.approve") == 2
    assert "grant.approve.denied" in actions

    # The requester revokes; the check is a deny again.
    status, html = post(alice, "/access", a, op="revoke", grant_id=gid, reason="finished the run")
    assert status == 200, html
    assert check(alice, a) == "deny"


def test_a_wrong_code_in_the_page_is_refused_and_audited(app: FastAPI, world: World) -> None:
    alice, bob = browser(app), browser(app)
    a, b = page_sign_in(alice, world, "alice"), page_sign_in(bob, world, "bob")
    post(alice, "/access", a, op="request", scope="atlas:v3", action="read", hours="1", reason="eval run 43")
    ((gid, _),) = my_grants(alice).items()
    right = fresh_code(world, "bob")
    wrong = "000000" if right != "000000" else "111111"
    status, html = post(bob, "/access", b, op="approve", grant_id=gid, code=wrong)
    assert status == 403
    assert my_grants(alice)[gid] == "requested"
    assert [e.action for e in audit.log(world.ws, action="session.mfa.fail", limit=10)]
    for bad in ("12", "abc def!", "x" * 50):
        status, html = post(bob, "/access", b, op="approve", grant_id=gid, code=bad)
        assert status == 400, bad
        assert "one-time code" in html
    # An approver who has not approved this grant may not revoke it; the refusal is audited.
    status, html = post(bob, "/access", b, op="revoke", grant_id=gid, reason="not needed any more")
    assert status == 403
    assert my_grants(alice)[gid] == "requested"
    assert audit.log(world.ws, action="grant.revoke.denied", limit=5)


WHY = "evaluate the run"


def test_access_forms_need_csrf_and_valid_fields(app: FastAPI, world: World) -> None:
    alice = browser(app)
    a = page_sign_in(alice, world, "alice")
    r = alice.post("/access", data={"op": "request", "scope": "atlas:v3", "action": "read", "hours": "1"})
    assert r.status_code == 403
    assert my_grants(alice) == {}
    for fields, words in (
        (
            {"op": "request", "scope": "atlas:v3", "action": "fly", "hours": "1", "reason": "eval"},
            "action must be",
        ),
        (
            {"op": "request", "scope": "atlas:v3", "action": "read", "hours": "ten", "reason": WHY},
            "hours",
        ),
        ({"op": "request", "scope": "atlas:v3", "action": "read", "hours": "1", "reason": "x"}, "reason"),
        ({"op": "request", "scope": "atlas:v9", "action": "read", "hours": "1", "reason": WHY}, "v9"),
        (
            {"op": "request", "scope": "atlas:v3", "action": "read", "hours": "900", "reason": WHY},
            "at most",
        ),
        ({"op": "nonsense"}, "unknown action"),
        ({"op": "approve", "grant_id": "../../etc"}, "malformed"),
    ):
        status, html = post(alice, "/access", a, **fields)
        assert 400 <= status < 500, (fields, status)
        assert words in html, (fields, html[-2000:])
    assert my_grants(alice) == {}


def test_reviews_are_decided_and_closed_in_the_page(app: FastAPI, world: World) -> None:
    erin, alice = browser(app), browser(app)
    e = page_sign_in(erin, world, "erin")
    page_sign_in(alice, world, "alice")
    assert alice.get("/access/reviews").status_code == 403  # not a reviewer
    assert "access reviews" not in alice.get("/access").text

    status, html = post(erin, "/access/reviews", e, op="start")
    assert status == 200, html
    (rid,) = re.findall(r'href="/access/reviews/([A-Za-z0-9_-]+)"', html)
    page = erin.get(f"/access/reviews/{rid}").text
    principals = re.findall(r'id="item-([^"]+)" data-decision=""', page)
    assert "pep" in principals  # the service account with a token
    # Closing with undecided principals is refused and says so.
    status, html = post(erin, f"/access/reviews/{rid}", e, op="close")
    assert status in (400, 409)
    assert "undecided" in html
    for p in principals:
        decision = "revoke" if p == "pep" else "keep"
        status, html = post(
            erin,
            f"/access/reviews/{rid}",
            e,
            op="decide",
            principal=p,
            decision=decision,
            reason="checked the roster",
        )
        assert status == 200, html
    status, html = post(erin, f"/access/reviews/{rid}", e, op="close")
    assert status == 200, html
    assert "closed" in html
    details = [ev.details for ev in audit.log(world.ws, action="review.close", limit=5)]
    assert details
    assert "pep" in details[-1]["revoked"]
    assert erin.get("/access/reviews/nonexistent").status_code == 404
