"""Assessment: a run over the catalog giving every item a verdict with reasons and evidence.

For each assessable item, in catalog order:
  1. run every registered check; a check that raises counts as ``not met`` (fail closed) and says so;
  2. gather the item's attestations that are neither withdrawn nor expired;
  3. combine: the worst graded verdict among checks and attestations wins; ``not applicable`` holds only
     when it is attested with a justification and no check grades the item; with nothing at all the
     item has ``no evidence``.
The run and every result are stored, and the run is audited.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpaisec.audit.service import record
from gpaisec.catalog import CatalogItem, load_catalog
from gpaisec.compliance.checks import CheckContext, checks_for, load_area_checks
from gpaisec.compliance.models import AssessmentResult, AssessmentRun, Attestation
from gpaisec.compliance.verdicts import EvidenceRef, Verdict, worst
from gpaisec.errors import NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import Workspace

__all__ = ["ItemResult", "Report", "assess", "latest_report", "load_report"]

CHAPTERS = ("safety-security", "transparency", "copyright", "all")


@dataclass(frozen=True)
class ItemResult:
    item_id: str
    kind: str
    parent: str
    title: str
    verdict: Verdict
    reasons: tuple[str, ...]
    evidence: tuple[dict[str, Any], ...]
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "kind": self.kind,
            "parent": self.parent,
            "title": self.title,
            "verdict": self.verdict.value,
            "reasons": list(self.reasons),
            "evidence": list(self.evidence),
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class Report:
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    actor: str
    chapter: str
    catalog_version: str
    catalog_digest: str
    results: tuple[ItemResult, ...]
    summary: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "actor": self.actor,
            "chapter": self.chapter,
            "catalog": {"version": self.catalog_version, "sha256": self.catalog_digest},
            "summary": self.summary,
            "results": [r.to_json() for r in self.results],
        }


def _summary(results: list[ItemResult] | tuple[ItemResult, ...]) -> dict[str, int]:
    counts = Counter(r.verdict.value for r in results)
    return {v.value: counts.get(v.value, 0) for v in Verdict} | {"total": len(results)}


def _assess_item(ctx: CheckContext, item: CatalogItem, attestations: list[Attestation]) -> ItemResult:
    graded: list[Verdict] = []
    reasons: list[str] = []
    evidence: list[EvidenceRef] = []
    sources: list[str] = []
    # Step 1: automated checks.
    for reg in checks_for(item.id):
        sources.append(f"check:{reg.name}")
        try:
            result = reg.fn(ctx, item.id)
        except Exception as exc:  # a broken check must not pass an item: fail closed, say why
            graded.append(Verdict.not_met)
            reasons.append(
                f"check {reg.name} could not run ({exc.__class__.__name__}: {exc}); counted as not met"
            )
            continue
        if result.verdict is not Verdict.no_evidence:
            graded.append(result.verdict)
        reasons.extend(f"[{reg.name}] {r}" for r in result.reasons)
        evidence.extend(result.evidence)
    checked = bool(graded)
    # Step 2: attestations that still hold.
    not_applicable: list[Attestation] = []
    for att in attestations:
        if att.valid_until is not None and att.valid_until <= ctx.now:
            reasons.append(
                f"attestation {att.id} by {att.attested_by} expired on {att.valid_until.date()}; ignored"
            )
            continue
        sources.append(f"attestation:{att.id}")
        claim = Verdict(att.claim)
        evidence.append(EvidenceRef(kind="attestation", ref=att.id, note=att.attested_by))
        evidence.extend(EvidenceRef(kind="evidence", ref=e) for e in att.evidence_ids)
        if claim is Verdict.not_applicable:
            not_applicable.append(att)
            continue
        graded.append(claim)
        reasons.append(f"attested {claim.label} by {att.attested_by}: {att.statement}")
    # Step 3: combine.
    if graded:
        verdict = worst(graded)
        for att in not_applicable:
            reasons.append(
                f"attested not applicable by {att.attested_by}, but "
                + ("automated checks grade this item" if checked else "other attestations grade it")
                + "; the graded verdict stands"
            )
    elif not_applicable:
        verdict = Verdict.not_applicable
        reasons.extend(f"not applicable, justified by {a.attested_by}: {a.statement}" for a in not_applicable)
    else:
        verdict = Verdict.no_evidence
        if not reasons:
            reasons.append("no automated check and no attestation yet; record one with `gpaisec attest`")
    return ItemResult(
        item_id=item.id,
        kind=item.kind,
        parent=item.parent,
        title=item.title,
        verdict=verdict,
        reasons=tuple(reasons),
        evidence=tuple(e.to_json() for e in evidence),
        sources=tuple(sources),
    )


def _current_attestations(session: Session) -> dict[str, list[Attestation]]:
    out: dict[str, list[Attestation]] = {}
    rows = session.scalars(
        select(Attestation).where(Attestation.withdrawn_at.is_(None)).order_by(Attestation.attested_at)
    )
    for att in rows:
        out.setdefault(att.item_id, []).append(att)
    return out


def assess(ws: Workspace, *, chapter: str = "safety-security", now: dt.datetime | None = None) -> Report:
    """Run an assessment over ``chapter`` and store it."""
    catalog = load_catalog()
    items = catalog.assessable(chapter)
    load_area_checks()
    started = utcnow()
    ctx_now = now or started
    with ws.transaction() as s:
        ctx = CheckContext(session=s, now=ctx_now)
        atts = _current_attestations(s)
        results = [_assess_item(ctx, item, atts.get(item.id, [])) for item in items]
        finished = utcnow()
        summary = _summary(results)
        run = AssessmentRun(
            id=new_id("run"),
            started_at=started,
            finished_at=finished,
            actor=ws.actor,
            chapter=chapter,
            catalog_version=catalog.version,
            catalog_digest=catalog.digest,
            summary=summary,
        )
        run.results = [
            AssessmentResult(
                item_id=r.item_id,
                position=i,
                verdict=r.verdict.value,
                reasons=list(r.reasons),
                evidence=list(r.evidence),
                sources=list(r.sources),
            )
            for i, r in enumerate(results)
        ]
        s.add(run)
        record(
            s,
            actor=ws.actor,
            action="assessment.run",
            object=run.id,
            details={"chapter": chapter, "summary": summary, "catalog_sha256": catalog.digest},
        )
    return Report(
        run_id=run.id,
        started_at=started,
        finished_at=finished,
        actor=ws.actor,
        chapter=chapter,
        catalog_version=catalog.version,
        catalog_digest=catalog.digest,
        results=tuple(results),
        summary=summary,
    )


def _report_from_run(run: AssessmentRun) -> Report:
    catalog = load_catalog()
    results = []
    for r in run.results:
        try:
            item = catalog.get(r.item_id)
            kind, parent, title = str(item.kind), item.parent, item.title
        except NotFoundError:
            kind, parent, title = "unknown", "", r.item_id
        results.append(
            ItemResult(
                item_id=r.item_id,
                kind=kind,
                parent=parent,
                title=title,
                verdict=Verdict(r.verdict),
                reasons=tuple(r.reasons),
                evidence=tuple(r.evidence),
                sources=tuple(r.sources),
            )
        )
    return Report(
        run_id=run.id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        actor=run.actor,
        chapter=run.chapter,
        catalog_version=run.catalog_version,
        catalog_digest=run.catalog_digest,
        results=tuple(results),
        summary=dict(run.summary),
    )


def load_report(ws: Workspace, run_id: str) -> Report:
    with ws.reader() as s:
        run = s.get(AssessmentRun, run_id)
        if run is None:
            raise NotFoundError(f"no assessment run {run_id}", hint="see `gpaisec assess history`")
        return _report_from_run(run)


def latest_report(ws: Workspace) -> Report | None:
    with ws.reader() as s:
        run = s.scalars(select(AssessmentRun).order_by(AssessmentRun.started_at.desc()).limit(1)).first()
        return _report_from_run(run) if run else None


def history(ws: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    with ws.reader() as s:
        runs = s.scalars(select(AssessmentRun).order_by(AssessmentRun.started_at.desc()).limit(limit))
        return [
            {
                "run_id": r.id,
                "started_at": r.started_at,
                "actor": r.actor,
                "chapter": r.chapter,
                "summary": r.summary,
            }
            for r in runs
        ]
