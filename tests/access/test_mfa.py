from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from gpaisec.access import accounts, mfa
from gpaisec.access.models import RecoveryCode, TotpCredential
from gpaisec.access.ratelimit import ACCOUNT_POLICY, ThrottledError
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace
from tests import devices
from tests.access.test_accounts import (  # noqa: F401
    PASSWORD,
    actions,
    add_device,
    add_human,
    fail_reasons,
    fast_hashes,
)


def test_enrol_returns_an_otpauth_uri_and_confirm_needs_a_valid_code(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    uri = mfa.enrol_totp(workspace, "alice")
    assert uri.startswith("otpauth://totp/gpaisec:alice?")
    assert "issuer=gpaisec" in uri
    with pytest.raises(mfa.MfaError):
        mfa.confirm_totp(workspace, "alice", "abcdef")
    assert "mfa.totp.confirm.denied" in actions(workspace)
    secret = uri.split("secret=")[1].split("&")[0]
    codes = mfa.confirm_totp(workspace, "alice", mfa.totp_code(secret, utcnow()))
    assert len(codes) == mfa.RECOVERY_CODES
    assert len(set(codes)) == len(codes)
    with workspace.reader() as s:
        stored = [r.hash for r in s.scalars(select(RecoveryCode))]
    assert not set(codes) & set(stored)
    # The seed never reaches the audit log.
    assert secret not in str(actions(workspace))


def test_totp_window_and_replay(workspace: Workspace) -> None:
    add_human(workspace, "alice", totp=False)
    uri = mfa.enrol_totp(workspace, "alice")
    secret = uri.split("secret=")[1].split("&")[0]
    now = utcnow()
    seeds = mfa.seed_sealer(workspace)
    with workspace.transaction() as s:
        cred = s.get(TotpCredential, accounts.get_account(s, "alice").id)
        assert cred is not None
        step = mfa.verify_totp(cred, mfa.totp_code(secret, now - dt.timedelta(seconds=30)), now, seeds=seeds)
        with pytest.raises(mfa.MfaError, match="already used"):
            mfa.verify_totp(cred, mfa.totp_code(secret, now - dt.timedelta(seconds=30)), now, seeds=seeds)
        assert mfa.verify_totp(cred, mfa.totp_code(secret, now), now, seeds=seeds) == step + 1
        with pytest.raises(mfa.MfaError):  # two steps ahead is outside the window
            mfa.verify_totp(cred, mfa.totp_code(secret, now + dt.timedelta(seconds=90)), now, seeds=seeds)
        with pytest.raises(mfa.MfaError):
            mfa.verify_totp(cred, "12345x", now, seeds=seeds)


def test_recovery_codes_are_single_use(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    add_human(workspace, "alice", totp=False)
    uri = mfa.enrol_totp(workspace, "alice")
    secret = uri.split("secret=")[1].split("&")[0]
    codes = mfa.confirm_totp(workspace, "alice", mfa.totp_code(secret, utcnow()))
    lg = devices.sign_in(workspace, "alice", PASSWORD, codes[0].upper(), "laptop-1")
    assert lg.session.mfa_at is not None
    accounts.logout(workspace, lg.token)
    with pytest.raises(accounts.SignInError):
        devices.sign_in(workspace, "alice", PASSWORD, codes[0], "laptop-1")
    assert "recovery code is wrong or was already used" in fail_reasons(workspace)[-1]
    devices.sign_in(workspace, "alice", PASSWORD, codes[1], "laptop-1")


def test_step_up_refreshes_mfa_time(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    assert secret
    t0 = utcnow()
    lg = devices.sign_in(workspace, "alice", PASSWORD, mfa.totp_code(secret, t0), "laptop-1", now=t0)
    later = t0 + dt.timedelta(minutes=10)
    sess = accounts.step_up(workspace, lg.token, mfa.totp_code(secret, later), now=later)
    assert sess.mfa_at == later
    with pytest.raises(mfa.MfaError):
        accounts.step_up(workspace, lg.token, mfa.totp_code(secret, later), now=later)
    assert "session.mfa.fail" in actions(workspace)


def test_step_up_guessing_is_throttled(workspace: Workspace) -> None:
    add_device(workspace, "laptop-1")
    secret = add_human(workspace, "alice")
    t0 = utcnow()
    lg = devices.sign_in(workspace, "alice", PASSWORD, mfa.totp_code(secret, t0), "laptop-1", now=t0)
    right = mfa.totp_code(secret, t0 + dt.timedelta(seconds=30))
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(ACCOUNT_POLICY.free_attempts):
        with pytest.raises(mfa.MfaError):
            accounts.step_up(workspace, lg.token, wrong)
    # A stolen session cannot go on guessing: even the right code now waits.
    with pytest.raises(ThrottledError):
        accounts.step_up(workspace, lg.token, right)
