"""Catalog ids: the forms people type, and the OSCAL token form.

Ids follow the Code: ``C6`` (commitment), ``M6.2`` (measure), ``A4.2`` (appendix area),
``A4.2(1)`` (objective); the Transparency and Copyright chapters prefix theirs with ``T-`` and ``CR-``.
"""

from __future__ import annotations

import re

__all__ = ["lookup_key", "to_oscal_id"]

_SPACE = re.compile(r"\s+")
_OSCAL_SEP = re.compile(r"[.()]+")


def lookup_key(text: str) -> str:
    """The form ids are compared in: no whitespace, upper case ("a4.2 (1)" -> "A4.2(1)")."""
    return _SPACE.sub("", text).upper()


def to_oscal_id(item_id: str) -> str:
    """An OSCAL token for a catalog id: "M1.1" -> "m1-1", "A4.2(1)" -> "a4-2-1", "T-M1.1" -> "t-m1-1".

    The result matches OSCAL's token pattern (a letter, then letters, digits, ``.``, ``-``, ``_``),
    and distinct catalog ids give distinct tokens.
    """
    return _OSCAL_SEP.sub("-", item_id.strip()).strip("-").lower()
