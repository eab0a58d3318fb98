from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from gpaisec.access import accounts, mfa
from gpaisec.access.models import ServiceToken, Session
from gpaisec.access.passwords import HashParams, WeakPasswordError, WrongPasswordError
from gpaisec.access.ratelimit import ThrottledError
from gpaisec.audit.models import AuditEntry
from gpaisec.errors import ConflictError, DeniedError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests import devices

PASSWORD = "correct staple orbit lantern"
FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "HASH_PARAMS", HashParams.unsafe_fast())
    return


def audit(ws: Workspace) -> list[AuditEntry]:
    with ws.reader() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def actions(ws: Workspace) -> list[str]:
    return [e.action for e in audit(ws)]


def add_device(ws: Workspace, name: str, *, managed: bool = True, encrypted: bool = True) -> str:
    registry.add_device(ws, name, managed=managed, disk_encrypted=encrypted)
    return devices.enrol(ws, name).fingerprint


def add_human(
    ws: Workspace,
    username: str,
    *,
    roles: tuple[str, ...] = (),
    vetted_until: dt.datetime = FAR,
    totp: bool = True,
) -> str | None:
    """A person with an account; returns the TOTP secret if enrolled."""
    accounts.add_person(
        ws,
        f"Person {username}",
        organisation="Example AI",
        background_check_valid_until=vetted_until,
        insider_training_valid_until=vetted_until,
    )
    accounts.add_user(ws, username, person=f"Person {username}", password=PASSWORD, roles=roles)
    if not totp:
        return None
    uri = mfa.enrol_totp(ws, username)
    secret = uri.split("secret=")[1].split("&")[0]
    mfa.confirm_totp(ws, username, mfa.totp_code(secret, utcnow() - dt.timedelta(seconds=30)))
    return secret


def login(
    ws: Workspace, username: str, secret: str | None, device: str, *, at: dt.datetime | None = None
) -> accounts.Login:
    at = at or utcnow()
    code = mfa.totp_code(secret, at) if secret else None
    return devices.sign_in(ws, username, PASSWORD, code, device, now=at)


def test_sign_in_creates_a_device_bound_session_with_mfa(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    lg = login(workspace, "alice", secret, "laptop-1")
    assert lg.session.mfa_at is not None
    with workspace.reader() as s:
        row = s.scalars(select(Session)).one()
        assert row.token_hash != lg.token
        assert lg.token not in row.token_hash
    assert accounts.resolve_session(workspace, lg.token).account.username == "alice"
    assert "login" in actions(workspace)
    # No secret reaches the audit log.
    for e in audit(workspace):
        text = e.entry.decode("utf-8", "replace") if isinstance(e.entry, bytes) else str(e.entry)
        assert PASSWORD not in text
        assert lg.token not in text
        assert (secret or "-") not in text


def test_unknown_user_and_wrong_password_give_the_same_error(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_human(workspace, "alice", totp=False)
    with pytest.raises(WrongPasswordError) as unknown:
        devices.sign_in(workspace, "mallory", PASSWORD, None, "laptop-1")
    with pytest.raises(WrongPasswordError) as wrong:
        devices.sign_in(workspace, "alice", "not the password at all", None, "laptop-1")
    assert unknown.value.diagnostics() == wrong.value.diagnostics()
    fails = [e for e in audit(workspace) if e.action == "login.fail"]
    assert [e.object for e in fails] == ["account:?", "account:alice"]  # what was typed is never echoed


def test_failures_are_throttled_before_the_password_is_checked(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_human(workspace, "alice", totp=False)
    for _ in range(5):
        with pytest.raises(WrongPasswordError):
            devices.sign_in(workspace, "alice", "wrong wrong wrong wrong", None, "laptop-1")
    with pytest.raises(ThrottledError):
        devices.sign_in(workspace, "alice", PASSWORD, None, "laptop-1")


def test_weak_passwords_and_second_accounts_are_refused(workspace: Workspace) -> None:
    accounts.add_person(workspace, "Alice Smith", organisation="Example AI")
    with pytest.raises(WeakPasswordError):
        accounts.add_user(workspace, "alice", person="Alice Smith", password="password1234567")
    with pytest.raises(WeakPasswordError, match="mostly"):
        accounts.add_user(workspace, "alice", person="Alice Smith", password="alicesmithalicesmith")
    accounts.add_user(workspace, "alice", person="Alice Smith", password=PASSWORD)
    with pytest.raises(ConflictError, match="already has an account"):
        accounts.add_user(workspace, "alice2", person="Alice Smith", password=PASSWORD)


def fail_reasons(ws: Workspace) -> list[str]:
    return [
        str(json.loads(bytes(e.entry))["details"].get("reason"))
        for e in audit(ws)
        if e.action == "login.fail"
    ]


def test_totp_is_required_and_replay_is_rejected(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    with pytest.raises(accounts.SignInError):
        devices.sign_in(workspace, "alice", PASSWORD, None, "laptop-1")
    now = utcnow()
    lg = login(workspace, "alice", secret, "laptop-1", at=now)
    accounts.logout(workspace, lg.token)
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", secret, "laptop-1", at=now)  # the same code again
    # The caller learns nothing more; the audit log says what was wrong.
    reasons = fail_reasons(workspace)
    assert "second factor is required" in reasons[0]
    assert "already used" in reasons[1]


def test_every_sign_in_failure_says_the_same(workspace: Workspace) -> None:
    """A right password with a wrong code must read like a wrong password (it would confirm a guess)."""
    add_device(workspace, "laptop-1")
    add_human(workspace, "alice")
    texts = set()
    for user, password, code in (
        ("mallory", PASSWORD, "123456"),
        ("alice", "not the password at all", "123456"),
        ("alice", PASSWORD, "123456"),
        ("alice", PASSWORD, None),
        ("alice", PASSWORD, "aaaaa-bbbbb-ccccc-ddddd"),
    ):
        with pytest.raises(WrongPasswordError) as info:
            devices.sign_in(workspace, user, password, code, "laptop-1")
        assert not isinstance(info.value, mfa.MfaError)
        texts.add((type(info.value), info.value.diagnostics(), info.value.exit_code))
    assert len(texts) == 1
    assert len(fail_reasons(workspace)) == 5


def test_second_device_on_one_account_is_denied_audited_and_a_finding(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_device(workspace, "laptop-2")
    secret = add_human(workspace, "alice")
    now = utcnow()
    login(workspace, "alice", secret, "laptop-1", at=now)
    with pytest.raises(DeniedError, match="another device"):
        login(workspace, "alice", secret, "laptop-2", at=now + dt.timedelta(seconds=30))
    assert "login.denied" in actions(workspace)
    (f,) = registry.list_findings(workspace, kind="shared_account")
    assert f.state == "open"
    assert "laptop-2" in f.summary


def test_one_device_used_by_two_accounts_is_denied(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    a = add_human(workspace, "alice")
    b = add_human(workspace, "bob")
    login(workspace, "alice", a, "laptop-1")
    with pytest.raises(DeniedError, match="in use by another account"):
        login(workspace, "bob", b, "laptop-1")
    assert [f.kind for f in registry.list_findings(workspace)] == ["shared_device"]


def test_service_tokens_are_hashed_at_rest_and_expire(workspace: Workspace) -> None:
    accounts.add_person(workspace, "Owner")
    accounts.add_service_account(workspace, "trainer-bot", owner="Owner")
    row, token = accounts.issue_token(workspace, "trainer-bot", scopes=["weights:read"])
    with workspace.reader() as s:
        stored = s.scalars(select(ServiceToken)).one()
    assert stored.hash != token
    assert token not in stored.hash
    assert len(stored.hash) == 64
    holder = accounts.authenticate_token(workspace, token)
    assert holder.username == "trainer-bot"
    assert holder.kind == "service"
    assert holder.scopes == ("weights:read",)
    assert holder.token_id == row.id
    with pytest.raises(DeniedError):  # at its expiry time the token is dead
        accounts.authenticate_token(workspace, token, now=holder.expires_at)
    with pytest.raises(DeniedError):
        accounts.authenticate_token(workspace, token + "x")
    accounts.disable_account(workspace, "trainer-bot", reason="retired workload")
    with pytest.raises(DeniedError):
        accounts.authenticate_token(workspace, token)
    assert token not in str([e.entry for e in audit(workspace)])


@pytest.mark.parametrize("name", ["ali\x00ce", "a\nb", "x" * 500, ""])
def test_impossible_user_names_are_unknown_users(workspace: Workspace, name: str) -> None:
    add_device(workspace, "laptop-z")
    with pytest.raises(WrongPasswordError):  # the same answer as for any unknown user
        devices.sign_in(workspace, name, PASSWORD, "000000", "laptop-z")


def test_logout_all_ends_every_session_of_the_account_only(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_device(workspace, "laptop-2")
    a = add_human(workspace, "alice")
    b = add_human(workspace, "bob")
    t0 = utcnow()
    first = login(workspace, "alice", a, "laptop-1", at=t0)
    second = login(workspace, "alice", a, "laptop-1", at=t0 + dt.timedelta(seconds=30))
    bobs = login(workspace, "bob", b, "laptop-2", at=t0)
    assert {x.id for x in accounts.list_sessions(workspace, "alice")} == {first.session.id, second.session.id}
    assert accounts.logout_all(workspace, second.token) == 2
    for token in (first.token, second.token):
        with pytest.raises(DeniedError):
            accounts.resolve_session(workspace, token)
    assert accounts.resolve_session(workspace, bobs.token).id == bobs.session.id
    assert accounts.list_sessions(workspace, "alice") == []
    (event,) = [json.loads(bytes(e.entry)) for e in audit(workspace) if e.action == "logout.all"]
    assert event["actor"] == "user:alice"
    assert sorted(event["details"]["sessions"]) == sorted([first.session.id, second.session.id])
    with pytest.raises(DeniedError):  # an ended session cannot end anything
        accounts.logout_all(workspace, second.token)


def test_a_session_records_its_use_at_most_once_a_minute(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    start = utcnow()
    lg = login(workspace, "alice", secret, "laptop-1", at=start)

    def stored() -> dt.datetime:
        with workspace.reader() as s:
            return s.scalars(select(Session)).one().last_seen_at

    signed_in_at = stored()
    # Within the minute: read only, nothing written.
    seen = accounts.resolve_session(workspace, lg.token, now=start + dt.timedelta(seconds=30))
    assert seen.last_seen_at == signed_in_at
    assert stored() == signed_in_at
    # Past it: the use is recorded, and the answer says so.
    later = start + accounts.LAST_SEEN_RESOLUTION + dt.timedelta(seconds=5)
    seen = accounts.resolve_session(workspace, lg.token, now=later)
    assert seen.last_seen_at == later
    assert stored() == later
    # A revoked session is refused whatever its last use.
    accounts.logout(workspace, lg.token)
    with pytest.raises(DeniedError):
        accounts.resolve_session(workspace, lg.token, now=later)
