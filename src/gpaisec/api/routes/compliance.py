"""Assessments of the Code's measures."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.encoders import jsonable_encoder

from gpaisec.api.deps import Admin, Staff
from gpaisec.api.schemas import AssessmentCreate
from gpaisec.compliance import assessment, deadlines
from gpaisec.errors import NotFoundError
from gpaisec.store.base import utcnow

router = APIRouter(prefix="/assessments", tags=["compliance"])

__all__ = ["router"]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=dict[str, Any],
    summary="Run an assessment over the catalog now",
)
def run_assessment(body: AssessmentCreate, caller: Admin) -> dict[str, Any]:
    return assessment.assess(caller.workspace, chapter=body.chapter).to_json()


@router.get("/latest", response_model=dict[str, Any], summary="The latest assessment report")
def latest(caller: Staff) -> dict[str, Any]:
    report = assessment.latest_report(caller.workspace)
    if report is None:
        raise NotFoundError("no assessment has been run", hint="POST /api/v1/assessments")
    return report.to_json()


@router.get(
    "/deadlines",
    response_model=list[dict[str, Any]],
    summary="Deadlines due within `days` days (default 60), and every one already missed, soonest first",
)
def upcoming_deadlines(
    caller: Staff, days: Annotated[int, Query(ge=1, le=3660)] = 60
) -> list[dict[str, Any]]:
    now = utcnow()
    rows = deadlines.upcoming(caller.workspace, horizon=dt.timedelta(days=days), now=now)
    return [d.to_json(now) for d in rows]


@router.get("", response_model=list[dict[str, Any]], summary="Recent assessment runs, newest first")
def history(caller: Staff) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = jsonable_encoder(assessment.history(caller.workspace))
    return data
