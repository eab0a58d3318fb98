"""Registry commands: models, sites, devices, locations, findings and the registry view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.markup import escape

from gpaisec.cli import common
from gpaisec.integrity import Algorithm, HashParams, terminal_progress
from gpaisec.weights import registry
from gpaisec.weights.artifacts import register_version
from gpaisec.weights.discovery import discover

models_app = typer.Typer(help="Models and their versions.", no_args_is_help=True)
versions_app = typer.Typer(help="Versions of a model.", no_args_is_help=True)
sites_app = typer.Typer(help="Sites: data centres, offices, cloud regions.", no_args_is_help=True)
devices_app = typer.Typer(help="Devices that may hold weights.", no_args_is_help=True)
locations_app = typer.Typer(help="Locations: directories on devices, or bucket URIs.", no_args_is_help=True)
findings_app = typer.Typer(
    help="Findings: unauthorised copies, unmanaged devices, stale scans.", no_args_is_help=True
)
models_app.add_typer(versions_app, name="versions")


@models_app.command("add")
def models_add(
    name: str,
    unreleased: Annotated[
        bool, typer.Option("--unreleased/--released", help="Whether its weights are unpublished (default).")
    ] = True,
    training_flop: Annotated[float | None, typer.Option(help="Training compute, e.g. 3.2e25.")] = None,
    description: Annotated[str, typer.Option()] = "",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Register a model."""
    m = registry.add_model(
        common.workspace(),
        name,
        released=not unreleased,
        training_flop=training_flop,
        description=description,
    )
    common.emit(
        fmt,
        {"id": m.id, "name": m.name, "released": m.released, "training_flop": m.training_flop},
        lambda: common.info(f"model {m.name} registered ({'released' if m.released else 'unreleased'})"),
    )


@models_app.command("list")
def models_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List models and their versions."""
    rows = registry.list_models(common.workspace())
    data = [
        {
            "name": m.name,
            "released": m.released,
            "training_flop": m.training_flop,
            "versions": [
                {"name": v.name, "released": v.released, "artifacts": len(v.artifacts)} for v in m.versions
            ],
        }
        for m in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Models",
            ["model", "training FLOP", "versions"],
            [
                [
                    m.name,
                    f"{m.training_flop:.2e}" if m.training_flop else "",
                    ", ".join(f"{v.name}{'' if v.released else ' (unreleased)'}" for v in m.versions),
                ]
                for m in rows
            ],
            empty="no models: register one with `gpaisec models add NAME --unreleased`",
        ),
    )


@versions_app.command("add")
def versions_add(
    model: str,
    version: str,
    source: Annotated[Path, typer.Option("--from", help="The directory holding the version's files.")],
    released: Annotated[
        bool | None, typer.Option("--released/--unreleased", help="Default: the model's.")
    ] = None,
    training_flop: Annotated[float | None, typer.Option(help="Training compute of this version.")] = None,
    algorithm: Annotated[str, typer.Option(help="blake3 (default) or sha256.")] = "blake3",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Register a version from its files: hashes the directory, stores its manifest and fingerprints."""
    ws = common.workspace()
    with terminal_progress("hashing") as progress:
        artifact = register_version(
            ws,
            model,
            version,
            source=source,
            released=released,
            training_flop=training_flop,
            params=HashParams(algorithm=cast(Algorithm, algorithm)),  # HashParams refuses unknown names
            progress=progress,
        )
    data = {
        "version": f"{model}:{version}",
        "artifact": artifact.id,
        "manifest": artifact.manifest_digest,
        "files": artifact.file_count,
        "bytes": artifact.total_size,
    }
    common.emit(
        fmt,
        data,
        lambda: common.info(
            f"{model}:{version} registered: {artifact.file_count} files, {artifact.total_size:,} bytes, "
            f"manifest {artifact.manifest_digest}"
        ),
    )


@versions_app.command("release")
def versions_release(ref: Annotated[str, typer.Argument(help="MODEL:VERSION")]) -> None:
    """Mark a version as released (its weights are published)."""
    registry.set_released(common.workspace(), ref, released=True)
    common.info(f"{ref} marked released")


@sites_app.command("add")
def sites_add(
    name: str,
    kind: Annotated[str, typer.Option(help="datacenter, office, cloud-region or other.")] = "datacenter",
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Register a site."""
    registry.add_site(common.workspace(), name, kind=kind, description=description)
    common.info(f"site {name} registered")


@sites_app.command("list")
def sites_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List sites."""
    rows = registry.list_sites(common.workspace())
    data = [{"name": s.name, "kind": s.kind, "description": s.description} for s in rows]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Sites",
            ["site", "kind", "description"],
            [[s.name, s.kind, s.description] for s in rows],
            empty="no sites: add one with `gpaisec sites add NAME`",
        ),
    )


@devices_app.command("add")
def devices_add(
    name: str,
    site: Annotated[str | None, typer.Option(help="The site it is in.")] = None,
    managed: Annotated[
        bool, typer.Option("--managed/--unmanaged", help="Under the provider's management.")
    ] = False,
    disk_encrypted: Annotated[bool, typer.Option("--disk-encrypted/--no-disk-encryption")] = False,
    edr: Annotated[bool, typer.Option("--edr/--no-edr", help="An EDR agent runs on it.")] = False,
    owner: Annotated[str, typer.Option(help="Accountable person or team.")] = "",
) -> None:
    """Register a device."""
    registry.add_device(
        common.workspace(),
        name,
        site=site,
        managed=managed,
        disk_encrypted=disk_encrypted,
        edr=edr,
        owner=owner,
    )
    common.info(f"device {name} registered ({'managed' if managed else 'UNMANAGED'})")


@devices_app.command("list")
def devices_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List devices."""
    rows = registry.list_devices(common.workspace())
    data = [
        {
            "name": d.name,
            "site": d.site.name if d.site else None,
            "managed": d.managed,
            "disk_encrypted": d.disk_encrypted,
            "edr": d.edr,
            "owner": d.owner,
        }
        for d in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Devices",
            ["device", "site", "managed", "disk encrypted", "EDR", "owner"],
            [
                [
                    d["name"],
                    d["site"],
                    "yes" if d["managed"] else common.styled("no", "red"),
                    "yes" if d["disk_encrypted"] else "no",
                    "yes" if d["edr"] else "no",
                    d["owner"],
                ]
                for d in data
            ],
            empty="no devices: add one with `gpaisec devices add NAME --site SITE --managed`",
        ),
    )


@locations_app.command("add")
def locations_add(
    spec: Annotated[str, typer.Argument(help="DEVICE:/path or a URI such as s3://bucket/prefix.")],
    approve: Annotated[list[str] | None, typer.Option("--approve", help="MODEL:VERSION it may hold.")] = None,
    storage: Annotated[str | None, typer.Option(help="sealed, encrypted-volume or plaintext.")] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Register a location, optionally approving versions for it."""
    loc = registry.add_location(
        common.workspace(), spec, storage=storage, approve=approve or [], description=description
    )
    common.info(f"location {loc.label} registered ({loc.storage})")


@locations_app.command("approve")
def locations_approve(spec: str, ref: Annotated[str, typer.Argument(help="MODEL:VERSION")]) -> None:
    """Approve a location for a version."""
    registry.approve_location(common.workspace(), spec, ref)
    common.info(f"{spec} approved for {ref}")


@locations_app.command("revoke")
def locations_revoke(spec: str, ref: Annotated[str, typer.Argument(help="MODEL:VERSION")]) -> None:
    """Withdraw a location's approval for a version."""
    registry.revoke_location(common.workspace(), spec, ref)
    common.info(f"{spec} no longer approved for {ref}")


@locations_app.command("list")
def locations_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List locations."""
    rows = registry.list_locations(common.workspace())
    data = [
        {
            "location": loc.label,
            "storage": loc.storage,
            "last_scan_at": loc.last_scan_at,
            "approved_for": [a.version.ref for a in loc.approvals],
        }
        for loc in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Locations",
            ["location", "storage", "approved for", "last scan"],
            [
                [
                    loc.label,
                    loc.storage,
                    ", ".join(a.version.ref for a in loc.approvals),
                    loc.last_scan_at.strftime("%Y-%m-%d %H:%M") if loc.last_scan_at else "never",
                ]
                for loc in rows
            ],
            empty="no locations: add one with `gpaisec locations add DEVICE:/path --approve MODEL:VERSION`",
        ),
    )


SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


@findings_app.command("list")
def findings_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only findings not yet resolved.")] = False,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """List findings, newest first."""
    rows = registry.list_findings(common.workspace(), open_only=open_only, kind=kind)
    data = [
        {
            "id": f.id,
            "kind": f.kind,
            "severity": f.severity,
            "state": f.state,
            "summary": f.summary,
            "opened_at": f.opened_at,
            "last_seen_at": f.last_seen_at,
            "resolution": f.resolution,
            "details": f.details,
        }
        for f in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Findings",
            ["id", "severity", "kind", "state", "opened", "summary"],
            [
                [
                    f.id,
                    common.styled(f.severity, SEVERITY_STYLE[f.severity]),
                    f.kind,
                    f.state,
                    f.opened_at.strftime("%Y-%m-%d %H:%M"),
                    f.summary,
                ]
                for f in rows
            ],
            empty="no findings",
        ),
    )


@findings_app.command("sweep")
def findings_sweep(
    days: Annotated[int, typer.Option(help="Scan window in days.")] = registry.STALE_SCAN_DAYS,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Open stale-scan findings for locations of unreleased weights not scanned within the window."""
    new = registry.sweep_stale_scans(common.workspace(), days=days)
    data = [{"id": f.id, "summary": f.summary} for f in new]
    common.emit(fmt, data, lambda: common.info(f"{len(new)} new stale-scan findings"))


@findings_app.command("acknowledge")
def findings_acknowledge(finding_id: str, note: Annotated[str, typer.Option()] = "") -> None:
    """Acknowledge a finding (someone is on it)."""
    registry.acknowledge_finding(common.workspace(), finding_id, note=note)
    common.info(f"finding {finding_id} acknowledged")


@findings_app.command("resolve")
def findings_resolve(finding_id: str, reason: Annotated[str, typer.Option(help="What was done.")]) -> None:
    """Resolve a finding with the reason."""
    registry.resolve_finding(common.workspace(), finding_id, reason=reason)
    common.info(f"finding {finding_id} resolved")


def discover_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Directories to scan.")],
    device: Annotated[
        str | None, typer.Option(help="The registered device being scanned (default: this host).")
    ] = None,
    confirm: Annotated[bool, typer.Option(help="Hash matched files fully to confirm them.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Processes that walk the tree (default: the CPUs).")] = (
        os.cpu_count() or 1
    ),
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Find copies of registered weights; record sightings; open findings and alert on unauthorised copies."""
    ws = common.workspace()
    seen = [0]

    def tick(_candidate: object) -> None:
        seen[0] += 1

    if workers > 1:
        # The parallel walk forks: no spinner thread may be running (a lock it holds would be copied held).
        common.info(f"scanning with {workers} processes…")
        result = discover(ws, paths, device=device, confirm=confirm, workers=workers, on_candidate=tick)
    else:
        with common.stderr.status("scanning…"):
            result = discover(ws, paths, device=device, confirm=confirm, workers=1, on_candidate=tick)
    for f in result.new_findings:
        common.stderr.print(f"[bold red]ALERT[/] {f['severity']} {f['kind']} {f['id']}: {f['summary']}")

    def render() -> None:
        common.print_table(
            f"Scan {result.scan_id} on {result.device or 'an unregistered host'}",
            ["path", "version", "match", "evidence", "location"],
            [
                [
                    m["path"],
                    f"{m['model']}:{m['version']}",
                    m["kind"],
                    m["evidence"],
                    m["location"] or "UNREGISTERED",
                ]
                for m in result.matches
            ],
            empty=f"no copy of a registered version found ({result.files_seen} files, "
            f"{result.candidates} weight files)",
        )
        for p in result.problems:
            common.stderr.print(f"[yellow]problem[/] {p.get('kind')}: {p.get('path')}: {p.get('detail')}")
        common.info(
            f"{result.files_seen} files, {result.candidates} weight files, {len(result.matches)} matches, "
            f"{len(result.new_findings)} new findings, {len(result.problems)} problems"
        )

    common.emit(fmt, result.to_json(), render)
    if result.new_findings:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("discover")(discover_cmd)
    app.add_typer(models_app, name="models")
    app.add_typer(sites_app, name="sites")
    app.add_typer(devices_app, name="devices")
    app.add_typer(locations_app, name="locations")
    app.add_typer(findings_app, name="findings")
    registry_app = typer.Typer(help="The registry of every copy of the weights.", no_args_is_help=True)
    registry_app.command("show")(registry_show)
    app.add_typer(registry_app, name="registry")


def registry_show(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Where every unreleased version lives, with each copy's state."""
    data = registry.registry_view(common.workspace(), model=model)

    def render() -> None:
        if not data:
            common.info("the registry is empty: `gpaisec models add NAME` then `gpaisec models versions add`")
            return
        for v in data:
            state = "released" if v["released"] else "[bold]unreleased[/]"
            manifests = (
                ", ".join(f"{m['digest'][:24]}… ({m['files']} files)" for m in v["manifests"]) or "none"
            )
            common.stdout.print(f"\n{escape(v['version'])} ({state}); manifest: {escape(manifests)}")
            common.print_table(
                None,
                ["location", "device", "managed", "storage", "approved", "last scan", "present", "findings"],
                [
                    [
                        c["location"],
                        c["device"] or "",
                        "yes" if c["managed"] else common.styled("no", "red"),
                        c["storage"],
                        "yes" if c["approved"] else common.styled("NO", "bold red"),
                        c["last_scan_at"].strftime("%Y-%m-%d %H:%M") if c["last_scan_at"] else "never",
                        {True: "yes", False: common.styled("missing", "red"), None: "?"}[c["present"]],
                        ", ".join(c["findings"]),
                    ]
                    for c in v["copies"]
                ],
                empty="  no copies recorded: approve a location and run `gpaisec discover`",
            )

    common.emit(fmt, data, render)
