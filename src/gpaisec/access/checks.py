"""Compliance checks of the access area, over the live store.

A4.1(1) IAM: no open shared-account or shared-device finding; every person who can reach unreleased
weights has a confirmed second factor; the password policy (NIST SP 800-63B-4) is in force.
A4.3(1) authorisation: every principal with access holds it through a grant approved by two other
people with fresh MFA (break-glass use reviewed afterwards); a review was closed in the last six months.
A4.3(4) the number of people with non-hardened access is within the limit.
A4.4(1)(2) the access side: everyone with access has a valid background check and current
insider-threat training.

Reasons name people and accounts, so that a verdict says whom to follow up.
"""

from __future__ import annotations

from sqlalchemy import select

from gpaisec.access import accounts as accounts_mod
from gpaisec.access.models import Account, Grant, TotpCredential
from gpaisec.access.passwords import blocklist_info
from gpaisec.access.reviews import (
    NON_HARDENED_LIMIT,
    REVIEW_INTERVAL,
    last_closed_review,
    non_hardened_people,
    principals_with_access,
)
from gpaisec.compliance.checks import CheckContext, check
from gpaisec.compliance.verdicts import CheckResult, EvidenceRef, Verdict
from gpaisec.errors import GpaisecError
from gpaisec.weights.models import Finding

SHARING_FINDINGS = ("shared_account", "shared_device")


def _who(p: dict[str, object]) -> str:
    return f"{p['person']} ({p['username']})" if p["person"] else str(p["username"])


def _no_accounts(ctx: CheckContext) -> CheckResult | None:
    if ctx.session.scalars(select(Account.id)).first() is None:
        return CheckResult(
            Verdict.no_evidence,
            ("no accounts are registered; add them with `gpaisec people add` and `gpaisec users add`",),
        )
    return None


@check("A4.1(1)", name="access.iam_mfa_no_sharing")
def iam(ctx: CheckContext, item_id: str) -> CheckResult:
    empty = _no_accounts(ctx)
    if empty:
        return empty
    s = ctx.session
    failing: list[str] = []
    findings = list(
        s.scalars(select(Finding).where(Finding.state != "resolved", Finding.kind.in_(SHARING_FINDINGS)))
    )
    failing += [f"open {f.severity} finding {f.id} ({f.kind}): {f.summary}" for f in findings]
    enrolled = {c.account_id for c in s.scalars(select(TotpCredential)) if c.confirmed_at is not None}
    for p in principals_with_access(s, ctx.now):
        if p["kind"] == "human" and p["account"].id not in enrolled:
            failing.append(f"{_who(p)} can reach unreleased weights without a confirmed second factor")
    policy = accounts_mod.PASSWORD_POLICY
    try:
        info = blocklist_info()
        policy_reason = (
            f"password policy in force: at least {policy.min_length} characters, blocklist of "
            f"{info.count} common and breached passwords, context words refused, argon2id storage"
        )
    except GpaisecError as exc:
        failing.append(f"the password blocklist cannot be used: {exc.message}")
        policy_reason = ""
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing))
    return CheckResult(
        Verdict.met,
        (
            "no shared accounts or devices found; every person with access has a confirmed second factor",
            policy_reason,
        ),
        (EvidenceRef("record", "password-policy", note=f"min_length={policy.min_length}"),),
    )


@check("A4.3(1)", name="access.explicit_authorisation")
def authorisation(ctx: CheckContext, item_id: str) -> CheckResult:
    empty = _no_accounts(ctx)
    if empty:
        return empty
    s = ctx.session
    failing: list[str] = []
    for p in principals_with_access(s, ctx.now):
        if p["break_glass"] and not p["grants"]:
            continue  # holding the role is reviewed below; using it creates a grant
        grants: list[Grant] = p["grants"]
        if not grants and p["kind"] == "service":
            failing.append(
                f"{_who(p)} holds weights tokens ({', '.join(p['scopes'])}) without an approved grant"
            )
        for g in grants:
            if g.break_glass:
                continue
            approvers = {a.approver_id for a in g.approvals if a.approver_id != g.requester_id}
            if len(approvers) < 2:
                failing.append(f"{_who(p)} holds grant {g.id} with fewer than two independent approvals")
    for g in s.scalars(select(Grant).where(Grant.break_glass.is_(True), Grant.reviewed_at.is_(None))):
        who = s.get(Account, g.requester_id)
        failing.append(f"break-glass grant {g.id} of {who.username if who else '?'} has not been reviewed")
    last = last_closed_review(s)
    if last is None or last.closed_at is None:
        failing.append("no authorisation review has ever been closed; run `gpaisec access review start`")
    elif ctx.now - last.closed_at > REVIEW_INTERVAL:
        failing.append(
            f"the last authorisation review closed on {last.closed_at.date()}, more than six months ago"
        )
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing))
    assert last is not None
    assert last.closed_at is not None
    return CheckResult(
        Verdict.met,
        (
            "every principal with access holds a grant approved by two other people with fresh MFA",
            f"authorisation review {last.id} closed on {last.closed_at.date()}",
        ),
        (EvidenceRef("record", f"review:{last.id}"),),
    )


@check("A4.3(4)", name="access.non_hardened_limit")
def non_hardened(ctx: CheckContext, item_id: str) -> CheckResult:
    empty = _no_accounts(ctx)
    if empty:
        return empty
    people = non_hardened_people(ctx.session, ctx.now)
    listed = ", ".join(people) or "nobody"
    if len(people) > NON_HARDENED_LIMIT:
        return CheckResult(
            Verdict.not_met,
            (f"{len(people)} people have non-hardened access (limit {NON_HARDENED_LIMIT}): {listed}",),
        )
    return CheckResult(
        Verdict.met,
        (f"{len(people)} people have non-hardened access (limit {NON_HARDENED_LIMIT}): {listed}",),
    )


@check("A4.4(1)", "A4.4(2)", name="access.vetting_of_people_with_access")
def vetting(ctx: CheckContext, item_id: str) -> CheckResult:
    empty = _no_accounts(ctx)
    if empty:
        return empty
    s = ctx.session
    background = item_id == "A4.4(1)"
    what = "background check" if background else "insider-threat training"
    failing: list[str] = []
    count = 0
    for p in principals_with_access(s, ctx.now):
        account: Account = p["account"]
        person = account.person if account.kind == "human" else account.owner
        if person is None:
            failing.append(f"{_who(p)} has no accountable person on record")
            continue
        count += 1
        until = person.background_check_valid_until if background else person.insider_training_valid_until
        if until is None:
            failing.append(f"{_who(p)} can reach unreleased weights with no {what} on record")
        elif until <= ctx.now:
            failing.append(
                f"{_who(p)} can reach unreleased weights but their {what} lapsed on {until.date()}"
            )
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing))
    if count == 0:
        return CheckResult(Verdict.met, (f"nobody can reach unreleased weights, so no {what} is due",))
    return CheckResult(Verdict.met, (f"all {count} principals with access have a current {what}",))
