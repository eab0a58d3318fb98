"""A rich progress bar for hashing, shown only to a person at a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gpaisec.integrity._engine import ProgressCallback

__all__ = ["terminal_progress"]


@contextlib.contextmanager
def terminal_progress(
    description: str = "hashing", *, stream: TextIO | None = None
) -> Iterator[ProgressCallback | None]:
    """Yield a progress callback drawing a bar on ``stream`` (stderr), or None if it is no TTY.

    Usage::

        with terminal_progress("hashing model") as progress:
            manifest = hash_directory(path, progress=progress)

    Data goes to stdout and messages to stderr, so the bar never mixes with piped output.
    """
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=out), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
