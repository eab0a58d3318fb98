from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from gpaisec.cli.app import main
from gpaisec.errors import ConfigError, SchemaTooNewError, StoreError
from gpaisec.store.migrate import current_revision, head_revision
from gpaisec.workspace import Workspace


def test_sqlite_workspace_is_wal_and_migrated(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    try:
        with ws.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert current_revision(ws.engine) == head_revision()
        assert (tmp_path / "ws" / "gpaisec.db").is_file()
    finally:
        ws.close()


def test_migrations_match_the_models(database_url: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from gpaisec.store.models import metadata

    ws = Workspace.open(tmp_path / "ws", database_url)
    try:
        with ws.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], f"models and migrations differ; write a migration: {diff}"
    finally:
        ws.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    with ws.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    ws.close()
    before = (tmp_path / "ws" / "gpaisec.db").read_bytes()
    with pytest.raises(SchemaTooNewError, match="newer version"):
        Workspace.open(tmp_path / "ws")
    rc = main(["--workspace", str(tmp_path / "ws"), "assess"])
    assert rc == 3
    assert (tmp_path / "ws" / "gpaisec.db").read_bytes() == before


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://root@localhost/x", "postgresql://nobody@127.0.0.1:1/none"],
)
def test_bad_database_urls_give_one_clear_error(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StoreError):
        Workspace.open(tmp_path / "ws", url)
    os.environ["GPAISEC_DATABASE_URL"] = url
    try:
        rc = main(["--workspace", str(tmp_path / "ws2"), "assess"])
    finally:
        del os.environ["GPAISEC_DATABASE_URL"]
    err = capsys.readouterr().err
    assert rc == 3
    assert "Traceback" not in err
    assert err.startswith("error:")
    assert "nobody" not in err or "***" in err or "password" not in err


def test_a_file_as_workspace_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a directory|cannot create"):
        Workspace.open(f)


def test_a_workspace_without_write_permission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        # root ignores permission bits; an immutable directory refuses even root.
        if shutil.which("chattr") is None:
            pytest.skip("needs chattr to make a directory unwritable for root")
        if subprocess.run(["chattr", "+i", str(ro)], capture_output=True, check=False).returncode != 0:
            pytest.skip("this filesystem does not support immutable directories")
        undo = ["chattr", "-i", str(ro)]
    else:
        os.chmod(ro, 0o555)
        undo = ["chmod", "755", str(ro)]
    try:
        rc = main(["--workspace", str(ro / "ws"), "assess"])
        err = capsys.readouterr().err
        assert rc == 3, err
        assert "Traceback" not in err
        assert "cannot create the workspace" in err
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(undo, check=True)
