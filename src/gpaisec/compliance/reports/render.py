"""Render a :class:`~gpaisec.compliance.assessment.Report` in each export format."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from gpaisec import __version__
from gpaisec._files import write_atomically
from gpaisec.catalog import load_catalog, to_oscal_id
from gpaisec.compliance.assessment import Report
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import GpaisecError, InputError

FORMATS = ("table", "json", "html", "oscal")
OSCAL_VERSION = "1.1.2"
NS = "https://gpaisec.dev/ns/oscal"
_UUID_NS = uuid.UUID("6c0b8f0e-3f5e-4c38-9d0e-5a2b7f1c9e41")

VERDICT_COLOURS = {
    Verdict.met: "#1a7f37",
    Verdict.partly_met: "#9a6700",
    Verdict.not_met: "#cf222e",
    Verdict.not_applicable: "#57606a",
    Verdict.no_evidence: "#6e40c9",
}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "/".join(parts)))


def to_json(report: Report) -> str:
    doc = {"gpaisec": __version__, "assessment": report.to_json()}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_oscal(report: Report) -> str:
    """OSCAL 1.1.2 assessment-results: one result, an observation and a finding per catalog item."""
    run = report.run_id
    observations: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for r in report.results:
        obs_uuid = _uuid(run, "observation", r.item_id)
        automated = any(s.startswith("check:") for s in r.sources)
        observation: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": f"{r.item_id} {r.title}",
            "description": "\n".join(r.reasons) or "No observation.",
            "methods": ["TEST"] if automated else ["EXAMINE"],
            "collected": report.finished_at.isoformat(),
            "props": [{"name": "verdict", "ns": NS, "value": r.verdict.value}],
        }
        evidence = [
            {
                "href": f"#{e.get('kind', 'ref')}:{e.get('ref', '')}",
                "description": (e.get("note") or f"{e.get('kind')} {e.get('ref')}")
                + (f" (sha256 {e['sha256']})" if e.get("sha256") else ""),
            }
            for e in r.evidence
        ]
        if evidence:
            observation["relevant-evidence"] = evidence
        observations.append(observation)
        state = "satisfied" if r.verdict in (Verdict.met, Verdict.not_applicable) else "not-satisfied"
        reason = {Verdict.met: "pass", Verdict.not_met: "fail", Verdict.partly_met: "fail"}.get(
            r.verdict, "other"
        )
        findings.append(
            {
                "uuid": _uuid(run, "finding", r.item_id),
                "title": f"{r.item_id}: {r.verdict.label}",
                "description": "\n".join(r.reasons) or r.verdict.label,
                "props": [
                    {"name": "verdict", "ns": NS, "value": r.verdict.value},
                    {"name": "catalog-id", "ns": NS, "value": r.item_id},
                ],
                "target": {
                    "type": "objective-id",
                    "target-id": to_oscal_id(r.item_id),
                    "status": {"state": state, "reason": reason},
                },
                "related-observations": [{"observation-uuid": obs_uuid}],
            }
        )
    doc = {
        "assessment-results": {
            "uuid": _uuid(run),
            "metadata": {
                "title": f"gpaisec assessment {run} ({report.chapter})",
                "last-modified": report.finished_at.isoformat(),
                "version": report.catalog_version,
                "oscal-version": OSCAL_VERSION,
                "props": [{"name": "catalog-sha256", "ns": NS, "value": report.catalog_digest}],
            },
            "import-ap": {"href": "#gpaisec-continuous-assessment"},
            "results": [
                {
                    "uuid": _uuid(run, "result"),
                    "title": f"Assessment against the GPAI Code of Practice ({report.chapter})",
                    "description": "Automated checks over gpaisec's live state and recorded attestations.",
                    "start": report.started_at.isoformat(),
                    "end": report.finished_at.isoformat(),
                    "reviewed-controls": {"control-selections": [{"include-all": {}}]},
                    "observations": observations,
                    "findings": findings,
                }
            ],
        }
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_html(report: Report) -> str:
    env = Environment(
        loader=PackageLoader("gpaisec.compliance.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    groups: dict[str, list[Any]] = {}
    for r in report.results:
        groups.setdefault(r.parent, []).append(r)
    catalog = load_catalog()
    titles = {}
    for parent in groups:
        try:
            titles[parent] = f"{parent} {catalog.group(parent).title}"
        except GpaisecError:
            titles[parent] = parent
    return env.get_template("report.html").render(
        report=report,
        groups=groups,
        colours={v.value: c for v, c in VERDICT_COLOURS.items()},
        verdicts=list(Verdict),
        titles=titles,
        version=__version__,
    )


def render_text(report: Report, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "oscal":
        return to_oscal(report)
    if fmt == "html":
        return to_html(report)
    raise InputError(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def write_report(report: Report, fmt: str, path: Path) -> None:
    write_atomically(path, render_text(report, fmt), what=f"the {fmt} report")
