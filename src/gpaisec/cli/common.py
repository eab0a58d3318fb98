"""What every command shares: the workspace, output formats, rendering and errors.

A command only parses input, calls a service function and renders the result. Data goes to stdout,
messages to stderr; ``--format json`` prints machine-readable data for scripts.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gpaisec.catalog import load_catalog
from gpaisec.workspace import Workspace

# Piped output is not cut to 80 columns: tables stay readable in files and CI logs.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, soft_wrap=True)


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")
]


@dataclass
class State:
    workspace_dir: Path | None = None
    verbose: bool = False
    _workspace: Workspace | None = None

    def workspace(self) -> Workspace:
        if self._workspace is None:
            # A broken catalog must stop a command before it creates or changes anything.
            load_catalog()
            self._workspace = Workspace.open(self.workspace_dir)
        return self._workspace


STATE = State()


def workspace() -> Workspace:
    """The workspace named by --workspace / GPAISEC_HOME, opened (and migrated) on first use."""
    return STATE.workspace()


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default, ensure_ascii=False) + "\n")


def styled(text: str, style: str) -> Text:
    """A table cell shown in ``style``; every other cell is printed literally (never as markup)."""
    return Text(text, style=style)


def cell(value: Any) -> Text | str:
    if isinstance(value, Text):
        return value
    return "" if value is None else escape(str(value))


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    empty: str | None = None,
) -> None:
    rows = list(rows)
    if not rows and empty:
        stderr.print(empty)
        return
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    stdout.print(table)


def emit(fmt: OutputFormat, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON or call ``render`` for people."""
    if fmt is OutputFormat.json:
        print_json(data)
    else:
        render()


def info(message: str) -> None:
    stderr.print(message)
