"""The packaged catalog: counts, ids, references and vocabularies match the Code."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from gpaisec.catalog import Catalog, load_catalog, packaged_data_dir

DATA = Path(str(packaged_data_dir()))

# Measures per commitment in the Safety and Security chapter, and objectives per appendix area.
MEASURES_PER_COMMITMENT = {1: 4, 2: 2, 3: 5, 4: 2, 5: 1, 6: 2, 7: 7, 8: 3, 9: 4, 10: 2}
OBJECTIVES_PER_AREA = {1: 4, 2: 6, 3: 4, 4: 4, 5: 7}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _ss(values: tuple, chapter: str = "safety-security") -> list:  # type: ignore[type-arg]
    return [v for v in values if v.chapter == chapter]


def test_safety_security_counts(catalog: Catalog) -> None:
    assert len(_ss(catalog.commitments)) == 10
    assert len(_ss(catalog.measures)) == 32
    assert len(catalog.areas) == 5
    assert len(catalog.objectives) == 25
    assert len(catalog.assessable()) == 57
    assert len(catalog.assessable("safety-security")) == 57


def test_other_chapter_counts(catalog: Catalog) -> None:
    assert [m.id for m in catalog.assessable("transparency")] == ["T-M1.1", "T-M1.2", "T-M1.3"]
    assert [m.id for m in catalog.assessable("copyright")] == [f"CR-M1.{n}" for n in range(1, 6)]
    assert len(catalog.assessable("all")) == 57 + 3 + 5
    assert [g.id for g in catalog.commitments if g.chapter != "safety-security"] == ["T-C1", "CR-C1"]


def test_ids_follow_the_code(catalog: Catalog) -> None:
    expected_measures = [f"M{c}.{n}" for c, k in MEASURES_PER_COMMITMENT.items() for n in range(1, k + 1)]
    expected_objectives = [f"A4.{a}({n})" for a, k in OBJECTIVES_PER_AREA.items() for n in range(1, k + 1)]
    assert [m.id for m in _ss(catalog.measures)] == expected_measures
    assert [o.id for o in catalog.objectives] == expected_objectives
    assert [c.id for c in _ss(catalog.commitments)] == [f"C{n}" for n in range(1, 11)]
    assert [a.id for a in catalog.areas] == [f"A4.{n}" for n in range(1, 6)]


def test_number_field_keeps_the_codes_number(catalog: Catalog) -> None:
    for item in catalog.assessable("all"):
        assert item.id.endswith(item.number), item.id
        assert item.id.removeprefix("T-").removeprefix("CR-")[1:] == item.number


def test_ids_unique_across_everything(catalog: Catalog) -> None:
    ids = [x.id for x in (*catalog.commitments, *catalog.areas, *catalog.measures, *catalog.objectives)]
    assert len(ids) == len(set(ids))
    assert len({i.lower() for i in ids}) == len(ids), "ids must stay unique when compared case-insensitively"


def test_parents_and_children_agree(catalog: Catalog) -> None:
    for group in (*catalog.commitments, *catalog.areas):
        children = catalog.children(group)
        assert children, group.id
        for child in children:
            assert child.parent == group.id
            assert child.chapter == group.chapter
            assert child.kind == ("measure" if group.kind == "commitment" else "objective")
    for item in catalog.assessable("all"):
        assert item.id in catalog.group(item.parent).items


def test_every_reference_resolves(catalog: Catalog) -> None:
    articles = {a.id for a in catalog.articles}
    measures = {m.id for m in catalog.measures}
    for entry in (*catalog.commitments, *catalog.areas, *catalog.measures, *catalog.objectives):
        assert entry.ai_act, entry.id
        assert set(entry.ai_act) <= articles, entry.id
    for o in catalog.objectives:
        assert "M6.2" in o.related_measures, o.id
        assert set(o.related_measures) <= {"M6.1", "M6.2"}
    for actor in catalog.threat_actors:
        assert set(actor.measures) <= measures
    assert set(catalog.incident_reporting.measures) <= measures
    items = {i.id for i in catalog.assessable("all")}
    actors = {t.id for t in catalog.threat_actors}
    for cw in catalog.crosswalks:
        levels = {lvl.id for lvl in cw.levels}
        assert all(m.subject in actors and m.level in levels for m in cw.threat_actors)
        assert all(m.subject in items and m.level in levels for m in cw.items)


def test_items_say_what_they_require_and_what_shows_it(catalog: Catalog) -> None:
    for item in catalog.assessable("all"):
        assert item.title, item.id
        assert item.statement, item.id
        assert item.evidence_guidance, item.id
        sentences = len(re.findall(r"[.!?](\s|$)", item.statement))
        assert 1 <= sentences <= 4, f"{item.id}: {sentences} sentences"
        assert all(line.strip() == line and line for line in item.evidence_guidance)
    for o in catalog.objectives:
        assert o.default_measure, o.id
    for m in catalog.measures:
        assert m.default_measure is None
        assert m.related_measures == ()


def test_security_objectives_serve_article_55_1_d(catalog: Catalog) -> None:
    assert all(o.ai_act == ("Art. 55(1)(d)",) for o in catalog.objectives)
    assert catalog.get("M6.2").ai_act == ("Art. 55(1)(d)",)
    assert "Art. 55(1)(c)" in catalog.get("M9.3").ai_act


def test_serious_incident_vocabulary(catalog: Catalog) -> None:
    days = {t.id: t.initial_report_days for t in catalog.incident_types}
    assert days["critical-infrastructure-disruption"] == 2
    assert days["cybersecurity-breach"] == 5
    assert days["death"] == 10
    assert {days[k] for k in ("serious-harm-health", "fundamental-rights-infringement")} == {15}
    assert days["serious-harm-property-environment"] == 15
    assert sorted(set(days.values())) == [2, 5, 10, 15]
    rules = catalog.incident_reporting
    assert rules.intermediate_report_every_weeks == 4
    assert rules.final_report_days_after_resolution == 60
    assert rules.retention_years == 5
    assert catalog.documentation_retention_years == 10
    assert catalog.incident_type("death").initial_report_days == 10


def test_threat_actors_and_oversight_levels(catalog: Catalog) -> None:
    actors = {t.id: t for t in catalog.threat_actors}
    assert set(actors) == {"non-state-external", "insider"}
    assert any("EUR 1 million" in c for c in actors["non-state-external"].capabilities)
    assert any("ten" in c for c in actors["non-state-external"].capabilities)
    assert [lvl.id for lvl in catalog.oversight_levels] == [
        "supervisory-body",
        "executive-body",
        "operational-teams",
        "internal-assurance",
        "external-assurance",
    ]
    assert [lvl.required for lvl in catalog.oversight_levels] == [True, True, True, False, False]


def test_ai_act_facts(catalog: Catalog) -> None:
    facts = catalog.ai_act_facts
    assert facts.systemic_risk_presumption_flop == 1e25
    assert facts.notify_commission_within_weeks == 2
    assert facts.gpai_obligations_apply.isoformat() == "2025-08-02"
    assert facts.enforcement_powers_apply.isoformat() == "2026-08-02"
    assert facts.legacy_models_comply_by.isoformat() == "2027-08-02"
    assert facts.fine_ceiling(1_000_000_000) == 30_000_000  # 3 % of turnover is higher
    assert facts.fine_ceiling(100_000_000) == 15_000_000  # the fixed amount is higher
    assert catalog.article("art. 55(1)(d)").id == "Art. 55(1)(d)"


def test_rand_crosswalk(catalog: Catalog) -> None:
    rand = catalog.crosswalk("rand-sl")
    assert [lvl.id for lvl in rand.levels] == ["SL1", "SL2", "SL3", "SL4", "SL5"]
    assert {m.subject: m.level for m in rand.threat_actors} == {"non-state-external": "SL3", "insider": "SL3"}


def test_every_data_file_is_in_the_manifest_and_versioned(catalog: Catalog) -> None:
    on_disk = sorted(p.name for p in DATA.glob("*.yaml"))
    assert on_disk == list(catalog.files), "a data file the manifest does not name would be silently ignored"
    for name in on_disk:
        data = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
        assert data["catalog_version"] == catalog.version
        if name != "catalog.yaml":
            assert data["framework_version"] == catalog.framework.version
    assert catalog.framework.version == "final-2025-07-10"


def test_digest_is_sha256_of_a_sha256sum_listing(catalog: Catalog) -> None:
    listing = "".join(
        f"{hashlib.sha256((DATA / n).read_bytes()).hexdigest()}  {n}\n" for n in sorted(catalog.files)
    )
    assert catalog.digest == hashlib.sha256(listing.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", catalog.digest)


def test_packaged_catalog_is_cached_and_a_path_reads_afresh(catalog: Catalog) -> None:
    assert load_catalog() is catalog
    again = load_catalog(DATA)
    assert again is not catalog
    assert again.digest == catalog.digest
    assert again.assessable("all") == catalog.assessable("all")


def test_catalog_values_are_frozen(catalog: Catalog) -> None:
    item = catalog.get("M6.2")
    with pytest.raises(Exception):  # noqa: B017, PT011 - pydantic raises ValidationError for frozen models
        item.title = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        catalog.version = "x"  # type: ignore[misc]
