"""Hot-path reads: SQLAlchemy Core statements compiled once, run on the driver's own connection.

The access decision and the bearer-token check run on every request a policy enforcement point
sends; through SQLAlchemy's execution and result machinery each of their small indexed lookups cost
about 100 µs (the ORM about 300 µs), against under 10 µs for the database itself. Here a statement
stays an ordinary Core ``select`` (one source of truth for the SQL, checked by the type checker and
the same on SQLite and PostgreSQL); it is compiled once per dialect, and each run only converts its
parameters and result values with the column types' own processors (so ``UTCDateTime``, ``JSON`` and
``Boolean`` come back exactly as the ORM returns them)::

    TOKEN = Query(select(ServiceToken.id, ServiceToken.scopes).where(ServiceToken.hash == bindparam("h")))
    with read_transaction(ws.engine) as r:
        row = r.first(TOKEN, h=digest)        # a named tuple, or None
        rows = r.all(OTHER, account=row.id)

:func:`read_transaction` checks a connection out of the engine's pool, opens one read transaction
(SQLite: a deferred ``BEGIN``, which never blocks a writer under WAL; PostgreSQL: the driver's
implicit transaction), and always rolls it back: nothing read through it can change the store. A
driver error becomes :class:`~gpaisec.errors.StoreError` (503 in the API), never a bare 500.

Only selects with plain bound parameters are supported (no ``IN`` lists expanded at run time);
:class:`Query` refuses anything else when it compiles.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gpaisec.errors import StoreError

__all__ = ["Query", "Reader", "give_back", "read_transaction"]

_Processor = Callable[[Any], Any] | None


class _Compiled:
    __slots__ = ("binds", "convert_at", "plan", "positional", "row", "sql")

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if getattr(compiled, "literal_execute_params", None) or getattr(compiled, "post_compile_params", ()):
            raise ValueError("a fast query cannot hold parameters expanded at run time (IN lists)")
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        names: tuple[str, ...] = tuple(compiled.positiontup or compiled.binds)
        defaults = dict(compiled.params)
        self.binds: frozenset[str] = frozenset(compiled.binds)
        # Per parameter, in the driver's order: its name, its type's bind processor, its default.
        self.plan: tuple[tuple[str, _Processor, Any], ...] = tuple(
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                defaults.get(name),
            )
            for name in names
        )
        columns = list(stmt.selected_columns)
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        # Only the columns whose values need converting (most come back from the driver as they are).
        self.convert_at: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (i, p) for i, p in enumerate(processors) if p is not None
        )
        self.row: Any = namedtuple("Row", list(stmt.selected_columns.keys()), rename=True)  # type: ignore[misc]  # noqa: PYI024

    def parameters(self, given: dict[str, Any]) -> list[Any] | dict[str, Any]:
        if not self.binds.issuperset(given):
            unknown = sorted(set(given) - self.binds)
            raise ValueError(f"the query has no parameter {unknown[0]!r}")
        values = [
            (value if process is None or value is None else process(value))
            for name, process, default in self.plan
            for value in (given.get(name, default),)
        ]
        if self.positional:
            return values
        return dict(zip((name for name, _, _ in self.plan), values, strict=True))

    def convert(self, raw: tuple[Any, ...]) -> Any:
        if not self.convert_at:
            return self.row._make(raw)
        values = list(raw)
        for i, process in self.convert_at:
            value = values[i]
            if value is not None:
                values[i] = process(value)
        return self.row._make(values)


class Query:
    """A Core select, compiled on first use for each dialect (see the module docstring)."""

    def __init__(self, stmt: Any) -> None:
        # Any: a Core select of any row shape (Select's type parameters differ between SQLAlchemy 2.0
        # and 2.1); checked when it compiles.
        if not isinstance(stmt, Select):
            raise TypeError(f"a fast query is a Core select, not {type(stmt).__name__}")
        self.stmt = stmt
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key)
                if found is None:
                    found = self._compiled[key] = _Compiled(self.stmt, dialect)
        return found


class Reader:
    """Runs :class:`Query` objects inside one read transaction (from :func:`read_transaction`)."""

    __slots__ = ("_cursor", "_dialect", "_errors")

    def __init__(self, cursor: Any, dialect: Dialect, errors: type[BaseException]) -> None:
        self._cursor = cursor
        self._dialect = dialect
        self._errors = errors

    def _run(self, query: Query, params: dict[str, Any]) -> tuple[_Compiled, list[tuple[Any, ...]]]:
        c = query.compiled(self._dialect)
        try:
            self._cursor.execute(c.sql, c.parameters(params))
            return c, self._cursor.fetchall()
        except self._errors as exc:
            raise _store_error(exc) from None

    def first(self, query: Query, **params: Any) -> Any:
        """The first row as a named tuple, or None."""
        c, rows = self._run(query, params)
        return c.convert(rows[0]) if rows else None

    def all(self, query: Query, **params: Any) -> list[Any]:
        c, rows = self._run(query, params)
        return [c.convert(r) for r in rows]


def _store_error(exc: BaseException) -> StoreError:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return StoreError(
        f"the database could not be read: {type(exc).__name__}: {first_line}",
        hint="check that the database is up and reachable (GPAISEC_DATABASE_URL), then retry",
    )


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Reader]:
    """One read transaction on a pooled connection, always rolled back (see the module docstring)."""
    errors: type[BaseException] = engine.dialect.loaded_dbapi.Error
    try:
        # The pool hands out the driver's own errors (and its own when it is exhausted).
        raw = engine.raw_connection()
    except DBAPIError as exc:
        raise _store_error(exc.orig or exc) from None
    except (errors, PoolTimeout) as exc:
        raise _store_error(exc) from None
    try:
        try:
            cursor = raw.cursor()
        except errors as exc:
            raise _store_error(exc) from None
        try:
            if engine.dialect.name == "sqlite":
                try:
                    cursor.execute("BEGIN")
                except errors as exc:
                    raise _store_error(exc) from None
            yield Reader(cursor, engine.dialect, errors)
        finally:
            cursor.close()
    finally:
        give_back(raw, errors)


def give_back(raw: Any, errors: type[BaseException] | tuple[type[BaseException], ...] = Exception) -> None:
    """Roll back a pooled driver connection and return it to its pool; one whose rollback fails
    (``errors``) is invalidated, so that the pool never hands it out again."""
    try:
        raw.rollback()
    except errors:
        raw.invalidate()
    finally:
        raw.close()
