"""Run migrations on start; refuse a database written by a newer gpaisec."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gpaisec.errors import SchemaTooNewError, StoreError
from gpaisec.store.engine import redact_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to this version's head, or raise with a clear reason."""
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    where = redact_url(engine.url)
    try:
        current = current_revision(engine)
        if current is not None:
            try:
                script.get_revision(current)
            except Exception:  # alembic raises several types for an unknown revision
                raise SchemaTooNewError(
                    f"the database at {where} has schema revision {current}, which this gpaisec "
                    f"does not know; it was written by a newer version",
                    hint="upgrade gpaisec; nothing was changed",
                ) from None
            if current == script.get_current_head():
                return
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(
            f"cannot use the database at {where}: {reason}",
            hint="check GPAISEC_DATABASE_URL, that the server runs, and that the workspace is writable",
        ) from None
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the database at {where}: {exc.__class__.__name__}") from None
