from __future__ import annotations

import datetime as dt

import pytest

from gpaisec.access import accounts, grants, reviews
from gpaisec.errors import ConflictError, DeniedError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.access.test_accounts import actions, fast_hashes  # noqa: F401
from tests.access.test_decide import active_grant
from tests.access.test_grants import make_world


def test_campaign_lists_principals_and_revoke_ends_their_access(workspace: Workspace) -> None:
    w = make_world(workspace)
    gid = active_grant(workspace, w.tokens)
    accounts.add_service_account(workspace, "eval-bot", owner="Person alice")
    accounts.issue_token(workspace, "eval-bot", scopes=["weights:read"])
    c = reviews.start_review(workspace)
    assert [i.principal for i in c.items] == ["alice", "dave", "eval-bot"]
    with pytest.raises(ConflictError, match="already open"):
        reviews.start_review(workspace)
    with pytest.raises(ConflictError, match="undecided"):
        reviews.close_review(workspace, c.id)
    with pytest.raises(DeniedError, match="own access"):
        reviews.decide_item(workspace, c.id, "alice", "keep", reason="still needed", reviewer="alice")
    reviews.decide_item(workspace, c.id, "alice", "revoke", reason="project finished", reviewer="bob")
    reviews.decide_item(workspace, c.id, "dave", "keep", reason="on-call lead", reviewer="bob")
    reviews.decide_item(workspace, c.id, "eval-bot", "revoke", reason="workload retired", reviewer="bob")
    closed = reviews.close_review(workspace, c.id)
    assert closed.closed_at is not None
    assert {g["id"]: g["state"] for g in grants.list_grants(workspace)}[gid] == "revoked"
    with workspace.reader() as s:
        left = [p["username"] for p in reviews.principals_with_access(s, utcnow())]
    assert left == ["dave"]
    assert {"review.start", "review.decide", "review.close", "grant.revoke"} <= set(actions(workspace))


def test_overdue_review_and_too_many_non_hardened_people_are_findings(workspace: Workspace) -> None:
    make_world(workspace)  # dave holds break_glass: non-hardened
    opened = reviews.sweep_findings(workspace, limit=0)
    assert len(opened) == 2
    kinds = sorted(f.kind for f in registry.list_findings(workspace, open_only=True))
    assert kinds == ["access_review_overdue", "non_hardened_access"]
    c = reviews.start_review(workspace)
    reviews.decide_item(workspace, c.id, "dave", "keep", reason="on-call lead", reviewer="bob")
    reviews.close_review(workspace, c.id)
    assert reviews.sweep_findings(workspace, limit=5) == []
    later = utcnow() + dt.timedelta(days=200)
    # Still the same open overdue finding (deduplicated), refreshed rather than duplicated.
    assert reviews.sweep_findings(workspace, limit=5, now=later) == []


def test_access_checks_name_people(workspace: Workspace) -> None:
    from gpaisec.access import checks
    from gpaisec.compliance.checks import CheckContext
    from gpaisec.compliance.verdicts import Verdict

    w = make_world(workspace)
    active_grant(workspace, w.tokens)
    accounts.set_person(
        workspace, "Person alice", insider_training_valid_until=utcnow() - dt.timedelta(days=1)
    )
    with workspace.reader() as s:
        ctx = CheckContext(session=s, now=utcnow())
        a431 = checks.authorisation(ctx, "A4.3(1)")
        assert a431.verdict is Verdict.not_met
        assert any("review" in r for r in a431.reasons)
        assert checks.iam(ctx, "A4.1(1)").verdict is Verdict.met
        assert checks.non_hardened(ctx, "A4.3(4)").verdict is Verdict.met
        assert checks.vetting(ctx, "A4.4(1)").verdict is Verdict.met
        a442 = checks.vetting(ctx, "A4.4(2)")
    assert a442.verdict is Verdict.not_met
    assert any("Person alice" in r for r in a442.reasons)
