"""Fixtures for the audit log's tests: a database engine on each backend, and a workspace on it.

``db_engine`` is an engine with the audit tables created by ``metadata.create_all`` on a fresh
database: a SQLite file in the test's directory, and (when the server answers, see tests/conftest.py)
a PostgreSQL schema of its own, dropped after the test. It does not depend on Alembic migrations, so
it can move to tests/conftest.py unchanged for any area that wants only its own tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Table
from sqlalchemy.engine import Engine

from gpaisec.audit.models import AUDIT_TABLES
from gpaisec.store import create_db_engine
from gpaisec.store.base import Base
from gpaisec.workspace import Workspace


def make_engine(database_url: str, tables: list[Table]) -> Engine:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(database_url)
    Base.metadata.create_all(engine, tables=tables)
    return engine


@pytest.fixture
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on each backend (SQLite; PostgreSQL when available) with the audit tables."""
    engine = make_engine(database_url, AUDIT_TABLES)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def audit_ws(tmp_path: Path, database_url: str, db_engine: Engine) -> Workspace:
    """A workspace on ``db_engine`` (keys in tmp_path/ws/keys), acting as ``test:alice``."""
    home = tmp_path / "ws"
    home.mkdir(mode=0o700, exist_ok=True)
    return Workspace(home=home, database_url=database_url, engine=db_engine, actor="test:alice")
