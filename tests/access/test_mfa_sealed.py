"""TOTP seeds sealed at rest: the stored format, fail-closed sign-in, legacy plaintext rows."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from gpaisec.access import accounts, mfa
from gpaisec.access.models import TotpCredential
from gpaisec.audit.models import AuditEntry
from gpaisec.crypto import fieldseal
from gpaisec.errors import ConfigError
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace
from tests.access.test_accounts import (  # noqa: F401
    actions,
    add_device,
    add_human,
    fail_reasons,
    fast_hashes,
    login,
)

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # base32, 160 bits


def raw_secret(ws: Workspace, username: str) -> str:
    """The column as the database holds it, read with SQL (not through the model)."""
    with ws.engine.connect() as conn:
        value = conn.execute(
            text(
                "SELECT t.secret FROM totp_credentials t JOIN accounts a ON a.id = t.account_id "
                "WHERE a.username = :u"
            ),
            {"u": username},
        ).scalar_one()
    return str(value)


def set_raw_secret(ws: Workspace, username: str, value: str) -> None:
    with ws.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE totp_credentials SET secret = :v "
                "WHERE account_id = (SELECT id FROM accounts WHERE username = :u)"
            ),
            {"v": value, "u": username},
        )


def audit_text(ws: Workspace) -> str:
    with ws.reader() as s:
        return "\n".join(bytes(e.entry).decode("utf-8", "replace") for e in s.scalars(select(AuditEntry)))


def flip(value: str) -> str:
    """One bit of the ciphertext changed, the format kept."""
    version, body = value.split(":", 1)
    raw = bytearray(base64.b64decode(body))
    raw[len(raw) // 2] ^= 0x01
    return f"{version}:{base64.b64encode(bytes(raw)).decode()}"


# --- the stored value ------------------------------------------------------------------------------


def test_the_column_never_holds_the_seed_and_sign_in_works(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    stored = raw_secret(workspace, "alice")
    assert stored.startswith("v1:")
    assert secret not in stored
    assert secret.lower() not in stored.lower()
    assert base64.b64encode(secret.encode()).decode() not in stored
    lg = login(workspace, "alice", secret, "laptop-1")
    assert lg.session.mfa_at is not None
    assert secret not in audit_text(workspace)
    key_file = workspace.keys_dir / mfa.SEED_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_text())["format"] == fieldseal.KEY_FORMAT
    # Sealed from the start, not only once confirmed.
    add_human(workspace, "bob", totp=False)
    uri = mfa.enrol_totp(workspace, "bob")
    pending = raw_secret(workspace, "bob")
    assert pending.startswith("v1:")
    assert uri.split("secret=")[1].split("&")[0] not in pending


def test_sealer_round_trip_with_a_fresh_nonce_each_time() -> None:
    sealer = mfa.SeedSealer(fieldseal.FieldKey.generate())
    a, b = sealer.seal("acc_1", SEED), sealer.seal("acc_1", SEED)
    assert a != b
    for value in (a, b):
        assert mfa.is_sealed(TotpCredential(account_id="acc_1", secret=value))
        assert sealer.open(TotpCredential(account_id="acc_1", secret=value)) == SEED
    with pytest.raises(mfa.SeedSealError):
        sealer.seal("acc_1", "not base32!")


# --- failing closed --------------------------------------------------------------------------------


def test_a_tampered_seed_fails_closed(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    stored = raw_secret(workspace, "alice")
    set_raw_secret(workspace, "alice", flip(stored))
    with pytest.raises(accounts.SignInError) as err:
        login(workspace, "alice", secret, "laptop-1")
    assert stored not in err.value.diagnostics()
    reason = fail_reasons(workspace)[-1]
    assert "does not open" in reason
    assert "login" not in actions(workspace)
    assert stored.split(":", 1)[1][:16] not in audit_text(workspace)


def test_a_seed_moved_to_another_row_does_not_open(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_device(workspace, "laptop-2")
    alice = add_human(workspace, "alice")
    add_human(workspace, "bob")
    set_raw_secret(workspace, "bob", raw_secret(workspace, "alice"))
    with pytest.raises(accounts.SignInError):
        login(workspace, "bob", alice, "laptop-2")  # alice's code on bob's row, sealed for alice's row
    assert "does not open" in fail_reasons(workspace)[-1]
    login(workspace, "alice", alice, "laptop-1")  # alice's own row is untouched


def test_another_workspace_key_or_a_missing_key_fails_closed(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    key_file = workspace.keys_dir / mfa.SEED_KEY_FILE
    original = key_file.read_bytes()
    other = workspace.keys_dir / "other.key"
    fieldseal.create_key_file(other)
    os.replace(other, key_file)
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", secret, "laptop-1")
    assert "does not open under key" in fail_reasons(workspace)[-1]
    key_file.unlink()
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", secret, "laptop-1", at=utcnow() + dt.timedelta(seconds=30))
    assert "no MFA seed key" in fail_reasons(workspace)[-1]
    assert not key_file.exists()  # a sealed seed never makes a new key
    key_file.write_bytes(original)
    key_file.chmod(0o640)
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", secret, "laptop-1", at=utcnow() + dt.timedelta(seconds=60))
    assert "readable by other users" in fail_reasons(workspace)[-1]
    key_file.chmod(0o600)
    login(workspace, "alice", secret, "laptop-1", at=utcnow() + dt.timedelta(seconds=60))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("v2:" + base64.b64encode(b"\0" * 60).decode(), "format version 'v2'"),
        ("v1:not base64!", "not valid base64"),
        ("v1:" + base64.b64encode(b"\0" * 20).decode(), "truncated"),
        ("jbswy3dp not a seed", "malformed"),
    ],
)
def test_unknown_or_malformed_values_fail_closed(workspace: Workspace, value: str, reason: str) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    set_raw_secret(workspace, "alice", value)
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", secret, "laptop-1")
    assert reason in fail_reasons(workspace)[-1]


def test_step_up_with_a_broken_seed_is_refused_with_advice(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    t0 = utcnow()
    lg = login(workspace, "alice", secret, "laptop-1", at=t0)
    set_raw_secret(workspace, "alice", flip(raw_secret(workspace, "alice")))
    later = t0 + dt.timedelta(minutes=5)
    with pytest.raises(mfa.SeedSealError) as err:
        accounts.step_up(workspace, lg.token, mfa.totp_code(secret, later), now=later)
    assert mfa.SEED_KEY_FILE in err.value.diagnostics()
    assert secret not in err.value.diagnostics()


# --- legacy plaintext seeds (workspaces from before migration 0006) --------------------------------


def test_a_legacy_plaintext_seed_is_sealed_on_first_use(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    set_raw_secret(workspace, "alice", secret)  # as migration 0006 leaves an old row
    t0 = utcnow()
    # A wrong code (another seed's) seals nothing: the sign-in's transaction rolls back.
    with pytest.raises(accounts.SignInError):
        login(workspace, "alice", SEED, "laptop-1", at=t0)
    assert raw_secret(workspace, "alice") == secret
    login(workspace, "alice", secret, "laptop-1", at=t0)
    stored = raw_secret(workspace, "alice")
    assert stored.startswith("v1:")
    assert secret not in stored
    assert "mfa.totp.reseal" in actions(workspace)
    assert secret not in audit_text(workspace)
    later = t0 + dt.timedelta(seconds=30)
    login(workspace, "alice", secret, "laptop-1", at=later)  # now from the sealed seed
    assert actions(workspace).count("mfa.totp.reseal") == 1


def test_seal_legacy_seeds_seals_all_at_once(workspace: Workspace) -> None:
    alice = add_human(workspace, "alice")
    bob = add_human(workspace, "bob")
    add_human(workspace, "carol")
    assert alice
    assert bob
    set_raw_secret(workspace, "alice", alice)
    set_raw_secret(workspace, "bob", bob)
    set_raw_secret(workspace, "carol", "bad-seed")
    report = mfa.seal_legacy_seeds(workspace)
    assert report.sealed == ("alice", "bob")
    assert report.unreadable == ("carol",)
    for name, seed in (("alice", alice), ("bob", bob)):
        stored = raw_secret(workspace, name)
        assert stored.startswith("v1:")
        assert seed not in stored
    assert actions(workspace).count("mfa.totp.reseal") == 2
    assert mfa.seal_legacy_seeds(workspace) == mfa.ResealReport(sealed=(), unreadable=("carol",))
    add_device(workspace, "laptop-1")
    login(workspace, "alice", alice, "laptop-1")


# --- finding the key -------------------------------------------------------------------------------


def test_a_fresh_process_finds_the_key(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    monkeypatch.setattr(mfa, "_homes", {})
    monkeypatch.setattr(mfa, "_loaded", {})
    # Sign-in loads the workspace's key itself (on PostgreSQL the database says nothing of where the
    # keys are, so a check given only a database session could not find them).
    login(workspace, "alice", secret, "laptop-1")
    assert fail_reasons(workspace) == []


def test_the_seed_key_wrapped_by_a_key_provider(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpaisec.crypto.config import PASSPHRASE_ENV, register_kek

    monkeypatch.setenv(PASSPHRASE_ENV, "a long test passphrase for the kek")
    add_device(workspace, "laptop-1")
    alice = add_human(workspace, "alice")  # the seed key is made before the KEK exists
    key_file = workspace.keys_dir / mfa.SEED_KEY_FILE
    assert "key" in json.loads(key_file.read_text())
    register_kek(workspace, mfa.SEED_KEK, {"provider": "local"})
    bob = add_human(workspace, "bob")  # the next use wraps the existing key under the KEK
    doc = json.loads(key_file.read_text())
    assert "key" not in doc
    assert doc["wrapped"]["key_id"] == mfa.SEED_KEK
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    monkeypatch.setattr(mfa, "_loaded", {})
    mfa.seed_sealer(workspace)  # unwraps, audited
    login(workspace, "alice", alice, "laptop-1")
    add_device(workspace, "laptop-2")
    login(workspace, "bob", bob, "laptop-2")
    assert "key.unwrap" in actions(workspace)
    monkeypatch.setattr(mfa, "_loaded", {})
    monkeypatch.setattr(mfa, "_homes", {})
    with pytest.raises(ConfigError, match="wrapped"):
        fieldseal.read_key_file(key_file)


def test_two_writers_of_the_key_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.key"
    first = fieldseal.create_key_file(path)
    second = fieldseal.create_key_file(path)  # lost the race: gets the winner's key
    assert first.key_id == second.key_id
    assert [p.name for p in path.parent.iterdir()] == ["k.key"]  # no temporary file left behind
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# --- the format, under hostile input -------------------------------------------------------------

KEY = fieldseal.FieldKey(bytes(range(32)))


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_parse_and_unseal_raise_only_the_format_error(value: str) -> None:
    with pytest.raises(fieldseal.FieldSealError) as err:  # random text never forges a GCM tag
        fieldseal.unseal(KEY, value, b"row")
    assert len(value) < 8 or value not in err.value.message  # the value is never echoed


@settings(max_examples=200)
@given(st.binary(max_size=100), st.binary(max_size=40), st.binary(max_size=40))
def test_round_trip_and_the_associated_data_binds(plaintext: bytes, aad: bytes, other: bytes) -> None:
    sealed = fieldseal.seal(KEY, plaintext, aad)
    assert sealed.startswith("v1:")
    assert fieldseal.unseal(KEY, sealed, aad) == plaintext
    if other != aad:
        with pytest.raises(fieldseal.FieldSealError):
            fieldseal.unseal(KEY, sealed, other)


@settings(max_examples=300)
@given(st.data())
def test_any_change_to_a_sealed_value_is_refused(data: st.DataObject) -> None:
    sealed = fieldseal.seal(KEY, SEED.encode(), b"row")
    i = data.draw(st.integers(0, len(sealed) - 1))
    c = data.draw(st.characters(codec="ascii"))
    mutated = sealed[:i] + c + sealed[i + 1 :]
    if mutated == sealed:
        return
    with pytest.raises(fieldseal.FieldSealError):
        fieldseal.unseal(KEY, mutated, b"row")


def test_a_second_spelling_of_the_same_bytes_is_refused() -> None:
    sealed = fieldseal.seal(KEY, b"a", b"row")  # 29 bytes: the last base64 digit has 2 unused bits
    body = sealed[3:].rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(body[-1])
    twin = alphabet[last ^ 0b01]
    mutated = f"v1:{body[:-1]}{twin}" + "=" * (len(sealed[3:]) - len(body))
    assert base64.b64decode(mutated[3:]) == base64.b64decode(sealed[3:])
    with pytest.raises(fieldseal.FieldSealError, match="base64"):
        fieldseal.unseal(KEY, mutated, b"row")
