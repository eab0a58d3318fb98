from __future__ import annotations

import pytest
from sqlalchemy import select

from gpaisec.audit.models import AuditEntry
from gpaisec.errors import ConflictError, InputError, NotFoundError
from gpaisec.weights import registry
from gpaisec.workspace import Workspace


def actions(ws: Workspace) -> list[str]:
    with ws.reader() as s:
        return [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]


def test_registry_round_trip_is_audited(workspace: Workspace) -> None:
    registry.add_model(workspace, "atlas", training_flop=3.2e25)
    registry.add_site(workspace, "dc-frankfurt-1")
    registry.add_device(workspace, "gpu-node-17", site="dc-frankfurt-1", managed=True, disk_encrypted=True)
    with workspace.transaction() as s:
        registry.create_version(s, workspace, "atlas", "v3")
    loc = registry.add_location(workspace, "gpu-node-17:/srv/ckpt/atlas/", approve=["atlas:v3"])
    assert loc.path == "/srv/ckpt/atlas"
    assert loc.storage == "encrypted-volume"  # the device's disk is encrypted
    (listed,) = registry.list_locations(workspace)
    assert [a.version.ref for a in listed.approvals] == ["atlas:v3"]
    assert actions(workspace) == [
        "model.add",
        "site.add",
        "device.add",
        "version.add",
        "location.add",
        "location.approve",
    ]
    registry.revoke_location(workspace, "gpu-node-17:/srv/ckpt/atlas", "atlas:v3")
    assert registry.list_locations(workspace)[0].approvals == []


def test_duplicates_and_unknown_names_are_refused_without_writes(workspace: Workspace) -> None:
    registry.add_model(workspace, "atlas")
    with pytest.raises(ConflictError, match="already exists"):
        registry.add_model(workspace, "atlas")
    with pytest.raises(NotFoundError, match="no site"):
        registry.add_device(workspace, "n1", site="nowhere")
    with pytest.raises(NotFoundError, match="no device"):
        registry.add_location(workspace, "ghost:/x")
    with pytest.raises(NotFoundError, match="no version"):
        registry.add_location(workspace, "s3://bucket/atlas", approve=["atlas:v9"])
    assert registry.list_locations(workspace) == []  # the failed add left nothing behind
    assert actions(workspace) == ["model.add"]


@pytest.mark.parametrize("spec", ["gpu", "gpu:relative/path", ":/x", "ftp://x"])
def test_bad_location_specs(spec: str) -> None:
    with pytest.raises(InputError, match="not a location"):
        registry.parse_location(spec)


@pytest.mark.parametrize("name", ["", "a:b", "a/b", "-rf", "x" * 101])
def test_bad_names(workspace: Workspace, name: str) -> None:
    with pytest.raises(InputError):
        registry.add_model(workspace, name)


def test_finding_lifecycle(workspace: Workspace) -> None:
    with workspace.transaction() as s:
        f, new = registry.open_finding(
            s,
            workspace,
            kind="unauthorised_copy",
            severity="critical",
            summary="atlas:v3 on laptop-9",
            dedupe_key="k1",
        )
    assert new
    with workspace.transaction() as s:
        again, new2 = registry.open_finding(
            s,
            workspace,
            kind="unauthorised_copy",
            severity="critical",
            summary="atlas:v3 on laptop-9",
            dedupe_key="k1",
        )
    assert not new2
    assert again.id == f.id
    registry.acknowledge_finding(workspace, f.id)
    with pytest.raises(ConflictError):
        registry.acknowledge_finding(workspace, f.id)
    with pytest.raises(InputError, match="reason"):
        registry.resolve_finding(workspace, f.id, reason="ok")
    registry.resolve_finding(workspace, f.id, reason="copy wiped and laptop re-imaged")
    assert registry.list_findings(workspace, open_only=True) == []
    assert actions(workspace) == ["finding.open", "finding.acknowledge", "finding.resolve"]


def test_a_uri_location_is_registered_once(workspace: Workspace) -> None:
    registry.add_location(workspace, "s3://bucket/atlas")
    for again in ("s3://bucket/atlas", "s3://bucket/atlas/"):  # the same place (a trailing / is dropped)
        with pytest.raises(ConflictError, match="already exists"):
            registry.add_location(workspace, again)
    assert [loc.label for loc in registry.list_locations(workspace)] == ["s3://bucket/atlas"]
