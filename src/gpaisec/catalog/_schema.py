"""The shape of each catalog data file, as pydantic models.

These models check one file at a time: types, required fields, id syntax and unknown keys. Checks that
need more than one file (duplicate ids across files, references to measures, articles, threat actors)
are done by the loader once every file has parsed.

Every model is frozen and forbids unknown keys, so a typo in a key name fails loudly instead of being
ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

__all__ = [
    "PATTERN_EXAMPLES",
    "ArticleEntry",
    "AiActFile",
    "AreaEntry",
    "ChapterFile",
    "ChapterRef",
    "CommitmentEntry",
    "CrosswalkFile",
    "FactsEntry",
    "FrameworkEntry",
    "IncidentReportingEntry",
    "IncidentTypeEntry",
    "ItemMapping",
    "LevelEntry",
    "ManifestFile",
    "MeasureEntry",
    "ObjectiveEntry",
    "OversightLevelEntry",
    "ThreatActorEntry",
    "ThreatActorMapping",
    "VersionedFile",
    "VocabulariesFile",
]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")]
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.yaml$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")]

# Ids follow the Code. Safety and Security: C6, M6.2, A4.2, A4.2(1). Other chapters carry a prefix:
# T-C1 / T-M1.1 (Transparency), CR-C1 / CR-M1.3 (Copyright).
CommitmentId = Annotated[str, StringConstraints(pattern=r"^(T-|CR-)?C[0-9]+$")]
MeasureId = Annotated[str, StringConstraints(pattern=r"^(T-|CR-)?M[0-9]+\.[0-9]+$")]
AreaId = Annotated[str, StringConstraints(pattern=r"^A[0-9]+\.[0-9]+$")]
ObjectiveId = Annotated[str, StringConstraints(pattern=r"^A[0-9]+\.[0-9]+\([0-9]+\)$")]
Number = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(\([0-9]+\))?$")]
ArticleId = Annotated[
    str, StringConstraints(pattern=r"^(Art\. [0-9]+[a-z]?(\([0-9]+\))?(\([a-z]\))?|Annex [IVXL]+)$")
]
LevelId = Annotated[str, StringConstraints(pattern=r"^[A-Z]+[0-9]+$")]

TextList = Annotated[tuple[Text, ...], Field(min_length=1)]

# For error messages: an example of each constrained form, keyed by its pattern.
PATTERN_EXAMPLES = {
    r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$": "lower-case words joined by dashes, e.g. safety-security",
    r"^(T-|CR-)?C[0-9]+$": "a commitment id, e.g. C6 or T-C1",
    r"^(T-|CR-)?M[0-9]+\.[0-9]+$": "a measure id, e.g. M6.2 or CR-M1.3",
    r"^A[0-9]+\.[0-9]+$": "an appendix area id, e.g. A4.2",
    r"^A[0-9]+\.[0-9]+\([0-9]+\)$": "an objective id, e.g. A4.2(1)",
    r"^[0-9]+(\.[0-9]+)?(\([0-9]+\))?$": 'the Code\'s number, e.g. "6.2" or "4.2(1)"',
    r"^[A-Z]+[0-9]+$": "a level id, e.g. SL3",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionedFile(_Model):
    """Every file says which catalog version and which version of the Code it belongs to."""

    catalog_version: Version
    framework_version: Version


# --- catalog.yaml: the manifest -------------------------------------------------------------------


class FrameworkEntry(_Model):
    id: Slug
    title: Text
    version: Version
    published: dt.date
    publisher: Text
    url: Text | None = None


class ChapterRef(_Model):
    id: Slug
    title: Text
    files: Annotated[tuple[FileName, ...], Field(min_length=1)]


class ManifestFile(_Model):
    catalog_version: Version
    last_modified: dt.date
    framework: FrameworkEntry
    ai_act: FileName
    vocabularies: FileName
    chapters: Annotated[tuple[ChapterRef, ...], Field(min_length=1)]
    crosswalks: tuple[FileName, ...] = ()


# --- chapter files: commitments with measures, appendix areas with objectives ----------------------


class MeasureEntry(_Model):
    id: MeasureId
    number: Number
    title: Text
    statement: Text
    ai_act: TextList
    evidence_guidance: TextList


class CommitmentEntry(_Model):
    id: CommitmentId
    number: Number
    title: Text
    summary: Text
    ai_act: TextList
    measures: Annotated[tuple[MeasureEntry, ...], Field(min_length=1)]


class ObjectiveEntry(_Model):
    id: ObjectiveId
    number: Number
    title: Text
    objective: Text
    default_measure: Text
    measures: TextList
    ai_act: TextList
    evidence_guidance: TextList


class AreaEntry(_Model):
    id: AreaId
    number: Number
    title: Text
    summary: Text
    objectives: Annotated[tuple[ObjectiveEntry, ...], Field(min_length=1)]


class ChapterFile(VersionedFile):
    chapter: Slug
    commitments: tuple[CommitmentEntry, ...] = ()
    areas: tuple[AreaEntry, ...] = ()


# --- ai-act.yaml ---------------------------------------------------------------------------------


class ArticleEntry(_Model):
    id: ArticleId
    title: Text


class FactsEntry(_Model):
    systemic_risk_presumption_flop: Annotated[float, Field(gt=0)]
    notify_commission_within_weeks: Annotated[StrictInt, Field(gt=0)]
    gpai_obligations_apply: dt.date
    enforcement_powers_apply: dt.date
    legacy_models_comply_by: dt.date
    fine_ceiling_turnover_percent: Annotated[float, Field(gt=0, le=100)]
    fine_ceiling_eur: Annotated[StrictInt, Field(gt=0)]


class AiActFile(VersionedFile):
    regulation: Text
    articles: Annotated[tuple[ArticleEntry, ...], Field(min_length=1)]
    facts: FactsEntry


# --- vocabularies.yaml ---------------------------------------------------------------------------


class ThreatActorEntry(_Model):
    id: Slug
    title: Text
    description: Text
    capabilities: TextList
    measures: TextList


class IncidentTypeEntry(_Model):
    id: Slug
    title: Text
    description: Text
    initial_report_days: Annotated[StrictInt, Field(gt=0)]


class IncidentReportingEntry(_Model):
    measures: TextList
    types: Annotated[tuple[IncidentTypeEntry, ...], Field(min_length=1)]
    clock_starts: Text
    intermediate_report_every_weeks: Annotated[StrictInt, Field(gt=0)]
    final_report_days_after_resolution: Annotated[StrictInt, Field(gt=0)]
    retention_years: Annotated[StrictInt, Field(gt=0)]


class OversightLevelEntry(_Model):
    id: Slug
    title: Text
    description: Text
    required: StrictBool


class VocabulariesFile(VersionedFile):
    threat_actors: Annotated[tuple[ThreatActorEntry, ...], Field(min_length=1)]
    serious_incidents: IncidentReportingEntry
    documentation_retention_years: Annotated[StrictInt, Field(gt=0)]
    documentation_retention_measures: TextList
    oversight_levels: Annotated[tuple[OversightLevelEntry, ...], Field(min_length=1)]
    oversight_measures: TextList


# --- crosswalk files -------------------------------------------------------------------------------


class LevelEntry(_Model):
    id: LevelId
    title: Text
    description: Text


class ItemMapping(_Model):
    item: Text
    level: LevelId
    note: Text | None = None


class ThreatActorMapping(_Model):
    threat_actor: Slug
    level: LevelId
    note: Text | None = None


class CrosswalkFile(VersionedFile):
    crosswalk: Slug
    title: Text
    source: Text
    kind: Literal["levels"]
    levels: Annotated[tuple[LevelEntry, ...], Field(min_length=1)]
    threat_actors: tuple[ThreatActorMapping, ...] = ()
    items: tuple[ItemMapping, ...] = ()
