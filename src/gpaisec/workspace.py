"""The workspace: where gpaisec keeps its database (SQLite by default) and its keys.

``--workspace`` / ``GPAISEC_HOME`` choose the directory (default ``./.gpaisec``);
``GPAISEC_DATABASE_URL`` selects a shared PostgreSQL server instead of the embedded SQLite file.
Opening a workspace runs the migrations; a database from a newer schema is refused.
"""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from gpaisec.alerts import deliver, pending_alerts
from gpaisec.audit._keys import PublicKey, Signer, load_or_create_signer, load_signer
from gpaisec.audit.group import AuditWriter
from gpaisec.audit.service import has_pending, seal
from gpaisec.errors import ConfigError
from gpaisec.store import create_db_engine
from gpaisec.store.engine import READ_ONLY, SqliteWriteGate, write_gate
from gpaisec.store.migrate import upgrade

DEFAULT_HOME = Path(".gpaisec")
DB_FILE = "gpaisec.db"


def default_actor() -> str:
    """Who is acting, until named accounts land: GPAISEC_ACTOR or the OS user."""
    env = os.environ.get("GPAISEC_ACTOR")
    if env:
        return env
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"os:uid{os.getuid()}"


def _check_writable(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the workspace directory {home}: {exc.strerror}",
            hint="choose another with --workspace or GPAISEC_HOME",
        ) from None
    if not home.is_dir():
        raise ConfigError(f"the workspace {home} is not a directory", hint="choose another with --workspace")
    if not os.access(home, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the workspace directory {home} is not writable",
            hint="fix its permissions or choose another with --workspace or GPAISEC_HOME",
        )


@dataclass
class Workspace:
    home: Path
    database_url: str
    engine: Engine
    actor: str = field(default_factory=default_actor)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._audit_signer: Signer | None = None
        self._write_gate = write_gate(self.engine)
        # Shared by the shallow copies that act as another actor (api.deps.acting_as): one writer.
        self._shared = _Shared()

    @classmethod
    def open(
        cls,
        home: Path | str | None = None,
        database_url: str | None = None,
        *,
        actor: str | None = None,
    ) -> Workspace:
        home_path = Path(home or os.environ.get("GPAISEC_HOME") or DEFAULT_HOME).expanduser().absolute()
        _check_writable(home_path)
        url = database_url or os.environ.get("GPAISEC_DATABASE_URL") or f"sqlite:///{home_path / DB_FILE}"
        engine = create_db_engine(url)
        upgrade(engine)
        return cls(home=home_path, database_url=url, engine=engine, actor=actor or default_actor())

    @contextmanager
    def transaction(self, *, gate_wait: float | None = None) -> Iterator[Session]:
        """One transaction per operation: committed on success, rolled back on any error.

        If the operation recorded audit events, they are sealed just before the commit: written with
        their tree nodes and one signed checkpoint, in this same transaction.
        """
        # SQLite: queue behind other writers first (gate_wait: how long; default the gate's 10 s).
        with self.write_gate(gate_wait), self._sessions.begin() as session:
            yield session
            if has_pending(session):
                seal(session, self.audit_signer())
        # Committed: now tell people (alerts raised by an operation that rolled back are dropped with it).
        deliver(self.home, pending_alerts(session))

    @property
    def sqlite_write_gate(self) -> SqliteWriteGate | None:
        """The writers' gate of a file-backed SQLite database (None: PostgreSQL, in-memory SQLite)."""
        return self._write_gate

    def write_gate(self, wait: float | None = None) -> AbstractContextManager[None]:
        """SQLite: hold the writers' gate (:class:`~gpaisec.store.engine.SqliteWriteGate`) for up to
        ``wait`` seconds (default the gate's 10 s), then ``WriteGateBusy``; PostgreSQL: nothing."""
        return self._write_gate.hold(wait) if self._write_gate is not None else nullcontext()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reads; nothing it does is committed."""
        # close() (on leaving the block) detaches the loaded objects without expiring them, and ends the
        # database transaction without committing anything.
        with self._read_sessions() as session:
            yield session

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    def audit_signer(self) -> Signer:
        """The key that signs audit checkpoints (keys_dir, 0600), created the first time it is needed."""
        if self._audit_signer is None:
            self._audit_signer = load_or_create_signer(self.keys_dir)
        return self._audit_signer

    def audit_public_key(self) -> PublicKey | None:
        """The public key audit checkpoints must verify with; None if no key was ever created."""
        if self._audit_signer is None:
            signer = load_signer(self.keys_dir)
            if signer is None:
                return None
            self._audit_signer = signer
        return self._audit_signer.public_key

    def audit_writer(self) -> AuditWriter:
        """The group-commit writer for events without a transaction of their own (decisions)."""
        shared = self._shared
        with shared.lock:
            if shared.writer is None:
                shared.writer = AuditWriter(self)
            return shared.writer

    def close(self) -> None:
        with self._shared.lock:
            writer, self._shared.writer = self._shared.writer, None
        if writer is not None:
            writer.close()
        self.engine.dispose()


class _Shared:
    """State one workspace and its actor-copies share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writer: AuditWriter | None = None
