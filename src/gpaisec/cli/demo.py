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
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the dashboard and API on loopback, with a demo admin.")
    ] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for --serve.")] = 8443,
    code: Annotated[
        bool, typer.Option("--code", help="Print the demo admin's current one-time code and stop.")
    ] = False,
) -> None:
    """Create a demo workspace (SQLite) with a sample provider, assess it and print the gap table.

    The demo lives in ./.gpaisec-demo unless --workspace names another directory; it is rebuilt on
    every run and never touches a workspace that it did not create. With --serve it also adds an admin
    (password and TOTP seed only in the demo's sign-in file, mode 0600) and serves the dashboard on
    http://127.0.0.1:PORT/.
    """
    home = Path(common.STATE.workspace_dir or demo.DEFAULT_DEMO_HOME).expanduser().absolute()
    if code:
        typer.echo(demo.demo_code(home))
        return
    with common.stderr.status("building the demo provider…"):
        ws = demo.build(home)
        sign_in = demo.add_demo_admin(ws, home) if serve else None
    common.STATE._workspace = ws
    report = assessment.assess(ws)
    if sign_in is not None:
        render_gap_table(report)
        common.info(
            f"\ndashboard: http://127.0.0.1:{port}/ - sign in as {demo.DEMO_ADMIN};"
            f"\nthe password is in {sign_in} (mode 0600); the one-time code: gpaisec -w {home} demo --code"
            f"\nthe browser needs its device key: make it at http://127.0.0.1:{port}/device, then enrol it:"
            f"\n  gpaisec -w {home} access device-key {demo.DEMO_BROWSER} -"
            "   (paste the public key, then Ctrl-D)"
            f"\nthe CLI signs in from {demo.DEMO_DEVICE}, whose key is made:"
            f" gpaisec -w {home} login {demo.DEMO_ADMIN} --device {demo.DEMO_DEVICE}"
        )
        from gpaisec.cli.serve import serve as serve_cmd

        serve_cmd(host="127.0.0.1", port=port, dev=True, access_log=False)
        return
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
