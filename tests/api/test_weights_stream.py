"""Weights streamed over the API (A4.3(3)): allowed, denied, cut at the limits, names, and the check.

Streams go over loopback to a real uvicorn server in a thread, so a cut is seen as a client sees it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from gpaisec.api import create_app
from gpaisec.api.checks import serving_limits
from gpaisec.api.ratelimit_stream import LimitExceeded, Limits, StreamLimiter
from gpaisec.audit.models import AuditEntry
from gpaisec.audit.service import record
from gpaisec.compliance.checks import CheckContext, checks_for, load_area_checks
from gpaisec.compliance.verdicts import Verdict
from gpaisec.crypto import local as local_mod
from gpaisec.crypto import seal_file
from gpaisec.crypto.config import register_kek
from gpaisec.crypto.serving import (
    SERVING_FILE,
    check_file_name,
    configure_serving,
    served_version,
)
from gpaisec.errors import ConfigError, InputError
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.api.conftest import World, browser, make_world, sign_in, test_settings
from tests.live_server import live_server

PASSPHRASE = "a long test passphrase for the key file"
PLAINTEXT = os.urandom(300_000)
FAST = local_mod.Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
URL = "/api/v1/weights/atlas/v3/files/model.safetensors"
REQUEST = {"scope": "atlas:v3", "action": "read", "duration_seconds": 7200, "reason": "evaluate the v3 run"}


# -- the limiter, alone ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_paces_a_stream_to_the_rate() -> None:
    clock = Clock()
    lim = StreamLimiter(clock=clock, max_wait=10)
    limits = Limits(bytes_per_second=1000, max_bytes_per_grant=10**9)
    assert lim.request("alice", "gr1", 1000, limits).wait == 0  # the burst: one second's worth
    assert lim.request("alice", "gr1", 500, limits).wait == pytest.approx(0.5)
    clock.now = 10.0  # refilled, but never beyond one second's worth
    assert lim.request("alice", "gr1", 1000, limits).wait == 0
    assert lim.request("alice", "gr1", 1000, limits).wait == pytest.approx(1.0)


def test_pulling_faster_than_the_rate_is_refused_per_principal_across_grants() -> None:
    clock = Clock()
    lim = StreamLimiter(clock=clock, max_wait=1.0)
    limits = Limits(bytes_per_second=1000, max_bytes_per_grant=10**9)
    lim.request("alice", "gr1", 1000, limits)
    lim.request("alice", "gr2", 1000, limits)  # another grant, the same principal: waits 1 s
    with pytest.raises(LimitExceeded) as exc:
        lim.request("alice", "gr3", 1000, limits)
    assert exc.value.kind == "rate"
    assert exc.value.key == "principal:alice"
    # Someone else is not held back by alice.
    assert lim.request("bob", "gr4", 1000, limits).wait == 0
    # A refused request took nothing: after the debt is paid alice may go on.
    clock.now = 2.0
    assert lim.request("alice", "gr3", 1000, limits).wait == 0


def test_the_total_per_grant_trims_then_refuses_and_survives_a_restart() -> None:
    lim = StreamLimiter(clock=Clock(), max_wait=100)
    limits = Limits(bytes_per_second=10**9, max_bytes_per_grant=2500)
    assert lim.request("alice", "gr1", 2000, limits).granted == 2000
    assert lim.request("alice", "gr1", 2000, limits).granted == 500
    with pytest.raises(LimitExceeded) as exc:
        lim.request("alice", "gr1", 1, limits)
    assert (exc.value.kind, exc.value.key) == ("total", "grant:gr1")
    assert lim.served("gr1") == 2500
    # A new server learns the total from the audit log; remembering never lowers it.
    fresh = StreamLimiter(clock=Clock())
    assert fresh.served("gr1") is None
    fresh.remember("gr1", 2400)
    fresh.remember("gr1", 10)
    assert fresh.request("alice", "gr1", 1000, limits).granted == 100


def test_limits_must_be_positive_whole_numbers() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive"):
            Limits(bytes_per_second=bad, max_bytes_per_grant=1)  # type: ignore[arg-type]


# -- a served version over loopback ------------------------------------------------------------------


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A KEK in a local key file, one sealed file of atlas:v3 in a sealed directory (no config yet)."""
    monkeypatch.setenv("GPAISEC_KEK_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(local_mod, "Argon2Params", lambda: FAST)
    provider = register_kek(workspace, "weights-kek", {"provider": "local"})
    plain = tmp_path / "plain" / "model.safetensors"
    plain.parent.mkdir()
    plain.write_bytes(PLAINTEXT)
    sealed_dir = tmp_path / "sealed"
    sealed_dir.mkdir()
    seal_file(plain, sealed_dir / "model.safetensors.sealed", provider, "weights-kek", chunk_size=32 << 10)
    plain.unlink()
    return sealed_dir


def configure(ws: Workspace, sealed_dir: Path, *, rate: int = 10**9, total: int = 10**9) -> None:
    configure_serving(
        ws,
        "atlas:v3",
        sealed_dir=sealed_dir,
        key="weights-kek",
        bytes_per_second=rate,
        max_bytes_per_grant=total,
    )


@pytest.fixture
def world(workspace: Workspace) -> World:
    return make_world(workspace)


def grant_alice(app: FastAPI, world: World) -> str:
    """Alice asks, bob and carol approve; returns alice's session cookie."""
    alice, bob, carol = browser(app), browser(app), browser(app)
    a, b, c = sign_in(alice, world, "alice"), sign_in(bob, world, "bob"), sign_in(carol, world, "carol")
    r = alice.post("/api/v1/access/requests", json=REQUEST, headers={"X-CSRF-Token": a})
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    for who, token in ((bob, b), (carol, c)):
        r = who.post(f"/api/v1/access/requests/{gid}/approve", json={}, headers={"X-CSRF-Token": token})
        assert r.status_code == 200, r.text
    cookie = str(alice.cookies.get("gpaisec-session") or "")
    assert cookie
    return cookie


def fetch(base: str, cookie: str) -> tuple[int, bytes, bool]:
    """GET the file: status, the bytes received, and whether the body arrived whole."""
    got = bytearray()
    with (
        httpx.Client(base_url=base, cookies={"gpaisec-session": cookie}, timeout=30) as c,
        c.stream("GET", URL) as r,
    ):
        try:
            for piece in r.iter_raw():
                got += piece
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return r.status_code, bytes(got), False
        whole = r.status_code != 200 or len(got) == int(r.headers["content-length"])
        return r.status_code, bytes(got), whole


def events(ws: Workspace, *actions: str) -> list[dict[str, object]]:
    with ws.reader() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action.in_(actions)).order_by(AuditEntry.seq))
        return [{"action": e.action, **json.loads(bytes(e.entry))["details"]} for e in rows]


def test_an_allowed_user_streams_exactly_the_plaintext(
    app: FastAPI, world: World, workspace: Workspace, served: Path
) -> None:
    configure(workspace, served)
    cookie = grant_alice(app, world)
    with live_server(app, log_level="critical") as base:
        status, body, whole = fetch(base, cookie)
    assert status == 200
    assert whole
    assert body == PLAINTEXT
    start, end = events(workspace, "weights.serve.start", "weights.serve.end")
    assert start["principal"] == "alice"
    assert start["size"] == len(PLAINTEXT)
    assert start["policies"]
    assert start["grant"] == end["grant"]
    assert end["bytes"] == len(PLAINTEXT)
    assert end["complete"] is True
    # Nothing was written in plaintext next to the sealed file.
    assert sorted(p.name for p in served.iterdir()) == ["model.safetensors.sealed"]


def test_a_denied_user_gets_403_and_no_bytes(
    app: FastAPI, world: World, workspace: Workspace, served: Path
) -> None:
    configure(workspace, served)
    erin = browser(app)
    sign_in(erin, world, "erin")  # an admin, but with no grant to read atlas:v3
    r = erin.get(URL)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert "determining_policies" in problem
    assert problem["reasons"]
    assert PLAINTEXT[:64] not in r.content
    assert events(workspace, "weights.serve.start") == []
    # Nobody signed in: 401.
    assert browser(app).get(URL).status_code == 401


def test_the_total_per_grant_cuts_the_stream_opens_a_finding_and_is_audited(
    app: FastAPI, world: World, workspace: Workspace, served: Path
) -> None:
    configure(workspace, served, total=100_000)
    cookie = grant_alice(app, world)
    with live_server(app, log_level="critical") as base:
        status, body, whole = fetch(base, cookie)
        assert status == 200
        assert not whole
        assert body == PLAINTEXT[:100_000]
        # The grant's total is spent: the next stream is cut before its first byte.
        status, body, whole = fetch(base, cookie)
        assert (status, body, whole) == (200, b"", False)
    cuts = events(workspace, "weights.serve.cut")
    assert [c["bytes"] for c in cuts] == [100_000, 0]
    assert {c["limit"] for c in cuts} == {"total"}
    (finding,) = registry.list_findings(workspace, kind="rate_limit_exceeded")
    assert finding.severity == "high"
    assert finding.state == "open"
    alerts = (workspace.home / "alerts.jsonl").read_text().splitlines()
    assert any(json.loads(a)["kind"] == "rate_limit_exceeded" for a in alerts)
    assert [e["action"] for e in events(workspace, "finding.open")] == ["finding.open"]


def test_a_stream_pulling_faster_than_the_rate_is_cut(
    app: FastAPI, world: World, workspace: Workspace, served: Path
) -> None:
    configure(workspace, served, rate=100_000)
    # The clock stands still and no wait is allowed: the first piece is the burst, the second waits.
    app.state.weights_limiter = StreamLimiter(clock=lambda: 0.0, max_wait=0.0)
    cookie = grant_alice(app, world)
    with live_server(app, log_level="critical") as base:
        status, body, whole = fetch(base, cookie)
    assert status == 200
    assert not whole
    assert 0 < len(body) <= 100_000
    assert body == PLAINTEXT[: len(body)]
    (cut,) = events(workspace, "weights.serve.cut")
    assert cut["limit"] == "rate"
    assert cut["key"] == "principal:alice"
    assert registry.list_findings(workspace, kind="rate_limit_exceeded")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("%2E%2E%2Fkeys%2Fkek.json", 404),  # a '/' in the name matches no route
        ("sub%2Fmodel.safetensors", 404),
        ("%2E%2E", 400),
        ("a..b", 400),
        (".hidden", 400),
        ("a%5Cb", 400),
        ("a%00b", 400),
    ],
)
def test_names_that_could_escape_the_sealed_dir_are_refused(
    app: FastAPI, world: World, workspace: Workspace, served: Path, name: str, status: int
) -> None:
    configure(workspace, served)
    alice = browser(app)
    sign_in(alice, world, "alice")
    r = alice.get(f"/api/v1/weights/atlas/v3/files/{name}")
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert events(workspace, "weights.serve.start", "access.decide") == []


def test_file_names_are_checked() -> None:
    assert check_file_name("model-00001-of-00002.safetensors") == "model-00001-of-00002.safetensors"
    for bad in ("", "../x", "a/b", "..", ".kek", "a\\b", "a\x00b", "x" * 256):
        with pytest.raises(InputError):
            check_file_name(bad)


# -- the serving configuration and the A4.3(3) check ----------------------------------------------------


def test_the_configuration_is_private_audited_and_refuses_missing_limits(
    app: FastAPI, world: World, workspace: Workspace, served: Path
) -> None:
    with pytest.raises(InputError, match="positive"):
        configure_serving(
            workspace,
            "atlas:v3",
            sealed_dir=served,
            key="weights-kek",
            bytes_per_second=0,
            max_bytes_per_grant=1,
        )
    configure(workspace, served, rate=1000, total=5000)
    path = workspace.home / SERVING_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    v = served_version(workspace, "atlas:v3")
    assert (v.bytes_per_second, v.max_bytes_per_grant, v.sealed_dir) == (1000, 5000, served.absolute())
    (ev,) = events(workspace, "serving.configure")
    assert (ev["bytes_per_second"], ev["max_bytes_per_grant"]) == (1000, 5000)
    # A hand-edited entry without a limit is refused when serving: 503, no bytes.
    data = json.loads(path.read_text())
    del data["atlas:v3"]["max_bytes_per_grant"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="max_bytes_per_grant"):
        served_version(workspace, "atlas:v3")
    cookie_client = browser(app)
    cookie_client.cookies.set("gpaisec-session", grant_alice(app, world))
    r = cookie_client.get(URL)
    assert r.status_code == 503
    assert events(workspace, "weights.serve.start") == []


def verdict(ws: Workspace) -> tuple[Verdict, tuple[str, ...]]:
    with ws.reader() as s:
        res = serving_limits(CheckContext(session=s, now=utcnow()), "A4.3(3)")
    return res.verdict, res.reasons


def test_the_a4_3_3_check(workspace: Workspace, served: Path) -> None:
    assert "gpaisec.api.checks" in load_area_checks()
    assert "crypto.serving_limits" in [c.name for c in checks_for("A4.3(3)")]
    v, _ = verdict(workspace)
    assert v is Verdict.no_evidence
    configure(workspace, served, rate=1000, total=5000)
    v, reasons = verdict(workspace)
    assert v is Verdict.met, reasons
    # An interface recorded without a limit (say, by an older writer) is named.
    with workspace.transaction() as s:
        record(
            s,
            actor="test",
            action="serving.configure",
            object="version:atlas:v4",
            details={
                "ref": "atlas:v4",
                "sealed_dir": "/srv/x",
                "key": "weights-kek",
                "bytes_per_second": 1000,
            },
        )
    v, reasons = verdict(workspace)
    assert v is Verdict.not_met
    assert "atlas:v4" in reasons[0]
    assert "max_bytes_per_grant" in reasons[0]
    # Configuring it properly puts it right: the newest event per interface counts.
    with workspace.transaction() as s:
        record(
            s,
            actor="test",
            action="serving.configure",
            object="version:atlas:v4",
            details={"ref": "atlas:v4", "bytes_per_second": 1000, "max_bytes_per_grant": 10},
        )
    assert verdict(workspace)[0] is Verdict.met


def test_with_two_server_processes_each_serves_half_the_total(
    workspace: Workspace, world: World, served: Path
) -> None:
    # Settings for one of two worker processes: its share of the grant's total is half.
    app = create_app(workspace, dataclasses.replace(test_settings(), workers=2))
    configure(workspace, served, total=100_000)
    cookie = grant_alice(app, world)
    with live_server(app, log_level="critical") as base:
        status, body, whole = fetch(base, cookie)
    assert status == 200
    assert not whole
    assert body == PLAINTEXT[:50_000]
    (cut,) = events(workspace, "weights.serve.cut")
    assert cut["bytes"] == 50_000
    # A restarted process (a fresh limiter) gets its share of what is left: 25,000 of the last 50,000.
    again = create_app(workspace, dataclasses.replace(test_settings(), workers=2))
    with live_server(again, log_level="critical") as base:
        status, body, whole = fetch(base, cookie)
    assert status == 200
    assert body == PLAINTEXT[:25_000]


def test_workers_must_be_a_sane_count() -> None:
    for bad in (0, 65):
        with pytest.raises(ConfigError, match="workers"):
            dataclasses.replace(test_settings(), workers=bad)
