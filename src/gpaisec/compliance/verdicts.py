"""Verdicts, check results and evidence references: the values the spine passes around."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    met = "met"
    partly_met = "partly_met"
    not_met = "not_met"
    not_applicable = "not_applicable"
    no_evidence = "no_evidence"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


# Order for combining: the worst verdict wins among those that say something.
SEVERITY: dict[Verdict, int] = {
    Verdict.not_met: 0,
    Verdict.partly_met: 1,
    Verdict.met: 2,
}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The worst of met / partly met / not met; ``no_evidence`` when the list is empty."""
    graded = [v for v in verdicts if v in SEVERITY]
    if not graded:
        return Verdict.no_evidence
    return min(graded, key=SEVERITY.__getitem__)


@dataclass(frozen=True)
class EvidenceRef:
    """A pointer to what supports a verdict: a stored evidence row, an audit event, a record."""

    kind: str  # evidence | audit | record | attestation | document
    ref: str
    sha256: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ref": self.ref}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class CheckResult:
    """What one check says about one catalog item."""

    verdict: Verdict
    reasons: tuple[str, ...]
    evidence: tuple[EvidenceRef, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.reasons:
            raise ValueError("a check result needs at least one reason")
