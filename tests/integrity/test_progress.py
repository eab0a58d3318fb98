"""The terminal progress helper: a bar for a person at a terminal, nothing for a pipe."""

from __future__ import annotations

import io
from pathlib import Path

from gpaisec.integrity import hash_directory, terminal_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    with terminal_progress(stream=io.StringIO()) as progress:
        assert progress is None


def test_bar_on_a_terminal_follows_the_hashing(model: Path) -> None:
    screen = _Terminal()
    with terminal_progress("hashing model", stream=screen) as progress:
        assert progress is not None
        hash_directory(model, progress=progress)
    assert "hashing model" in screen.getvalue()
