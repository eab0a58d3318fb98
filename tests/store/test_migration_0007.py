"""Migration 0007: the device proof's record of the last challenge used is kept per account and key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import text

from gpaisec.store import create_db_engine
from gpaisec.store.migrate import current_revision
from tests.store.test_migration_0006 import _migrate

WHEN = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def _challenge(conn: object, purpose: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO webauthn_challenges (account_id, purpose, challenge, created_at, expires_at) "
            "VALUES ('acc_1', :p, :c, :t, :t)"
        ),
        {"p": purpose, "c": bytes(32), "t": WHEN},
    )


def _purposes(engine: object) -> list[str]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return sorted(str(p) for (p,) in conn.execute(text("SELECT purpose FROM webauthn_challenges")))


def test_0007_keeps_device_challenges_per_key(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(database_url)
    try:
        _migrate(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, username, kind, roles, created_at) "
                    "VALUES ('acc_1', 'alice', 'human', '[]', :t)"
                ),
                {"t": WHEN},
            )
            _challenge(conn, "device")
            _challenge(conn, "register")
        _migrate(engine, "0007")
        assert current_revision(engine) == "0007"
        assert _purposes(engine) == ["register"]  # the per-account record is gone, passkeys kept
        per_key = "device:dk_0123456789abcdef"
        with engine.begin() as conn:
            _challenge(conn, per_key)  # 26 characters: refused by PostgreSQL before 0007
        assert _purposes(engine) == [per_key, "register"]
        _migrate(engine, "0006", down=True)
        assert _purposes(engine) == ["register"]
    finally:
        engine.dispose()
