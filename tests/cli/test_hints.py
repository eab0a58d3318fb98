"""Every command that a message tells the user to run must exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from gpaisec.cli.app import app

SRC = Path(__file__).resolve().parents[2] / "src" / "gpaisec"
MENTION = re.compile(r"`gpaisec ((?:[a-z][a-z0-9-]*\s?)+)")


def mentions() -> list[tuple[str, str]]:
    out = []
    for path in SRC.rglob("*.py"):
        for m in MENTION.finditer(path.read_text(encoding="utf-8")):
            out.append((f"{path.relative_to(SRC)}", m.group(1).split()))
    return out  # type: ignore[return-value]


def test_hints_name_real_commands() -> None:
    root = typer.main.get_command(app)
    found = mentions()
    assert len(found) > 20
    bad = []
    for where, words in found:
        cmd = root
        for word in words:
            commands = getattr(cmd, "commands", None)  # a group (typer may bundle its own click)
            if commands is None:
                break  # the rest are arguments
            sub = commands.get(word)
            if sub is None:
                bad.append(f"{where}: gpaisec {' '.join(words)}")
                break
            cmd = sub
    assert bad == []
