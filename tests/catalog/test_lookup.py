"""Looking items up: the id forms people type, selections, and errors for unknown ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpaisec.catalog import load_catalog, to_oscal_id
from gpaisec.errors import InputError, NotFoundError

CATALOG = load_catalog()
ALL_ITEMS = CATALOG.assessable("all")
ALL_IDS = [x.id for x in (*CATALOG.commitments, *CATALOG.areas, *ALL_ITEMS)]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("M6.2", "M6.2"),
        ("m6.2", "M6.2"),
        ("  M6.2\t", "M6.2"),
        ("1.1", "M1.1"),
        ("10.2", "M10.2"),
        ("4.2", "M4.2"),  # a bare "4.2" is measure 4.2; the area is A4.2 (see group())
        ("4.2(1)", "A4.2(1)"),
        ("a4.2 (1)", "A4.2(1)"),
        ("a4-2-1", "A4.2(1)"),
        ("m1-1", "M1.1"),
        ("A4.5(7)", "A4.5(7)"),
        ("t-m1.1", "T-M1.1"),
        ("CR-M1.5", "CR-M1.5"),
        ("cr-m1-5", "CR-M1.5"),
    ],
)
def test_get_accepts_the_forms_people_type(typed: str, expected: str) -> None:
    assert CATALOG.get(typed).id == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("C6", "C6"),
        ("c6", "C6"),
        ("6", "C6"),
        ("4.2", "A4.2"),
        ("a4.2", "A4.2"),
        ("t-c1", "T-C1"),
        ("a4-3", "A4.3"),
    ],
)
def test_group_accepts_the_forms_people_type(typed: str, expected: str) -> None:
    assert CATALOG.group(typed).id == expected


def test_lookup_prefers_items_then_groups() -> None:
    assert CATALOG.lookup("4.2").id == "M4.2"
    assert CATALOG.lookup("A4.2").id == "A4.2"
    assert CATALOG.lookup("c6").id == "C6"
    assert CATALOG.lookup("4.2(6)").id == "A4.2(6)"


def test_bare_numbers_only_reach_the_first_chapter() -> None:
    # "1.1" is M1.1, never T-M1.1 or CR-M1.1, which need their prefix.
    assert CATALOG.get("1.1").chapter == "safety-security"
    assert CATALOG.get("T-M1.1").chapter == "transparency"


@pytest.mark.parametrize("typed", ["M11.1", "A4.9(1)", "", "   ", "C6", "X", "M6.2; drop table", "4.2(99)"])
def test_unknown_item_is_not_found_with_a_hint(typed: str) -> None:
    with pytest.raises(NotFoundError) as info:
        CATALOG.get(typed)
    err = info.value
    assert err.exit_code == 5
    assert "gpaisec catalog list" in (err.hint or "")
    assert "\n" not in err.diagnostics()


def test_not_found_suggests_close_ids() -> None:
    with pytest.raises(NotFoundError) as info:
        CATALOG.get("M6.3")
    assert "M6.2" in (info.value.hint or "")


def test_unknown_group_and_entry() -> None:
    with pytest.raises(NotFoundError):
        CATALOG.group("C11")
    with pytest.raises(NotFoundError):
        CATALOG.lookup("Z9")
    with pytest.raises(NotFoundError):
        CATALOG.crosswalk("iso-27001")
    with pytest.raises(NotFoundError):
        CATALOG.article("Art. 99")
    with pytest.raises(NotFoundError):
        CATALOG.incident_type("flood")


def test_unknown_chapter_is_bad_input() -> None:
    with pytest.raises(InputError, match="unknown chapter"):
        CATALOG.assessable("security")


def test_assessable_order_is_stable_and_measures_come_first() -> None:
    first = [i.id for i in CATALOG.assessable()]
    assert first == [i.id for i in load_catalog().assessable()]
    kinds = [i.kind for i in CATALOG.assessable()]
    assert kinds == ["measure"] * 32 + ["objective"] * 25
    assert (first[0], first[31], first[32], first[-1]) == ("M1.1", "M10.2", "A4.1(1)", "A4.5(7)")
    everything = [i.id for i in CATALOG.assessable("all")]
    assert everything[:57] == first
    assert everything[57:60] == ["T-M1.1", "T-M1.2", "T-M1.3"]


def test_selections() -> None:
    assert [i.id for i in CATALOG.items(parent="4.2")] == [f"A4.2({n})" for n in range(1, 7)]
    assert [i.id for i in CATALOG.items(parent="C6")] == ["M6.1", "M6.2"]
    assert len(CATALOG.items("safety-security", "objective")) == 25
    assert len(CATALOG.items("all", "measure")) == 40
    assert [g.id for g in CATALOG.groups("safety-security", "area")] == [f"A4.{n}" for n in range(1, 6)]
    assert len(CATALOG.groups("all", "commitment")) == 12
    assert CATALOG.chapter_ids() == ("safety-security", "transparency", "copyright")


def _scramble(text: str, flips: list[bool], pad: str) -> str:
    out = "".join(c.swapcase() if f else c for c, f in zip(text, flips + [False] * len(text), strict=False))
    return pad + out + pad


@given(
    item=st.sampled_from(ALL_ITEMS),
    flips=st.lists(st.booleans(), max_size=12),
    pad=st.sampled_from(["", " ", "\t", "  \n"]),
    oscal=st.booleans(),
)
def test_any_case_or_padding_or_oscal_form_finds_the_item(item, flips, pad, oscal) -> None:  # type: ignore[no-untyped-def]
    text = item.oscal_id if oscal else item.id
    assert CATALOG.get(_scramble(text, flips, pad)) == item


@given(st.text(max_size=20))
def test_arbitrary_text_finds_an_item_or_raises_not_found(text: str) -> None:
    try:
        item = CATALOG.get(text)
    except NotFoundError:
        return
    assert item in ALL_ITEMS


def test_oscal_ids_are_tokens_and_distinct() -> None:
    tokens = [to_oscal_id(i) for i in ALL_IDS]
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch(r"[a-z_][a-z0-9._-]*", t) for t in tokens)
    assert to_oscal_id("A4.2(1)") == "a4-2-1"
    assert to_oscal_id("M1.1") == "m1-1"
    assert to_oscal_id("T-M1.3") == "t-m1-3"
    assert CATALOG.get("A4.2(1)").oscal_id == "a4-2-1"
