from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text

from gpaisec.access import accounts, grants
from gpaisec.access.decide import check_access
from gpaisec.audit.models import AuditEntry
from gpaisec.errors import InputError, NotFoundError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.access.test_accounts import fast_hashes  # noqa: F401
from tests.access.test_grants import make_world


def active_grant(ws: Workspace, tokens: dict[str, str], action: str = "read") -> str:
    gid = grants.request_grant(
        ws, "alice", "atlas:v3", action, duration=dt.timedelta(days=1), reason="evaluate the v3 checkpoint"
    ).id
    grants.approve_grant(ws, gid, session_token=tokens["bob"])
    grants.approve_grant(ws, gid, session_token=tokens["carol"])
    return gid


def decisions(ws: Workspace) -> list[dict[str, object]]:
    with ws.reader() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "access.decide").order_by(AuditEntry.seq)
        )
        return [json.loads(bytes(e.entry))["details"] for e in rows]


def test_allow_path_and_every_decision_is_audited(workspace: Workspace) -> None:
    w = make_world(workspace)
    denied = check_access(workspace, "alice", "read", "atlas:v3")
    assert not denied.allowed
    assert "forbid-no-grant" in denied.determining_policies
    active_grant(workspace, w.tokens)
    d = check_access(workspace, "alice", "read", "atlas:v3", session=w.tokens["alice"], explain=True)
    assert d.allowed, d.reasons
    assert d.determining_policies == ("permit-unreleased-with-grant",)
    assert any(r.startswith("given: grant") for r in d.reasons)
    # Another action is not covered by the read grant.
    assert not check_access(workspace, "alice", "export", "atlas:v3").allowed
    logged = decisions(workspace)
    assert [x["allowed"] for x in logged] == [False, True, False]
    assert logged[1]["determining_policies"] == ["permit-unreleased-with-grant"]


def test_expired_grant_is_denied(workspace: Workspace) -> None:
    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    d = check_access(workspace, "alice", "read", "atlas:v3", now=utcnow() + dt.timedelta(days=2))
    assert not d.allowed
    # The session expired too by then; the grant's expiry is named all the same.
    assert "forbid-grant-expired" in d.determining_policies


def test_unmanaged_device_is_denied(workspace: Workspace) -> None:
    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    registry.update_device(workspace, "laptop-alice", managed=False)
    d = check_access(workspace, "alice", "read", "atlas:v3")
    assert not d.allowed
    assert "forbid-unmanaged-device" in d.determining_policies
    assert decisions(workspace)[-1]["allowed"] is False


def test_lapsed_background_check_is_denied(workspace: Workspace) -> None:
    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    accounts.set_person(
        workspace, "Person alice", background_check_valid_until=utcnow() - dt.timedelta(days=1)
    )
    d = check_access(workspace, "alice", "read", "atlas:v3")
    assert not d.allowed
    assert "forbid-expired-background-check" in d.determining_policies


def test_no_session_means_no_mfa(workspace: Workspace) -> None:
    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    accounts.logout(workspace, w.tokens["alice"])
    d = check_access(workspace, "alice", "read", "atlas:v3")
    assert not d.allowed
    assert "forbid-stale-mfa" in d.determining_policies


def test_invalid_or_empty_policy_set_denies_everything(workspace: Workspace) -> None:
    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    policies = workspace.home / "policies"
    policies.mkdir()
    (policies / "broken.cedar").write_text("permit (principal, action, resource) when { nonsense };")
    d = check_access(workspace, "alice", "read", "atlas:v3")
    assert not d.allowed
    assert d.errors
    (policies / "broken.cedar").write_text("// nothing permitted\n")
    d = check_access(workspace, "alice", "read", "atlas:v3")
    assert not d.allowed
    assert d.determining_policies == ()


def test_break_glass_grant_is_allowed_and_alerted(workspace: Workspace) -> None:
    w = make_world(workspace)
    grants.break_glass(
        workspace,
        session_token=w.tokens["dave"],
        scope="atlas:v3",
        action="read",
        reason="incident 7 restore",
    )
    d = check_access(workspace, "dave", "read", "atlas:v3")
    assert d.allowed, d.reasons
    assert d.break_glass
    assert decisions(workspace)[-1]["alert"] == "break_glass"


@pytest.mark.parametrize("bad", ["write", "export"])
def test_service_account_needs_scope_and_grant(workspace: Workspace, bad: str) -> None:
    make_world(workspace)
    accounts.add_service_account(workspace, "eval-bot", owner="Person alice")
    accounts.issue_token(workspace, "eval-bot", scopes=["weights:read"])
    d = check_access(workspace, "eval-bot", bad, "atlas:v3", device="laptop-bob")
    assert not d.allowed


def location_grant(ws: Workspace, tokens: dict[str, str], scope: str) -> str:
    gid = grants.request_grant(
        ws, "alice", scope, "read", duration=dt.timedelta(days=1), reason="evaluate the v3 checkpoint"
    ).id
    grants.approve_grant(ws, gid, session_token=tokens["bob"])
    grants.approve_grant(ws, gid, session_token=tokens["carol"])
    return gid


def test_a_grant_for_one_copy_covers_that_copy_only(workspace: Workspace) -> None:
    w = make_world(workspace)
    registry.add_device(workspace, "gpu-node-17", managed=True, disk_encrypted=True)
    registry.add_location(workspace, "gpu-node-17:/srv/ckpt/atlas", approve=["atlas:v3"])
    registry.add_location(workspace, "s3://vault/atlas", approve=["atlas:v3"])
    registry.add_location(workspace, "gpu-node-17:/scratch", approve=[])
    here, there = "atlas:v3@gpu-node-17:/srv/ckpt/atlas", "atlas:v3@s3://vault/atlas"
    session = w.tokens["alice"]
    location_grant(workspace, w.tokens, here)

    d = check_access(workspace, "alice", "read", here, session=session, explain=True)
    assert d.allowed, d.reasons
    assert d.determining_policies == ("permit-unreleased-with-grant",)
    # Not another copy, and not the version wherever it is.
    for elsewhere in (there, "atlas:v3"):
        d = check_access(workspace, "alice", "read", elsewhere, session=session)
        assert not d.allowed
        assert d.determining_policies == ("forbid-no-grant",), elsewhere
    # A location not approved for the version is refused by name, before any policy.
    d = check_access(workspace, "alice", "read", "atlas:v3@gpu-node-17:/scratch", session=session)
    assert not d.allowed
    assert "not approved for atlas:v3" in d.reasons[0]
    # A grant for the whole version then covers every approved copy.
    active_grant(workspace, w.tokens)
    assert check_access(workspace, "alice", "read", there, session=session).allowed
    assert check_access(workspace, "alice", "read", "atlas:v3", session=session).allowed
    logged = decisions(workspace)
    assert [x["allowed"] for x in logged] == [True, False, False, False, True, True]
    assert logged[0]["facts"]["grant"]["location"] == "gpu-node-17:/srv/ckpt/atlas"


def test_an_unknown_or_malformed_location_is_a_clear_error(workspace: Workspace) -> None:
    make_world(workspace)
    with pytest.raises(NotFoundError, match="no location gpu-node-99:/nowhere"):
        check_access(workspace, "alice", "read", "atlas:v3@gpu-node-99:/nowhere")
    for bad in ("atlas:v3@", "atlas:v3@relative/path", "atlas:v3@ftp://x/y"):
        with pytest.raises(InputError):
            check_access(workspace, "alice", "read", bad)


def test_a_location_must_be_written_as_registered_and_usable(workspace: Workspace) -> None:
    w = make_world(workspace)
    registry.add_device(workspace, "gpu-node-17", managed=True, disk_encrypted=True)
    registry.add_location(workspace, "gpu-node-17:/srv/ckpt/atlas", approve=["atlas:v3"])
    active_grant(workspace, w.tokens)
    session = w.tokens["alice"]
    here = "atlas:v3@gpu-node-17:/srv/ckpt/atlas"
    assert check_access(workspace, "alice", "read", here, session=session).allowed
    # Text that normalises to the same path is not the path the caller will open.
    for odd in ("/srv/ckpt/x/../atlas", "/srv/ckpt/atlas/.", "/srv/ckpt//atlas", "/srv/ckpt/atlas\u2028"):
        with pytest.raises(InputError, match="not a location as registered"):
            check_access(workspace, "alice", "read", f"atlas:v3@gpu-node-17:{odd}", session=session)
    # A copy on a retired device, or a retired copy, is refused by name.
    with workspace.transaction() as s:
        s.execute(text("UPDATE devices SET retired_at = CURRENT_TIMESTAMP WHERE name = 'gpu-node-17'"))
    d = check_access(workspace, "alice", "read", here, session=session)
    assert not d.allowed
    assert "on a retired device" in d.reasons[0]
    # Every decision above was audited under the name as registered.
    objects = [o for o in audit_objects(workspace) if "@" in o]
    assert objects == ["version:" + here] * 2


def test_a_version_whose_name_holds_an_at_sign_is_still_decided(workspace: Workspace) -> None:
    make_world(workspace)
    with workspace.transaction() as s:
        registry.create_version(s, workspace, "atlas", "v4@rc1")
    d = check_access(workspace, "alice", "read", "atlas:v4@rc1")
    assert not d.allowed
    assert "forbid-no-grant" in d.determining_policies


def test_a_uri_registered_twice_is_refused_not_guessed(workspace: Workspace) -> None:
    w = make_world(workspace)
    registry.add_location(workspace, "s3://vault/atlas", approve=[])
    with workspace.transaction() as s:  # an older registry let a URI in twice
        s.execute(
            text(
                "INSERT INTO locations (id, device_id, path, storage, description, created_at) "
                "SELECT 'loc-dup', NULL, path, storage, description, created_at FROM locations "
                "WHERE path = 's3://vault/atlas'"
            )
        )
    active_grant(workspace, w.tokens)
    d = check_access(workspace, "alice", "read", "atlas:v3@s3://vault/atlas", session=w.tokens["alice"])
    assert not d.allowed
    assert "registered more than once" in d.reasons[0]


def audit_objects(ws: Workspace) -> list[str]:
    with ws.reader() as s:
        return list(
            s.scalars(
                select(AuditEntry.object).where(AuditEntry.action == "access.decide").order_by(AuditEntry.seq)
            )
        )
