"""Registry operations: models, versions, sites, devices, locations and findings.

Every change is one transaction with one audit event (A4.2(1): a secure internal registry of all
devices and locations storing parameters). Lookups take the names people use: a version is
``model:version``, a location ``device:/path`` or a URI.
"""

from __future__ import annotations

import copy
import datetime as dt
import posixpath
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, selectinload

from gpaisec.alerts import raise_alert
from gpaisec.audit.models import AuditEntry
from gpaisec.audit.service import record
from gpaisec.errors import ConflictError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.matching import MatchKind
from gpaisec.weights.models import (
    Device,
    Finding,
    Location,
    LocationApproval,
    Model,
    ModelVersion,
    Site,
)
from gpaisec.workspace import Workspace

STORAGE_KINDS = ("sealed", "encrypted-volume", "plaintext")
SITE_KINDS = ("datacenter", "office", "cloud-region", "other")
FINDING_STATES = ("open", "acknowledged", "resolved")
SEVERITIES = ("critical", "high", "medium", "low")
URI_SCHEMES = ("s3://", "gs://", "az://", "abfs://", "hdfs://", "file://", "nfs://", "smb://")


def _name(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > 100 or any(c in value for c in ":/\\\n\t") or value.startswith("-"):
        raise InputError(
            f"{what} name {value!r} is not usable",
            hint="use 1-100 characters without ':', '/', '\\' or whitespace control characters",
        )
    return value


def _commit_unique(s: Session, what: str, name: str) -> None:
    try:
        s.flush()
    except DBIntegrityError:
        raise ConflictError(
            f"{what} {name!r} already exists", hint=f"choose another name or list {what}s"
        ) from None


# --- lookups ---------------------------------------------------------------------------------------


def get_model(s: Session, name: str) -> Model:
    model = s.scalars(select(Model).where(Model.name == name)).first()
    if model is None:
        raise NotFoundError(f"no model {name!r}", hint="see `gpaisec models list`")
    return model


def parse_version_ref(ref: str) -> tuple[str, str]:
    model, sep, version = ref.partition(":")
    if not sep or not model or not version:
        raise InputError(f"{ref!r} is not a version reference", hint="write MODEL:VERSION, e.g. atlas:v3")
    return model, version


def get_version(s: Session, ref: str) -> ModelVersion:
    model_name, version = parse_version_ref(ref)
    v = s.scalars(
        select(ModelVersion).join(Model).where(Model.name == model_name, ModelVersion.name == version)
    ).first()
    if v is None:
        raise NotFoundError(f"no version {ref}", hint="see `gpaisec models list`")
    return v


def get_site(s: Session, name: str) -> Site:
    site = s.scalars(select(Site).where(Site.name == name)).first()
    if site is None:
        raise NotFoundError(f"no site {name!r}", hint="see `gpaisec sites list`")
    return site


def get_device(s: Session, name: str) -> Device:
    device = s.scalars(select(Device).where(Device.name == name)).first()
    if device is None:
        raise NotFoundError(f"no device {name!r}", hint="register it with `gpaisec devices add`")
    return device


@dataclass(frozen=True)
class LocationSpec:
    device: str | None
    path: str


def parse_location(spec: str) -> LocationSpec:
    """``device:/abs/path`` or a storage URI (``s3://bucket/prefix``)."""
    spec = spec.strip()
    if spec.startswith(URI_SCHEMES):
        return LocationSpec(device=None, path=spec.rstrip("/"))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):
        raise InputError(
            f"{spec!r} is not a location: its URI scheme is not supported",
            hint=f"use one of {', '.join(URI_SCHEMES)} or DEVICE:/absolute/path",
        )
    device, sep, path = spec.partition(":")
    if not sep or not device or not path.startswith("/"):
        raise InputError(
            f"{spec!r} is not a location",
            hint="write DEVICE:/absolute/path or a URI such as s3://bucket/prefix",
        )
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return LocationSpec(device=device, path=norm)


def get_location(s: Session, spec: str) -> Location:
    ls = parse_location(spec)
    q = select(Location).where(Location.path == ls.path)
    if ls.device is None:
        q = q.where(Location.device_id.is_(None))
    else:
        q = q.join(Device).where(Device.name == ls.device)
    loc = s.scalars(q).first()
    if loc is None:
        raise NotFoundError(f"no location {spec}", hint="register it with `gpaisec locations add`")
    return loc


def path_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- models and versions ---------------------------------------------------------------------------


def add_model(
    ws: Workspace,
    name: str,
    *,
    released: bool = False,
    training_flop: float | None = None,
    description: str = "",
) -> Model:
    name = _name(name, "model")
    if training_flop is not None and not training_flop > 0:
        raise InputError(
            "--training-flop must be a positive number of floating-point operations, e.g. 3.2e25"
        )
    model = Model(
        id=new_id("mdl"),
        name=name,
        description=description,
        released=released,
        training_flop=training_flop,
        created_at=utcnow(),
    )
    with ws.transaction() as s:
        s.add(model)
        _commit_unique(s, "model", name)
        record(
            s,
            actor=ws.actor,
            action="model.add",
            object=f"model:{name}",
            details={"released": released, "training_flop": training_flop},
        )
    return model


def create_version(
    s: Session,
    ws: Workspace,
    model_name: str,
    name: str,
    *,
    released: bool | None = None,
    training_flop: float | None = None,
) -> ModelVersion:
    """Add a version inside the caller's transaction (used by version registration)."""
    model = get_model(s, model_name)
    name = _name(name, "version")
    version = ModelVersion(
        id=new_id("ver"),
        model_id=model.id,
        name=name,
        released=model.released if released is None else released,
        training_flop=training_flop if training_flop is not None else model.training_flop,
        created_at=utcnow(),
    )
    version.model = model
    s.add(version)
    _commit_unique(s, "version", f"{model_name}:{name}")
    record(
        s,
        actor=ws.actor,
        action="version.add",
        object=f"version:{model_name}:{name}",
        details={"released": version.released, "training_flop": version.training_flop},
    )
    return version


def set_released(ws: Workspace, ref: str, *, released: bool = True) -> ModelVersion:
    with ws.transaction() as s:
        v = get_version(s, ref)
        if v.released == released:
            raise ConflictError(f"{ref} is already {'released' if released else 'unreleased'}")
        v.released = released
        v.released_at = utcnow() if released else None
        record(
            s,
            actor=ws.actor,
            action="version.release" if released else "version.unrelease",
            object=f"version:{ref}",
            details={},
        )
    return v


def list_models(ws: Workspace) -> list[Model]:
    with ws.reader() as s:
        return list(
            s.scalars(
                select(Model)
                .options(selectinload(Model.versions).selectinload(ModelVersion.artifacts))
                .order_by(Model.name)
            )
        )


# --- sites, devices, locations ---------------------------------------------------------------------


def add_site(ws: Workspace, name: str, *, kind: str = "datacenter", description: str = "") -> Site:
    name = _name(name, "site")
    if kind not in SITE_KINDS:
        raise InputError(f"unknown site kind {kind!r}", hint=f"use one of {', '.join(SITE_KINDS)}")
    site = Site(id=new_id("site"), name=name, kind=kind, description=description, created_at=utcnow())
    with ws.transaction() as s:
        s.add(site)
        _commit_unique(s, "site", name)
        record(s, actor=ws.actor, action="site.add", object=f"site:{name}", details={"kind": kind})
    return site


def add_device(
    ws: Workspace,
    name: str,
    *,
    site: str | None = None,
    managed: bool = False,
    owner: str = "",
    disk_encrypted: bool = False,
    edr: bool = False,
) -> Device:
    name = _name(name, "device")
    with ws.transaction() as s:
        site_row = get_site(s, site) if site else None
        device = Device(
            id=new_id("dev"),
            name=name,
            site_id=site_row.id if site_row else None,
            managed=managed,
            owner=owner,
            disk_encrypted=disk_encrypted,
            edr=edr,
            created_at=utcnow(),
        )
        s.add(device)
        _commit_unique(s, "device", name)
        record(
            s,
            actor=ws.actor,
            action="device.add",
            object=f"device:{name}",
            details={
                "site": site,
                "managed": managed,
                "owner": owner,
                "disk_encrypted": disk_encrypted,
                "edr": edr,
            },
        )
    return device


def update_device(ws: Workspace, name: str, **changes: Any) -> Device:
    allowed = {"managed", "owner", "disk_encrypted", "edr"}
    bad = set(changes) - allowed
    if bad:
        raise InputError(f"cannot change {', '.join(sorted(bad))} of a device")
    with ws.transaction() as s:
        device = get_device(s, name)
        before = {k: getattr(device, k) for k in changes}
        for k, v in changes.items():
            setattr(device, k, v)
        record(
            s,
            actor=ws.actor,
            action="device.update",
            object=f"device:{name}",
            details={"before": before, "after": changes},
        )
    return device


def list_devices(ws: Workspace) -> list[Device]:
    with ws.reader() as s:
        return list(s.scalars(select(Device).options(selectinload(Device.site)).order_by(Device.name)))


def list_sites(ws: Workspace) -> list[Site]:
    with ws.reader() as s:
        return list(s.scalars(select(Site).order_by(Site.name)))


def add_location(
    ws: Workspace,
    spec: str,
    *,
    storage: str | None = None,
    approve: Sequence[str] = (),
    description: str = "",
) -> Location:
    ls = parse_location(spec)
    if storage is not None and storage not in STORAGE_KINDS:
        raise InputError(f"unknown storage kind {storage!r}", hint=f"use one of {', '.join(STORAGE_KINDS)}")
    with ws.transaction() as s:
        device = get_device(s, ls.device) if ls.device else None
        # The unique constraint on (device, path) does not cover URIs (no device: NULL never equals NULL).
        if (
            device is None
            and s.scalars(
                select(Location.id).where(Location.device_id.is_(None), Location.path == ls.path)
            ).first()
        ):
            raise ConflictError(f"location {spec!r} already exists", hint="see gpaisec locations list")
        if storage is None:
            storage = "encrypted-volume" if device is not None and device.disk_encrypted else "plaintext"
        loc = Location(
            id=new_id("loc"),
            device_id=device.id if device else None,
            path=ls.path,
            storage=storage,
            description=description,
            created_at=utcnow(),
        )
        loc.device = device
        s.add(loc)
        _commit_unique(s, "location", spec)
        record(
            s,
            actor=ws.actor,
            action="location.add",
            object=f"location:{loc.label}",
            details={"storage": storage},
        )
        for ref in approve:
            _approve(s, ws, loc, ref)
    return loc


def _approve(s: Session, ws: Workspace, loc: Location, ref: str) -> None:
    version = get_version(s, ref)
    if any(a.version_id == version.id for a in loc.approvals):
        raise ConflictError(f"{loc.label} is already approved for {ref}")
    loc.approvals.append(LocationApproval(version_id=version.id, approved_by=ws.actor, approved_at=utcnow()))
    record(
        s, actor=ws.actor, action="location.approve", object=f"location:{loc.label}", details={"version": ref}
    )


def approve_location(ws: Workspace, spec: str, ref: str) -> Location:
    with ws.transaction() as s:
        loc = get_location(s, spec)
        _approve(s, ws, loc, ref)
    return loc


def revoke_location(ws: Workspace, spec: str, ref: str) -> Location:
    with ws.transaction() as s:
        loc = get_location(s, spec)
        version = get_version(s, ref)
        kept = [a for a in loc.approvals if a.version_id != version.id]
        if len(kept) == len(loc.approvals):
            raise ConflictError(f"{loc.label} is not approved for {ref}")
        loc.approvals = kept
        record(
            s,
            actor=ws.actor,
            action="location.revoke",
            object=f"location:{loc.label}",
            details={"version": ref},
        )
    return loc


def list_locations(ws: Workspace) -> list[Location]:
    with ws.reader() as s:
        return list(
            s.scalars(
                select(Location)
                .options(
                    selectinload(Location.device),
                    selectinload(Location.approvals)
                    .selectinload(LocationApproval.version)
                    .selectinload(ModelVersion.model),
                )
                .order_by(Location.path)
            )
        )


# --- findings --------------------------------------------------------------------------------------


def open_finding(
    s: Session,
    ws: Workspace,
    *,
    kind: str,
    severity: str,
    summary: str,
    dedupe_key: str,
    details: dict[str, Any] | None = None,
    version_id: str | None = None,
    device_id: str | None = None,
    location_id: str | None = None,
    sighting_id: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Finding, bool]:
    """Open a finding in the caller's transaction, or refresh the open one with the same key.

    Returns the finding and whether it is new. A new finding is audited as ``finding.open``.
    """
    assert severity in SEVERITIES
    now = now or utcnow()
    existing = s.scalars(
        select(Finding).where(Finding.dedupe_key == dedupe_key, Finding.state != "resolved")
    ).first()
    if existing is not None:
        existing.last_seen_at = now
        if sighting_id:
            existing.sighting_id = sighting_id
        return existing, False
    finding = Finding(
        id=new_id("fnd"),
        kind=kind,
        severity=severity,
        state="open",
        summary=summary,
        dedupe_key=dedupe_key,
        version_id=version_id,
        device_id=device_id,
        location_id=location_id,
        sighting_id=sighting_id,
        details=details or {},
        opened_at=now,
        last_seen_at=now,
    )
    s.add(finding)
    if severity in ("critical", "high"):
        raise_alert(s, kind=kind, severity=severity, summary=summary, ref=finding.id, **(details or {}))
    record(
        s,
        actor=ws.actor,
        action="finding.open",
        object=finding.id,
        details={"kind": kind, "severity": severity, "summary": summary, **(details or {})},
    )
    return finding, True


def acknowledge_finding(ws: Workspace, finding_id: str, *, note: str = "") -> Finding:
    with ws.transaction() as s:
        f = _get_finding(s, finding_id)
        if f.state != "open":
            raise ConflictError(f"finding {finding_id} is {f.state}, not open")
        f.state, f.acknowledged_at, f.acknowledged_by = "acknowledged", utcnow(), ws.actor
        record(s, actor=ws.actor, action="finding.acknowledge", object=f.id, details={"note": note})
    return f


def resolve_finding(ws: Workspace, finding_id: str, *, reason: str) -> Finding:
    if len(reason.strip()) < 10:
        raise InputError(
            "resolving a finding needs a reason", hint="say what was done, at least 10 characters"
        )
    with ws.transaction() as s:
        f = _get_finding(s, finding_id)
        if f.state == "resolved":
            raise ConflictError(f"finding {finding_id} is already resolved")
        f.state, f.resolved_at, f.resolved_by, f.resolution = "resolved", utcnow(), ws.actor, reason.strip()
        record(s, actor=ws.actor, action="finding.resolve", object=f.id, details={"reason": reason.strip()})
    return f


def _get_finding(s: Session, finding_id: str) -> Finding:
    f = s.get(Finding, finding_id)
    if f is None:
        raise NotFoundError(f"no finding {finding_id}", hint="see `gpaisec findings list`")
    return f


def list_findings(ws: Workspace, *, open_only: bool = False, kind: str | None = None) -> list[Finding]:
    with ws.reader() as s:
        q = select(Finding).order_by(Finding.opened_at.desc())
        if open_only:
            q = q.where(Finding.state != "resolved")
        if kind:
            q = q.where(Finding.kind == kind)
        return list(s.scalars(q))


# --- the registry view -----------------------------------------------------------------------------


# The whole view, per database, with the audit log's head it was read at: every change to the
# registry writes an audit event in its own transaction, so an unchanged head means an unchanged view.
_VIEW_CACHE: dict[str, tuple[int, list[dict[str, Any]]]] = {}
_VIEW_CACHE_LOCK = threading.Lock()


def registry_view(ws: Workspace, *, model: str | None = None) -> list[dict[str, Any]]:
    """Where every version lives: approved locations with their state, and every other place it was seen.

    One entry per version (unreleased first). Each copy says where it is, on which device (managed or
    not), how it is stored, when it was last scanned, whether the last scan found it, and its open findings.

    The view of every model is kept per database and reused while the audit log has not grown (read
    in the same transaction as the view), which is what lets the dashboard's registry page answer
    quickly under load; callers get their own copy.
    """
    with ws.reader() as s:
        head = s.scalar(select(func.max(AuditEntry.seq)))
        head = -1 if head is None else int(head)
        if model is None:
            with _VIEW_CACHE_LOCK:
                hit = _VIEW_CACHE.get(ws.database_url)
            if hit is not None and hit[0] == head:
                return copy.deepcopy(hit[1])
        view = _registry_view(s, model)
    if model is None:
        with _VIEW_CACHE_LOCK:
            _VIEW_CACHE[ws.database_url] = (head, copy.deepcopy(view))
    return view


def _registry_view(s: Session, model: str | None) -> list[dict[str, Any]]:
    from gpaisec.weights.models import Scan, Sighting  # local: keeps the lookups above light

    q = select(ModelVersion).options(selectinload(ModelVersion.model), selectinload(ModelVersion.artifacts))
    if model is not None:
        q = q.where(ModelVersion.model_id == get_model(s, model).id)
    versions = sorted(s.scalars(q), key=lambda v: (v.released, v.model.name, v.created_at))
    approvals = list(
        s.scalars(
            select(LocationApproval).options(
                selectinload(LocationApproval.location).selectinload(Location.device)
            )
        )
    )
    open_findings = list(s.scalars(select(Finding).where(Finding.state != "resolved")))
    devices = {d.id: d for d in s.scalars(select(Device))}
    locations = {loc.id: loc for loc in s.scalars(select(Location))}
    # The latest scan that covered each location (from the distinct (location, scan) pairs).
    latest: dict[str, tuple[dt.datetime, str]] = {}
    pairs = (
        select(Sighting.location_id, Sighting.scan_id)
        .where(Sighting.location_id.is_not(None))
        .distinct()
        .subquery()
    )
    for loc_id, scan_id, started in s.execute(
        select(pairs.c.location_id, pairs.c.scan_id, Scan.started_at).join(Scan, Scan.id == pairs.c.scan_id)
    ):
        have = latest.get(str(loc_id))
        if have is None or (started, scan_id) > have:
            latest[str(loc_id)] = (started, scan_id)
    # How many files of each version each location's latest scan saw: counted by the database
    # (the covering index ix_sightings_location_scan_version answers both queries).
    seen_latest: dict[tuple[str, str], int] = {}
    for loc_id, scan_id, ver_id, n in s.execute(
        select(Sighting.location_id, Sighting.scan_id, Sighting.version_id, func.count())
        .where(Sighting.location_id.is_not(None), Sighting.version_id.is_not(None))
        .group_by(Sighting.location_id, Sighting.scan_id, Sighting.version_id)
    ):
        if latest.get(str(loc_id), (None, None))[1] == scan_id:
            seen_latest[(str(loc_id), str(ver_id))] = int(n)
    findings_by_sighting: dict[str, list[str]] = {}
    findings_by_location: dict[str, list[str]] = {}
    for f in open_findings:
        if f.sighting_id:
            findings_by_sighting.setdefault(f.sighting_id, []).append(f.id)
        if f.location_id:
            findings_by_location.setdefault(f.location_id, []).append(f.id)
    approvals_by_version: dict[str, list[LocationApproval]] = {}
    for a in approvals:
        approvals_by_version.setdefault(a.version_id, []).append(a)
    out: list[dict[str, Any]] = []
    for v in versions:
        copies: list[dict[str, Any]] = []
        approved_ids = set()
        for a in approvals_by_version.get(v.id, []):
            loc = a.location
            approved_ids.add(loc.id)
            files = seen_latest.get((loc.id, v.id), 0)
            copies.append(
                {
                    "location": loc.label,
                    "device": loc.device.name if loc.device else None,
                    "managed": loc.device.managed if loc.device else None,
                    "storage": loc.storage,
                    "approved": True,
                    "last_scan_at": loc.last_scan_at,
                    "present": bool(files) if loc.last_scan_at else None,
                    "files": files,
                    "findings": findings_by_location.get(loc.id, []),
                }
            )
        # Every other place the version was seen: only those rows, and only the columns shown.
        q_else = (
            select(
                Sighting.id,
                Sighting.location_id,
                Sighting.device_id,
                Sighting.path,
                Sighting.seen_at,
                Sighting.match,
            )
            .where(Sighting.version_id == v.id)
            .order_by(Sighting.seen_at.desc())
        )
        if approved_ids:
            q_else = q_else.where(
                Sighting.location_id.is_(None) | Sighting.location_id.not_in(sorted(approved_ids))
            )
        elsewhere: dict[tuple[str | None, str], dict[str, Any]] = {}
        for sighting_id, location_id, device_id, path, seen_at, match in s.execute(q_else):
            loc_row = locations.get(location_id) if location_id else None
            place = loc_row.label if loc_row else path.rsplit("/", 1)[0]
            dev = devices.get(device_id) if device_id else None
            key = (device_id, place)
            # How the copy is stored, from what the scan saw: a sealed file is sealed whatever the
            # location says; plaintext is on an encrypted volume only if the device's disk is.
            storage = (
                "sealed"
                if match == MatchKind.SEALED_COPY
                else "encrypted-volume"
                if dev is not None and dev.disk_encrypted
                else "plaintext"
            )
            if key in elsewhere:
                copy = elsewhere[key]
                copy["files"] += 1
                copy["findings"].extend(findings_by_sighting.get(sighting_id, []))
                if copy["storage"] != storage:
                    copy["storage"] = "mixed"
                continue
            elsewhere[key] = {
                "location": place if loc_row else f"{dev.name if dev else '?'}:{place}",
                "device": dev.name if dev else None,
                "managed": dev.managed if dev else False,
                "storage": storage,
                "approved": False,
                "last_scan_at": seen_at,
                "present": True,
                "files": 1,
                "findings": list(findings_by_sighting.get(sighting_id, [])),
            }
        version_findings = [f.id for f in open_findings if f.version_id == v.id]
        version_finding_ids = set(version_findings)
        for copy in elsewhere.values():
            copy["findings"] = [f for f in copy["findings"] if f in version_finding_ids]
        out.append(
            {
                "version": v.ref,
                "released": v.released,
                "training_flop": v.training_flop,
                "manifests": [
                    {"digest": a.manifest_digest, "files": a.file_count, "bytes": a.total_size}
                    for a in v.artifacts
                ],
                "copies": copies + list(elsewhere.values()),
                "open_findings": version_findings,
            }
        )
    return out


STALE_SCAN_DAYS = 30


def sweep_stale_scans(
    ws: Workspace, *, days: int = STALE_SCAN_DAYS, now: dt.datetime | None = None
) -> list[Finding]:
    """Open a ``stale_scan`` finding for every approved location of an unreleased version that has not been
    scanned within ``days``; resolve the ones whose location has been scanned since. Returns new findings."""
    if days < 1:
        raise InputError("the stale-scan window must be at least one day")
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=days)
    new: list[Finding] = []
    with ws.transaction() as s:
        rows = s.scalars(
            select(LocationApproval)
            .join(ModelVersion, ModelVersion.id == LocationApproval.version_id)
            .where(ModelVersion.released.is_(False))
            .options(selectinload(LocationApproval.location).selectinload(Location.device))
        )
        stale: dict[str, Location] = {}
        for a in rows:
            loc = a.location
            if loc.retired_at is None and (loc.last_scan_at is None or loc.last_scan_at < cutoff):
                stale[loc.id] = loc
        for loc in stale.values():
            when = loc.last_scan_at.date().isoformat() if loc.last_scan_at else "never"
            finding, is_new = open_finding(
                s,
                ws,
                kind="stale_scan",
                severity="medium",
                summary=f"{loc.label} holds unreleased weights and was last scanned {when} "
                f"(window {days} days)",
                dedupe_key=f"stale_scan|{loc.id}",
                details={
                    "location": loc.label,
                    "last_scan_at": loc.last_scan_at.isoformat() if loc.last_scan_at else None,
                },
                location_id=loc.id,
                device_id=loc.device_id,
                now=now,
            )
            if is_new:
                new.append(finding)
        for f in s.scalars(select(Finding).where(Finding.kind == "stale_scan", Finding.state != "resolved")):
            if f.location_id not in stale:
                f.state, f.resolved_at, f.resolved_by = "resolved", now, ws.actor
                f.resolution = "the location has been scanned within the window"
                record(
                    s, actor=ws.actor, action="finding.resolve", object=f.id, details={"reason": f.resolution}
                )
    return new
