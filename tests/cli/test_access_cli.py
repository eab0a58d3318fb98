"""The access commands end to end through ``main(argv)``, with getpass monkeypatched."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from gpaisec.access import accounts, device_keys, mfa
from gpaisec.access.pdp import packaged_policies_dir
from gpaisec.audit import service as audit
from gpaisec.cli.app import main
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.access.test_accounts import PASSWORD, fast_hashes  # noqa: F401


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_people_users_mfa_login_grants_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "ws")
    ws = Workspace.open(home)
    registry.add_model(ws, "atlas")
    with ws.transaction() as s:
        registry.create_version(s, ws, "atlas", "v3")
    for name in ("alice", "bob", "carol"):
        registry.add_device(ws, f"laptop-{name}", managed=True, disk_encrypted=True)
    ws.close()
    for name in ("alice", "bob", "carol"):  # each laptop's key pair, made here and enrolled
        rc, out, err = run(
            capsys,
            "--workspace",
            home,
            "access",
            "device-key",
            f"laptop-{name}",
            "--generate",
            "--format",
            "json",
        )
        assert rc == 0, err
        made = json.loads(out)
        assert made["fingerprint"].startswith("sha256:")
        assert made["private_key"] == str(Path(home) / "keys" / "devices" / f"laptop-{name}.key")
    monkeypatch.delenv("GPAISEC_PASSWORD", raising=False)
    monkeypatch.delenv("GPAISEC_TOTP", raising=False)
    answers: dict[str, str] = {}

    def fake_getpass(prompt: str = "") -> str:
        if "code" in prompt:
            return answers["code"]
        return answers.get("password", PASSWORD)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    w = ("--workspace", home)
    secrets: dict[str, str] = {}
    recovery: dict[str, list[str]] = {}
    for name, roles in (("alice", []), ("bob", ["approver"]), ("carol", ["approver"])):
        rc, _, err = run(
            capsys,
            *w,
            "people",
            "add",
            f"Person {name}",
            "--background-check-until",
            "2099-01-01",
            "--training-until",
            "2099-01-01",
        )
        assert rc == 0, err
        role_args = [a for r in roles for a in ("--role", r)]
        rc, out, err = run(
            capsys, *w, "users", "add", name, "--person", f"Person {name}", *role_args, "--format", "json"
        )
        assert rc == 0, err
        assert json.loads(out)["roles"] == roles
        rc, out, err = run(capsys, *w, "users", "mfa", "enroll", name, "--totp", "--format", "json")
        assert rc == 0, err
        uri = json.loads(out)["otpauth_uri"]
        secrets[name] = uri.split("secret=")[1].split("&")[0]
        answers["code"] = mfa.totp_code(secrets[name], utcnow() - dt.timedelta(seconds=30))
        rc, out, err = run(capsys, *w, "users", "mfa", "confirm", name, "--format", "json")
        assert rc == 0, err
        recovery[name] = json.loads(out)["recovery_codes"]
        assert len(recovery[name]) == 10

    # A weak password is refused, with the reason and without echoing it.
    answers["password"] = "password"
    rc, _, err = run(capsys, *w, "people", "add", "Person eve")
    rc, _, err = run(capsys, *w, "users", "add", "eve", "--person", "Person eve")
    assert rc == 2
    assert "shorter than" in err
    del answers["password"]

    def login(name: str) -> None:
        answers["code"] = mfa.totp_code(secrets[name], utcnow())
        rc, _, err = run(capsys, *w, "login", name, "--device", f"laptop-{name}")
        assert rc == 0, err
        answers["code"] = mfa.totp_code(secrets[name], utcnow() + dt.timedelta(seconds=30))  # for step-up

    login("alice")
    session_file = Path(home) / "session"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    rc, out, err = run(
        capsys,
        *w,
        "access",
        "request",
        "atlas:v3",
        "--action",
        "read",
        "--duration",
        "2d",
        "--reason",
        "evaluate v3",
        "--format",
        "json",
    )
    assert rc == 0, err
    gid = json.loads(out)["id"]
    # Denied before approval: exit 6, the policy named.
    rc, out, _ = run(capsys, *w, "access", "check", "alice", "read", "atlas:v3", "--format", "json")
    assert rc == 6
    assert "forbid-grant-inactive" in json.loads(out)["determining_policies"]
    for approver in ("bob", "carol"):
        login(approver)
        rc, out, err = run(capsys, *w, "access", "approve", gid, "--format", "json")
        assert rc == 0, err
    assert json.loads(out)["state"] == "active"
    rc, out, err = run(capsys, *w, "access", "check", "alice", "read", "atlas:v3", "--explain")
    assert rc == 0, err
    assert out.startswith("ALLOWED")
    assert "given: grant" in out
    rc, out, _ = run(capsys, *w, "access", "list", "--format", "json")
    assert json.loads(out)[0]["approvers"] == ["bob", "carol"]
    # Self-approval through the CLI: carol requests, carol approves.
    rc, out, _ = run(
        capsys, *w, "access", "request", "atlas:v3", "--reason", "my own experiment", "--format", "json"
    )
    # answers["code"] still holds the code carol's approval step-up used.
    rc, _, err = run(capsys, *w, "access", "approve", gid)  # the same code again: replay
    assert rc == 6
    assert "already used" in err
    answers["code"] = recovery["carol"][0]  # a recovery code steps up as well
    rc, _, err = run(capsys, *w, "access", "approve", json.loads(out)["id"])
    assert rc == 6
    assert "own grant" in err
    carols = json.loads(out)["id"]
    rc, _, err = run(capsys, *w, "logout")
    assert rc == 0, err
    assert not session_file.exists()

    # alice is neither an admin, nor an approver of carol's request, nor its requester: refused, audited.
    answers["code"] = mfa.totp_code(secrets["alice"], utcnow() + dt.timedelta(seconds=30))  # unused step
    rc, _, err = run(capsys, *w, "login", "alice", "--device", "laptop-alice")
    assert rc == 0, err
    rc, _, err = run(capsys, *w, "access", "revoke", carols, "--reason", "tidying up requests")
    assert rc == 6
    ws = Workspace.open(home)
    assert [e.object for e in audit.log(ws, action="grant.revoke.denied")] == [f"grant:{carols}"]
    # carol gives up her own request.
    answers["code"] = recovery["carol"][1]  # her codes of this minute are spent
    rc, _, err = run(capsys, *w, "login", "carol", "--device", "laptop-carol")
    assert rc == 0, err
    rc, _, err = run(capsys, *w, "access", "revoke", carols, "--reason", "not needed after all")
    assert rc == 0, err
    # Sign out everywhere: every session of carol's ends, in one audited event.
    rc, _, err = run(capsys, *w, "logout", "--all")
    assert rc == 0, err
    assert not session_file.exists()
    (ev,) = audit.log(ws, action="logout.all")
    assert ev.object == "account:carol"
    ws.close()


def test_policy_show_validate_and_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ("--workspace", str(tmp_path / "ws"))
    rc, out, err = run(capsys, *w, "policy", "show", "--format", "json")
    assert rc == 0, err
    assert "permit-unreleased-with-grant" in [p["id"] for p in json.loads(out)["policies"]]
    default = Path(str(packaged_policies_dir().joinpath("default.cedar")))
    rc, out, err = run(capsys, *w, "policy", "validate", str(default), "--format", "json")
    assert rc == 0, err
    bad = tmp_path / "bad.cedar"
    bad.write_text("permit (principal, action, resource) when { nonsense };")
    rc, _, err = run(capsys, *w, "policy", "validate", str(bad))
    assert rc == 3
    cases = tmp_path / "cases.json"
    cases.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "name": "no grant",
                        "principal": {"type": "Gpaisec::Person", "id": "p1"},
                        "action": "read",
                        "resource": {"type": "Gpaisec::ModelVersion", "id": "v1"},
                        "entities": [],
                        "context": {},
                        "expect": "deny",
                    }
                ]
            }
        )
    )
    rc, out, err = run(capsys, *w, "policy", "test", str(cases), "--format", "json")
    assert rc == 0, err
    assert json.loads(out)[0]["ok"] is True


def test_device_keys_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "ws")
    ws = Workspace.open(home)
    registry.add_device(ws, "laptop-1", managed=True, disk_encrypted=True)
    registry.add_device(ws, "laptop-2", managed=True, disk_encrypted=True)
    accounts.add_person(ws, "Person dan", background_check_valid_until=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    accounts.add_user(ws, "dan", person="Person dan", password=PASSWORD)
    ws.close()
    w = ("--workspace", home)
    monkeypatch.setenv("GPAISEC_PASSWORD", PASSWORD)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")  # dan has no second factor

    # A public key file (OpenSSH) is enrolled; a malformed one is refused saying what is accepted.
    made = device_keys.generate_signer()
    pub = tmp_path / "laptop-2.pub"
    pub.write_text(made.public.pem)
    rc, out, err = run(capsys, *w, "access", "device-key", "laptop-2", str(pub), "-f", "json")
    assert rc == 0, err
    assert json.loads(out) == {"device": "laptop-2", "fingerprint": made.fingerprint, "private_key": None}
    pub.write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ")
    rc, _, err = run(capsys, *w, "access", "device-key", "laptop-2", str(pub))
    assert rc != 0
    assert "Ed25519 or ECDSA P-256" in err

    # No key file for laptop-1 yet: login says how to make one, before asking for anything.
    rc, _, err = run(capsys, *w, "login", "dan", "--device", "laptop-1")
    assert rc != 0
    assert "--generate" in err
    rc, out, err = run(capsys, *w, "access", "device-key", "laptop-1", "--generate", "-f", "json")
    assert rc == 0, err
    key_file = Path(json.loads(out)["private_key"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    rc, _, err = run(capsys, *w, "access", "device-key", "laptop-1", "--generate")
    assert rc != 0
    assert "never overwritten" in err
    rc, out, err = run(capsys, *w, "login", "dan", "--device", "laptop-1", "-f", "json")
    assert rc == 0, err
    assert json.loads(out)["device_key"] == device_keys.load_signer(key_file).fingerprint
    assert run(capsys, *w, "logout")[0] == 0

    # The key of laptop-2 signs for laptop-2 only; naming laptop-1 with it is a failed sign-in.
    key2 = tmp_path / "laptop-2.key"
    made.save(key2)
    rc, _, err = run(capsys, *w, "login", "dan", "--device", "laptop-1", "--device-key", str(key2))
    assert rc != 0
    assert "sign-in failed" in err
    rc, _, err = run(capsys, *w, "login", "dan", "--device", "laptop-2", "--device-key", str(key2))
    assert rc == 0, err

    # Listed, then revoked: the session bound to it ends.
    rc, out, _ = run(capsys, *w, "access", "device-keys", "-f", "json")
    assert {k["device"] for k in json.loads(out)} == {"laptop-1", "laptop-2"}
    rc, _, err = run(capsys, *w, "access", "device-key-revoke", made.fingerprint, "--reason", "lost")
    assert rc == 0, err
    ws = Workspace.open(home)
    assert accounts.list_sessions(ws, "dan") == []
    ws.close()


def test_mfa_seal_seeds_seals_plaintext_seeds_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    home = str(tmp_path / "ws")
    ws = Workspace.open(home)
    accounts.add_person(ws, "Person alice")
    accounts.add_person(ws, "Person bob")
    for name in ("alice", "bob"):
        accounts.add_user(ws, name, person=f"Person {name}", password=PASSWORD, roles=())
        mfa.enrol_totp(ws, name)
    # Seeds as a workspace from before migration 0006 holds them: plaintext (bob's malformed).
    with ws.engine.begin() as conn:
        for name, value in (("alice", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), ("bob", "not a seed at all")):
            conn.execute(
                text(
                    "UPDATE totp_credentials SET secret = :v "
                    "WHERE account_id = (SELECT id FROM accounts WHERE username = :u)"
                ),
                {"v": value, "u": name},
            )
    rc, out, err = run(capsys, "--workspace", home, "users", "mfa", "seal-seeds", "--format", "json")
    assert rc == 1, err  # bob's seed cannot be read
    assert json.loads(out) == {"sealed": ["alice"], "unreadable": ["bob"]}
    with ws.engine.connect() as conn:
        stored = dict(
            conn.execute(
                text(
                    "SELECT a.username, t.secret FROM totp_credentials t "
                    "JOIN accounts a ON a.id = t.account_id"
                )
            ).all()
        )
    assert stored["alice"].startswith("v1:")
    assert "JBSWY3DP" not in stored["alice"]
    rc, out, _ = run(capsys, "--workspace", home, "users", "mfa", "seal-seeds", "--format", "json")
    assert json.loads(out)["sealed"] == []  # already sealed: left alone
    ws.close()
