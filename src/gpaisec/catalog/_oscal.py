"""Export the catalog as an OSCAL 1.1.2 catalog (JSON model).

Layout: one top-level group per chapter; inside it one group per commitment (``class: commitment``)
or security-appendix area (``class: area``); inside those one control per measure or objective.
Each control has a ``statement`` part (for an objective: the objective, with its default "(a)"
measure as an ``item`` sub-part), a ``guidance`` part listing the evidence that shows it, the OSCAL
``label`` and ``sort-id`` props, and gpaisec props (namespace :data:`OSCAL_NS`) keeping the original
id, the Code's number, the chapter and the AI Act references.

The export is deterministic: uuids are uuid5 values derived from ids and the catalog digest, and
``last-modified`` comes from the catalog, not the clock. Exporting the same catalog twice gives the
same bytes.
"""

from __future__ import annotations

import uuid
from typing import Any

from gpaisec.catalog._ids import to_oscal_id
from gpaisec.catalog._model import Catalog, CatalogGroup, CatalogItem

__all__ = ["OSCAL_NS", "OSCAL_VERSION", "to_oscal_catalog"]

OSCAL_VERSION = "1.1.2"
OSCAL_NS = "https://gpaisec.dev/ns/oscal"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, OSCAL_NS + "/catalog")

Json = dict[str, Any]


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "/".join(parts)))


def _prop(name: str, value: str, *, ns: bool = True) -> Json:
    prop: Json = {"name": name, "value": value}
    if ns:
        prop["ns"] = OSCAL_NS
    return prop


def _bullets(intro: str, lines: tuple[str, ...]) -> str:
    return intro + "\n\n" + "\n".join(f"- {line}" for line in lines)


def _control(item: CatalogItem, sort_id: str) -> Json:
    cid = item.oscal_id
    statement: Json = {"id": f"{cid}_smt", "name": "statement", "prose": item.statement}
    if item.default_measure is not None:
        statement["parts"] = [
            {
                "id": f"{cid}_smt.a",
                "name": "item",
                "title": "Default measure",
                "props": [_prop("label", "(a)", ns=False)],
                "prose": item.default_measure,
            }
        ]
    props = [
        _prop("label", item.id, ns=False),
        _prop("sort-id", sort_id, ns=False),
        _prop("catalog-id", item.id),
        _prop("code-number", item.number),
        _prop("chapter", item.chapter),
        _prop("kind", item.kind),
        *(_prop("ai-act", ref) for ref in item.ai_act),
    ]
    control: Json = {
        "id": cid,
        "class": item.kind,
        "title": item.title,
        "props": props,
    }
    if item.related_measures:
        control["links"] = [
            {"href": f"#{to_oscal_id(m)}", "rel": "related", "text": m} for m in item.related_measures
        ]
    control["parts"] = [
        statement,
        {
            "id": f"{cid}_gdn",
            "name": "guidance",
            "prose": _bullets("Evidence that shows this is done:", item.evidence_guidance),
        },
    ]
    return control


def _group(catalog: Catalog, group: CatalogGroup, sort_prefix: str) -> Json:
    gid = group.oscal_id
    controls = [
        _control(item, f"{sort_prefix}.{i:03d}") for i, item in enumerate(catalog.children(group), start=1)
    ]
    return {
        "id": gid,
        "class": group.kind,
        "title": group.title,
        "props": [
            _prop("label", group.id, ns=False),
            _prop("sort-id", sort_prefix, ns=False),
            _prop("catalog-id", group.id),
            _prop("code-number", group.number),
        ],
        "parts": [{"id": f"{gid}_ovw", "name": "overview", "prose": group.summary}],
        "controls": controls,
    }


def to_oscal_catalog(catalog: Catalog) -> Json:
    """The catalog as an OSCAL 1.1.2 ``catalog`` document (a dict ready for ``json.dumps``)."""
    fw = catalog.framework
    groups = []
    for ci, chapter in enumerate(catalog.chapters, start=1):
        members = catalog.groups(chapter.id)
        groups.append(
            {
                "id": to_oscal_id(chapter.id),
                "class": "chapter",
                "title": chapter.title,
                "props": [_prop("sort-id", f"{ci:02d}", ns=False), _prop("chapter", chapter.id)],
                "groups": [_group(catalog, g, f"{ci:02d}.{gi:02d}") for gi, g in enumerate(members, start=1)],
            }
        )
    resource: Json = {
        "uuid": _uuid("resource", fw.id, fw.version),
        "title": f"{fw.title} ({fw.version})",
        "description": (
            f"Published by {fw.publisher} on {fw.published.isoformat()}. This catalog paraphrases it."
        ),
        "citation": {"text": f"{fw.publisher}, {fw.title}, {fw.published.isoformat()}."},
    }
    if fw.url:
        resource["rlinks"] = [{"href": fw.url}]
    return {
        "catalog": {
            "uuid": _uuid("catalog", fw.id, catalog.version, catalog.digest),
            "metadata": {
                "title": f"{fw.title}: gpaisec catalog",
                "last-modified": f"{catalog.last_modified.isoformat()}T00:00:00Z",
                "version": catalog.version,
                "oscal-version": OSCAL_VERSION,
                "props": [
                    _prop("framework-id", fw.id),
                    _prop("framework-version", fw.version),
                    _prop("catalog-sha256", catalog.digest),
                ],
                "links": [{"href": f"#{resource['uuid']}", "rel": "reference", "text": fw.title}],
                "remarks": (
                    "The measures, objectives and guidance here are gpaisec's own paraphrase of the Code, "
                    "written to organise evidence; the Code's published text is authoritative."
                ),
            },
            "groups": groups,
            "back-matter": {"resources": [resource]},
        }
    }
