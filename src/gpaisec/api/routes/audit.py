"""The tamper-evident audit log: events and inclusion proofs."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from gpaisec.api.deps import Auditor, QueryText
from gpaisec.audit import service

router = APIRouter(prefix="/audit", tags=["audit"])

__all__ = ["router"]


class AuditEventPublic(BaseModel):
    seq: int
    time: dt.datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]


@router.get("/events", response_model=list[AuditEventPublic], summary="Audit events, oldest first")
def events(
    caller: Auditor,
    actor: QueryText = None,
    action: QueryText = None,
    object: QueryText = None,
    since: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEventPublic]:
    rows = service.log(caller.workspace, actor=actor, action=action, object=object, since=since, limit=limit)
    return [
        AuditEventPublic(
            seq=e.seq, time=e.time, actor=e.actor, action=e.action, object=e.object, details=e.details
        )
        for e in rows
    ]


@router.get(
    "/proof/{seq}",
    response_model=dict[str, Any],
    summary="An inclusion proof of one entry against a signed checkpoint",
)
def proof(
    caller: Auditor,
    seq: Annotated[int, Path(ge=0, le=2**62)],
    checkpoint: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    return service.prove(caller.workspace, seq, checkpoint=checkpoint).to_json()
