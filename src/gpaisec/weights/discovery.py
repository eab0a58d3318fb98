"""``gpaisec discover``: find copies of registered weights on a device and act on them at once.

1. Build the match index from every registered artifact (fingerprints stored at registration).
2. Walk each root (:func:`gpaisec.weights.walk.scan`): sniff weight files by their bytes, fingerprint
   them cheaply, match; with ``confirm``, hash the matched files fully.
3. In one transaction: record the scan, a sighting per matched file (placed in the registered
   location on this device that contains it, if any), mark every registered location under the
   scanned roots as scanned, and open a finding -- audited and alerted -- for each copy of an
   unreleased version that is on an unmanaged or unknown device, outside any registered location, or
   at a location not approved for that version.

Sealed copies (gpaisec's encrypted format, recognised by their bytes and matched by the plaintext
digest and length in their header, never decrypted) are judged like plaintext copies: at a location
approved for the version they are no finding; anywhere else they open the same finding, at the same
severity, which says the copy appears sealed. The severity is not lowered: a scan reads only the
header, which nobody can authenticate without the key, so "sealed" is the file's claim, and plaintext
weights behind a copied header would otherwise pass as a lesser finding. A sealed copy outside the
registry's control is also one stolen or misused key away from a leak.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gpaisec.audit.service import record
from gpaisec.errors import InputError
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.artifacts import load_match_index
from gpaisec.weights.matching import Match
from gpaisec.weights.models import Device, Finding, Location, ModelVersion, Scan, Sighting
from gpaisec.weights.registry import get_device, open_finding, path_within
from gpaisec.weights.walk import Candidate, ScanReport, scan
from gpaisec.workspace import Workspace

__all__ = ["DiscoveryResult", "discover"]


@dataclass(frozen=True)
class DiscoveryResult:
    scan_id: str
    device: str | None
    roots: tuple[str, ...]
    files_seen: int
    candidates: int
    matches: tuple[dict[str, Any], ...]
    new_findings: tuple[dict[str, Any], ...]
    problems: tuple[dict[str, Any], ...]
    versions_found: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "device": self.device,
            "roots": list(self.roots),
            "files_seen": self.files_seen,
            "candidates": self.candidates,
            "matches": list(self.matches),
            "versions_found": list(self.versions_found),
            "new_findings": list(self.new_findings),
            "problems": list(self.problems),
        }


def _device(s: Session, name: str | None) -> Device | None:
    if name is not None:
        return get_device(s, name)
    # No --device: this host, if it is registered under its host name; otherwise unknown (unmanaged).
    host = socket.gethostname()
    return s.scalars(select(Device).where(Device.name.in_([host, host.split(".")[0]]))).first()


def _location_for(path: str, locations: list[Location]) -> Location | None:
    best: Location | None = None
    for loc in locations:
        if path_within(path, loc.path) and (best is None or len(loc.path) > len(best.path)):
            best = loc
    return best


def _assess_copy(
    s: Session,
    ws: Workspace,
    m: Match,
    version: ModelVersion,
    device: Device | None,
    host: str,
    loc: Location | None,
    sighting: Sighting,
) -> list[Finding]:
    """Open the findings a copy of an unreleased version calls for; return the new ones."""
    if version.released:
        return []
    ref = version.ref
    where = f"{device.name if device else host}:{m.path}"
    problems: list[tuple[str, str, str]] = []
    what = "sealed copy (by its header)" if m.sealed else "copy"
    if device is None:
        problems.append(
            (
                "unmanaged_device_copy",
                "critical",
                f"{what} of unreleased {ref} on unregistered device {host} at {m.path}",
            )
        )
    elif not device.managed:
        problems.append(
            ("unmanaged_device_copy", "critical", f"{what} of unreleased {ref} on unmanaged device {where}")
        )
    if device is not None and loc is None:
        problems.append(
            (
                "unregistered_location",
                "critical",
                f"{what} of unreleased {ref} outside any registered location: {where}",
            )
        )
    elif loc is not None and not any(a.version_id == version.id for a in loc.approvals):
        problems.append(
            (
                "unauthorised_copy",
                "high",
                f"{what} of unreleased {ref} at {loc.label}, which is not approved for it ({m.path})",
            )
        )
    new = []
    for kind, severity, summary in problems:
        details: dict[str, Any] = {
            "path": m.path,
            "version": ref,
            "match": m.kind.value,
            "evidence": m.evidence.value,
        }
        if m.sealed:
            details["sealed"] = True
        finding, is_new = open_finding(
            s,
            ws,
            kind=kind,
            severity=severity,
            summary=summary,
            dedupe_key=f"{kind}|{device.id if device else 'host:' + host}|{m.path}|{version.id}",
            details=details,
            version_id=version.id,
            device_id=device.id if device else None,
            location_id=loc.id if loc else None,
            sighting_id=sighting.id,
        )
        if is_new:
            new.append(finding)
    return new


def discover(
    ws: Workspace,
    roots: Sequence[Path],
    *,
    device: str | None = None,
    confirm: bool = False,
    workers: int = 1,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> DiscoveryResult:
    """Scan ``roots`` on ``device`` (default: this host) and record what was found.

    ``workers`` > 1 walks in forked processes: for the CLI, never inside a threaded server.
    """
    if not roots:
        raise InputError("give at least one directory to scan")
    for root in roots:
        if not root.is_dir():
            raise InputError(f"{root} is not a directory", hint="give directories to scan")
    abs_roots = tuple(os.path.abspath(r) for r in roots)
    started = utcnow()
    with ws.reader() as s:
        index, versions = load_match_index(s)
    reports: list[ScanReport] = [
        scan(root, index, confirm=confirm, workers=workers, on_candidate=on_candidate) for root in abs_roots
    ]
    host = socket.gethostname()
    with ws.transaction() as s:
        dev = _device(s, device)
        locations: list[Location] = []
        if dev is not None:
            locations = list(
                s.scalars(
                    select(Location)
                    .options(selectinload(Location.approvals))
                    .where(Location.device_id == dev.id, Location.retired_at.is_(None))
                )
            )
        version_rows = {
            v.ref: v
            for v in s.scalars(select(ModelVersion).options(selectinload(ModelVersion.model)))
            if v.ref in versions
        }
        matches = [m for r in reports for m in r.discovery.matches]
        problems = [p.to_json() for r in reports for p in r.problems]
        scan_row = Scan(
            id=new_id("scan"),
            device_id=dev.id if dev else None,
            roots=list(abs_roots),
            started_at=started,
            finished_at=utcnow(),
            actor=ws.actor,
            files_seen=sum(r.stats.files for r in reports),
            candidates=sum(r.stats.candidates for r in reports),
            matches=len(matches),
            confirmed=confirm,
            problems=problems,
        )
        s.add(scan_row)
        for covered in locations:
            if any(path_within(covered.path, root) for root in abs_roots):
                covered.last_scan_at = scan_row.finished_at
        new_findings: list[Finding] = []
        match_rows: list[dict[str, Any]] = []
        for m in matches:
            version = version_rows[f"{m.model}:{m.version}"]
            loc = _location_for(m.path, locations)
            sighting = Sighting(
                id=new_id("sgt"),
                scan_id=scan_row.id,
                device_id=dev.id if dev else None,
                location_id=loc.id if loc else None,
                path=m.path,
                size=m.candidate_bytes,
                format=m.format.value if m.format is not None else "",
                version_id=version.id,
                match=m.kind.value,
                coverage=m.candidate_fraction,
                confirmed=m.evidence.value == "confirmed",
                seen_at=scan_row.finished_at,
                seen_by=ws.actor,
            )
            s.add(sighting)
            s.flush()
            new_findings.extend(_assess_copy(s, ws, m, version, dev, host, loc, sighting))
            match_rows.append(
                m.to_json() | {"location": loc.label if loc else None, "released": version.released}
            )
        record(
            s,
            actor=ws.actor,
            action="scan.run",
            object=f"scan:{scan_row.id}",
            details={
                "device": dev.name if dev else f"unregistered host {host}",
                "roots": list(abs_roots),
                "files": scan_row.files_seen,
                "candidates": scan_row.candidates,
                "matches": len(matches),
                "new_findings": [f.id for f in new_findings],
                "problems": len(problems),
            },
        )
    return DiscoveryResult(
        scan_id=scan_row.id,
        device=dev.name if dev else None,
        roots=abs_roots,
        files_seen=scan_row.files_seen,
        candidates=scan_row.candidates,
        matches=tuple(match_rows),
        new_findings=tuple(
            {"id": f.id, "kind": f.kind, "severity": f.severity, "summary": f.summary} for f in new_findings
        ),
        problems=tuple(problems),
        versions_found=tuple(f.to_json() for r in reports for f in r.discovery.findings if f.found),
    )
