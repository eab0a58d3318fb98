"""`gpaisec catalog`: browse the Code's measures and objectives, and export them as OSCAL.

The catalog is packaged data: none of these commands opens the workspace or the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from gpaisec._files import write_atomically
from gpaisec.catalog import Catalog, CatalogGroup, CatalogItem, load_catalog, to_oscal_catalog
from gpaisec.cli import common
from gpaisec.errors import InputError

app = typer.Typer(
    help="The Code of Practice as data: list and show measures and objectives, export OSCAL.",
    no_args_is_help=True,
)


CHAPTER_CHOICES = ("safety-security", "transparency", "copyright", "all")
KIND_CHOICES = ("measure", "objective", "commitment", "area")


def _choice(value: str | None, choices: tuple[str, ...], option: str) -> str | None:
    """Validate an option value here (not in typer) so a bad value is one clear line, exit code 2."""
    if value is None:
        return None
    normal = value.strip().lower()
    if normal not in choices:
        raise InputError(f"{option} {value!r} is not known", hint=f"use one of: {', '.join(choices)}")
    return normal


def _item_json(item: CatalogItem) -> dict[str, Any]:
    data = item.model_dump(mode="json")
    data["oscal_id"] = item.oscal_id
    return data


def _group_json(group: CatalogGroup) -> dict[str, Any]:
    data = group.model_dump(mode="json")
    data["oscal_id"] = group.oscal_id
    return data


def _select(
    catalog: Catalog, chapter: str | None, area: str | None, kind: str | None
) -> list[CatalogItem | CatalogGroup]:
    if area is not None:
        group = catalog.group(area)
        if chapter not in (None, "all", group.chapter):
            raise InputError(
                f"{group.id} is in chapter {group.chapter!r}, not {chapter!r}", hint="drop --chapter"
            )
        if kind in ("commitment", "area"):
            return [group] if group.kind == kind else []
        return [i for i in catalog.children(group) if kind is None or i.kind == kind]
    scope = chapter or "safety-security"
    if kind == "commitment":
        return list(catalog.groups(scope, "commitment"))
    if kind == "area":
        return list(catalog.groups(scope, "area"))
    if kind == "measure":
        return list(catalog.items(scope, "measure"))
    if kind == "objective":
        return list(catalog.items(scope, "objective"))
    return list(catalog.assessable(scope))


@app.command("list")
def list_cmd(
    chapter: Annotated[
        str | None,
        typer.Option(
            help="safety-security (default, or the chapter of --area), transparency, copyright or all."
        ),
    ] = None,
    area: Annotated[
        str | None, typer.Option(help="Only the items of one commitment or appendix area, e.g. C6 or 4.2.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only one kind: measure, objective, commitment or area.")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """List measures and objectives (what an assessment grades), or commitments and areas."""
    chapter = _choice(chapter, CHAPTER_CHOICES, "--chapter")
    kind = _choice(kind, KIND_CHOICES, "--kind")
    catalog = load_catalog()
    rows = _select(catalog, chapter, area, kind)
    data = [_item_json(r) if isinstance(r, CatalogItem) else _group_json(r) for r in rows]

    def render() -> None:
        scope = catalog.group(area).id if area else (chapter or "safety-security")
        common.print_table(
            f"Catalog {catalog.version} ({catalog.framework.version}): {scope}, {len(rows)} entries",
            ["id", "kind", "parent", "title", "AI Act"],
            (
                (
                    r.id,
                    r.kind,
                    r.parent if isinstance(r, CatalogItem) else r.chapter,
                    r.title,
                    ", ".join(r.ai_act),
                )
                for r in rows
            ),
            empty="no catalog entries match",
        )

    common.emit(fmt, data, render)


def _panel(catalog: Catalog, entry: CatalogItem | CatalogGroup) -> Panel:
    body = Text()
    if isinstance(entry, CatalogItem):
        parent = catalog.group(entry.parent)
        body.append(entry.statement + "\n")
        if entry.default_measure:
            body.append("\nDefault measure (a): ", style="bold")
            body.append(entry.default_measure + "\n")
        body.append("\nEvidence that shows it:\n", style="bold")
        for line in entry.evidence_guidance:
            body.append(f"  - {line}\n")
        body.append("\nAI Act: ", style="bold")
        body.append(", ".join(entry.ai_act) + "\n")
        if entry.related_measures:
            body.append("Serves: ", style="bold")
            body.append(", ".join(entry.related_measures) + "\n")
        body.append("Part of: ", style="bold")
        body.append(f"{parent.id} {parent.title} ({entry.chapter})\n")
        subtitle = f"{entry.kind} {entry.number} | OSCAL {entry.oscal_id}"
    else:
        body.append(entry.summary + "\n")
        if entry.ai_act:
            body.append("\nAI Act: ", style="bold")
            body.append(", ".join(entry.ai_act) + "\n")
        body.append(f"\n{'Measures' if entry.kind == 'commitment' else 'Objectives'}:\n", style="bold")
        for child in catalog.children(entry):
            body.append(f"  {child.id:<9} {child.title}\n")
        subtitle = f"{entry.kind} {entry.number} | chapter {entry.chapter}"
    return Panel(
        Group(body),
        title=f"[bold]{entry.id}[/] {entry.title}",
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
    )


@app.command("show")
def show_cmd(
    item_id: Annotated[str, typer.Argument(metavar="ID", help="e.g. M6.2, A4.2(1), 4.2(1), C6, T-M1.1.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Show one measure, objective, commitment or area: what it requires and what evidence shows it."""
    catalog = load_catalog()
    entry = catalog.lookup(item_id)
    data = _item_json(entry) if isinstance(entry, CatalogItem) else _group_json(entry)
    common.emit(fmt, data, lambda: common.stdout.print(_panel(catalog, entry), soft_wrap=False))


@app.command("export-oscal")
def export_oscal_cmd(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.")
    ] = None,
) -> None:
    """Export the catalog as an OSCAL 1.1.2 catalog (JSON). The same catalog gives the same bytes."""
    catalog = load_catalog()
    text = json.dumps(to_oscal_catalog(catalog), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomically(output, text.encode("utf-8"))
    common.info(f"wrote OSCAL catalog {catalog.version} (sha256 {catalog.digest[:12]}…) to {output}")


@app.command("info")
def info_cmd(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Which catalog this is: versions, digest and counts."""
    catalog = load_catalog()
    counts = {ch.id: len(catalog.assessable(ch.id)) for ch in catalog.chapters}
    data = {
        "catalog_version": catalog.version,
        "framework": catalog.framework.model_dump(mode="json"),
        "sha256": catalog.digest,
        "files": list(catalog.files),
        "assessable_items": counts,
        "commitments": len(catalog.commitments),
        "measures": len(catalog.measures),
        "areas": len(catalog.areas),
        "objectives": len(catalog.objectives),
    }

    def render() -> None:
        common.print_table(
            f"Catalog {catalog.version}",
            ["field", "value"],
            [
                ("framework", f"{catalog.framework.title} ({catalog.framework.version})"),
                ("sha256", catalog.digest),
                ("files", ", ".join(catalog.files)),
                *((f"items: {k}", v) for k, v in counts.items()),
            ],
        )

    common.emit(fmt, data, render)
