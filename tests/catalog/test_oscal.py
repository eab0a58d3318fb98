"""The OSCAL 1.1.2 catalog export: required fields, unique ids, reproducible output.

The structure was also checked once against compliance-trestle's OSCAL models (not a test
dependency); these tests pin the parts of the OSCAL catalog model the export relies on.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.catalog import OSCAL_NS, load_catalog, packaged_data_dir, to_oscal_catalog

# ASCII subset of OSCAL's TokenDatatype: a letter or "_", then letters, digits, ".", "-", "_".
TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
# OSCAL DateTimeWithTimezoneDatatype (simplified): date, time, and a zone.
DATETIME_TZ = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# OSCAL StringDatatype: no leading or trailing whitespace, not empty.
STRING = re.compile(r"^\S(.*\S)?$", re.DOTALL)
CONTROL_KEYS = {"id", "class", "title", "params", "props", "links", "parts", "controls"}
GROUP_KEYS = {"id", "class", "title", "params", "props", "links", "parts", "groups", "controls"}
PART_KEYS = {"id", "name", "ns", "class", "title", "props", "prose", "parts", "links"}
PROP_KEYS = {"name", "uuid", "ns", "value", "class", "group", "remarks"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return to_oscal_catalog(load_catalog())


def _groups(groups: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for g in groups:
        yield g
        yield from _groups(g.get("groups", []))


def _controls(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for g in _groups(doc["catalog"]["groups"]) for c in g.get("controls", [])]


def _parts(parts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in parts:
        yield p
        yield from _parts(p.get("parts", []))


def _props(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "props":
                yield from value
            else:
                yield from _props(value)
    elif isinstance(node, list):
        for value in node:
            yield from _props(value)


def test_root_and_metadata(doc: dict[str, Any]) -> None:
    assert set(doc) == {"catalog"}
    cat = doc["catalog"]
    assert set(cat) <= {"uuid", "metadata", "params", "controls", "groups", "back-matter"}
    assert uuid.UUID(cat["uuid"]).version == 5
    meta = cat["metadata"]
    for field in ("title", "last-modified", "version", "oscal-version"):
        assert meta[field], field
    assert meta["oscal-version"] == "1.1.2"
    assert DATETIME_TZ.match(meta["last-modified"])
    catalog = load_catalog()
    assert meta["version"] == catalog.version
    assert {p["name"]: p["value"] for p in meta["props"]}["catalog-sha256"] == catalog.digest


def test_groups_per_chapter_then_commitment_or_area(doc: dict[str, Any]) -> None:
    chapters = doc["catalog"]["groups"]
    assert [g["id"] for g in chapters] == ["safety-security", "transparency", "copyright"]
    ss = [g["id"] for g in chapters[0]["groups"]]
    assert ss == [f"c{n}" for n in range(1, 11)] + [f"a4-{n}" for n in range(1, 6)]
    for g in _groups(chapters):
        assert set(g) <= GROUP_KEYS
        assert g["title"]
        # OSCAL 1.1 groups hold either sub-groups or controls
        assert ("groups" in g) != ("controls" in g), g["id"]


def test_one_control_per_item_with_unique_token_ids(doc: dict[str, Any]) -> None:
    controls = _controls(doc)
    catalog = load_catalog()
    items = catalog.assessable("all")
    assert len(controls) == len(items) == 65
    ids = [c["id"] for c in controls]
    assert len(set(ids)) == len(ids)
    assert all(TOKEN.match(i) for i in ids)
    assert ids == [i.oscal_id for i in items]
    labels = [
        next(p["value"] for p in c["props"] if p["name"] == "label" and "ns" not in p) for c in controls
    ]
    assert labels == [i.id for i in items], "a prop keeps the original id"
    for c in controls:
        assert set(c) <= CONTROL_KEYS
        assert c["title"]
        assert c["class"] in {"measure", "objective"}


def test_every_id_in_the_document_is_unique(doc: dict[str, Any]) -> None:
    ids = [g["id"] for g in _groups(doc["catalog"]["groups"])]
    for c in _controls(doc):
        ids.append(c["id"])
        ids.extend(p["id"] for p in _parts(c["parts"]))
    for g in _groups(doc["catalog"]["groups"]):
        ids.extend(p["id"] for p in _parts(g.get("parts", [])))
    assert len(ids) == len(set(ids))
    assert all(TOKEN.match(i) for i in ids)


def test_parts_statement_and_guidance(doc: dict[str, Any]) -> None:
    catalog = load_catalog()
    for c in _controls(doc):
        names = [p["name"] for p in c["parts"]]
        assert names == ["statement", "guidance"]
        for p in _parts(c["parts"]):
            assert set(p) <= PART_KEYS
            assert p["prose"].strip()
        item = catalog.get(c["id"])
        assert c["parts"][0]["prose"] == item.statement
        for line in item.evidence_guidance:
            assert line in c["parts"][1]["prose"]
        if item.kind == "objective":
            sub = c["parts"][0]["parts"][0]
            assert sub["name"] == "item"
            assert sub["prose"] == item.default_measure


def test_objectives_link_to_the_measures_they_serve(doc: dict[str, Any]) -> None:
    ids = {c["id"] for c in _controls(doc)}
    objectives = [c for c in _controls(doc) if c["class"] == "objective"]
    assert len(objectives) == 25
    for c in objectives:
        hrefs = [link["href"] for link in c["links"]]
        assert "#m6-2" in hrefs
        assert all(h.startswith("#") and h[1:] in ids for h in hrefs)


def test_props_are_well_formed(doc: dict[str, Any]) -> None:
    props = list(_props(doc))
    assert props
    for p in props:
        assert set(p) <= PROP_KEYS
        assert TOKEN.match(p["name"]), p
        assert STRING.match(p["value"]), p
        # names in the OSCAL namespace (no ns) are only the ones OSCAL defines for catalogs
        if "ns" not in p:
            assert p["name"] in {"label", "sort-id"}, p
        else:
            assert p["ns"] == OSCAL_NS


def test_back_matter_resource(doc: dict[str, Any]) -> None:
    resources = doc["catalog"]["back-matter"]["resources"]
    assert len(resources) == 1
    assert uuid.UUID(resources[0]["uuid"])
    link = doc["catalog"]["metadata"]["links"][0]
    assert link["href"] == "#" + resources[0]["uuid"]


def test_export_is_deterministic(doc: dict[str, Any]) -> None:
    again = to_oscal_catalog(load_catalog(Path(str(packaged_data_dir()))))
    assert json.dumps(again, sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_a_different_catalog_gets_a_different_uuid(doc: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(str(packaged_data_dir()), data)
    (data / "copyright.yaml").write_text((data / "copyright.yaml").read_text() + "# changed\n")
    other = to_oscal_catalog(load_catalog(data))
    assert other["catalog"]["uuid"] != doc["catalog"]["uuid"]
    assert _controls(other) == _controls(doc), (
        "control content is the same; only the document identity changes"
    )
