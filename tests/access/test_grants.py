from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest

from gpaisec.access import accounts, grants
from gpaisec.errors import ConflictError, DeniedError, InputError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.access.test_accounts import (  # noqa: F401
    actions,
    add_device,
    add_human,
    audit,
    fast_hashes,
    login,
)


@dataclass
class World:
    tokens: dict[str, str]
    secrets: dict[str, str]


def make_world(ws: Workspace) -> World:
    registry.add_model(ws, "atlas")
    with ws.transaction() as s:
        registry.create_version(s, ws, "atlas", "v3")
    tokens: dict[str, str] = {}
    secrets_: dict[str, str] = {}
    for name, roles in (
        ("alice", ("weights_user",)),
        ("bob", ("approver",)),
        ("carol", ("approver",)),
        ("dave", ("break_glass",)),
    ):
        add_device(ws, f"laptop-{name}")
        secret = add_human(ws, name, roles=roles)
        assert secret
        secrets_[name] = secret
        tokens[name] = login(ws, name, secret, f"laptop-{name}").token
    return World(tokens, secrets_)


def request(ws: Workspace, **kw: object) -> str:
    args: dict[str, object] = {"duration": dt.timedelta(days=2), "reason": "evaluate the v3 checkpoint"}
    args.update(kw)
    return grants.request_grant(ws, "alice", "atlas:v3", "read", **args).id  # type: ignore[arg-type]


def test_two_distinct_approvers_with_fresh_mfa_activate_a_grant(workspace: Workspace) -> None:
    w = make_world(workspace)
    gid = request(workspace)
    g = grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    assert g.state == "requested"
    g = grants.approve_grant(workspace, gid, session_token=w.tokens["carol"])
    assert g.state == "active"
    assert g.expires_at is not None
    assert g.not_before is not None
    assert g.expires_at - g.not_before == dt.timedelta(days=2)
    (row,) = grants.list_grants(workspace)
    assert row["approvers"] == ["bob", "carol"]
    assert row["state"] == "active"
    assert actions(workspace).count("grant.approve") == 2


def test_refusals_are_denied_and_audited(workspace: Workspace) -> None:
    w = make_world(workspace)
    gid = request(workspace)
    # The requester is not an approver; an approver-requester may not approve their own either.
    with pytest.raises(DeniedError, match="role approver"):
        grants.approve_grant(workspace, gid, session_token=w.tokens["alice"])
    grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    with pytest.raises(DeniedError, match="already approved"):
        grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    # Carol's MFA is more than five minutes old.
    later = utcnow() + dt.timedelta(minutes=6)
    with pytest.raises(DeniedError, match="5 minutes"):
        grants.approve_grant(workspace, gid, session_token=w.tokens["carol"], now=later)
    assert actions(workspace).count("grant.approve.denied") == 3
    (row,) = grants.list_grants(workspace)
    assert row["state"] == "requested"


def test_self_approval_is_refused(workspace: Workspace) -> None:
    w = make_world(workspace)
    gid = grants.request_grant(
        workspace, "bob", "atlas:v3", "write", duration=dt.timedelta(hours=4), reason="hotfix a shard"
    ).id
    with pytest.raises(DeniedError, match="own grant"):
        grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    assert "grant.approve.denied" in actions(workspace)


def test_request_limits_are_audited(workspace: Workspace) -> None:
    make_world(workspace)
    with pytest.raises(InputError, match="at most 7 days"):
        request(workspace, duration=dt.timedelta(days=8))
    with pytest.raises(InputError, match="reason"):
        request(workspace, reason="x")
    assert actions(workspace).count("grant.request.denied") == 2


def test_expiry_is_computed_and_swept(workspace: Workspace) -> None:
    w = make_world(workspace)
    gid = request(workspace, duration=dt.timedelta(hours=1))
    grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    grants.approve_grant(workspace, gid, session_token=w.tokens["carol"])
    later = utcnow() + dt.timedelta(hours=2)
    assert grants.sweep_expired(workspace, now=later) == [gid]
    (row,) = grants.list_grants(workspace)
    assert row["state"] == "expired"
    with pytest.raises(ConflictError):
        grants.revoke_grant(workspace, gid, reason="done")


def test_revoke(workspace: Workspace) -> None:
    make_world(workspace)
    gid = request(workspace)
    assert grants.revoke_grant(workspace, gid, reason="no longer needed").state == "revoked"
    assert "grant.revoke" in actions(workspace)


def test_break_glass_is_active_at_once_with_a_critical_finding(workspace: Workspace) -> None:
    w = make_world(workspace)
    with pytest.raises(DeniedError, match="break_glass"):
        grants.break_glass(
            workspace, session_token=w.tokens["alice"], scope="atlas:v3", action="read", reason="outage now!!"
        )
    g = grants.break_glass(
        workspace,
        session_token=w.tokens["dave"],
        scope="atlas:v3",
        action="read",
        reason="incident 42: restore serving",
    )
    assert g.state == "active"
    assert g.break_glass
    (f,) = registry.list_findings(workspace, kind="break_glass")
    assert f.severity == "critical"
    with pytest.raises(InputError, match="export"):
        grants.break_glass(
            workspace,
            session_token=w.tokens["dave"],
            scope="atlas:v3",
            action="export",
            reason="incident 42 export",
        )
    with pytest.raises(DeniedError):
        grants.review_break_glass(workspace, g.id, reviewer="dave", notes="reviewed my own use")
    reviewed = grants.review_break_glass(workspace, g.id, reviewer="bob", notes="justified by incident 42")
    assert reviewed.reviewed_by == "bob"
    assert reviewed.state == "revoked"
    assert {"grant.break_glass", "grant.break_glass.denied", "grant.break_glass.review"} <= set(
        actions(workspace)
    )


def test_revoking_by_session_needs_admin_an_approver_of_the_grant_or_the_requester(
    workspace: Workspace,
) -> None:
    w = make_world(workspace)
    add_device(workspace, "laptop-erin")
    add_device(workspace, "laptop-frank")
    erin = add_human(workspace, "erin", roles=("admin",))
    frank = add_human(workspace, "frank", roles=("approver",))
    assert erin
    assert frank
    erin_token = login(workspace, "erin", erin, "laptop-erin").token
    frank_token = login(workspace, "frank", frank, "laptop-frank").token
    gid = request(workspace)
    grants.approve_grant(workspace, gid, session_token=w.tokens["bob"])
    grants.approve_grant(workspace, gid, session_token=w.tokens["carol"])
    # An approver who did not approve this grant, and someone with no role at all: refused, audited.
    for token, name in ((frank_token, "frank"), (w.tokens["dave"], "dave")):
        with pytest.raises(DeniedError, match=f"{name} may not revoke"):
            grants.revoke_grant(workspace, gid, reason="tidying up", session_token=token)
    denied = [json.loads(bytes(e.entry)) for e in audit(workspace) if e.action == "grant.revoke.denied"]
    assert [d["details"]["revoker"] for d in denied] == ["frank", "dave"]
    assert denied[0]["actor"] == "user:frank"
    (row,) = grants.list_grants(workspace)
    assert row["state"] == "active"
    # One of its approvers may.
    g = grants.revoke_grant(workspace, gid, reason="evaluation finished", session_token=w.tokens["carol"])
    assert g.state == "revoked"
    assert g.revoked_by == "user:carol"
    # An admin may revoke any grant; the requester may give up their own.
    for token in (erin_token, w.tokens["alice"]):
        other = request(workspace)
        assert (
            grants.revoke_grant(workspace, other, reason="not needed", session_token=token).state == "revoked"
        )
    # An ended session revokes nothing.
    accounts.logout(workspace, erin_token)
    with pytest.raises(DeniedError):
        grants.revoke_grant(workspace, request(workspace), reason="not needed", session_token=erin_token)
