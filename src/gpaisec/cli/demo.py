"""`gpaisec demo`: build a sample provider and print its assessment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpaisec import demo
from gpaisec.cli import common
from gpaisec.cli.assess import render_gap_table
from gpaisec.compliance import assessment
from gpaisec.compliance.reports import render_text


def demo_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, html or oscal.")] = "table",
) -> None:
    """Create a demo workspace (SQLite) with a sample provider, assess it and print the gap table.

    The demo lives in ./.gpaisec-demo unless --workspace names another directory; it is rebuilt on
    every run and never touches a workspace that it did not create.
    """
    home = Path(common.STATE.workspace_dir or demo.DEFAULT_DEMO_HOME).expanduser().absolute()
    with common.stderr.status("building the demo provider…"):
        ws = demo.build(home)
    common.STATE._workspace = ws
    report = assessment.assess(ws)
    if fmt == "table":
        render_gap_table(report)
        common.info(
            f"\ndemo workspace: {home}\nnext: gpaisec -w {home} audit verify | "
            f"gpaisec -w {home} assess --format html -o report.html"
        )
    else:
        typer.echo(render_text(report, fmt), nl=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
