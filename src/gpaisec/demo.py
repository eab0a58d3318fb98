"""A realistic sample provider, built through the same service functions users call.

The demo workspace is a plain SQLite workspace marked with a ``DEMO`` file, so that running the demo
again can safely start it afresh without ever touching a real workspace.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

from gpaisec.compliance import service
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import ConfigError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.weights.artifacts import register_version
from gpaisec.weights.discovery import discover
from gpaisec.weights.sample import write_sample_model
from gpaisec.workspace import DB_FILE, Workspace

MARKER = "DEMO"
DEFAULT_DEMO_HOME = Path(".gpaisec-demo")

# Extra steps that areas add to the demo (the weights registry, access, ...): each gets the workspace.
DEMO_STEPS: list[Callable[[Workspace], None]] = []


def prepare_home(home: Path) -> None:
    """Start the demo directory afresh; refuse a directory that is not a demo workspace."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).is_file():
            raise ConfigError(
                f"{home} exists and is not a gpaisec demo workspace; refusing to overwrite it",
                hint="give an empty or new directory with --workspace",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / MARKER).write_text("A gpaisec demo workspace. `gpaisec demo` may delete and rebuild it.\n")


def _doc(home: Path, name: str, text: str) -> Path:
    path = home / "sample-documents" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _weights(ws: Workspace, home: Path) -> None:
    """A model with an unreleased version on a managed GPU node, and a planted copy on a laptop."""
    files = home / "sample-hosts"
    ckpt = files / "gpu-node-17" / "srv" / "ckpt" / "atlas"
    shards = write_sample_model(ckpt / "v3", seed=3, shards=4)
    registry.add_model(ws, "atlas", training_flop=3.2e25, description="frontier model in training")
    registry.add_site(ws, "dc-frankfurt-1", description="primary training data centre")
    registry.add_device(
        ws,
        "gpu-node-17",
        site="dc-frankfurt-1",
        managed=True,
        disk_encrypted=True,
        edr=True,
        owner="ML infra",
    )
    registry.add_device(ws, "laptop-jdoe", managed=False, owner="J. Doe (contractor)")
    register_version(ws, "atlas", "v3", source=ckpt / "v3")
    registry.add_location(ws, f"gpu-node-17:{ckpt}", approve=["atlas:v3"])
    planted = files / "laptop-jdoe" / "home" / "jdoe" / "Downloads"
    planted.mkdir(parents=True)
    shutil.copyfile(shards[1], planted / "holiday-video.mp4")
    ws.actor = "demo:discovery-agent"
    discover(ws, [files / "gpu-node-17"], device="gpu-node-17")
    discover(ws, [files / "laptop-jdoe"], device="laptop-jdoe")
    ws.actor = "demo:setup"


def build(home: Path) -> Workspace:
    """Create the demo workspace at ``home`` (SQLite) and fill it."""
    prepare_home(home)
    ws = Workspace.open(home, f"sqlite:///{home / DB_FILE}", actor="demo:setup")
    year = utcnow() + dt.timedelta(days=365)

    framework = _doc(
        home,
        "safety-security-framework-v2.md",
        "# Safety and Security Framework v2\n\nApproved by the board risk committee.\n",
    )
    service.add_control(
        ws,
        "M1.1",
        title="Safety and Security Framework v2, board-approved",
        owner="Chief Risk Officer",
        description="Framework with risk tiers and trigger points.",
    )
    service.attest(
        ws,
        "M1.1",
        claim=Verdict.met,
        attested_by="Dr. Lena Vogt",
        role="Chief Risk Officer",
        statement="Framework v2 was confirmed by the board on 2026-03-02 and covers every element of the "
        "measure; see the attached document.",
        valid_until=year,
        documents=[framework],
    )
    service.attest(
        ws,
        "M8.1",
        claim=Verdict.partly_met,
        attested_by="Dr. Lena Vogt",
        role="Chief Risk Officer",
        statement="Board committee, executive owners and the CRO role are assigned; internal audit's "
        "charter does not yet cover systemic risk.",
        valid_until=year,
    )
    service.attest(
        ws,
        "A4.2(6)",
        claim=Verdict.met,
        attested_by="Marco Ruiz",
        role="Head of Physical Security",
        statement="Data-centre access is badge-controlled and limited to 14 named staff; quarterly "
        "inspections, last on 2026-10-12.",
        valid_until=year,
    )
    service.attest(
        ws,
        "A4.2(5)",
        claim=Verdict.not_met,
        attested_by="Priya Raman",
        role="CISO",
        statement="No attested TEE is used for inference yet; confidential-computing pilot planned "
        "for Q2 2027.",
        valid_until=year,
    )
    service.attest(
        ws,
        "A4.1(2)",
        claim=Verdict.met,
        attested_by="Priya Raman",
        role="CISO",
        statement="Mail gateway sandboxes attachments and rewrites links for every mailbox; phishing "
        "simulation monthly.",
        valid_until=year,
    )
    service.attest(
        ws,
        "M10.2",
        claim=Verdict.not_applicable,
        attested_by="Dr. Lena Vogt",
        role="Chief Risk Officer",
        statement="No model has been placed on the market yet, so there are no reports to publish.",
        valid_until=year,
    )
    _weights(ws, home)
    for step in DEMO_STEPS:
        step(ws)
    ws.actor = "demo:assessor"
    return ws


# -- signing in to the demo's dashboard ----------------------------------------------------------

SIGN_IN_FILE = "demo-sign-in.json"
DEMO_ADMIN = "demo-admin"
DEMO_DEVICE = "demo-laptop"
DEMO_BROWSER = "demo-browser"


def add_demo_admin(ws: Workspace, home: Path) -> Path:
    """An admin (also approver and reviewer) to sign in to the demo's dashboard with.

    The password and TOTP seed are generated here and written, with mode 0600, only to
    ``home/demo-sign-in.json``; they never appear on a command line or in a log. The demo laptop gets
    a device key pair (private key in ``home/keys/devices/demo-laptop.key``, mode 0600), so that
    ``gpaisec login`` works in the demo; the device ``demo-browser`` is registered without a key, for
    the browser's own key (made on the dashboard's /device page) to be enrolled.
    """
    import json
    import secrets

    from gpaisec._files import write_atomically
    from gpaisec.access import accounts, device_keys, mfa

    password = secrets.token_urlsafe(24)
    accounts.add_person(
        ws,
        "Demo Admin",
        organisation="Example AI",
        background_check_valid_until=utcnow() + dt.timedelta(days=365),
        insider_training_valid_until=utcnow() + dt.timedelta(days=365),
    )
    accounts.add_user(ws, DEMO_ADMIN, person="Demo Admin", password=password, roles=("admin", "reviewer"))
    uri = mfa.enrol_totp(ws, DEMO_ADMIN)
    secret = uri.split("secret=", 1)[1].split("&", 1)[0]
    recovery = mfa.confirm_totp(ws, DEMO_ADMIN, mfa.totp_code(secret, utcnow() - dt.timedelta(seconds=30)))
    registry.add_device(ws, DEMO_DEVICE, managed=True, disk_encrypted=True, owner="Demo Admin")
    registry.add_device(ws, DEMO_BROWSER, managed=True, disk_encrypted=True, owner="Demo Admin")
    device_key = device_keys.default_key_path(ws.keys_dir, DEMO_DEVICE)
    signer = device_keys.generate_signer()
    signer.save(device_key)
    accounts.enrol_device_key(ws, DEMO_DEVICE, signer.public.pem)
    path = home / SIGN_IN_FILE
    write_atomically(
        path,
        json.dumps(
            {
                "username": DEMO_ADMIN,
                "password": password,
                "device": DEMO_DEVICE,
                "device_key": str(device_key),
                "browser_device": DEMO_BROWSER,
                "totp_uri": uri,
                "recovery_codes": recovery,
                "note": "demo only; `gpaisec demo --code` prints the current one-time code",
            },
            indent=2,
        ).encode(),
        what="the demo's sign-in file",
        mode=0o600,
    )
    return path


def demo_code(home: Path) -> str:
    """The current one-time code of the demo's admin (read from the demo's own sign-in file)."""
    import json

    from gpaisec.access import mfa

    if not (home / MARKER).is_file():
        raise ConfigError(f"{home} is not a gpaisec demo workspace", hint="run `gpaisec demo --serve` first")
    try:
        data = json.loads((home / SIGN_IN_FILE).read_text())
        secret = str(data["totp_uri"]).split("secret=", 1)[1].split("&", 1)[0]
    except (OSError, ValueError, KeyError, IndexError):
        raise ConfigError(
            f"{home / SIGN_IN_FILE} is missing or unreadable",
            hint="rebuild the demo with `gpaisec demo --serve`",
        ) from None
    return mfa.totp_code(secret, utcnow())
