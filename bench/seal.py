"""Seal/unseal throughput against age and openssl, on the same file, output to /dev/null.

    .venv/bin/python bench/seal.py [--size-mib 3072] [--runs 3] [--format json]

Every tool reads the same plaintext (or its own ciphertext of it) from the page cache and writes
to /dev/null; each figure is the median of ``--runs`` runs, in GB/s (10^9 bytes per second of
plaintext). ``age`` uses an X25519 identity from ``age-keygen`` (``age -p`` needs a terminal).
"""

from __future__ import annotations

import argparse
import json
import os
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


def _time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=3072)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--format", choices=["text", "json"], default="text")
    ap.add_argument("--workdir", default=None, help="where to put the test files (default: a temp dir)")
    args = ap.parse_args(argv)
    size = args.size_mib << 20
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
        results: dict[str, dict[str, float]] = {}
        results["gpaisec"] = {
            "seal": _time(lambda: seal_to(src, null, provider, "bench", workers=args.workers), args.runs),
            "unseal": _time(lambda: unseal_to(sealed, null, provider, workers=args.workers), args.runs),
        }
        if shutil.which("age") and shutil.which("age-keygen"):
            ident = w / "age.key"
            _run(["age-keygen", "-o", str(ident)])
            recipient = subprocess.run(  # noqa: S603
                ["age-keygen", "-y", str(ident)],
                check=True,
                capture_output=True,
                text=True,  # noqa: S607
            ).stdout.strip()
            aged = w / "weights.age"
            _run(["age", "-r", recipient, "-o", str(aged), str(src)])
            results["age"] = {
                "seal": _time(lambda: _run(["age", "-r", recipient, "-o", "/dev/null", str(src)]), args.runs),
                "unseal": _time(
                    lambda: _run(["age", "-d", "-i", str(ident), "-o", "/dev/null", str(aged)]), args.runs
                ),
            }
            aged.unlink()
        if shutil.which("openssl"):
            key, iv = os.urandom(32).hex(), os.urandom(16).hex()
            ctr = w / "weights.ctr"
            base = ["openssl", "enc", "-aes-256-ctr", "-K", key, "-iv", iv]
            _run([*base, "-in", str(src), "-out", str(ctr)])
            results["openssl-aes-256-ctr"] = {
                "seal": _time(lambda: _run([*base, "-in", str(src), "-out", "/dev/null"]), args.runs),
                "unseal": _time(lambda: _run([*base, "-d", "-in", str(ctr), "-out", "/dev/null"]), args.runs),
            }
        os.close(null)
    gbps = {t: {op: round(size / s / 1e9, 3) for op, s in r.items()} for t, r in results.items()}
    ours = gbps["gpaisec"]
    ratios = {
        f"gpaisec/{t}": {op: round(ours[op] / g[op], 2) for op in g}
        for t, g in gbps.items()
        if t != "gpaisec"
    }
    report = {
        "bytes": size,
        "runs": args.runs,
        "cpus": len(os.sched_getaffinity(0)),
        "gbps": gbps,
        "ratios": ratios,
    }
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{size / 2**30:.2f} GiB, median of {args.runs} runs, {report['cpus']} CPUs, output /dev/null\n"
        )
        for t, g in gbps.items():
            sys.stdout.write(f"  {t:22s} seal {g['seal']:6.2f} GB/s   unseal {g['unseal']:6.2f} GB/s\n")
        for t, r in ratios.items():
            sys.stdout.write(f"  {t:22s} seal {r['seal']:6.2f}x       unseal {r['unseal']:6.2f}x\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
