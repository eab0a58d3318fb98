"""Compliance checks for the security appendix's 4.2(1) and 4.2(2), over the live registry.

A4.2(1) accountability for every stored copy: every unreleased version has a registered manifest;
every place it was seen is a registered location approved for it; every approved location was scanned
recently; every approved location's last scan found the copy it should hold.
A4.2(2) no copies on unmanaged devices: no open unauthorised-copy or unmanaged-device finding; every
device that holds or is approved to hold weights is managed; discovery actually runs.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpaisec.compliance.checks import CheckContext, check
from gpaisec.compliance.verdicts import CheckResult, EvidenceRef, Verdict
from gpaisec.weights.models import Device, Finding, Location, LocationApproval, ModelVersion, Scan, Sighting
from gpaisec.weights.registry import STALE_SCAN_DAYS

COPY_FINDINGS = ("unauthorised_copy", "unmanaged_device_copy", "unregistered_location")


def _open_findings(ctx: CheckContext, kinds: tuple[str, ...]) -> list[Finding]:
    return list(
        ctx.session.scalars(
            select(Finding)
            .where(Finding.state != "resolved", Finding.kind.in_(kinds))
            .order_by(Finding.opened_at)
        )
    )


def _finding_reasons(findings: list[Finding], limit: int = 8) -> list[str]:
    out = [f"open {f.severity} finding {f.id} ({f.kind}): {f.summary}" for f in findings[:limit]]
    if len(findings) > limit:
        out.append(f"... and {len(findings) - limit} more open findings")
    return out


@check("A4.2(1)", name="weights.registry_accountability")
def registry_accountability(ctx: CheckContext, item_id: str) -> CheckResult:
    s = ctx.session
    versions = list(
        s.scalars(
            select(ModelVersion)
            .options(selectinload(ModelVersion.model), selectinload(ModelVersion.artifacts))
            .where(ModelVersion.released.is_(False))
        )
    )
    if not versions:
        return CheckResult(
            Verdict.no_evidence,
            (
                "no unreleased model version is registered; register with `gpaisec models add` and "
                "`gpaisec models versions add`",
            ),
        )
    failing: list[str] = []
    partial: list[str] = []
    evidence: list[EvidenceRef] = []
    stale_before = ctx.now - dt.timedelta(days=STALE_SCAN_DAYS)
    approvals = list(
        s.scalars(
            select(LocationApproval).options(
                selectinload(LocationApproval.location).selectinload(Location.device)
            )
        )
    )
    by_version: dict[str, list[Location]] = defaultdict(list)
    for a in approvals:
        if a.location.retired_at is None:
            by_version[a.version_id].append(a.location)
    for v in sorted(versions, key=lambda x: x.ref):
        if not v.artifacts:
            partial.append(
                f"{v.ref} has no registered manifest; run `gpaisec models versions add` with --from"
            )
        for art in v.artifacts:
            evidence.append(
                EvidenceRef("record", f"artifact:{art.id}", note=f"{v.ref} manifest {art.manifest_digest}")
            )
        locs = by_version.get(v.id, [])
        if not locs:
            partial.append(f"{v.ref} has no approved storage location in the registry")
        for loc in locs:
            if loc.last_scan_at is None:
                partial.append(f"{loc.label} (approved for {v.ref}) has never been scanned")
                continue
            if loc.last_scan_at < stale_before:
                partial.append(
                    f"{loc.label} (approved for {v.ref}) was last scanned {loc.last_scan_at.date()}, "
                    f"more than {STALE_SCAN_DAYS} days ago"
                )
                continue
            last_scan = s.scalars(
                select(Sighting.scan_id)
                .join(Scan, Scan.id == Sighting.scan_id)
                .where(Sighting.location_id == loc.id)
                .order_by(Scan.started_at.desc())
                .limit(1)
            ).first()
            seen = (
                last_scan is not None
                and s.scalars(
                    select(Sighting.id)
                    .where(
                        Sighting.scan_id == last_scan,
                        Sighting.location_id == loc.id,
                        Sighting.version_id == v.id,
                    )
                    .limit(1)
                ).first()
                is not None
            )
            if not seen:
                partial.append(
                    f"the last scan of {loc.label} did not find {v.ref}, which it is approved to hold; "
                    "account for the copy or revoke the approval"
                )
    findings = _open_findings(ctx, ("unregistered_location", "unauthorised_copy"))
    failing.extend(_finding_reasons(findings))
    evidence.extend(EvidenceRef("record", f"finding:{f.id}", note=f.kind) for f in findings)
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing + partial), tuple(evidence))
    if partial:
        return CheckResult(Verdict.partly_met, tuple(partial), tuple(evidence))
    n_locs = sum(len(x) for x in by_version.values())
    return CheckResult(
        Verdict.met,
        (
            f"{len(versions)} unreleased versions, {n_locs} approved locations, all scanned within "
            f"{STALE_SCAN_DAYS} days and every copy accounted for; no open copy findings",
        ),
        tuple(evidence),
    )


@check("A4.2(2)", name="weights.unmanaged_copies")
def unmanaged_copies(ctx: CheckContext, item_id: str) -> CheckResult:
    s = ctx.session
    scans = s.scalars(select(Scan.id).limit(1)).first()
    findings = _open_findings(ctx, COPY_FINDINGS)
    reasons = _finding_reasons(findings)
    evidence = [EvidenceRef("record", f"finding:{f.id}", note=f.kind) for f in findings]
    holding = set(
        s.scalars(
            select(Location.device_id)
            .join(LocationApproval)
            .where(Location.device_id.is_not(None), Location.retired_at.is_(None))
        )
    )
    # A device holds weights if its most recent scan saw a copy of a registered version.
    latest_scan: dict[str, str] = {}
    for device_id, scan_id in s.execute(
        select(Scan.device_id, Scan.id).where(Scan.device_id.is_not(None)).order_by(Scan.started_at)
    ):
        latest_scan[str(device_id)] = scan_id
    if latest_scan:
        holding |= set(
            s.scalars(
                select(Sighting.device_id).where(
                    Sighting.scan_id.in_(latest_scan.values()), Sighting.version_id.is_not(None)
                )
            )
        )
    unmanaged = list(
        s.scalars(
            select(Device).where(Device.id.in_(holding), Device.managed.is_(False)).order_by(Device.name)
        )
    )
    reasons.extend(f"device {d.name} holds or may hold weights but is not managed" for d in unmanaged)
    evidence.extend(EvidenceRef("record", f"device:{d.name}", note="unmanaged") for d in unmanaged)
    if reasons:
        return CheckResult(Verdict.not_met, tuple(reasons), tuple(evidence))
    if scans is None:
        return CheckResult(
            Verdict.no_evidence,
            (
                "no discovery scan has run, so copies on unmanaged devices would go unseen; "
                "run `gpaisec discover`",
            ),
        )
    last = s.scalars(select(Scan).order_by(Scan.started_at.desc()).limit(1)).first()
    assert last is not None
    return CheckResult(
        Verdict.met,
        (
            f"{len(holding)} devices hold weights, all managed; no open copy findings; last discovery scan "
            f"{last.id} on {last.started_at.date()}",
        ),
        (EvidenceRef("record", f"scan:{last.id}"),),
    )
