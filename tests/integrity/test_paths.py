"""Model paths: what is accepted, how people's spellings are tidied, and the canonical order."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpaisec.errors import InputError
from gpaisec.integrity._paths import (
    _problem,
    check_model_path,
    is_model_path,
    normalize_model_path,
    path_sort_key,
)

# Components drawn to hit the edge cases: separators, dots, NUL, non-ASCII, lone surrogates.
_component = st.text(
    alphabet=st.sampled_from(["a", "b", "-", ".", ":", "/", "\x00", "é", "\udc80", " "]), max_size=5
)
_paths = st.lists(_component, min_size=0, max_size=4).map("/".join)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/..",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        ".",
        "..",
        "a\x00b",
        "x\udc80",
    ],
)
def test_check_model_path_refuses(bad: str) -> None:
    with pytest.raises(InputError, match="not a relative path inside the model directory"):
        check_model_path(bad)
    assert not is_model_path(bad)


@pytest.mark.parametrize("good", ["a", "a/b", ".hidden", "a..b", "...", "x:0:1", "dir/é.bin", "a b/c"])
def test_check_model_path_accepts(good: str) -> None:
    assert check_model_path(good) == good
    assert is_model_path(good)


@given(_paths)
def test_fast_check_agrees_with_reference(path: str) -> None:
    assert is_model_path(path) == (_problem(path) is None)


@pytest.mark.parametrize(
    ("typed", "tidy"), [("./a//b/", "a/b"), (".git/", ".git"), ("a", "a"), ("./x/./y", "x/y")]
)
def test_normalize_tidies(typed: str, tidy: str) -> None:
    assert normalize_model_path(typed) == tidy


@pytest.mark.parametrize("typed", ["../x", "a/../b", "/abs", ".", "", "./"])
def test_normalize_refuses_escape_and_empty(typed: str) -> None:
    with pytest.raises(InputError):
        normalize_model_path(typed)


_valid_component = st.text(
    alphabet=st.sampled_from(["a", "b", "-", ".", "_", "0", "é", "A"]), min_size=1, max_size=4
).filter(lambda c: c not in (".", ".."))
_valid_paths = st.lists(_valid_component, min_size=1, max_size=3).map("/".join)


@given(st.lists(_valid_paths, min_size=2, max_size=8))
def test_sort_key_matches_purepath_order(paths: list[str]) -> None:
    # model-signing sorts PurePosixPath keys (component-wise); the OMS root digest depends on it.
    assert sorted(paths, key=path_sort_key) == [str(p) for p in sorted(PurePosixPath(p) for p in paths)]


def test_sort_key_component_order_example() -> None:
    assert sorted(["a-b", "a/c", "a.bin"], key=path_sort_key) == ["a/c", "a-b", "a.bin"]
