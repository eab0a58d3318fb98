"""A measure's page: the catalog text, verdict and reasons, history; attestations and uploads by role."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi import FastAPI

from gpaisec.audit import service as audit
from gpaisec.compliance import assessment, service
from gpaisec.web import _measures
from tests.web.conftest import World, browser, page_sign_in
from tests.web.test_pages import plant_finding

STATEMENT = "Discovery scans every device nightly; alerts go to the SOC runbook RB-12."


def test_the_page_shows_the_item_its_verdict_reasons_and_history(app: FastAPI, world: World) -> None:
    erin = browser(app)
    page_sign_in(erin, world, "erin")
    html = erin.get("/measures/A4.2(2)").text
    assert "Prevent copies to unmanaged devices" in html
    assert "Not assessed yet" in html
    plant_finding(world.ws, "atlas:v3 on a contractor laptop")
    first = assessment.assess(world.ws)
    second = assessment.assess(world.ws)
    html = erin.get("/measures/A4.2(2)").text
    (result,) = [r for r in second.results if r.item_id == "A4.2(2)"]
    assert f'id="verdict" data-verdict="{result.verdict.value}"' in html
    for reason in result.reasons:
        assert reason.replace("'", "&#39;").replace('"', "&#34;") in html
    history = html.split('id="history"')[1]
    assert history.index(second.run_id) < history.index(first.run_id)  # newest first
    # The overview's cell links here.
    assert 'href="/measures/A4.2(2)"' in erin.get("/").text


def test_unknown_and_hostile_item_ids_are_404(app: FastAPI, world: World) -> None:
    erin = browser(app)
    page_sign_in(erin, world, "erin")
    for bad in ("A9.9", "M1.1x", "%3Cscript%3E", "A" * 200):
        r = erin.get(f"/measures/{bad}")
        assert r.status_code == 404, bad
        assert "<script>" not in r.text


def test_an_attestation_from_the_page_counts_in_the_next_assessment(app: FastAPI, world: World) -> None:
    erin = browser(app)
    csrf = page_sign_in(erin, world, "erin")
    r = erin.post(
        "/measures/M7.1",
        data={"csrf_token": csrf, "op": "attest", "claim": "met", "statement": STATEMENT, "role": "CISO"},
    )
    assert r.status_code == 200, r.text
    assert "attestation" in r.text
    (att,) = service.list_attestations(world.ws, "M7.1")
    assert att.attested_by == "erin"
    assert att.claim == "met"
    assert [e.actor for e in audit.log(world.ws, action="attestation.add", limit=5)] == ["user:erin"]
    assert STATEMENT in erin.get("/measures/M7.1").text
    # Too short a statement is refused with what to do.
    r = erin.post(
        "/measures/M7.1", data={"csrf_token": csrf, "op": "attest", "claim": "met", "statement": "ok"}
    )
    assert r.status_code == 400
    assert "at least 20 characters" in r.text
    assert len(service.list_attestations(world.ws, "M7.1")) == 1


def test_an_uploaded_document_is_stored_under_its_hash(app: FastAPI, world: World) -> None:
    erin = browser(app)
    csrf = page_sign_in(erin, world, "erin")
    body = b"%PDF-1.7 penetration test report\n" * 1000
    r = erin.post(
        "/measures/A4.2(2)",
        data={"csrf_token": csrf, "op": "upload", "title": "Pen test 2026-Q3", "expires_at": "2099-01-01"},
        files={"document": ("../../etc/pen test.pdf", body, "application/pdf")},
    )
    assert r.status_code == 200, r.text
    (ev,) = service.list_evidence(world.ws, "A4.2(2)")
    assert ev.content_sha256 == hashlib.sha256(body).hexdigest()
    assert ev.stored_as is not None
    assert (world.ws.home / ev.stored_as).read_bytes() == body
    assert ev.expires_at is not None
    assert ev.expires_at.year == 2099
    page = erin.get("/measures/A4.2(2)").text
    assert ev.content_sha256[:16] in page
    # The limit the page states is the one the server enforces (its request limit, 1 MiB here).
    assert "at most 960 KiB" in page


def test_uploads_are_bounded_and_checked(app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_measures, "MAX_UPLOAD", 1000)
    erin = browser(app)
    csrf = page_sign_in(erin, world, "erin")
    for files, words in (
        ({"document": ("big.bin", b"x" * 1001, "application/octet-stream")}, "larger than"),
        ({"document": ("empty.txt", b"", "text/plain")}, "empty"),
        (None, "choose a document"),
    ):
        r = erin.post("/measures/A4.2(2)", data={"csrf_token": csrf, "op": "upload"}, files=files)
        assert r.status_code == 400, (words, r.text[-500:])
        assert words in r.text
    r = erin.post(
        "/measures/A4.2(2)",
        data={"csrf_token": csrf, "op": "upload", "expires_at": "next tuesday"},
        files={"document": ("a.txt", b"abc", "text/plain")},
    )
    assert r.status_code == 400
    assert "YYYY-MM-DD" in r.text
    assert service.list_evidence(world.ws, "A4.2(2)") == []
    assert (
        not list((world.ws.home / "documents").rglob("*")) if (world.ws.home / "documents").exists() else True
    )


def test_only_attesters_change_a_measure(app: FastAPI, world: World) -> None:
    alice, bob = browser(app), browser(app)
    page_sign_in(alice, world, "alice")
    assert alice.get("/measures/A4.2(2)").status_code == 403  # not staff
    csrf = page_sign_in(bob, world, "bob")
    html = bob.get("/measures/A4.2(2)").text
    assert "Record attestation" not in html  # an approver reads, but does not attest
    r = bob.post(
        "/measures/A4.2(2)",
        data={"csrf_token": csrf, "op": "attest", "claim": "met", "statement": STATEMENT},
    )
    assert r.status_code == 403
    assert service.list_attestations(world.ws, "A4.2(2)") == []
    r = bob.post("/measures/A4.2(2)", data={"op": "attest", "claim": "met", "statement": STATEMENT})
    assert r.status_code == 403  # and without the CSRF token, before anything else
    assert re.search(r"CSRF", r.text)
