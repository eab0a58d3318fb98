"""Access decisions over HTTP: POST /api/v1/access/decide with a bearer token, end to end.

    .venv/bin/python bench/authz_http.py [--requests 5000] [--seconds 30] [--concurrency 8]
                                         [--warmup 200] [--database-url URL] [--format json]

Sets up a fresh workspace (SQLite by default, or ``--database-url``): a model version, a service
account ``pep`` owned by alice with a live ``weights:read`` token, and an active two-person grant
for it (alice requests, bob and carol approve with fresh MFA). Starts ``gpaisec serve`` on a free
127.0.0.1 port in a subprocess (one uvicorn process, plain HTTP on loopback), then sends
``--requests`` decisions (or stops after ``--seconds``) from ``--concurrency`` threads, each with
its own keep-alive httpx client (``--tool wrk``: the same requests from wrk, a C load generator,
Debian package ``wrk``). Every decision is the full path: token check, store reads, Cedar, and its
audit event committed (one signed checkpoint per batch of decisions: on SQLite the batch of all
decisions the event loop handled since its last turn, committed on the loop; on PostgreSQL by the
group-commit writer thread) before the answer is sent. ``--workers 2`` runs two server processes,
whose SQLite writers queue on the write gate (docs/api.md, "Testing and speed").

Reports decisions/s and p50/p90/p99/max latency (client side), and how many answers were allow.
``--baseline`` also times GET /api/v1/me with the same token: what the HTTP layer and the token
check cost without a decision.
Target: >= 1,000 decisions/s with p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from gpaisec.access import accounts, device_keys, grants, mfa
from gpaisec.access.passwords import HashParams
from gpaisec.store.base import utcnow
from gpaisec.weights import registry
from gpaisec.workspace import Workspace

PASSWORD = "correct staple orbit lantern"
FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
TARGET_RPS = 1000.0
TARGET_P99_MS = 20.0


def setup(home: Path, database_url: str | None) -> str:
    """The world; returns the service account's bearer token."""
    accounts.HASH_PARAMS = HashParams.unsafe_fast()  # sign-in speed is not what is measured
    ws = Workspace.open(home, database_url, actor="bench")
    try:
        registry.add_model(ws, "atlas")
        with ws.transaction() as s:
            registry.create_version(s, ws, "atlas", "v3")
        sessions: dict[str, str] = {}
        for name, roles in (("alice", ("weights_user",)), ("bob", ("approver",)), ("carol", ("approver",))):
            accounts.add_person(
                ws, f"Person {name}", background_check_valid_until=FAR, insider_training_valid_until=FAR
            )
            accounts.add_user(ws, name, person=f"Person {name}", password=PASSWORD, roles=roles)
            uri = mfa.enrol_totp(ws, name)
            secret = uri.split("secret=")[1].split("&")[0]
            mfa.confirm_totp(ws, name, mfa.totp_code(secret, utcnow() - dt.timedelta(seconds=30)))
            registry.add_device(ws, f"laptop-{name}", managed=True, disk_encrypted=True)
            key = device_keys.generate_signer()  # the laptop's key; the private half stays in memory
            accounts.enrol_device_key(ws, f"laptop-{name}", key.public.pem)
            code = mfa.totp_code(secret, utcnow())
            challenge = accounts.device_challenge(ws)
            proof = key.prove(challenge.id, challenge.challenge, name)
            sessions[name] = accounts.authenticate(
                ws, name, PASSWORD, code, f"laptop-{name}", device_proof=proof
            ).token
        accounts.add_service_account(ws, "pep", owner="Person alice")
        registry.add_device(ws, "gateway-1", managed=True, disk_encrypted=True)
        _, token = accounts.issue_token(ws, "pep", scopes=["weights:read"])
        g = grants.request_grant(
            ws,
            "alice",
            "atlas:v3",
            "read",
            duration=dt.timedelta(days=2),
            reason="serve evaluations",
            service_account="pep",
        )
        grants.approve_grant(ws, g.id, session_token=sessions["bob"])
        grants.approve_grant(ws, g.id, session_token=sessions["carol"])
        return token
    finally:
        ws.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    home: Path, port: int, database_url: str | None, workers: int = 1
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if database_url:
        env["GPAISEC_DATABASE_URL"] = database_url
    cmd = [sys.executable, "-m", "gpaisec", "--workspace", str(home), "serve", "--port", str(port), "--dev"]
    cmd += ["--no-access-log", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}); run gpaisec serve by hand to see why")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the server did not start within 30 s")


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q / 100 * len(sorted_ms)) - 1))
    return sorted_ms[k]


def load(
    url: str, token: str, *, requests: int, seconds: float, concurrency: int, decide: bool = True
) -> dict[str, Any]:
    body = {"principal": "pep", "action": "read", "resource": "atlas:v3", "device": "gateway-1"}
    headers = {"Authorization": f"Bearer {token}"}
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    allowed = 0
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal issued, allowed
        local: list[float] = []
        local_status: dict[int, int] = {}
        local_allowed = 0
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    if issued >= requests or time.perf_counter() > stop_at:
                        break
                    issued += 1
                t0 = time.perf_counter()
                if decide:
                    r = client.post(url, json=body, headers=headers)
                else:
                    r = client.get(url, headers=headers)
                local.append((time.perf_counter() - t0) * 1000)
                local_status[r.status_code] = local_status.get(r.status_code, 0) + 1
                if decide and r.status_code == 200 and r.json().get("allowed"):
                    local_allowed += 1
        with lock:
            latencies.extend(local)
            allowed += local_allowed
            for k, v in local_status.items():
                statuses[k] = statuses.get(k, 0) + v

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    elapsed = time.perf_counter() - started
    ms = sorted(latencies)
    return {
        "decisions": len(ms),
        "seconds": round(elapsed, 3),
        "decisions_per_second": round(len(ms) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p90": round(percentile(ms, 90), 2),
            "p99": round(percentile(ms, 99), 2),
            "max": round(ms[-1], 2) if ms else None,
            "mean": round(statistics.fmean(ms), 2) if ms else None,
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "allowed": allowed,
    }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk's time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_wrk(
    url: str, token: str, *, seconds: float, concurrency: int, workdir: Path, decide: bool = True
) -> dict[str, Any]:
    """The same decisions from wrk (a C load generator): no client-side GIL in the figures."""
    body = json.dumps({"principal": "pep", "action": "read", "resource": "atlas:v3", "device": "gateway-1"})
    script = workdir / "decide.lua"
    request = f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n' if decide else 'wrk.method = "GET"\n'
    script.write_text(
        request + 'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("STATUS non2xx=%d errors=%d\\n", summary.errors.status,'
        " summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    )
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, int(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    lat = {q: _ms(v) for q, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.M)}
    total = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"STATUS non2xx=(\d+) errors=(\d+)", out)
    return {
        "decisions": total,
        "seconds": seconds,
        "decisions_per_second": rps,
        "latency_ms": {"p50": lat.get("50"), "p90": lat.get("90"), "p99": lat.get("99")},
        "statuses": {"non_2xx": int(bad.group(1)), "socket_errors": int(bad.group(2))} if bad else {},
        "tool": "wrk",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--database-url", default=None)
    p.add_argument("--workers", type=int, default=1, help="server processes (gpaisec serve --workers)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--tool",
        choices=("httpx", "wrk"),
        default="httpx",
        help="httpx threads (bounded by --requests and --seconds) or wrk (bounded by --seconds).",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="Also time GET /api/v1/me with the same token: the HTTP and token-check layer alone.",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpaisec-bench-") as tmp:
        home = Path(tmp) / "ws"
        token = setup(home, args.database_url)
        port = free_port()
        proc = start_server(home, port, args.database_url, args.workers)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/access/decide"
            load(url, token, requests=args.warmup, seconds=args.seconds, concurrency=args.concurrency)
            if args.tool == "wrk":
                result = load_wrk(
                    url, token, seconds=args.seconds, concurrency=args.concurrency, workdir=Path(tmp)
                )
            else:
                result = load(
                    url, token, requests=args.requests, seconds=args.seconds, concurrency=args.concurrency
                )
            if args.baseline:
                me = f"http://127.0.0.1:{port}/api/v1/me"
                if args.tool == "wrk":
                    base = load_wrk(
                        me,
                        token,
                        seconds=args.seconds,
                        concurrency=args.concurrency,
                        workdir=Path(tmp),
                        decide=False,
                    )
                else:
                    base = load(
                        me,
                        token,
                        requests=args.requests,
                        seconds=args.seconds,
                        concurrency=args.concurrency,
                        decide=False,
                    )
                result["baseline_get_me"] = {
                    k: base[k] for k in ("decisions", "decisions_per_second", "latency_ms", "statuses")
                }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    result |= {
        "backend": "postgresql" if args.database_url else "sqlite",
        "concurrency": args.concurrency,
        "server_workers": args.workers,
        "tool": args.tool,
        "cpus": os.cpu_count(),
        "target": {"decisions_per_second": TARGET_RPS, "p99_ms": TARGET_P99_MS},
        "meets_target": result["decisions_per_second"] >= TARGET_RPS
        and (result["latency_ms"]["p99"] or float("inf")) < TARGET_P99_MS,
    }
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        lat = result["latency_ms"]
        print(
            f"{result['decisions']} decisions in {result['seconds']} s: "
            f"{result['decisions_per_second']} decisions/s; latency ms p50 {lat['p50']} p90 {lat['p90']} "
            f"p99 {lat['p99']} max {lat.get('max')}; statuses {result['statuses']}; "
            f"allowed {result.get('allowed', '?')}; "
            f"{'meets' if result['meets_target'] else 'misses'} the target "
            f"(>= {TARGET_RPS:.0f}/s, p99 < {TARGET_P99_MS:.0f} ms) on {result['cpus']} CPUs"
        )
        if "baseline_get_me" in result:
            b = result["baseline_get_me"]
            print(
                f"baseline GET /api/v1/me: {b['decisions_per_second']} requests/s; "
                f"latency ms p50 {b['latency_ms']['p50']} p99 {b['latency_ms']['p99']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
