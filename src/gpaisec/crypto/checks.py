"""Compliance checks for the security appendix's 4.2(3) and 4.2(4), over the registry and the audit log.

A4.2(3) encryption at rest with keys in a TPM or HSM: every location approved for an unreleased version
stores it sealed or on an encrypted volume, nothing was seen in plaintext elsewhere, and the workspace's
key-encryption keys live in an HSM or TPM (a local key file is noted as falling short of the measure).
A4.2(4) decryption only into non-persistent memory for a legitimate use: every unseal and open is in the
audit log; an unseal to persistent storage (the Unsafe flag) or an open without the policies that allowed
it counts against the objective.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpaisec.audit.models import AuditEntry
from gpaisec.compliance.checks import CheckContext, check
from gpaisec.compliance.verdicts import CheckResult, EvidenceRef, Verdict
from gpaisec.weights.models import Location, LocationApproval, ModelVersion

HARDWARE = ("pkcs11", "tpm")


def _events(ctx: CheckContext, *actions: str) -> list[tuple[int, dict[str, object]]]:
    rows = ctx.session.scalars(
        select(AuditEntry).where(AuditEntry.action.in_(actions)).order_by(AuditEntry.seq)
    )
    out = []
    for e in rows:
        details = json.loads(bytes(e.entry)).get("details") or {}
        out.append((e.seq, details if isinstance(details, dict) else {}))
    return out


@check("A4.2(3)", name="crypto.at_rest")
def at_rest(ctx: CheckContext, item_id: str) -> CheckResult:
    s = ctx.session
    approvals = list(
        s.scalars(
            select(LocationApproval)
            .join(ModelVersion, ModelVersion.id == LocationApproval.version_id)
            .where(ModelVersion.released.is_(False))
            .options(
                selectinload(LocationApproval.location).selectinload(Location.device),
                selectinload(LocationApproval.version).selectinload(ModelVersion.model),
            )
        )
    )
    keys = _events(ctx, "key.create")
    if not approvals and not keys:
        return CheckResult(
            Verdict.no_evidence,
            (
                "no approved location of an unreleased version and no key-encryption key yet; "
                "register locations and run `gpaisec keys init`",
            ),
        )
    failing: list[str] = []
    partial: list[str] = []
    evidence: list[EvidenceRef] = []
    for a in approvals:
        loc = a.location
        if loc.retired_at is not None:
            continue
        if loc.storage == "plaintext":
            failing.append(
                f"{loc.label} holds unreleased {a.version.ref} in plaintext (not sealed, no encrypted volume)"
            )
        evidence.append(EvidenceRef("record", f"location:{loc.label}", note=loc.storage))
    providers = {str(d.get("key_id", "?")): str(d.get("provider", "?")) for _, d in keys}
    for seq, d in keys:
        evidence.append(EvidenceRef("audit", str(seq), note=f"key {d.get('key_id')} in {d.get('provider')}"))
    if not providers:
        partial.append(
            "no key-encryption key is recorded; seal weights with keys in an HSM or TPM (`gpaisec keys init`)"
        )
    soft = sorted(k for k, p in providers.items() if p not in HARDWARE)
    if soft:
        partial.append(
            f"key-encryption keys {', '.join(soft)} are in a local key file, "
            "not a TPM or HSM as the measure asks"
        )
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing + partial), tuple(evidence))
    if partial:
        return CheckResult(Verdict.partly_met, tuple(partial), tuple(evidence))
    return CheckResult(
        Verdict.met,
        (
            f"every approved location of unreleased weights is sealed or on an encrypted volume; keys "
            f"{', '.join(f'{k} ({p})' for k, p in sorted(providers.items()))} are held in hardware",
        ),
        tuple(evidence),
    )


@check("A4.2(4)", name="crypto.memory_only")
def memory_only(ctx: CheckContext, item_id: str) -> CheckResult:
    unseals = _events(ctx, "weights.unseal")
    opens = _events(ctx, "weights.open")
    if not unseals and not opens:
        return CheckResult(
            Verdict.no_evidence,
            (
                "no decryption of sealed weights is recorded yet; use `gpaisec weights open`, "
                "which decrypts into memory only after a policy allow",
            ),
        )
    failing = [
        f"audit event {seq}: weights unsealed to persistent storage at {d.get('into')} (Unsafe flag)"
        for seq, d in unseals
        if d.get("unsafe_persistent")
    ]
    failing += [
        f"audit event {seq}: weights opened without a recorded policy allow"
        for seq, d in opens
        if not d.get("policies")
    ]
    evidence = tuple(EvidenceRef("audit", str(seq)) for seq, _ in unseals + opens)
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing), evidence)
    return CheckResult(
        Verdict.met,
        (
            f"{len(opens)} opens, each after a policy allow, and {len(unseals)} unseals, "
            "all into memory-backed storage",
        ),
        evidence,
    )
