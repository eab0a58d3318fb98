"""Relative model paths: the one spelling every manifest, signature and ignore list uses.

A model path is POSIX-style, relative to the model directory, valid UTF-8, and names something
inside that directory: no empty, ``.`` or ``..`` components, no leading ``/``, no NUL. Paths read
from manifests and signatures must already be in this form (:func:`check_model_path`); paths a
person types, such as ignore entries, are first tidied (:func:`normalize_model_path`).
"""

from __future__ import annotations

import os
import re

from gpaisec.errors import InputError

__all__ = ["check_model_path", "is_model_path", "normalize_model_path", "path_sort_key"]


def _problem(path: str) -> str | None:
    """Why ``path`` is not a model path, or ``None`` when it is one."""
    if not path:
        return "it is empty"
    if "\x00" in path:
        return "it contains a NUL byte"
    if path.startswith("/"):
        return "it is absolute"
    for part in path.split("/"):
        if part == "":
            return "it has an empty component"
        if part in (".", ".."):
            return f"it has a {part!r} component and could name something outside the model directory"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    return None


def check_model_path(path: str, *, what: str = "path") -> str:
    """Return ``path`` unchanged if it is a model path; raise :class:`InputError` otherwise."""
    problem = _problem(path)
    if problem is not None:
        raise InputError(
            f"{what} {path!r} is not a relative path inside the model directory: {problem}",
            hint="manifest and signature paths are POSIX paths relative to the model directory, "
            "such as 'weights/model-00001.safetensors'",
        )
    return path


def normalize_model_path(path: str, *, what: str = "path") -> str:
    """Tidy a path a person typed (``./a//b/`` becomes ``a/b``) and check it stays inside.

    Only empty and ``.`` components are dropped; ``..`` is refused rather than resolved.
    """
    if os.sep != "/":
        path = path.replace(os.sep, "/")
    if path.startswith("/"):
        return check_model_path(path, what=what)
    tidy = "/".join(part for part in path.split("/") if part not in ("", "."))
    return check_model_path(tidy or path, what=what)


def path_sort_key(path: str) -> str:
    """Sort key that orders paths by component, as model-signing (``PurePosixPath``) does.

    ``a/c`` sorts before ``a-b`` because the first components compare ``"a" < "a-b"``; a plain
    string comparison would put ``a-b`` first (``"-" < "/"``). The OMS root digest depends on it.
    Replacing the separator by NUL, the smallest code point and one no component can hold, makes
    a plain string comparison give the component-wise order, at the cost of one C call.
    """
    return path.replace("/", "\x00")


_SUSPECT = re.compile(r"\A/|//|/\Z|(?:\A|/)\.\.?(?:/|\Z)|\x00")


def is_model_path(path: str) -> bool:
    """Fast form of :func:`check_model_path` for many paths: True when ``path`` is acceptable."""
    if not path or _SUSPECT.search(path):
        return False
    return path.isascii() or _problem(path) is None
