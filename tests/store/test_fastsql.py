"""Hot-path reads (gpaisec.store.fastsql): the same values as the ORM on SQLite and PostgreSQL, clear
errors, and nothing written."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, select, text

from gpaisec.access import accounts
from gpaisec.access.models import Account, ServiceToken
from gpaisec.errors import StoreError
from gpaisec.store.fastsql import Query, read_transaction
from gpaisec.workspace import Workspace

TOKENS = Query(
    select(
        ServiceToken.id,
        ServiceToken.scopes,
        ServiceToken.expires_at,
        ServiceToken.revoked_at,
        Account.username,
        Account.id,  # a second "id": the row names it id_1, as SQLAlchemy's rows do
    )
    .join(Account, Account.id == ServiceToken.account_id)
    .where(ServiceToken.account_id == bindparam("account"), ServiceToken.expires_at > bindparam("now"))
    .order_by(ServiceToken.created_at)
)


def _world(ws: Workspace) -> tuple[str, list[ServiceToken]]:
    accounts.add_person(ws, "Owner")
    accounts.add_service_account(ws, "pep", owner="Owner")
    accounts.issue_token(ws, "pep", scopes=["weights:read", "weights:export"])
    accounts.issue_token(ws, "pep", scopes=["weights:write"])
    with ws.reader() as s:
        account = s.scalars(select(Account).where(Account.username == "pep")).one()
        orm = list(s.scalars(select(ServiceToken).order_by(ServiceToken.created_at)))
    return account.id, orm


def test_rows_match_the_orm(workspace: Workspace) -> None:
    account_id, orm = _world(workspace)
    now = dt.datetime.now(dt.UTC)
    with read_transaction(workspace.engine) as r:
        rows = r.all(TOKENS, account=account_id, now=now)
        first = r.first(TOKENS, account=account_id, now=now)
        none = r.first(TOKENS, account=account_id, now=now + dt.timedelta(days=3650))
    assert [(row.id, row.scopes, row.expires_at, row.revoked_at) for row in rows] == [
        (t.id, t.scopes, t.expires_at, t.revoked_at) for t in orm
    ]
    assert first == rows[0]
    assert none is None
    assert rows[0].expires_at.tzinfo is not None  # aware, as UTCDateTime returns it
    assert sorted(rows[0].scopes) == ["weights:export", "weights:read"]  # JSON decoded
    assert rows[0].username == "pep"
    assert rows[0].id_1 == account_id


def test_a_naive_datetime_is_refused_as_the_orm_refuses_it(workspace: Workspace) -> None:
    account_id, _ = _world(workspace)
    with read_transaction(workspace.engine) as r, pytest.raises(ValueError, match="naive datetime"):
        r.all(TOKENS, account=account_id, now=dt.datetime(2030, 1, 1))  # noqa: DTZ001


def test_unknown_parameters_and_non_selects_are_refused(workspace: Workspace) -> None:
    with read_transaction(workspace.engine) as r, pytest.raises(ValueError, match="no parameter 'acount'"):
        r.all(TOKENS, acount="x", now=dt.datetime.now(dt.UTC))
    with pytest.raises(TypeError, match="Core select"):
        Query(text("SELECT 1"))  # type: ignore[arg-type]


def test_a_driver_error_is_a_store_error_and_the_connection_is_reusable(workspace: Workspace) -> None:
    account_id, _ = _world(workspace)
    broken = Query(select(ServiceToken.id).where(ServiceToken.hash == bindparam("h")))
    with workspace.engine.begin() as conn:
        conn.execute(text("ALTER TABLE service_tokens RENAME TO service_tokens_gone"))
    try:
        with read_transaction(workspace.engine) as r, pytest.raises(StoreError, match="could not be read"):
            r.first(broken, h="x")
    finally:
        with workspace.engine.begin() as conn:
            conn.execute(text("ALTER TABLE service_tokens_gone RENAME TO service_tokens"))
    for _ in range(3):  # the pool hands out working connections afterwards
        with read_transaction(workspace.engine) as r:
            assert len(r.all(TOKENS, account=account_id, now=dt.datetime.now(dt.UTC))) == 2


def test_a_read_transaction_never_writes(workspace: Workspace) -> None:
    account_id, _ = _world(workspace)
    with read_transaction(workspace.engine) as r:
        r._cursor.execute("DELETE FROM service_tokens")  # noqa: SLF001 - what a bug inside would do
    with read_transaction(workspace.engine) as r:
        assert len(r.all(TOKENS, account=account_id, now=dt.datetime.now(dt.UTC))) == 2
