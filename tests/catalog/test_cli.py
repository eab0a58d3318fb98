"""`gpaisec catalog ...` through the real entry point, ``gpaisec.cli.app.main``."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpaisec.catalog import load_catalog, to_oscal_catalog
from gpaisec.cli.app import main


@pytest.fixture(autouse=True)
def no_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point GPAISEC_HOME at a path that must stay absent: the catalog needs no workspace."""
    home = tmp_path / "workspace-must-not-exist"
    monkeypatch.setenv("GPAISEC_HOME", str(home))
    yield home
    assert not home.exists(), "a catalog command opened the workspace"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["catalog", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    rc, out, err = run(capsys, *args, "--format", "json")
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("args", "count"),
    [
        ((), 57),
        (("--chapter", "safety-security"), 57),
        (("--chapter", "all"), 65),
        (("--chapter", "transparency"), 3),
        (("--chapter", "copyright"), 5),
        (("--chapter", "Copyright"), 5),
        (("--kind", "measure"), 32),
        (("--kind", "objective"), 25),
        (("--kind", "commitment"), 10),
        (("--kind", "commitment", "--chapter", "all"), 12),
        (("--kind", "area"), 5),
        (("--area", "4.2"), 6),
        (("--area", "A4.5"), 7),
        (("--area", "C6"), 2),
        (("--area", "c7", "--kind", "measure"), 7),
        (("--area", "C6", "--kind", "objective"), 0),
        (("--area", "C6", "--kind", "commitment"), 1),
        (("--area", "T-C1"), 3),
        (("--area", "cr-c1", "--chapter", "copyright"), 5),
    ],
)
def test_list_json(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], count: int) -> None:
    data = run_json(capsys, "list", *args)
    assert isinstance(data, list)
    assert len(data) == count


def test_list_json_items_carry_the_catalog_fields(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "list")
    assert isinstance(data, list)
    first = data[0]
    assert first["id"] == "M1.1"
    for field in (
        "id",
        "kind",
        "chapter",
        "parent",
        "title",
        "statement",
        "ai_act",
        "evidence_guidance",
        "number",
    ):
        assert field in first
    assert first["oscal_id"] == "m1-1"
    assert [d["id"] for d in data] == [i.id for i in load_catalog().assessable()]


def test_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "list", "--area", "4.2")
    assert rc == 0, err
    assert "A4.2(1)" in out
    assert "A4.2(6)" in out
    assert "M6.2" not in out


def test_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "show", "4.2(1)")
    assert isinstance(data, dict)
    assert data["id"] == "A4.2(1)"
    assert data["kind"] == "objective"
    assert data["parent"] == "A4.2"
    assert data["related_measures"] == ["M6.2"]
    assert data["default_measure"]
    group = run_json(capsys, "show", "c6")
    assert isinstance(group, dict)
    assert group["items"] == ["M6.1", "M6.2"]


def test_show_panel(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "show", "M9.3")
    assert rc == 0, err
    assert "M9.3" in out
    assert "Reporting timelines" in out
    assert "Art. 55(1)(c)" in out
    assert "Evidence" in out
    assert "C9" in out
    rc, out, _ = run(capsys, "show", "A4.2(3)")
    assert rc == 0
    assert "Default measure" in out
    assert "M6.2" in out


@pytest.mark.parametrize("args", [("show", "M11.1"), ("show", "nothing"), ("list", "--area", "C11")])
def test_unknown_id_exits_5_with_one_clear_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    rc, out, err = run(capsys, *args)
    assert rc == 5
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err


def test_unknown_id_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "show", "M6.3")
    assert "M6.1" in err
    assert "M6.2" in err


@pytest.mark.parametrize(
    "args",
    [
        ("list", "--chapter", "nope"),
        ("list", "--kind", "control"),
        ("list", "--area", "C6", "--chapter", "copyright"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_export_oscal_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "export-oscal")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc == to_oscal_catalog(load_catalog())
    assert doc["catalog"]["metadata"]["oscal-version"] == "1.1.2"


def test_export_oscal_to_file_atomically(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "catalog.json"
    target.write_text("old content")
    rc, out, err = run(capsys, "export-oscal", "--output", str(target))
    assert rc == 0, err
    assert out == ""
    assert "wrote OSCAL catalog" in err
    assert json.loads(target.read_text()) == to_oscal_catalog(load_catalog())
    assert sorted(p.name for p in out_dir.iterdir()) == ["catalog.json"], "no temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    # the same catalog gives the same bytes
    first = target.read_bytes()
    assert main(["catalog", "export-oscal", "-o", str(target)]) == 0
    assert target.read_bytes() == first
    capsys.readouterr()


def test_export_oscal_to_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "export-oscal", "--output", str(tmp_path / "no" / "such" / "file.json"))
    assert rc == 2
    assert "does not exist" in err
    assert "Traceback" not in err


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "info")
    assert isinstance(data, dict)
    catalog = load_catalog()
    assert data["sha256"] == catalog.digest
    assert data["catalog_version"] == catalog.version
    assert data["assessable_items"] == {"safety-security": 57, "transparency": 3, "copyright": 5}
    rc, out, _ = run(capsys, "info")
    assert rc == 0
    assert catalog.digest[:20] in out
