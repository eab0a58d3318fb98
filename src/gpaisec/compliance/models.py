"""Tables of the compliance spine: controls, evidence, attestations, assessment runs and results."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gpaisec.store.base import Base, UTCDateTime


class Control(Base):
    """How the provider meets a measure: a named, owned practice."""

    __tablename__ = "controls"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # planned | implemented | retired
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Evidence(Base):
    """Something that shows a measure is met, with its content hash, source and validity."""

    __tablename__ = "evidence"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_ids: Mapped[list[str]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(40))  # document | check-output | record | url
    title: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(300))
    content_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    stored_as: Mapped[str | None] = mapped_column(String(300), nullable=True)
    collected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    collected_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Attestation(Base):
    """A named person's statement about a measure, with the documents it rests on (hashed)."""

    __tablename__ = "attestations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(32), index=True)
    claim: Mapped[str] = mapped_column(String(20))  # a Verdict value other than no_evidence
    statement: Mapped[str] = mapped_column(Text)
    attested_by: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(200), default="")
    attested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    evidence_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


class AssessmentRun(Base):
    __tablename__ = "assessment_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    chapter: Mapped[str] = mapped_column(String(40))
    catalog_version: Mapped[str] = mapped_column(String(60))
    catalog_digest: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    results: Mapped[list[AssessmentResult]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="AssessmentResult.position"
    )


class AssessmentResult(Base):
    __tablename__ = "assessment_results"
    __table_args__ = (Index("ix_assessment_results_item", "item_id", "run_id"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("assessment_runs.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    sources: Mapped[list[str]] = mapped_column(JSON)
    run: Mapped[AssessmentRun] = relationship(back_populates="results")
