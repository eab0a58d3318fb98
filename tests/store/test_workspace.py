from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop root")
def test_a_workspace_without_write_permission(tmp_path: Path) -> None:
    ro = Path(tempfile.mkdtemp(prefix="gpaisec-ro-"))  # under /tmp, reachable by an unprivileged user
    os.chmod(ro, 0o555)
    cmd = [sys.executable, "-m", "gpaisec", "--workspace", str(ro / "ws"), "assess"]
    if os.geteuid() == 0:  # root ignores permissions: run as nobody
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = dict(os.environ, HOME=str(ro))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ro, timeout=120, check=False)
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "cannot create the workspace" in proc.stderr
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(ro)


def test_readers_do_not_block_writers(workspace: Workspace) -> None:
    from gpaisec.compliance import service

    with workspace.reader() as s:
        s.execute(text("SELECT 1"))
        # A reader holding a transaction open must not stop an operation from committing.
        control = service.add_control(workspace, "M1.1", title="framework", owner="CRO")
    assert [c.id for c in service.list_controls(workspace)] == [control.id]
