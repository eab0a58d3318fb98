"""The catalog as the rest of gpaisec sees it: frozen, typed values and one :class:`Catalog`."""

from __future__ import annotations

import datetime as dt
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gpaisec.catalog._ids import lookup_key, to_oscal_id
from gpaisec.errors import InputError, NotFoundError

__all__ = [
    "AIActFacts",
    "Article",
    "Catalog",
    "CatalogGroup",
    "CatalogItem",
    "Chapter",
    "Crosswalk",
    "CrosswalkLevel",
    "CrosswalkMapping",
    "Framework",
    "GroupKind",
    "IncidentReporting",
    "IncidentType",
    "ItemKind",
    "OversightLevel",
    "ThreatActor",
]

ItemKind = Literal["measure", "objective"]
GroupKind = Literal["commitment", "area"]
ALL_CHAPTERS = "all"


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogItem(_Value):
    """One thing an assessment gives a verdict to: a measure, or an objective of the security appendix.

    ``statement`` says what the item requires (for an objective: what it must achieve);
    ``default_measure`` is an objective's default "(a)" measure; ``related_measures`` are the measures an
    objective serves (M6.2, and M6.1 where the threat actors matter).
    """

    id: str
    kind: ItemKind
    chapter: str
    parent: str
    number: str
    title: str
    statement: str
    ai_act: tuple[str, ...]
    evidence_guidance: tuple[str, ...]
    default_measure: str | None = None
    related_measures: tuple[str, ...] = ()

    @property
    def oscal_id(self) -> str:
        return to_oscal_id(self.id)


class CatalogGroup(_Value):
    """A commitment (grouping measures) or a security-appendix area (grouping objectives)."""

    id: str
    kind: GroupKind
    chapter: str
    number: str
    title: str
    summary: str
    ai_act: tuple[str, ...]
    items: tuple[str, ...]

    @property
    def oscal_id(self) -> str:
        return to_oscal_id(self.id)


class Chapter(_Value):
    id: str
    title: str


class Framework(_Value):
    """The edition of the Code this catalog paraphrases."""

    id: str
    title: str
    version: str
    published: dt.date
    publisher: str
    url: str | None = None


class Article(_Value):
    """An AI Act provision items refer to, e.g. ``Art. 55(1)(d)`` or ``Annex XI``."""

    id: str
    title: str


class AIActFacts(_Value):
    systemic_risk_presumption_flop: float
    notify_commission_within_weeks: int
    gpai_obligations_apply: dt.date
    enforcement_powers_apply: dt.date
    legacy_models_comply_by: dt.date
    fine_ceiling_turnover_percent: float
    fine_ceiling_eur: int

    def fine_ceiling(self, worldwide_annual_turnover_eur: float) -> float:
        """The maximum fine: the higher of the turnover share and the fixed amount."""
        return max(
            worldwide_annual_turnover_eur * self.fine_ceiling_turnover_percent / 100, self.fine_ceiling_eur
        )


class ThreatActor(_Value):
    id: str
    title: str
    description: str
    capabilities: tuple[str, ...]
    measures: tuple[str, ...]


class IncidentType(_Value):
    """A kind of serious incident and the days allowed for its initial report."""

    id: str
    title: str
    description: str
    initial_report_days: int


class IncidentReporting(_Value):
    """The serious-incident reporting rules: when each report is due and how long records are kept."""

    measures: tuple[str, ...]
    clock_starts: str
    intermediate_report_every_weeks: int
    final_report_days_after_resolution: int
    retention_years: int


class OversightLevel(_Value):
    id: str
    title: str
    description: str
    required: bool


class CrosswalkLevel(_Value):
    id: str
    title: str
    description: str


class CrosswalkMapping(_Value):
    """``subject`` (a threat actor id or a catalog item id) maps to ``level``."""

    subject: str
    level: str
    note: str | None = None


class Crosswalk(_Value):
    id: str
    title: str
    source: str
    levels: tuple[CrosswalkLevel, ...]
    threat_actors: tuple[CrosswalkMapping, ...] = ()
    items: tuple[CrosswalkMapping, ...] = ()


def _suggest(text: str, ids: Iterable[str]) -> list[str]:
    """Up to three ids close to ``text``: longest shared prefix first (siblings), then similarity."""
    key = lookup_key(text)
    scored = []
    for ident in dict.fromkeys(ids):
        cand = lookup_key(ident)
        prefix = len(os.path.commonprefix([key, cand]))
        ratio = difflib.SequenceMatcher(None, key, cand).ratio()
        if ratio >= 0.6 or prefix >= 3:
            scored.append((-prefix, -ratio, ident))
    return [ident for *_, ident in sorted(scored)[:3]]


def _not_found(what: str, text: str, ids: Iterable[str], example: str) -> NotFoundError:
    suggestions = _suggest(text, ids) if text.strip() else []
    hint = f"did you mean {', '.join(suggestions)}?" if suggestions else f"ids look like {example}"
    return NotFoundError(
        f"no {what} {text.strip()!r} in the catalog",
        hint=f"{hint}; `gpaisec catalog list` shows them all",
    )


@dataclass(frozen=True)
class Catalog:
    """The Code as data: commitments, measures, appendix areas and objectives, and vocabularies.

    ``commitments``, ``measures``, ``areas`` and ``objectives`` hold every chapter, in catalog order;
    each value names its ``chapter``. :meth:`assessable` gives what an assessment grades.
    ``digest`` is the SHA-256 (hex) of the data files (see ``docs/catalog.md``), so an assessment can
    record exactly which catalog it used.
    """

    version: str
    framework: Framework
    last_modified: dt.date
    digest: str
    source: str
    files: tuple[str, ...]
    chapters: tuple[Chapter, ...]
    commitments: tuple[CatalogGroup, ...]
    measures: tuple[CatalogItem, ...]
    areas: tuple[CatalogGroup, ...]
    objectives: tuple[CatalogItem, ...]
    articles: tuple[Article, ...]
    ai_act_facts: AIActFacts
    threat_actors: tuple[ThreatActor, ...]
    incident_types: tuple[IncidentType, ...]
    incident_reporting: IncidentReporting
    documentation_retention_years: int
    oversight_levels: tuple[OversightLevel, ...]
    crosswalks: tuple[Crosswalk, ...]
    _items: Mapping[str, CatalogItem] = field(init=False, repr=False, compare=False)
    _groups: Mapping[str, CatalogGroup] = field(init=False, repr=False, compare=False)
    _item_keys: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _group_keys: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = {i.id: i for i in (*self.measures, *self.objectives)}
        groups = {g.id: g for g in (*self.commitments, *self.areas)}
        primary = self.chapters[0].id if self.chapters else None
        item_keys: dict[str, str] = {}
        group_keys: dict[str, str] = {}
        # Aliases, weakest first so an exact id always wins: the Code's bare number for the first
        # chapter ("1.1" -> M1.1, "4.2(1)" -> A4.2(1), "4.2" -> area A4.2), the OSCAL token, the id.
        for target, table in ((items, item_keys), (groups, group_keys)):
            for value in target.values():
                if value.chapter == primary:
                    table[lookup_key(value.number)] = value.id
            for value in target.values():
                table[lookup_key(value.oscal_id)] = value.id
            for value in target.values():
                table[lookup_key(value.id)] = value.id
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_groups", groups)
        object.__setattr__(self, "_item_keys", item_keys)
        object.__setattr__(self, "_group_keys", group_keys)

    @property
    def catalog_version(self) -> str:
        return self.version

    # --- lookups ---------------------------------------------------------------------------------

    def get(self, item_id: str) -> CatalogItem:
        """The measure or objective named ``item_id``.

        Accepts the id in any case and spacing ("m6.2", "a4.2 (1)"), the Code's bare number for the
        Safety and Security chapter ("1.1" -> M1.1, "4.2(1)" -> A4.2(1)) and the OSCAL token ("a4-2-1").
        Raises :class:`NotFoundError` with a suggestion otherwise.
        """
        key = self._item_keys.get(lookup_key(item_id))
        if key is None:
            raise _not_found(
                "measure or objective", item_id, self._item_keys, "M6.2, A4.2(1), T-M1.1, CR-M1.3"
            )
        return self._items[key]

    def group(self, group_id: str) -> CatalogGroup:
        """The commitment or appendix area named ``group_id`` ("C6", "c6", "A4.2", "4.2", "T-C1")."""
        key = self._group_keys.get(lookup_key(group_id))
        if key is None:
            raise _not_found("commitment or area", group_id, self._groups, "C6, A4.2, T-C1, CR-C1")
        return self._groups[key]

    def lookup(self, any_id: str) -> CatalogItem | CatalogGroup:
        """An item if ``any_id`` names one, else a commitment or area ("4.2" is measure M4.2)."""
        key = lookup_key(any_id)
        if key in self._item_keys:
            return self._items[self._item_keys[key]]
        if key in self._group_keys:
            return self._groups[self._group_keys[key]]
        raise _not_found("entry", any_id, [*self._groups, *self._items], "C6, M6.2, A4.2, A4.2(1), T-M1.1")

    def article(self, article_id: str) -> Article:
        for art in self.articles:
            if lookup_key(art.id) == lookup_key(article_id):
                return art
        raise NotFoundError(f"no AI Act reference {article_id!r} in the catalog", hint="e.g. 'Art. 55(1)(d)'")

    def crosswalk(self, crosswalk_id: str) -> Crosswalk:
        for cw in self.crosswalks:
            if cw.id == crosswalk_id:
                return cw
        names = ", ".join(c.id for c in self.crosswalks) or "none"
        raise NotFoundError(f"no crosswalk {crosswalk_id!r} in the catalog", hint=f"available: {names}")

    def incident_type(self, type_id: str) -> IncidentType:
        for it in self.incident_types:
            if it.id == type_id:
                return it
        names = ", ".join(t.id for t in self.incident_types)
        raise NotFoundError(f"no serious-incident type {type_id!r}", hint=f"one of: {names}")

    # --- selections ------------------------------------------------------------------------------

    def chapter_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.chapters)

    def _chapters(self, chapter: str) -> tuple[str, ...]:
        if chapter == ALL_CHAPTERS:
            return self.chapter_ids()
        if chapter not in self.chapter_ids():
            raise InputError(
                f"unknown chapter {chapter!r}",
                hint=f"use one of: {', '.join((*self.chapter_ids(), ALL_CHAPTERS))}",
            )
        return (chapter,)

    def assessable(self, chapter: str = "safety-security") -> list[CatalogItem]:
        """Every item an assessment gives a verdict to, in a stable order.

        For a chapter: its measures (commitment by commitment), then its appendix objectives (area by
        area). ``"all"`` concatenates the chapters in catalog order. Safety and Security gives the 32
        measures and 25 objectives.
        """
        out: list[CatalogItem] = []
        for ch in self._chapters(chapter):
            out.extend(m for m in self.measures if m.chapter == ch)
            out.extend(o for o in self.objectives if o.chapter == ch)
        return out

    def groups(self, chapter: str = ALL_CHAPTERS, kind: GroupKind | None = None) -> list[CatalogGroup]:
        """Commitments and areas of ``chapter``, commitments first, optionally of one ``kind``."""
        wanted = self._chapters(chapter)
        return [
            g
            for g in (*self.commitments, *self.areas)
            if g.chapter in wanted and (kind is None or g.kind == kind)
        ]

    def items(
        self, chapter: str = ALL_CHAPTERS, kind: ItemKind | None = None, parent: str | None = None
    ) -> list[CatalogItem]:
        """Assessable items of ``chapter``, optionally only one ``kind`` or the children of ``parent``.

        ``parent`` is resolved like :meth:`group` ("C6", "4.2"); its chapter overrides ``chapter``.
        """
        if parent is not None:
            grp = self.group(parent)
            return [self._items[i] for i in grp.items if kind is None or self._items[i].kind == kind]
        return [i for i in self.assessable(chapter) if kind is None or i.kind == kind]

    def children(self, group: CatalogGroup) -> list[CatalogItem]:
        return [self._items[i] for i in group.items]
