"""The registry of unreleased weights and its findings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder

from gpaisec.api.deps import Admin, Ident, QueryText, Staff
from gpaisec.api.schemas import FindingPublic, ReasonBody
from gpaisec.weights import registry
from gpaisec.weights.models import Finding

router = APIRouter(tags=["registry"])

__all__ = ["router"]


def _finding(f: Finding) -> FindingPublic:
    return FindingPublic(
        id=f.id,
        kind=f.kind,
        severity=f.severity,
        state=f.state,
        summary=f.summary,
        details=f.details,
        opened_at=f.opened_at,
        last_seen_at=f.last_seen_at,
        resolved_at=f.resolved_at,
        resolved_by=f.resolved_by,
        resolution=f.resolution,
    )


@router.get(
    "/registry",
    response_model=list[dict[str, Any]],
    summary="Where every model version lives: approved copies and every other sighting",
)
def registry_view(caller: Staff, model: QueryText = None) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = jsonable_encoder(registry.registry_view(caller.workspace, model=model))
    return data


@router.get("/findings", response_model=list[FindingPublic], summary="Findings, newest first")
def list_findings(
    caller: Staff,
    open_only: bool = False,
    kind: QueryText = None,
) -> list[FindingPublic]:
    return [_finding(f) for f in registry.list_findings(caller.workspace, open_only=open_only, kind=kind)]


@router.post("/findings/{finding_id}/resolve", response_model=FindingPublic, summary="Resolve a finding")
def resolve_finding(finding_id: Ident, body: ReasonBody, caller: Admin) -> FindingPublic:
    return _finding(registry.resolve_finding(caller.workspace, finding_id, reason=body.reason))
