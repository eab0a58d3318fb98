"""Migration 0006: totp_credentials.secret widened for sealed seeds; old plaintext rows kept."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from gpaisec.store import create_db_engine
from gpaisec.store.migrate import alembic_config, current_revision

OLD_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SEALED = "v1:" + "A" * 80  # the length of a sealed 32-character seed


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _row(engine: Engine, account: str, secret: str) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, username, kind, roles, created_at) "
                "VALUES (:id, :u, 'human', '[]', :now)"
            ),
            {"id": account, "u": account, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO totp_credentials (account_id, secret, last_used_step, created_at) "
                "VALUES (:id, :s, 0, :now)"
            ),
            {"id": account, "s": secret, "now": now},
        )


def _secrets(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT account_id, secret FROM totp_credentials")).all()
    return {str(a): str(s) for a, s in rows}


def test_0006_widens_the_seed_column_and_keeps_old_rows(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(database_url)
    try:
        _migrate(engine, "0005")
        _row(engine, "acc_old", OLD_SEED)
        if engine.dialect.name == "postgresql":  # the old column refuses a sealed value
            with pytest.raises(Exception, match="too long"):
                _row(engine, "acc_new", SEALED)
        _migrate(engine, "0006")
        assert current_revision(engine) == "0006"
        _row(engine, "acc_new", SEALED)
        assert _secrets(engine) == {"acc_old": OLD_SEED, "acc_new": SEALED}  # plaintext until sealed
        # Down again: refused while a sealed seed is stored (an older gpaisec could not read it).
        with pytest.raises(RuntimeError, match="1 TOTP seeds are sealed"):
            _migrate(engine, "0005", down=True)
        assert current_revision(engine) == "0006"
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM totp_credentials WHERE account_id = 'acc_new'"))
        _migrate(engine, "0005", down=True)
        assert current_revision(engine) == "0005"
        assert _secrets(engine) == {"acc_old": OLD_SEED}
    finally:
        engine.dispose()
