"""Registration and discovery end to end: real files, real scans, findings and the 4.2 checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from gpaisec.audit.models import AuditEntry
from gpaisec.compliance import assessment
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import InputError
from gpaisec.weights import registry
from gpaisec.weights.artifacts import register_version
from gpaisec.weights.discovery import discover
from gpaisec.workspace import Workspace
from tests.weights.conftest import make_model, reshard, write_shards


@pytest.fixture
def world(workspace: Workspace, tmp_path: Path) -> tuple[Workspace, Path]:
    """atlas:v3 (unreleased) registered from /srv/ckpt/atlas/v3 on a managed GPU node, approved there."""
    srv = tmp_path / "gpu-node-17" / "srv" / "ckpt" / "atlas"
    v3 = srv / "v3"
    write_shards(v3, reshard(make_model(3, layers=4, dim=128), 2), "model-{i:05d}-of-{n:05d}.safetensors")
    (v3 / "config.json").write_text('{"hidden": 128}')
    registry.add_model(workspace, "atlas", training_flop=3.2e25)
    registry.add_site(workspace, "dc-frankfurt-1")
    registry.add_device(workspace, "gpu-node-17", site="dc-frankfurt-1", managed=True, disk_encrypted=True)
    registry.add_device(workspace, "laptop-9", managed=False)
    art = register_version(workspace, "atlas", "v3", source=v3)
    assert art.file_count == 3
    registry.add_location(workspace, f"gpu-node-17:{srv}", approve=["atlas:v3"])
    return workspace, tmp_path


def verdict(ws: Workspace, item: str) -> tuple[Verdict, tuple[str, ...]]:
    r = next(x for x in assessment.assess(ws).results if x.item_id == item)
    return r.verdict, r.reasons


def test_copies_at_approved_locations_are_accounted_for(world: tuple[Workspace, Path]) -> None:
    ws, root = world
    assert verdict(ws, "A4.2(1)")[0] is Verdict.partly_met  # approved location never scanned yet
    assert verdict(ws, "A4.2(2)")[0] is Verdict.no_evidence  # no scan has run
    result = discover(ws, [root / "gpu-node-17"], device="gpu-node-17")
    assert len(result.matches) == 2
    assert all(m["location"] and m["location"].startswith("gpu-node-17:") for m in result.matches)
    assert result.new_findings == ()
    assert verdict(ws, "A4.2(1)")[0] is Verdict.met
    assert verdict(ws, "A4.2(2)")[0] is Verdict.met
    view = registry.registry_view(ws)
    (copy,) = view[0]["copies"]
    assert copy["present"] is True
    assert copy["approved"] is True


def test_renamed_and_resharded_copies_on_an_unmanaged_laptop(world: tuple[Workspace, Path]) -> None:
    ws, root = world
    laptop = root / "laptop-9"
    model = make_model(3, layers=4, dim=128)
    # renamed and moved: the first shard under another name
    src_shard = next((root / "gpu-node-17" / "srv" / "ckpt" / "atlas" / "v3").glob("model-00001*"))
    (laptop / "Downloads").mkdir(parents=True)
    shutil.copy(src_shard, laptop / "Downloads" / "vacation-photos.bin")
    # re-sharded into three files with renamed tensors
    write_shards(laptop / "scratch", reshard(model, 3, rename=lambda n: "m." + n, seed=7), "part{i}.st")
    result = discover(ws, [laptop], device="laptop-9", confirm=True)
    paths = {Path(m["path"]).name for m in result.matches}
    assert paths == {"vacation-photos.bin", "part1.st", "part2.st", "part3.st"}
    kinds = {f["kind"] for f in result.new_findings}
    assert kinds == {"unmanaged_device_copy", "unregistered_location"}
    assert any(v["version"] == "v3" and v["found"] for v in result.versions_found)
    v, reasons = verdict(ws, "A4.2(2)")
    assert v is Verdict.not_met
    assert any("laptop-9" in r for r in reasons)
    assert verdict(ws, "A4.2(1)")[0] is Verdict.not_met
    with ws.reader() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert actions.count("finding.open") == len(result.new_findings)
    assert actions[-1] == "assessment.run"
    # Scanning again re-finds the same copies without duplicate findings.
    again = discover(ws, [laptop], device="laptop-9")
    assert again.new_findings == ()
    assert len(registry.list_findings(ws, open_only=True)) == len(result.new_findings)
    # Resolving the findings (copies wiped) brings A4.2(2) back once the laptop holds nothing.
    shutil.rmtree(laptop)
    laptop.mkdir()
    for f in registry.list_findings(ws, open_only=True):
        registry.resolve_finding(ws, f.id, reason="copies wiped, laptop re-imaged, owner interviewed")
    v, reasons = verdict(ws, "A4.2(2)")
    assert v is Verdict.not_met  # until a scan shows the laptop no longer holds weights
    assert any("laptop-9" in r and "not managed" in r for r in reasons)
    discover(ws, [laptop], device="laptop-9")
    discover(ws, [root / "gpu-node-17"], device="gpu-node-17")
    assert verdict(ws, "A4.2(2)")[0] is Verdict.met


def test_a_copy_at_a_location_not_approved_for_it(world: tuple[Workspace, Path]) -> None:
    ws, root = world
    other = root / "gpu-node-17" / "scratch" / "eval"
    registry.add_location(ws, f"gpu-node-17:{root / 'gpu-node-17' / 'scratch'}")
    shutil.copytree(root / "gpu-node-17" / "srv" / "ckpt" / "atlas" / "v3", other)
    result = discover(ws, [root / "gpu-node-17"], device="gpu-node-17")
    assert {f["kind"] for f in result.new_findings} == {"unauthorised_copy"}
    assert len(result.new_findings) == 2  # one per copied shard


def test_released_versions_raise_no_findings(world: tuple[Workspace, Path]) -> None:
    ws, root = world
    registry.set_released(ws, "atlas:v3")
    shutil.copytree(root / "gpu-node-17" / "srv" / "ckpt" / "atlas" / "v3", root / "laptop-9" / "public")
    result = discover(ws, [root / "laptop-9"], device="laptop-9")
    assert len(result.matches) == 2
    assert result.new_findings == ()


def test_registering_a_directory_without_weights_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    registry.add_model(workspace, "atlas")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no weights here")
    with pytest.raises(InputError, match="known weight format"):
        register_version(workspace, "atlas", "v1", source=tmp_path / "notes")
    assert registry.list_models(workspace)[0].versions == []


def test_stale_scans_open_and_close_findings(world: tuple[Workspace, Path]) -> None:
    import datetime as dt

    from gpaisec.store.base import utcnow

    ws, root = world
    (new,) = registry.sweep_stale_scans(ws)  # the approved location was never scanned
    assert new.kind == "stale_scan"
    assert registry.sweep_stale_scans(ws) == []  # no duplicate
    discover(ws, [root / "gpu-node-17"], device="gpu-node-17")
    assert registry.sweep_stale_scans(ws) == []
    assert registry.list_findings(ws, open_only=True, kind="stale_scan") == []  # closed by the scan
    later = utcnow() + dt.timedelta(days=31)
    assert len(registry.sweep_stale_scans(ws, now=later)) == 1
