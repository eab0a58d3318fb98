from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gpaisec.compliance import assessment, service
from gpaisec.compliance.checks import CheckContext, check, unregister
from gpaisec.compliance.models import AssessmentResult
from gpaisec.compliance.reports import render_text
from gpaisec.compliance.verdicts import CheckResult, EvidenceRef, Verdict
from gpaisec.errors import InputError
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace

STATEMENT = "The control is in place and documented in the security handbook, section 4."


def verdicts(report: assessment.Report) -> dict[str, Verdict]:
    return {r.item_id: r.verdict for r in report.results}


@pytest.fixture
def temp_checks() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        unregister(n)


def test_empty_workspace_has_no_evidence_for_every_item(workspace: Workspace) -> None:
    report = assessment.assess(workspace)
    assert report.summary["total"] == 57
    got = verdicts(report)
    # Areas may register checks; everything they do not grade must be honest "no evidence".
    assert all(
        v in (Verdict.no_evidence, Verdict.not_met, Verdict.partly_met, Verdict.met) for v in got.values()
    )
    assert got["M1.1"] is Verdict.no_evidence
    assert any("gpaisec attest" in r for r in next(x for x in report.results if x.item_id == "M1.1").reasons)


def test_attestations_give_verdicts(workspace: Workspace) -> None:
    service.attest(workspace, "M1.1", claim=Verdict.met, statement=STATEMENT, attested_by="Dr. Vogt")
    service.attest(
        workspace, "M10.2", claim=Verdict.not_applicable, statement=STATEMENT, attested_by="Dr. Vogt"
    )
    service.attest(workspace, "M8.1", claim=Verdict.met, statement=STATEMENT, attested_by="A")
    service.attest(workspace, "M8.1", claim=Verdict.partly_met, statement=STATEMENT, attested_by="B")
    got = verdicts(assessment.assess(workspace))
    assert got["M1.1"] is Verdict.met
    assert got["M10.2"] is Verdict.not_applicable
    assert got["M8.1"] is Verdict.partly_met  # the worst graded verdict wins


def test_expired_and_withdrawn_attestations_do_not_count(workspace: Workspace) -> None:
    att = service.attest(
        workspace,
        "M1.2",
        claim=Verdict.met,
        statement=STATEMENT,
        attested_by="A",
        valid_until=utcnow() + dt.timedelta(days=1),
    )
    later = utcnow() + dt.timedelta(days=2)
    result = next(r for r in assessment.assess(workspace, now=later).results if r.item_id == "M1.2")
    assert result.verdict is Verdict.no_evidence
    assert any("expired" in r for r in result.reasons)
    service.withdraw_attestation(workspace, att.id, reason="superseded")
    assert verdicts(assessment.assess(workspace))["M1.2"] is Verdict.no_evidence


def test_check_grades_and_not_applicable_cannot_hide_it(workspace: Workspace, temp_checks: list[str]) -> None:
    def failing(ctx: CheckContext, item_id: str) -> CheckResult:
        return CheckResult(Verdict.not_met, ("device gpu-9 is unmanaged",), (EvidenceRef("record", "gpu-9"),))

    check("A4.1(3)", name="test.failing")(failing)
    temp_checks.append("test.failing")
    service.attest(workspace, "A4.1(3)", claim=Verdict.not_applicable, statement=STATEMENT, attested_by="A")
    result = next(r for r in assessment.assess(workspace).results if r.item_id == "A4.1(3)")
    assert result.verdict is Verdict.not_met
    assert any("gpu-9" in r for r in result.reasons)
    assert {"kind": "record", "ref": "gpu-9"} in result.evidence


def test_a_crashing_check_fails_closed(workspace: Workspace, temp_checks: list[str]) -> None:
    def broken(ctx: CheckContext, item_id: str) -> CheckResult:
        raise RuntimeError("table missing")

    check("A4.1(4)", name="test.broken")(broken)
    temp_checks.append("test.broken")
    service.attest(workspace, "A4.1(4)", claim=Verdict.met, statement=STATEMENT, attested_by="A")
    result = next(r for r in assessment.assess(workspace).results if r.item_id == "A4.1(4)")
    assert result.verdict is Verdict.not_met
    assert any("could not run" in r for r in result.reasons)


def test_runs_are_stored_and_reloaded(workspace: Workspace) -> None:
    service.attest(workspace, "M1.1", claim=Verdict.met, statement=STATEMENT, attested_by="A")
    report = assessment.assess(workspace)
    again = assessment.load_report(workspace, report.run_id)
    assert again.results == report.results
    with workspace.reader() as s:
        n = len(list(s.scalars(select(AssessmentResult).where(AssessmentResult.run_id == report.run_id))))
    assert n == 57
    assert assessment.history(workspace)[0]["run_id"] == report.run_id


def test_attestation_documents_are_hashed(workspace: Workspace, tmp_path: Path) -> None:
    doc = tmp_path / "policy.pdf"
    doc.write_bytes(b"%PDF-1.7 fake policy")
    att = service.attest(
        workspace, "M8.3", claim=Verdict.met, statement=STATEMENT, attested_by="A", documents=[doc]
    )
    (ev,) = service.list_evidence(workspace, "M8.3")
    assert ev.id in att.evidence_ids
    import hashlib

    assert ev.content_sha256 == hashlib.sha256(doc.read_bytes()).hexdigest()
    assert (workspace.home / str(ev.stored_as)).read_bytes() == doc.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"statement": "too short"}, "too short"),
        ({"attested_by": " "}, "name of the person"),
        ({"claim": Verdict.no_evidence}, "must claim"),
        ({"valid_until": dt.datetime(2001, 1, 1, tzinfo=dt.UTC)}, "in the past"),
    ],
)
def test_bad_attestations_are_refused(workspace: Workspace, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"claim": Verdict.met, "statement": STATEMENT, "attested_by": "A"}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        service.attest(workspace, "M1.1", **args)  # type: ignore[arg-type]
    assert service.list_attestations(workspace) == []


def test_exports(workspace: Workspace) -> None:
    service.attest(
        workspace, "M1.1", claim=Verdict.met, statement=STATEMENT + " <script>x</script>", attested_by="A"
    )
    report = assessment.assess(workspace)
    doc = json.loads(render_text(report, "json"))
    assert len(doc["assessment"]["results"]) == 57
    oscal = json.loads(render_text(report, "oscal"))["assessment-results"]
    assert oscal["metadata"]["oscal-version"] == "1.1.2"
    (result,) = oscal["results"]
    findings = result["findings"]
    assert len(findings) == 57
    assert len({f["uuid"] for f in findings}) == 57
    obs_ids = {o["uuid"] for o in result["observations"]}
    assert all(f["related-observations"][0]["observation-uuid"] in obs_ids for f in findings)
    m11 = next(f for f in findings if f["target"]["target-id"] == "m1-1")
    assert m11["target"]["status"]["state"] == "satisfied"
    html = render_text(report, "html")
    assert "<script>" not in html  # statements are escaped; the report carries no script at all
    assert all(f'id="{r.item_id}"' in html for r in report.results)
    from gpaisec.catalog import load_catalog

    assert f"<h2>A4.2 {load_catalog().group('A4.2').title}</h2>" in html  # sections carry their titles
