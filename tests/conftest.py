"""Shared fixtures: a workspace on each database backend, isolated per test.

SQLite always; PostgreSQL when a server answers at GPAISEC_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). Each PostgreSQL test gets its own schema, dropped after.
Set GPAISEC_TEST_POSTGRES=require to make an unreachable server an error instead of a skip (CI does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from gpaisec.workspace import Workspace

# CI explores the same examples on every run (a failure there is reproducible, never a coin toss);
# developers' runs stay random and keep finding new cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PG_URL = os.environ.get("GPAISEC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_ok: bool | None = None


def postgres_available() -> bool:
    global _pg_ok
    if _pg_ok is None:
        try:
            eng = create_engine(
                PG_URL.replace("postgresql://", "postgresql+psycopg://", 1),
                connect_args={"connect_timeout": 3},
            )
            with eng.connect() as conn:
                conn.execute(text("select 1"))
            eng.dispose()
            _pg_ok = True
        except Exception:
            _pg_ok = False
    if not _pg_ok and os.environ.get("GPAISEC_TEST_POSTGRES") == "require":
        raise RuntimeError(f"PostgreSQL required for the tests but not reachable at {PG_URL}")
    return _pg_ok


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ws' / 'gpaisec.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def workspace(tmp_path: Path, database_url: str) -> Iterator[Workspace]:
    """A migrated workspace on each backend, acting as ``test:alice``."""
    ws = Workspace.open(tmp_path / "ws", database_url, actor="test:alice")
    try:
        yield ws
    finally:
        ws.close()
