"""Seal/unseal throughput against age and openssl, on the same file, output to /dev/null.

    .venv/bin/python bench/seal.py [--size-mib 3072] [--runs 3] [--format json]

Every tool reads the same plaintext (or its own ciphertext of it) from the page cache and writes
to /dev/null; each figure is the median of ``--runs`` runs, in GB/s (10^9 bytes per second of
plaintext). The runs are interleaved (gpaisec, age, openssl, then again) so that every tool sees the
same load on a shared machine, and the CPU time each used (this process's, or the child's) is
reported as CPU seconds per GB: unlike throughput, it hardly depends on how busy the machine is.
The files are written back (``sync``) before the timed runs, so that the kernel's writeback of
gigabytes of dirty pages does not compete with them.
``age`` uses an X25519 identity from ``age-keygen`` (``age -p`` needs a terminal).

Before each timed run the script waits (``--wait-idle``, default up to 10 s) for the CPUs to be 90%
idle, and reports how idle they were. Targets (issue 5): at least 2 GB/s both ways, and at least
1.5x ``age`` both ways. The report says which are met, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gpaisec.crypto import seal_file, seal_to, secret_from_env, unseal_to
from gpaisec.crypto.local import Argon2Params, LocalKeyProvider

TARGET_GBPS = 2.0
TARGET_VS_AGE = 1.5


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children) of one call."""
    c, t = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t, _cpu() - c


def _cpu_idle(seconds: float = 0.5) -> float:
    """Fraction of all CPUs idle over the next ``seconds`` (from /proc/stat; 1.0 where unavailable)."""

    def sample() -> tuple[int, int]:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return (i1 - i0) / (t1 - t0) if t1 > t0 else 1.0


def _wait_idle(limit: float, threshold: float = 0.9) -> float:
    """Wait up to ``limit`` seconds for the CPUs to be ``threshold`` idle; return the idle fraction seen."""
    deadline = time.monotonic() + limit
    idle = _cpu_idle()
    while idle < threshold and time.monotonic() < deadline:
        idle = _cpu_idle()
    return idle


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=3072)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--format", choices=["text", "json"], default="text")
    ap.add_argument("--workdir", default=None, help="where to put the test files (default: a temp dir)")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="before each timed run, wait up to this long for the CPUs to be 90%% idle (default 10)",
    )
    args = ap.parse_args(argv)
    size = args.size_mib << 20
    load_before = os.getloadavg()
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="gpaisec-bench-", dir=args.workdir) as d:
        w = Path(d)
        src = w / "weights.bin"
        with src.open("wb") as fh:
            block = os.urandom(64 << 20)
            left = size
            while left:
                fh.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        os.environ.setdefault("GPAISEC_BENCH_PASSPHRASE", "bench")
        provider = LocalKeyProvider(
            w / "keys", secret_from_env("GPAISEC_BENCH_PASSPHRASE"), params=Argon2Params(1, 1024, 1)
        )
        provider.create("bench")
        sealed = w / "weights.sealed"
        seal_file(src, sealed, provider, "bench", workers=args.workers)
        null = os.open(os.devnull, os.O_WRONLY)
        tools: dict[str, dict[str, Callable[[], object]]] = {
            "gpaisec": {
                "seal": lambda: seal_to(src, null, provider, "bench", workers=args.workers),
                "unseal": lambda: unseal_to(sealed, null, provider, workers=args.workers),
            }
        }
        if shutil.which("age") and shutil.which("age-keygen"):
            ident = w / "age.key"
            _run(["age-keygen", "-o", str(ident)])
            recipient = subprocess.run(  # noqa: S603
                ["age-keygen", "-y", str(ident)],  # noqa: S607
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            aged = w / "weights.age"
            _run(["age", "-r", recipient, "-o", str(aged), str(src)])
            tools["age"] = {
                "seal": lambda: _run(["age", "-r", recipient, "-o", "/dev/null", str(src)]),
                "unseal": lambda: _run(["age", "-d", "-i", str(ident), "-o", "/dev/null", str(aged)]),
            }
        if shutil.which("openssl"):
            key, iv = os.urandom(32).hex(), os.urandom(16).hex()
            ctr = w / "weights.ctr"
            base = ["openssl", "enc", "-aes-256-ctr", "-K", key, "-iv", iv]
            _run([*base, "-in", str(src), "-out", str(ctr)])
            tools["openssl-aes-256-ctr"] = {
                "seal": lambda: _run([*base, "-in", str(src), "-out", "/dev/null"]),
                "unseal": lambda: _run([*base, "-d", "-in", str(ctr), "-out", "/dev/null"]),
            }
        os.sync()  # write back the files made above now, not during the timed runs
        idle_seen: list[float] = []
        for _ in range(args.runs):
            for tool, ops in tools.items():
                for op, fn in ops.items():
                    idle_seen.append(_wait_idle(args.wait_idle))
                    samples.setdefault(tool, {}).setdefault(op, []).append(_measure(fn))
        os.close(null)
    load_after = os.getloadavg()
    gbps = {
        t: {op: round(size / statistics.median(s[0] for s in v) / 1e9, 3) for op, v in r.items()}
        for t, r in samples.items()
    }
    cpu_s_per_gb = {
        t: {op: round(statistics.median(s[1] for s in v) / (size / 1e9), 3) for op, v in r.items()}
        for t, r in samples.items()
    }
    ours = gbps["gpaisec"]
    ratios = {
        f"gpaisec/{t}": {op: round(ours[op] / g[op], 2) for op in g}
        for t, g in gbps.items()
        if t != "gpaisec"
    }
    met = {f"{op} >= {TARGET_GBPS} GB/s": ours[op] >= TARGET_GBPS for op in ("seal", "unseal")}
    if "gpaisec/age" in ratios:
        met |= {f"{op} >= {TARGET_VS_AGE}x age": ratios["gpaisec/age"][op] >= TARGET_VS_AGE for op in ours}
    report = {
        "bytes": size,
        "runs": args.runs,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu_idle_before_runs": {
            "min": round(min(idle_seen), 2),
            "median": round(statistics.median(idle_seen), 2),
        },
        "gbps": gbps,
        "cpu_seconds_per_gb": cpu_s_per_gb,
        "ratios": ratios,
        "targets_met": met,
    }
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        out = sys.stdout.write
        out(
            f"{size / 2**30:.2f} GiB, median of {args.runs} interleaved runs, {report['cpus']} CPUs, "
            f"output /dev/null, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n"
            f"  CPUs idle just before each timed run: median {statistics.median(idle_seen):.0%}, "
            f"min {min(idle_seen):.0%} (waited up to {args.wait_idle:g} s for 90%)\n"
        )
        for t, g in gbps.items():
            c = cpu_s_per_gb[t]
            out(
                f"  {t:28s} seal {g['seal']:5.2f} GB/s ({c['seal']:.2f} CPU s/GB)"
                f"   unseal {g['unseal']:5.2f} GB/s ({c['unseal']:.2f} CPU s/GB)\n"
            )
        for t, r in ratios.items():
            out(f"  {t:28s} seal {r['seal']:5.2f}x   unseal {r['unseal']:5.2f}x\n")
        for target, ok in met.items():
            out(f"  target {target:21s} {'met' if ok else 'NOT met'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
