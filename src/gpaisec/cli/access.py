"""Access commands: people, users and MFA, sign-in, grants, decisions, reviews and policies.

Secrets never go on the command line. Passwords and one-time codes are prompted for (getpass, with
no echo); for automation only, ``GPAISEC_PASSWORD`` and ``GPAISEC_TOTP`` are read from the
environment instead. ``gpaisec login`` signs a fresh device challenge with this device's private key
(``--device-key``, by default the one ``gpaisec access device-key DEVICE --generate`` made) and keeps
the session token in ``<workspace>/session`` (mode 0600); the other commands act as that session's
account.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec.access import accounts, device_keys, grants, mfa, reviews
from gpaisec.access.decide import check_access, load_policies
from gpaisec.access.pdp import PDP, PolicySet, explain
from gpaisec.cli import common
from gpaisec.errors import ConfigError, InputError

people_app = typer.Typer(help="People: names, organisations, vetting dates.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts of people and services.", no_args_is_help=True)
mfa_app = typer.Typer(help="Second factors of an account.", no_args_is_help=True)
access_app = typer.Typer(help="Grants to unreleased weights, decisions and reviews.", no_args_is_help=True)
review_app = typer.Typer(help="Authorisation reviews (at least every six months).", no_args_is_help=True)
policy_app = typer.Typer(help="The Cedar access policy.", no_args_is_help=True)
users_app.add_typer(mfa_app, name="mfa")
access_app.add_typer(review_app, name="review")

SESSION_FILE = "session"


# --- helpers ---------------------------------------------------------------------------------------


def _date(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        d = dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what} must be a date such as 2027-06-30, not {value!r}") from None
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def _duration(value: str) -> dt.timedelta:
    m = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", value)
    if not m:
        raise InputError(f"{value!r} is not a duration", hint="write e.g. 30m, 4h or 2d")
    n, unit = int(m.group(1)), m.group(2)
    return (
        dt.timedelta(minutes=n)
        if unit == "m"
        else dt.timedelta(hours=n)
        if unit == "h"
        else dt.timedelta(days=n)
    )


def _secret(prompt: str, env: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return getpass.getpass(prompt)


def _new_password() -> str:
    env = os.environ.get("GPAISEC_PASSWORD")
    if env:
        return env
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise InputError("the passwords do not match")
    return first


def _session_path() -> Path:
    return common.workspace().home / SESSION_FILE


def _save_session(username: str, token: str) -> Path:
    path = _session_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"username": username, "token": token}, f)
    os.chmod(path, 0o600)
    return path


def _session() -> tuple[str, str]:
    path = _session_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["username"]), str(data["token"])
    except (OSError, ValueError, KeyError):
        raise ConfigError("not signed in", hint="run `gpaisec login USER --device DEVICE`") from None


def _print_once(lines: list[str], note: str) -> None:
    common.stdout.print("\n".join(lines), highlight=False, markup=False)
    common.info(note)


def _iso(t: dt.datetime | None) -> str:
    return t.isoformat(timespec="seconds") if t else ""


# --- people ----------------------------------------------------------------------------------------


@people_app.command("add")
def people_add(
    name: str,
    email: Annotated[str, typer.Option()] = "",
    organisation: Annotated[str, typer.Option()] = "",
    background_check_until: Annotated[
        str | None, typer.Option(help="Date the background check stops being valid (YYYY-MM-DD).")
    ] = None,
    training_until: Annotated[
        str | None, typer.Option(help="Date the insider-threat training lapses (YYYY-MM-DD).")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Add a person."""
    p = accounts.add_person(
        common.workspace(),
        name,
        email=email,
        organisation=organisation,
        background_check_valid_until=_date(background_check_until, "--background-check-until"),
        insider_training_valid_until=_date(training_until, "--training-until"),
    )
    common.emit(fmt, {"id": p.id, "name": p.name}, lambda: common.info(f"person {p.name} added"))


@people_app.command("list")
def people_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List people with their vetting dates."""
    rows = accounts.list_people(common.workspace())
    data = [
        {
            "name": p.name,
            "organisation": p.organisation,
            "background_check_valid_until": p.background_check_valid_until,
            "insider_training_valid_until": p.insider_training_valid_until,
        }
        for p in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "People",
            ["name", "organisation", "background check until", "training until"],
            [
                [
                    p.name,
                    p.organisation,
                    _iso(p.background_check_valid_until),
                    _iso(p.insider_training_valid_until),
                ]
                for p in rows
            ],
            empty="no people: add one with `gpaisec people add NAME`",
        ),
    )


# --- users -----------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: str,
    person: Annotated[str, typer.Option(help="The person this account belongs to.")],
    role: Annotated[
        list[str] | None, typer.Option(help="A role (repeatable): approver, break_glass, reviewer...")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Add a person's account. The password is prompted for twice (GPAISEC_PASSWORD for automation)."""
    ws = common.workspace()
    a = accounts.add_user(ws, name, person=person, password=_new_password(), roles=role or [])
    common.emit(
        fmt,
        {"username": a.username, "kind": a.kind, "roles": a.roles},
        lambda: common.info(
            f"user {a.username} added; enrol a second factor: `gpaisec users mfa enroll {a.username} --totp`"
        ),
    )


@users_app.command("add-service")
def users_add_service(
    name: str,
    owner: Annotated[str, typer.Option(help="The accountable person.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Add a service account owned by a person; it signs in with tokens."""
    a = accounts.add_service_account(common.workspace(), name, owner=owner)
    common.emit(
        fmt,
        {"username": a.username, "kind": a.kind},
        lambda: common.info(f"service account {a.username} added"),
    )


@users_app.command("token")
def users_token(
    name: str,
    scope: Annotated[
        list[str], typer.Option(help="weights:read, weights:write or weights:export (repeatable).")
    ],
    days: Annotated[int, typer.Option(help="Lifetime in days (at most 90).")] = 30,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Issue a token for a service account; it is printed once and stored only as a hash."""
    row, token = accounts.issue_token(
        common.workspace(), name, scopes=scope, lifetime=dt.timedelta(days=days)
    )
    common.emit(
        fmt,
        {"id": row.id, "token": token, "scopes": row.scopes, "expires_at": row.expires_at},
        lambda: _print_once([token], "store it now: it is not shown again"),
    )


@users_app.command("list")
def users_list(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List accounts."""
    rows = accounts.list_accounts(common.workspace())
    data: list[dict[str, Any]] = [
        {
            "username": a.username,
            "kind": a.kind,
            "person": a.person.name if a.person else None,
            "owner": a.owner.name if a.owner else None,
            "roles": a.roles,
            "disabled": a.disabled_at is not None,
        }
        for a in rows
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Accounts",
            ["user", "kind", "person / owner", "roles", "disabled"],
            [
                [d["username"], d["kind"], d["person"] or d["owner"], ", ".join(d["roles"]), d["disabled"]]
                for d in data
            ],
            empty="no accounts: add one with `gpaisec users add NAME --person ...`",
        ),
    )


@mfa_app.command("enroll")
def mfa_enroll(
    name: str,
    totp: Annotated[bool, typer.Option("--totp", help="Enrol an authenticator app (TOTP).")] = False,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Enrol a second factor; prints the otpauth URI (holds the seed: show it only to the user).

    Confirm with `gpaisec users mfa confirm NAME`. WebAuthn/passkeys cannot be used to sign in yet.
    """
    if not totp:
        raise InputError("choose a factor", hint="only --totp is supported for now")
    uri = mfa.enrol_totp(common.workspace(), name)

    def render() -> None:
        common.stdout.print(uri, highlight=False, soft_wrap=True)
        try:  # a QR code only if a QR library happens to be installed
            import qrcode  # type: ignore[import-not-found,import-untyped,unused-ignore]

            qr = qrcode.QRCode()
            qr.add_data(uri)
            qr.print_ascii()
        except ImportError:
            pass
        common.info(f"add it to an authenticator app, then run `gpaisec users mfa confirm {name}`")

    common.emit(fmt, {"username": name, "otpauth_uri": uri}, render)


@mfa_app.command("confirm")
def mfa_confirm(name: str, fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Confirm the authenticator with its current code; prints recovery codes once."""
    codes = mfa.confirm_totp(common.workspace(), name, _secret("One-time code: ", "GPAISEC_TOTP"))
    common.emit(
        fmt,
        {"username": name, "recovery_codes": codes},
        lambda: _print_once(
            codes, "keep these recovery codes safe; each works once and they are not shown again"
        ),
    )


@mfa_app.command("seal-seeds")
def mfa_seal_seeds(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Seal every authenticator seed still stored in plaintext (from before migration 0006) under the
    workspace's MFA seed key, in one transaction. Safe to run again. Exit 1 if a seed is unreadable."""
    report = mfa.seal_legacy_seeds(common.workspace())

    def render() -> None:
        common.info(
            f"sealed {len(report.sealed)} seed(s)"
            + (f": {', '.join(report.sealed)}" if report.sealed else "")
        )
        for name in report.unreadable:
            common.info(f"{name}: the stored seed is malformed and can never verify a code; reset it")

    common.emit(fmt, {"sealed": list(report.sealed), "unreadable": list(report.unreadable)}, render)
    if report.unreadable:
        raise typer.Exit(1)


# --- sign-in ---------------------------------------------------------------------------------------


DeviceKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--device-key",
        help="This device's private key file (default: <workspace>/keys/devices/DEVICE.key, made by "
        "`gpaisec access device-key DEVICE --generate`).",
    ),
]


def _device_signer(device: str, path: Path | None) -> device_keys.DeviceSigner:
    where = path or device_keys.default_key_path(common.workspace().keys_dir, device)
    return device_keys.load_signer(
        where, passphrase=lambda: _secret("Passphrase of the device key: ", "GPAISEC_DEVICE_KEY_PASSPHRASE")
    )


def login(
    username: str,
    device: Annotated[str, typer.Option(help="This device's name (or its key's fingerprint, sha256:...).")],
    device_key: DeviceKeyOption = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Sign in: password and one-time code are prompted for, and this device's key signs a fresh
    challenge; the session is kept in the workspace."""
    ws = common.workspace()
    signer = _device_signer(device, device_key)  # before the prompts: a missing key fails at once
    password = _secret("Password: ", "GPAISEC_PASSWORD")
    code = _secret("One-time or recovery code (empty if none enrolled): ", "GPAISEC_TOTP") or None
    challenge = accounts.device_challenge(ws)
    proof = signer.prove(challenge.id, challenge.challenge, username)
    lg = accounts.authenticate(ws, username, password, code, device, device_proof=proof)
    path = _save_session(username, lg.token)
    common.emit(
        fmt,
        {
            "username": username,
            "session": lg.session.id,
            "expires_at": lg.session.expires_at,
            "mfa": lg.session.mfa_at is not None,
            "device_key": proof.fingerprint,
        },
        lambda: common.info(
            f"signed in as {username} until {_iso(lg.session.expires_at)}; session kept in {path}"
        ),
    )


def logout(
    everywhere: Annotated[
        bool, typer.Option("--all", help="End every session of the account, on every device (audited).")
    ] = False,
) -> None:
    """Sign out and forget the stored session; with --all, sign out everywhere."""
    username, token = _session()
    if everywhere:
        ended = accounts.logout_all(common.workspace(), token)
        _session_path().unlink(missing_ok=True)
        common.info(f"signed {username} out everywhere ({ended} session{'s' if ended != 1 else ''} ended)")
        return
    accounts.logout(common.workspace(), token)
    _session_path().unlink(missing_ok=True)
    common.info("signed out")


# --- grants and decisions --------------------------------------------------------------------------


@access_app.command("device-key")
def device_key(
    device: str,
    public_key: Annotated[
        Path | None,
        typer.Argument(help="A file with the device's public key (PEM or OpenSSH); - reads standard input."),
    ] = None,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate", help="Make a key pair for this machine: the private key goes to --device-key."
        ),
    ] = False,
    device_key_path: DeviceKeyOption = None,
    algorithm: Annotated[str, typer.Option(help="With --generate: ed25519 or ecdsa-p256.")] = "ed25519",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Enrol a device's public key (Ed25519 or ECDSA P-256; PEM or OpenSSH), or with --generate make a
    key pair here (private key mode 0600, written atomically, never over a file) and enrol it.
    Sign-ins from the device then prove they hold the private key."""
    ws = common.workspace()
    written: Path | None = None
    if generate == (public_key is not None):
        raise InputError("give either a public key file or --generate", hint="see --help")
    if generate:
        if algorithm not in ("ed25519", "ecdsa-p256"):
            raise InputError(f"unknown key algorithm {algorithm!r}", hint="use ed25519 or ecdsa-p256")
        signer = device_keys.generate_signer("ecdsa-p256" if algorithm == "ecdsa-p256" else "ed25519")
        written = device_key_path or device_keys.default_key_path(ws.keys_dir, device)
        signer.save(written)
        try:
            key = accounts.enrol_device_key(ws, device, signer.public.pem)
        except BaseException:
            written.unlink(missing_ok=True)  # an enrolment that failed leaves no key behind
            raise
    else:
        assert public_key is not None
        if str(public_key) == "-":
            text = sys.stdin.read(device_keys.MAX_KEY_TEXT + 1)
        else:
            try:
                text = public_key.read_text(encoding="utf-8", errors="replace")[
                    : device_keys.MAX_KEY_TEXT + 1
                ]
            except OSError as exc:
                raise InputError(f"cannot read {public_key}: {exc.strerror or exc}") from None
        key = accounts.enrol_device_key(ws, device, text)
    common.emit(
        fmt,
        {"device": device, "fingerprint": key.fingerprint, "private_key": str(written) if written else None},
        lambda: common.info(
            f"{device}: {key.fingerprint}" + (f"\nprivate key: {written} (mode 0600)" if written else "")
        ),
    )


@access_app.command("device-keys")
def device_keys_list(
    device: Annotated[str | None, typer.Argument(help="Only this device's keys.")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Enrolled device keys, revoked ones too, newest first."""
    keys = accounts.list_device_keys(common.workspace(), device)
    rows = [
        {
            "device": name,
            "fingerprint": key.fingerprint,
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
        }
        for key, name in keys
    ]

    def render() -> None:
        for key, name in keys:
            state = f"revoked {_iso(key.revoked_at)}" if key.revoked_at else "active"
            common.stdout.print(f"{name}  {key.fingerprint}  {_iso(key.created_at)}  {state}")

    common.emit(fmt, rows, render)


@access_app.command("device-key-revoke")
def device_key_revoke(
    fingerprint: str,
    reason: Annotated[str, typer.Option(help="Why (lost, replaced, compromised...), for the audit log.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Revoke a device key: it signs in nowhere from now on, and its sessions end (audited)."""
    key = accounts.revoke_device_key(common.workspace(), fingerprint, reason=reason)
    common.emit(
        fmt,
        {"fingerprint": key.fingerprint, "revoked_at": key.revoked_at},
        lambda: common.info(f"revoked {key.fingerprint}"),
    )


@access_app.command("request")
def access_request(
    scope: Annotated[str, typer.Argument(help="MODEL:VERSION or MODEL:VERSION@LOCATION.")],
    action: Annotated[str, typer.Option(help="read, write or export.")] = "read",
    duration: Annotated[str, typer.Option(help="How long, e.g. 4h or 2d (at most 7d).")] = "1d",
    reason: Annotated[str, typer.Option(help="Why the access is needed.")] = "",
    service_account: Annotated[
        str | None, typer.Option(help="Request for a service account you own.")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Request a grant as the signed-in user; two other approvers must approve it."""
    username, _ = _session()
    g = grants.request_grant(
        common.workspace(),
        username,
        scope,
        action,
        duration=_duration(duration),
        reason=reason,
        service_account=service_account,
    )
    common.emit(
        fmt,
        {"id": g.id, "state": g.state},
        lambda: common.info(f"grant {g.id} requested; it needs two approvals"),
    )


@access_app.command("approve")
def access_approve(grant_id: str, fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Approve a grant as the signed-in user; asks for a fresh one-time code first."""
    ws = common.workspace()
    _, token = _session()
    accounts.step_up(ws, token, _secret("One-time code: ", "GPAISEC_TOTP"))
    g = grants.approve_grant(ws, grant_id, session_token=token)
    common.emit(
        fmt,
        {"id": g.id, "state": g.state, "expires_at": g.expires_at},
        lambda: common.info(f"grant {g.id} approved; it is {g.state}"),
    )


@access_app.command("revoke")
def access_revoke(
    grant_id: str,
    reason: Annotated[str, typer.Option(help="Why.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Revoke a grant now (an admin, an approver of the grant, or its requester)."""
    _, token = _session()
    g = grants.revoke_grant(common.workspace(), grant_id, reason=reason, session_token=token)
    common.emit(fmt, {"id": g.id, "state": g.state}, lambda: common.info(f"grant {g.id} revoked"))


@access_app.command("list")
def access_list(
    state: Annotated[list[str] | None, typer.Option(help="Only these states (repeatable).")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """List grants with their state now."""
    rows = grants.list_grants(common.workspace(), states=state)
    common.emit(
        fmt,
        rows,
        lambda: common.print_table(
            "Grants",
            ["id", "requester", "scope", "action", "state", "approvers", "expires"],
            [
                [
                    r["id"],
                    r["requester"],
                    r["scope"],
                    r["action"],
                    r["state"] + (" (break-glass)" if r["break_glass"] else ""),
                    ", ".join(r["approvers"]),
                    _iso(r["expires_at"]),
                ]
                for r in rows
            ],
            empty="no grants",
        ),
    )


@access_app.command("check")
def access_check(
    user: str,
    action: str,
    version: Annotated[
        str, typer.Argument(help="MODEL:VERSION, or MODEL:VERSION@LOCATION for one copy of it.")
    ],
    explain_: Annotated[
        bool, typer.Option("--explain", help="Show the facts the decision was made on.")
    ] = False,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Decide (and audit) whether USER may ACTION the weights of MODEL:VERSION (or of one copy of it,
    MODEL:VERSION@LOCATION) now. Exit 6 if denied."""
    d = check_access(common.workspace(), user, action, version, explain=explain_)
    common.emit(fmt, d.as_dict(), lambda: common.stdout.print(explain(d), highlight=False, markup=False))
    if not d.allowed:
        raise typer.Exit(code=6)


@access_app.command("break-glass")
def access_break_glass(
    scope: str,
    reason: Annotated[str, typer.Option(help="The emergency.")],
    action: Annotated[str, typer.Option(help="read or write.")] = "read",
    duration: Annotated[str, typer.Option(help="At most 4h.")] = "1h",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Emergency access for the role break_glass: active at once, alerts security, reviewed afterwards."""
    ws = common.workspace()
    _, token = _session()
    accounts.step_up(ws, token, _secret("One-time code: ", "GPAISEC_TOTP"))
    g = grants.break_glass(
        ws, session_token=token, scope=scope, action=action, reason=reason, duration=_duration(duration)
    )
    common.emit(
        fmt,
        {"id": g.id, "state": g.state, "expires_at": g.expires_at},
        lambda: common.info(f"break-glass grant {g.id} active; security has been alerted"),
    )


@review_app.command("start")
def review_start(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Start a review of every principal that can reach unreleased weights."""
    c = reviews.start_review(common.workspace())
    data = {
        "id": c.id,
        "items": [{"principal": i.principal, "kind": i.kind, "access": i.access} for i in c.items],
    }
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            f"Review {c.id}",
            ["principal", "kind", "grants", "scopes", "break-glass", "non-hardened"],
            [
                [
                    i.principal,
                    i.kind,
                    ", ".join(i.access["grants"]),
                    ", ".join(i.access["scopes"]),
                    i.access["break_glass"],
                    i.access["non_hardened"],
                ]
                for i in c.items
            ],
            empty=f"review {c.id} started; nobody can reach unreleased weights",
        ),
    )


@review_app.command("decide")
def review_decide(
    review_id: str,
    principal: str,
    decision: Annotated[str, typer.Argument(help="keep or revoke")],
    reason: Annotated[str, typer.Option(help="Why.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Keep or revoke one principal's access."""
    item = reviews.decide_item(common.workspace(), review_id, principal, decision, reason=reason)
    common.emit(
        fmt,
        {"principal": item.principal, "decision": item.decision},
        lambda: common.info(f"{principal}: {decision}"),
    )


@review_app.command("close")
def review_close(review_id: str, fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Close a review once every principal is decided."""
    c = reviews.close_review(common.workspace(), review_id)
    common.emit(fmt, {"id": c.id, "closed_at": c.closed_at}, lambda: common.info(f"review {c.id} closed"))


# --- policy ----------------------------------------------------------------------------------------


@policy_app.command("show")
def policy_show(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Show the policy set in force (the workspace's, else the packaged one)."""
    ps = load_policies(common.workspace())
    common.emit(
        fmt,
        {
            "source": ps.source,
            "policies": [{"id": p, "reason": ps.reasons[p]} for p in ps.policy_ids],
            "text": ps.text,
        },
        lambda: common.stdout.print(ps.text, highlight=False, markup=False),
    )


@policy_app.command("validate")
def policy_validate(file: Path, fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """Parse and validate a policy file (or directory) against the schema."""
    ps = PolicySet.load(file)
    common.emit(
        fmt,
        {"source": ps.source, "policies": list(ps.policy_ids)},
        lambda: common.info(
            f"{file}: {len(ps)} policies, valid" + ("" if len(ps) else " (empty: denies everything)")
        ),
    )


@policy_app.command("test")
def policy_test(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON: {'cases': [{name, principal, action, resource, entities, context, expect}]}"
        ),
    ],
    policies: Annotated[
        Path | None, typer.Option(help="Policy file or directory (default: the one in force).")
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Run decision test cases against a policy set; exit 1 if any case decides otherwise."""
    try:
        doc: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        cases = list(doc["cases"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{file} is not a policy test file: {exc}") from None
    ps = PolicySet.load(policies) if policies else load_policies(common.workspace())
    engine = PDP(ps)
    results = []
    for case in cases:
        d = engine.decide(
            case["principal"],
            case["action"],
            case["resource"],
            case.get("entities", []),
            case.get("context", {}),
        )
        got = "allow" if d.allowed else "deny"
        results.append(
            {
                "name": case.get("name", ""),
                "expect": case.get("expect"),
                "got": got,
                "ok": got == case.get("expect"),
                "policies": list(d.determining_policies),
            }
        )
    common.emit(
        fmt,
        results,
        lambda: common.print_table(
            "Policy tests",
            ["case", "expect", "got", "determined by", "ok"],
            [
                [r["name"], r["expect"], r["got"], ", ".join(r["policies"]), "ok" if r["ok"] else "FAIL"]
                for r in results
            ],
        ),
    )
    if not all(r["ok"] for r in results):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(people_app, name="people")
    app.add_typer(users_app, name="users")
    app.add_typer(access_app, name="access")
    app.add_typer(policy_app, name="policy")
    app.command("login")(login)
    app.command("logout")(logout)
