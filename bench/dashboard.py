"""Dashboard render time under load: the overview and registry pages of a big workspace, on loopback.

The workspace holds 10,000 sightings (100 scans of 100 files over 50 devices, 5 versions) and 100,000
audit events, and one assessment; an admin signs in through /login. The real ``gpaisec serve`` runs in
its own process; a load generator (httpx, asyncio, ``--concurrency`` clients) asks each page
``--requests`` times. Baseline, in the same run and through the same server: the stylesheet
(``/static/dashboard.css``), which costs the HTTP stack and the guard middleware but no page logic.

Reported: median and p95 latency per page, requests per second, and each page's p95 as a multiple of the
baseline's. Target (the dashboard issue): p95 under 200 ms for the overview and the registry.

Sightings and scans are inserted as rows (a discovery run over 10,000 files would only slow the set-up);
audit events go through ``record_many`` and the checkpoint seal, as every command's do.

    .venv/bin/python bench/dashboard.py [--requests 300] [--concurrency 4] [--format json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gpaisec.access import accounts, device_keys, mfa
from gpaisec.audit.service import AuditEvent, record_many
from gpaisec.compliance import assessment
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights import registry
from gpaisec.weights.models import Scan, Sighting
from gpaisec.workspace import DB_FILE, Workspace

TARGET_P95_MS = 200.0
PASSWORD = "bench dashboard correct staple orbit"
PAGES = ("/static/dashboard.css", "/", "/registry", "/audit", "/access")


def build(home: Path, *, sightings: int, events: int) -> str:
    """Fill a workspace; returns the admin's TOTP secret."""
    ws = Workspace.open(home, f"sqlite:///{home / DB_FILE}", actor="bench:setup")
    registry.add_model(ws, "atlas")
    versions = []
    with ws.transaction() as s:
        for i in range(5):
            versions.append(registry.create_version(s, ws, "atlas", f"v{i}").id)
    devices = []
    for d_no in range(50):
        node = registry.add_device(ws, f"gpu-node-{d_no:02d}", managed=d_no % 10 != 0, disk_encrypted=True)
        devices.append(node.id)
        registry.add_location(ws, f"gpu-node-{d_no:02d}:/srv/ckpt", approve=[f"atlas:v{d_no % 5}"])
    locations: dict[str, str] = {
        loc.device_id: loc.id for loc in registry.list_locations(ws) if loc.device_id
    }
    now = utcnow()
    per_scan = 100
    with ws.transaction() as s:
        for n in range(sightings // per_scan):
            d = n % len(devices)
            dev = devices[d]
            scan = Scan(
                id=new_id("scan"),
                device_id=dev,
                roots=["/srv/ckpt"],
                started_at=now - dt.timedelta(minutes=n + 1),
                finished_at=now - dt.timedelta(minutes=n),
                actor="bench:scan",
                files_seen=per_scan * 10,
                candidates=per_scan,
                matches=per_scan,
                confirmed=False,
                problems=[],
            )
            s.add(scan)
            for k in range(per_scan):
                s.add(
                    Sighting(
                        id=new_id("sig"),
                        scan_id=scan.id,
                        device_id=dev,
                        location_id=locations.get(dev),
                        path=f"/srv/ckpt/atlas/model-{k:05d}.safetensors",
                        size=1 << 30,
                        format="safetensors",
                        # The version approved there, but one file in a hundred is another version's.
                        version_id=versions[d % 5] if k else versions[(d + 1) % 5],
                        match="exact",
                        coverage=1.0,
                        confirmed=False,
                        seen_at=scan.finished_at,
                        seen_by="bench:scan",
                    )
                )
    with ws.transaction() as s:
        for i in range(50):
            registry.open_finding(
                s,
                ws,
                kind="unauthorised_copy",
                severity=("critical", "high", "medium", "low")[i % 4],
                summary=f"copy {i} of atlas on an unmanaged device",
                dedupe_key=f"bench-{i}",
            )
    batch = 5_000
    for start in range(0, events, batch):
        with ws.transaction() as s:
            record_many(
                s,
                (
                    AuditEvent(
                        actor=f"user:u{j % 97}",
                        action=("access.decide", "weights.read", "session.login", "scan.finish")[j % 4],
                        object=f"version:atlas:v{j % 5}",
                        details={"n": j},
                    )
                    for j in range(start, min(start + batch, events))
                ),
            )
    accounts.add_person(
        ws,
        "Bench Admin",
        background_check_valid_until=now + dt.timedelta(days=365),
        insider_training_valid_until=now + dt.timedelta(days=365),
    )
    accounts.add_user(ws, "admin", person="Bench Admin", password=PASSWORD, roles=("admin", "reviewer"))
    uri = mfa.enrol_totp(ws, "admin")
    secret = uri.split("secret=", 1)[1].split("&", 1)[0]
    mfa.confirm_totp(ws, "admin", mfa.totp_code(secret, utcnow() - dt.timedelta(seconds=30)))
    registry.add_device(ws, "admin-laptop", managed=True, disk_encrypted=True)
    key = device_keys.generate_signer()
    key.save(device_keys.default_key_path(ws.keys_dir, "admin-laptop"))
    accounts.enrol_device_key(ws, "admin-laptop", key.public.pem)
    assessment.assess(ws)
    return secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("gpaisec")
    proc = subprocess.Popen(
        [str(exe), "-w", str(home), "serve", "--port", str(port), "--dev", "--no-access-log"]
        + ["--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None:
                raise SystemExit(
                    f"the server did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
                ) from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer within 30 s")


def sign_in(base: str, secret: str, home: Path) -> httpx.Cookies:
    key = device_keys.load_signer(device_keys.default_key_path(home / "keys", "admin-laptop"))
    with httpx.Client(base_url=base) as c:
        page = c.get("/login").text
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "no CSRF field on /login"
        challenge = c.post("/api/v1/session/device-challenge").json()
        proof = key.prove(challenge["challenge_id"], base64.b64decode(challenge["challenge"]), "admin")
        r = c.post(
            "/login",
            data={
                "csrf_token": found.group(1),
                "username": "admin",
                "password": PASSWORD,
                "totp_code": mfa.totp_code(secret, utcnow()),
                "device": "admin-laptop",
                "device_fingerprint": proof.fingerprint,
                "device_challenge_id": proof.challenge_id,
                "device_signature": base64.b64encode(proof.signature).decode(),
            },
        )
        if r.status_code != 303:
            raise SystemExit(f"sign-in failed: {r.status_code} {r.text[:300]}")
        return c.cookies


async def load(
    base: str, cookies: httpx.Cookies, path: str, requests: int, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    queue = iter(range(requests))
    async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=30) as client:
        first = await client.get(path)  # warm-up, and a check that the page is really there
        if first.status_code != 200:
            raise SystemExit(f"{path} answered {first.status_code}")

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"{path} answered {r.status_code}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "path": path,
        "requests": requests,
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "per_second": requests / wall,
        "bytes": len(first.content),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sightings", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300, help="requests per page")
    ap.add_argument("--concurrency", type=int, default=4, help="concurrent clients")
    ap.add_argument("--workers", type=int, default=1, help="server processes (gpaisec serve --workers)")
    ap.add_argument("--workdir", type=Path, help="keep the workspace here")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="gpaisec-bench-dashboard-")
    home = (args.workdir or Path(tmp.name)) / "ws"
    t0 = time.perf_counter()
    secret = build(home, sightings=args.sightings, events=args.events)
    setup_s = time.perf_counter() - t0
    port = free_port()
    server = start_server(home, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        cookies = sign_in(base, secret, home)
        results = [asyncio.run(load(base, cookies, path, args.requests, args.concurrency)) for path in PAGES]
    finally:
        server.terminate()
        server.wait(timeout=10)
    baseline = results[0]
    for r in results:
        r["p95_vs_baseline"] = r["p95_ms"] / baseline["p95_ms"]
    verdicts = {r["path"]: r["p95_ms"] < TARGET_P95_MS for r in results if r["path"] in ("/", "/registry")}
    out = {
        "sightings": args.sightings,
        "audit_events": args.events,
        "setup_s": setup_s,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "results": results,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": verdicts,
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        print(f"workspace: {args.sightings} sightings, {args.events} audit events (built in {setup_s:.1f} s)")
        print(
            f"load: {args.requests} requests per page, {args.concurrency} concurrent clients, loopback, "
            f"{args.workers} server process(es)"
        )
        for r in results:
            name = "baseline " + r["path"] if r is baseline else r["path"]
            print(
                f"{name:>32}: median {r['median_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
                f"{r['per_second']:6.1f}/s  p95 = {r['p95_vs_baseline']:5.1f}x baseline  ({r['bytes']} bytes)"
            )
        for path, ok in verdicts.items():
            print(f"{path}: p95 under {TARGET_P95_MS:.0f} ms: {'met' if ok else 'NOT met'}")
        print(f"machine: {out['machine']}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
