"""Loading custom and corrupt catalogs: every problem is a one-line CatalogError naming where it is."""

from __future__ import annotations

import copy
import filecmp
import importlib.util
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.catalog import _loader, load_catalog, packaged_data_dir
from gpaisec.errors import CatalogError

FIXTURES = Path(__file__).parent / "fixtures"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_fixtures", FIXTURES / "build_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()

# fixture -> (file named in the message, fragments the message must contain)
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "not-yaml": ("chapter.yaml", ("not valid YAML", "line 4")),
    "not-utf8": ("chapter.yaml", ("not UTF-8",)),
    "empty-file": ("vocabularies.yaml", ("is empty",)),
    "top-level-list": ("appendix.yaml", ("expected a mapping", "got list")),
    "wrong-type": ("chapter.yaml", ("commitments[0].measures[1].number", "(in M1.2)", "got the number 1.2")),
    "wrong-type-days": ("vocabularies.yaml", ("serious_incidents.types[1].initial_report_days", "'five'")),
    "wrong-type-list": ("chapter.yaml", ("commitments[0].measures[0].evidence_guidance", "expected a list")),
    "missing-field": ("chapter.yaml", ("commitments[1].measures[1].statement", "required key 'statement'")),
    "unknown-key": ("chapter.yaml", ("commitments[0].measures[1].titel", "unknown key 'titel'")),
    "duplicate-key": ("appendix.yaml", ("areas[0].title", "key given twice")),
    "duplicate-id": (
        "chapter.yaml",
        ("commitments[0].measures[1].id", "duplicate id 'M1.1'", "chapter.yaml line"),
    ),
    "duplicate-id-across-files": (
        "appendix.yaml",
        ("duplicate id 'C6'", "already used at chapter.yaml line"),
    ),
    "bad-numbering": ("chapter.yaml", ("commitments[1].measures[1].id", "does not fit commitment C6")),
    "bad-id-syntax": ("appendix.yaml", ("areas[0].objectives[0].id", "'A4.2-1' is not an objective id")),
    "dangling-article": (
        "chapter.yaml",
        ("commitments[1].measures[0].ai_act[1]", "unknown AI Act reference 'Art. 99'"),
    ),
    "dangling-measure": ("appendix.yaml", ("areas[0].objectives[1].measures[1]", "unknown measure 'M6.9'")),
    "dangling-vocabulary-measure": (
        "vocabularies.yaml",
        ("threat_actors[0].measures[0]", "unknown measure 'M9.9'"),
    ),
    "dangling-crosswalk-item": (
        "crosswalk.yaml",
        ("items[0].item", "unknown measure or objective 'A4.9(9)'"),
    ),
    "dangling-crosswalk-actor": ("crosswalk.yaml", ("threat_actors[0].threat_actor", "unknown threat actor")),
    "version-mismatch": ("appendix.yaml", ("catalog_version", "'0.2.0' differs from '0.1.0'")),
    "chapter-mismatch": ("appendix.yaml", ("chapter 'transparency'", "under chapter 'safety-security'")),
    "missing-file": ("crosswalk.yaml", ("cannot be read",)),
}


def test_every_corrupt_fixture_has_an_expectation() -> None:
    built = {p.name for p in FIXTURES.iterdir() if p.is_dir()} - {"minimal", "__pycache__"}
    assert built == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corrupt_catalog_raises_catalog_error(name: str) -> None:
    file_name, fragments = EXPECTED[name]
    with pytest.raises(CatalogError) as info:
        load_catalog(FIXTURES / name)
    err = info.value
    text = err.diagnostics()
    assert err.exit_code == 3
    assert "\n" not in text, "one line for the user"
    assert str(FIXTURES / name / file_name) in err.message, "names the file"
    for fragment in fragments:
        assert fragment in err.message, f"{fragment!r} missing from: {err.message}"
    assert err.hint, "says what to do"


def test_minimal_fixture_is_a_valid_custom_catalog() -> None:
    cat = load_catalog(FIXTURES / "minimal")
    assert cat.version == "0.1.0"
    assert [i.id for i in cat.assessable()] == ["M1.1", "M1.2", "M6.1", "M6.2", "A4.2(1)", "A4.2(2)"]
    assert cat.get("4.2(2)").related_measures == ("M6.2", "M6.1")
    assert cat.crosswalk("test-levels").items[0].subject == "A4.2(1)"
    assert cat.source == str(FIXTURES / "minimal")
    # a path to the manifest file works as well as its directory
    assert load_catalog(FIXTURES / "minimal" / "catalog.yaml").digest == cat.digest


def test_fixtures_are_current(tmp_path: Path) -> None:
    """The committed fixtures are exactly what build_fixtures.py writes."""
    names = BUILD.build(tmp_path)
    for name in names:
        cmp = filecmp.dircmp(tmp_path / name, FIXTURES / name)
        assert cmp.left_only == [], f"{name}: rerun build_fixtures.py"
        assert cmp.right_only == [], f"{name}: rerun build_fixtures.py"
        _, mismatch, errors = filecmp.cmpfiles(
            tmp_path / name, FIXTURES / name, cmp.common_files, shallow=False
        )
        assert mismatch == [], f"{name}: {mismatch} differ; rerun build_fixtures.py"
        assert errors == [], f"{name}: {errors} unreadable"


def test_missing_directory_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope")
    with pytest.raises(CatalogError, match="catalog.yaml cannot be read"):
        load_catalog(tmp_path)


def test_a_copy_of_the_packaged_data_loads_and_its_digest_tracks_every_byte(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(str(packaged_data_dir()), data)
    original = load_catalog(data)
    assert original.digest == load_catalog().digest
    target = data / "copyright.yaml"
    target.write_bytes(target.read_bytes() + b"\n# a comment changes the bytes, so the digest\n")
    changed = load_catalog(data)
    assert changed.digest != original.digest
    assert changed.assessable("all") == original.assessable("all")


def test_an_unlisted_file_does_not_change_the_digest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(str(packaged_data_dir()), data)
    (data / "notes.yaml").write_text("scratch: true\n")
    assert load_catalog(data).digest == load_catalog().digest


# --- property test: mutate the minimal catalog at random; only CatalogError may come out --------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _apply(data: Any, path: tuple[Any, ...], action: str, value: Any) -> None:
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))


REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["M6.2", "A4.2(1)", "Art. 55(1)(d)", "C1", "1.1", "", "safety-security"]),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_raise_only_catalog_errors(data: st.DataObject) -> None:
    files = BUILD.minimal()
    name = data.draw(st.sampled_from(sorted(files)))
    paths = _paths(files[name])
    path = data.draw(st.sampled_from(paths))
    action = data.draw(st.sampled_from(["delete", "replace", "duplicate"]))
    value = data.draw(REPLACEMENTS) if action == "replace" else None
    _apply(files[name], path, action, value)
    with tempfile.TemporaryDirectory() as tmp:
        BUILD.write(files, Path(tmp))
        try:
            cat = load_catalog(Path(tmp))
        except CatalogError as exc:
            error: CatalogError | None = exc
        else:
            error = None
            assert cat.assessable(), "a catalog that loads has something to assess"
    if error is not None:
        assert "\n" not in error.diagnostics()
        assert tmp in error.message


@settings(max_examples=60, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_arbitrary_bytes_in_a_data_file_raise_only_catalog_errors(garbage: bytes) -> None:
    files = BUILD.minimal()
    files["appendix.yaml"] = garbage
    with tempfile.TemporaryDirectory() as tmp:
        BUILD.write(files, Path(tmp))
        with pytest.raises(CatalogError):
            load_catalog(Path(tmp))


def test_yaml_aliases_are_refused(parser: Any) -> None:
    """No anchors or aliases: a "billion laughs" file cannot blow up the loader."""
    files = BUILD.minimal()
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    files["appendix.yaml"] = laughs.encode()
    with tempfile.TemporaryDirectory() as tmp:
        BUILD.write(files, Path(tmp))
        with pytest.raises(CatalogError, match="aliases"):
            load_catalog(Path(tmp))


def test_yaml_tags_are_refused() -> None:
    """The safe loader: a Python object tag is an error, not code."""
    files = BUILD.minimal()
    text = yaml.safe_dump(files["appendix.yaml"], sort_keys=False)
    files["appendix.yaml"] = text.replace(
        "title: Protect parameters", "title: !!python/object/apply:os.system [id]"
    ).encode()
    with tempfile.TemporaryDirectory() as tmp:
        BUILD.write(files, Path(tmp))
        with pytest.raises(CatalogError, match="not valid YAML"):
            load_catalog(Path(tmp))


PARSERS = [yaml.SafeLoader, *([yaml.CSafeLoader] if getattr(yaml, "__with_libyaml__", False) else [])]


@pytest.fixture(params=PARSERS, ids=lambda p: p.__name__)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a test under the pure-Python parser and, where PyYAML has it, libyaml's."""
    monkeypatch.setattr(_loader, "_SafeLoader", request.param)
    return request.param


def test_packaged_catalog_loads_the_same_with_either_parser(parser: Any) -> None:
    assert load_catalog(Path(str(packaged_data_dir()))).digest == load_catalog().digest


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"\x00", ("U+0000",)),
        (b"[" * 3000 + b"]" * 3000, ("nest",)),
        (b"a: !!binary xyz\n", ("not valid YAML at line 1",)),
        (b"a: !!python/object/apply:os.system [id]\n", ("not valid YAML at line 1",)),
        (b"a: &x [1, 2]\nb: *x\n", ("line 2", "aliases")),
        (b"a: &x 1\nb: *x\n", ("aliases",)),
        (b"a: 1\na: 2\n", ("key given twice",)),
        (b"\xef\xbb\xbfcatalog_version: 1\n", ("catalog_version",)),  # a BOM is fine; the int is not
    ],
)
def test_hostile_yaml_is_one_clear_error(parser: Any, content: bytes, fragments: tuple[str, ...]) -> None:
    files = BUILD.minimal()
    files["appendix.yaml"] = content
    with tempfile.TemporaryDirectory() as tmp:
        BUILD.write(files, Path(tmp))
        with pytest.raises(CatalogError) as info:
            load_catalog(Path(tmp))
    for fragment in fragments:
        assert fragment in info.value.message
    assert "\n" not in info.value.diagnostics()
