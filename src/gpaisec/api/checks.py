"""Compliance check for the security appendix's 4.3(3): interfaces that serve weights are hardened.

A4.3(3) reduce the risk of exfiltration through interfaces, for example by limiting the rate of output.
The evidence is the audit log's ``serving.configure`` events (:func:`gpaisec.crypto.serving.configure_serving`
records one with the limits whenever the serving configuration is written): the newest event per
model version is its interface's configuration now. Met when every configured interface has a positive
byte rate and a positive total per grant; not met naming each one without; no evidence when nothing
serves weights.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from gpaisec.audit.models import AuditEntry
from gpaisec.compliance.checks import CheckContext, check
from gpaisec.compliance.verdicts import CheckResult, EvidenceRef, Verdict
from gpaisec.crypto.serving import LIMITS

__all__ = ["serving_limits"]


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@check("A4.3(3)", name="crypto.serving_limits")
def serving_limits(ctx: CheckContext, item_id: str) -> CheckResult:
    rows = ctx.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "serving.configure").order_by(AuditEntry.seq)
    )
    newest: dict[str, tuple[int, dict[str, object]]] = {}
    for e in rows:
        details = json.loads(bytes(e.entry)).get("details") or {}
        if not isinstance(details, dict):
            continue
        ref = str(details.get("ref") or e.object.removeprefix("version:"))
        newest[ref] = (e.seq, details)
    if not newest:
        return CheckResult(
            Verdict.no_evidence,
            ("no interface serves weights: no serving configuration is recorded in the audit log",),
        )
    failing: list[str] = []
    evidence: list[EvidenceRef] = []
    for ref, (seq, d) in sorted(newest.items()):
        missing = [name for name in LIMITS if not _positive(d.get(name))]
        if missing:
            failing.append(
                f"the interface serving {ref} has no {' and no '.join(missing)} (audit event {seq})"
            )
        note = ", ".join(f"{name}={d.get(name)}" for name in LIMITS)
        evidence.append(EvidenceRef("audit", str(seq), note=f"{ref}: {note}"))
    if failing:
        return CheckResult(Verdict.not_met, tuple(failing), tuple(evidence))
    return CheckResult(
        Verdict.met,
        (
            f"every interface that serves weights ({', '.join(sorted(newest))}) limits its output rate "
            "and the total bytes per grant",
        ),
        tuple(evidence),
    )
