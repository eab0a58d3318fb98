"""The store: SQLAlchemy 2 engine, sessions and Alembic migrations.

SQLite in the workspace directory by default (WAL mode); PostgreSQL (psycopg 3) when
``GPAISEC_DATABASE_URL`` names one. Same models, same migrations, tests on both.
"""

from gpaisec.store.base import Base, UTCDateTime, new_id, utcnow
from gpaisec.store.engine import create_db_engine, redact_url

__all__ = ["Base", "UTCDateTime", "create_db_engine", "new_id", "redact_url", "utcnow"]
