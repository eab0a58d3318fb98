"""`gpaisec assess`, `gpaisec attest`, and the controls, evidence and attestation records behind them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gpaisec.cli import common
from gpaisec.compliance import assessment, deadlines, service
from gpaisec.compliance.assessment import Report
from gpaisec.compliance.reports import FORMATS, render_text, write_report
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import InputError

STYLES = {
    Verdict.met: "green",
    Verdict.partly_met: "yellow",
    Verdict.not_met: "bold red",
    Verdict.not_applicable: "dim",
    Verdict.no_evidence: "magenta",
}

evidence_app = typer.Typer(
    help="Evidence records: documents and data that show a measure is met.", no_args_is_help=True
)
controls_app = typer.Typer(help="Controls: how the provider meets each measure.", no_args_is_help=True)
attestations_app = typer.Typer(
    help="Attestations: named people's statements about measures.", no_args_is_help=True
)


def parse_date(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{what} {value!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def render_gap_table(report: Report) -> None:
    table = Table(title=f"Assessment {report.run_id} ({report.chapter})", title_justify="left", expand=False)
    table.add_column("item", no_wrap=True)
    table.add_column("title", max_width=44)
    table.add_column("verdict", no_wrap=True)
    table.add_column("why", max_width=70)
    for r in report.results:
        style = STYLES[r.verdict]
        why = r.reasons[0] if r.reasons else ""
        if len(r.reasons) > 1:
            why += f" (+{len(r.reasons) - 1} more)"
        table.add_row(r.item_id, escape(r.title), Text(r.verdict.label, style=style), escape(why))
    common.stdout.print(table)
    s = report.summary
    parts = [f"[{STYLES[v]}]{s.get(v.value, 0)} {v.label}[/]" for v in Verdict]
    common.stdout.print(f"{s.get('total', 0)} items: " + ", ".join(parts))


def assess_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")] = None,
    chapter: Annotated[
        str, typer.Option(help="safety-security (default), transparency, copyright or all.")
    ] = "safety-security",
) -> None:
    """Give every measure and security objective a verdict with reasons and evidence, and store the run."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise InputError("--output needs --format json, html or oscal")
    report = assessment.assess(common.workspace(), chapter=chapter)
    if output is not None:
        write_report(report, fmt, output)
        common.info(f"wrote {fmt} report of run {report.run_id} to {output}")
    elif fmt == "table":
        render_gap_table(report)
    else:
        typer.echo(render_text(report, fmt), nl=False)


def report_cmd(
    run_id: Annotated[str, typer.Argument(help="A run id from `gpaisec assessments`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Show or export a stored assessment run."""
    report = assessment.load_report(common.workspace(), run_id)
    if output is not None:
        write_report(report, fmt, output)
    elif fmt == "table":
        render_gap_table(report)
    else:
        typer.echo(render_text(report, fmt), nl=False)


def assessments_cmd(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List past assessment runs, newest first."""
    rows = assessment.history(common.workspace())
    common.emit(
        fmt,
        rows,
        lambda: common.print_table(
            "Assessment runs",
            ["run", "when", "by", "chapter", "met", "partly", "not met", "n/a", "no evidence"],
            [
                [
                    r["run_id"],
                    r["started_at"].strftime("%Y-%m-%d %H:%M"),
                    r["actor"],
                    r["chapter"],
                    *(r["summary"].get(v.value, 0) for v in Verdict),
                ]
                for r in rows
            ],
            empty="no assessment yet: run `gpaisec assess`",
        ),
    )


def attest_cmd(
    item: Annotated[str, typer.Argument(help="Measure or objective id, e.g. M8.1 or A4.2(6).")],
    claim: Annotated[Verdict, typer.Option("--claim", help="What is attested.")],
    statement: Annotated[str, typer.Option(help="What is done and where it is documented.")],
    by: Annotated[str, typer.Option("--by", help="The person who makes the statement.")],
    role: Annotated[str, typer.Option(help="Their role, e.g. CISO.")] = "",
    valid_until: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD after which it no longer holds.")
    ] = None,
    document: Annotated[
        list[Path] | None, typer.Option("--document", "-d", help="Attach a file (hashed).")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Record a person's attestation that an item is met, partly met, not met or not applicable."""
    att = service.attest(
        common.workspace(),
        item,
        claim=claim,
        statement=statement,
        attested_by=by,
        role=role,
        valid_until=parse_date(valid_until, "--valid-until"),
        documents=document or [],
    )
    data = {"id": att.id, "item": att.item_id, "claim": att.claim, "evidence": att.evidence_ids}
    common.emit(
        fmt, data, lambda: common.info(f"attestation {att.id} recorded for {att.item_id}: {att.claim}")
    )


@attestations_app.command("list")
def attestations_list(
    item: Annotated[str | None, typer.Option(help="Only this item.")] = None,
    withdrawn: Annotated[bool, typer.Option(help="Include withdrawn ones.")] = False,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """List attestations."""
    rows = service.list_attestations(common.workspace(), item, include_withdrawn=withdrawn)
    data = [
        {
            "id": a.id,
            "item": a.item_id,
            "claim": a.claim,
            "by": a.attested_by,
            "role": a.role,
            "attested_at": a.attested_at,
            "valid_until": a.valid_until,
            "withdrawn_at": a.withdrawn_at,
            "statement": a.statement,
            "evidence": a.evidence_ids,
        }
        for a in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Attestations",
            ["id", "item", "claim", "by", "valid until", "statement"],
            [
                [
                    a.id,
                    a.item_id,
                    a.claim,
                    a.attested_by,
                    a.valid_until.date() if a.valid_until else "",
                    a.statement[:80],
                ]
                for a in rows
            ],
            empty="no attestations: record one with "
            "`gpaisec attest ITEM --claim met --statement ... --by NAME`",
        ),
    )


@attestations_app.command("withdraw")
def attestations_withdraw(
    attestation_id: str, reason: Annotated[str, typer.Option(help="Why it no longer holds.")]
) -> None:
    """Withdraw an attestation; it stays on record and in the audit log."""
    att = service.withdraw_attestation(common.workspace(), attestation_id, reason=reason)
    common.info(f"attestation {att.id} withdrawn")


@evidence_app.command("add")
def evidence_add(
    items: Annotated[list[str], typer.Argument(help="Measure or objective ids it supports.")],
    file: Annotated[Path, typer.Option("--file", help="The document; copied into the workspace, hashed.")],
    title: Annotated[str, typer.Option(help="What it is.")],
    source: Annotated[str, typer.Option(help="Where it came from (system, team, auditor).")],
    expires: Annotated[str | None, typer.Option(help="YYYY-MM-DD when it stops being current.")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Record a piece of evidence."""
    ev = service.add_evidence(
        common.workspace(),
        items,
        title=title,
        source=source,
        path=file,
        expires_at=parse_date(expires, "--expires"),
    )
    data = {"id": ev.id, "items": ev.item_ids, "sha256": ev.content_sha256, "size": ev.size}
    common.emit(fmt, data, lambda: common.info(f"evidence {ev.id} recorded (sha256 {ev.content_sha256})"))


@evidence_app.command("list")
def evidence_list(
    item: Annotated[str | None, typer.Option(help="Only this item.")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """List evidence."""
    rows = service.list_evidence(common.workspace(), item)
    data = [
        {
            "id": e.id,
            "items": e.item_ids,
            "kind": e.kind,
            "title": e.title,
            "source": e.source,
            "sha256": e.content_sha256,
            "size": e.size,
            "collected_at": e.collected_at,
            "collected_by": e.collected_by,
            "expires_at": e.expires_at,
        }
        for e in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Evidence",
            ["id", "items", "title", "sha256", "collected", "expires"],
            [
                [
                    e.id,
                    ", ".join(e.item_ids),
                    e.title,
                    e.content_sha256[:16] + "…",
                    e.collected_at.date(),
                    e.expires_at.date() if e.expires_at else "",
                ]
                for e in rows
            ],
            empty="no evidence: add some with `gpaisec evidence add ITEM --file F --title T --source S`",
        ),
    )


@controls_app.command("add")
def controls_add(
    item: str,
    title: Annotated[str, typer.Option()],
    owner: Annotated[str, typer.Option(help="The accountable person or team.")],
    description: Annotated[str, typer.Option()] = "",
    status: Annotated[str, typer.Option(help="planned, implemented or retired.")] = "implemented",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Record how the provider meets a measure."""
    c = service.add_control(
        common.workspace(), item, title=title, owner=owner, description=description, status=status
    )
    common.emit(fmt, {"id": c.id, "item": c.item_id}, lambda: common.info(f"control {c.id} recorded"))


@controls_app.command("list")
def controls_list(
    item: Annotated[str | None, typer.Option()] = None, fmt: common.FormatOption = common.OutputFormat.table
) -> None:
    """List controls."""
    rows = service.list_controls(common.workspace(), item)
    data = [
        {
            "id": c.id,
            "item": c.item_id,
            "title": c.title,
            "owner": c.owner,
            "status": c.status,
            "description": c.description,
        }
        for c in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Controls",
            ["id", "item", "title", "owner", "status"],
            [[c.id, c.item_id, c.title, c.owner, c.status] for c in rows],
            empty="no controls: add one with `gpaisec controls add ITEM --title T --owner O`",
        ),
    )


def deadlines_cmd(
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="How far ahead to look.")] = 60,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Deadlines due in the next DAYS days, and every one already missed (reviews, checks, evidence)."""
    now = dt.datetime.now(dt.UTC)
    rows = deadlines.upcoming(common.workspace(), horizon=dt.timedelta(days=days), now=now)
    common.emit(
        fmt,
        [d.to_json(now) for d in rows],
        lambda: common.print_table(
            f"Deadlines in the next {days} days",
            ["due", "", "kind", "subject", "what", "item"],
            [
                [
                    d.due.strftime("%Y-%m-%d"),
                    common.styled("OVERDUE", "bold red") if d.overdue(now) else "",
                    d.kind,
                    d.subject,
                    d.what,
                    d.item or "",
                ]
                for d in rows
            ],
            empty=f"no deadline in the next {days} days",
        ),
    )


def register(app: typer.Typer) -> None:
    app.command("assess")(assess_cmd)
    app.command("deadlines")(deadlines_cmd)
    app.command("report")(report_cmd)
    app.command("assessments")(assessments_cmd)
    app.command("attest")(attest_cmd)
    app.add_typer(attestations_app, name="attestations")
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(controls_app, name="controls")
