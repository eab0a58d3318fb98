"""Deadlines: reviews, background checks, training, evidence, attestations and grants, past and coming."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gpaisec.access import accounts, reviews
from gpaisec.access.passwords import HashParams
from gpaisec.cli.app import main
from gpaisec.compliance import deadlines, service
from gpaisec.compliance.verdicts import Verdict
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace

PASSWORD = "correct staple orbit lantern"


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "HASH_PARAMS", HashParams.unsafe_fast())


def person(ws: Workspace, name: str, background: dt.datetime | None, training: dt.datetime | None) -> None:
    accounts.add_person(
        ws, f"Person {name}", background_check_valid_until=background, insider_training_valid_until=training
    )
    accounts.add_user(ws, name, person=f"Person {name}", password=PASSWORD)


def test_deadlines_past_and_within_the_horizon_soonest_first(workspace: Workspace, tmp_path: Path) -> None:
    now = utcnow()
    far = now + dt.timedelta(days=400)
    person(workspace, "alice", now + dt.timedelta(days=10), far)
    person(workspace, "bob", far, None)
    person(workspace, "carol", far, far)
    doc = tmp_path / "policy.pdf"
    doc.write_bytes(b"%PDF policy")
    service.add_evidence(
        workspace,
        ["A4.4(1)"],
        title="vetting policy",
        source="HR",
        path=doc,
        expires_at=now + dt.timedelta(days=20),
    )
    service.add_evidence(
        workspace,
        ["A4.4(1)"],
        title="old audit",
        source="HR",
        path=doc,
        expires_at=now + dt.timedelta(days=300),
    )
    service.attest(
        workspace,
        "M7.1",
        claim=Verdict.met,
        statement="The security framework is reviewed yearly by the board.",
        attested_by="erin",
        valid_until=now + dt.timedelta(days=30),
    )
    found = deadlines.upcoming(workspace, now=now)
    kinds = [(d.kind, d.subject) for d in found]
    assert ("access_review", "authorisation review") in kinds  # never closed: due now
    assert ("background_check", "Person alice (alice)") in kinds
    assert ("insider_training", "Person bob (bob)") in kinds  # none on record
    assert ("evidence", "vetting policy") in kinds
    assert ("attestation", "M7.1 by erin") in kinds
    assert all(d.subject != "old audit" for d in found)  # beyond 60 days
    assert all("carol" not in d.subject for d in found)
    assert [d.due for d in found] == sorted(d.due for d in found)
    overdue = {d.kind for d in found if d.overdue(now + dt.timedelta(seconds=1))}
    assert overdue == {"access_review", "insider_training"}
    # A longer horizon brings the far one in.
    assert any(
        d.subject == "old audit" for d in deadlines.upcoming(workspace, horizon=dt.timedelta(days=365))
    )


def test_a_closed_review_moves_the_next_one_six_months_on(workspace: Workspace) -> None:
    c = reviews.start_review(workspace)
    reviews.close_review(workspace, c.id)
    now = utcnow()
    assert not [d for d in deadlines.upcoming(workspace, now=now) if d.kind == "access_review"]
    later = deadlines.upcoming(workspace, horizon=dt.timedelta(days=200), now=now)
    (review,) = [d for d in later if d.kind == "access_review"]
    assert dt.timedelta(days=182) < review.due - now <= dt.timedelta(days=183)
    assert c.id in review.what


def test_cli_deadlines_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "ws")
    assert main(["--workspace", home, "deadlines", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["access_review"]
    assert rows[0]["overdue"] is True
    assert main(["--workspace", home, "deadlines", "--days", "0"]) == 2
    assert "days" in capsys.readouterr().err
