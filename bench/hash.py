"""Benchmark gpaisec's hashing engine against model-signing, b3sum and openssl, on the same files.

Two workloads, generated into a temporary directory (random bytes):

  (a) large: a model of a few big weight files (default 3 GiB in 6 files);
  (b) small: many small files (default 20,000 files, 200 MiB in all).

The page cache is warmed first, then every tool takes its turn in each round, so that noise from
a shared machine hits all tools alike; the median of the rounds is reported, with ratios against
the baselines and the project's targets. Digests are cross-checked against b3sum and openssl.

    .venv/bin/python bench/hash.py                       # full run (about 4 GB of temp files)
    .venv/bin/python bench/hash.py --size-gib 0.5 --small-files 2000 --runs 3
    .venv/bin/python bench/hash.py --format json > result.json

Targets: BLAKE3 within 10% of b3sum and >= 2x model-signing BLAKE3 on (a); SHA-256 >= 1.2x
model-signing SHA-256 on (a); >= 10x model-signing on (b) (each algorithm against its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpaisec.integrity import HashParams, hash_directory, hash_file

GiB = 1 << 30
MiB = 1 << 20
_ARG_CHUNK = 4000  # paths per b3sum/openssl/cat invocation (stay far below ARG_MAX)


# -- data -------------------------------------------------------------------------------------


def _block(seed: int) -> bytes:
    return random.Random(seed).randbytes(4 * MiB)


def make_large(root: Path, total: int, count: int) -> list[Path]:
    """``count`` files of ``total`` bytes in all: a random 4 MiB block, varied per MiB."""
    root.mkdir(parents=True)
    block = _block(1)
    per_file = total // count
    paths = []
    for i in range(count):
        path = root / f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        with open(path, "wb") as fh:
            written = 0
            n = 0
            while written < per_file:
                start = (n * 7919) % (3 * MiB)
                chunk = (i.to_bytes(4, "little") + n.to_bytes(8, "little") + block[start + 12 : start + MiB])[
                    : per_file - written
                ]
                fh.write(chunk)
                written += len(chunk)
                n += 1
        paths.append(path)
    return paths


def make_small(root: Path, count: int, total: int) -> list[Path]:
    """``count`` files of ``total`` bytes in all (sizes +-50% around the mean), 200 per directory."""
    root.mkdir(parents=True)
    block = _block(2)
    rnd = random.Random(3)
    mean = max(1, total // count)
    paths = []
    for i in range(count):
        d = root / f"part-{i // 200:04d}"
        if i % 200 == 0:
            d.mkdir()
        size = rnd.randint(mean // 2, mean + mean // 2)
        start = rnd.randrange(0, len(block) - size - 4)
        path = d / f"tensor-{i:06d}.bin"
        path.write_bytes(i.to_bytes(4, "little") + block[start : start + max(0, size - 4)])
        paths.append(path)
    return paths


def warm(paths: Sequence[Path]) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.read(8 * MiB):
                pass


# -- tools ------------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    algorithm: str  # "blake3", "sha256" or "read"
    run: Callable[[], object]
    kind: str  # "gpaisec", "model-signing", "cli"
    times: list[float] = field(default_factory=list)


def _run_chunked(cmd: list[str], root: Path, paths: Sequence[Path], *, discard: bool = False) -> str:
    """Run ``cmd`` over ``paths`` (relative to ``root``), a few thousand per process; its stdout."""
    rel = [str(p.relative_to(root)) for p in paths]
    out = []
    for i in range(0, len(rel), _ARG_CHUNK):
        res = subprocess.run(
            [*cmd, *rel[i : i + _ARG_CHUNK]],
            cwd=root,
            stdout=subprocess.DEVNULL if discard else subprocess.PIPE,
            check=True,
        )
        out.append("" if discard else res.stdout.decode())
    return "".join(out)


def tools_for(root: Path, paths: Sequence[Path]) -> list[Tool]:
    tools = [
        Tool("gpaisec blake3", "blake3", lambda: hash_directory(root, HashParams()), "gpaisec"),
        Tool(
            "gpaisec sha256",
            "sha256",
            lambda: hash_directory(root, HashParams(algorithm="sha256")),
            "gpaisec",
        ),
        Tool(
            "gpaisec sha256 shards",
            "sha256",
            lambda: hash_directory(root, HashParams(algorithm="sha256", method="shards")),
            "gpaisec",
        ),
    ]
    try:
        from model_signing import hashing
    except ImportError:
        print("model-signing is not installed: its rows are skipped", file=sys.stderr)
    else:
        for algo in ("blake3", "sha256"):
            tools.append(
                Tool(
                    f"model-signing {algo}",
                    algo,
                    lambda a=algo: hashing.Config().use_file_serialization(hashing_algorithm=a).hash(root),
                    "model-signing",
                )
            )
    if shutil.which("b3sum"):
        tools.append(Tool("b3sum", "blake3", lambda: _run_chunked(["b3sum"], root, paths), "cli"))
    else:
        print("b3sum not found (apt-get install b3sum): its row is skipped", file=sys.stderr)
    if shutil.which("openssl"):
        tools.append(
            Tool(
                "openssl dgst -sha256",
                "sha256",
                lambda: _run_chunked(["openssl", "dgst", "-sha256"], root, paths),
                "cli",
            )
        )
    if shutil.which("cat"):
        tools.append(
            Tool("cat (read limit)", "read", lambda: _run_chunked(["cat"], root, paths, discard=True), "cli")
        )
    return tools


def cross_check(root: Path, paths: Sequence[Path]) -> list[str]:
    """Our per-file digests against b3sum's and openssl's; returns the problems found."""
    problems: list[str] = []
    sample = list(paths[:50])
    ours_b3 = hash_directory(root, HashParams()).files
    ours_sha = hash_directory(root, HashParams(algorithm="sha256")).files
    if shutil.which("b3sum"):
        for line in _run_chunked(["b3sum"], root, sample).splitlines():
            digest, name = line.split(maxsplit=1)
            if ours_b3[name][0].digest != digest:
                problems.append(f"blake3 of {name}: b3sum {digest}, gpaisec {ours_b3[name][0].digest}")
    if shutil.which("openssl"):
        for line in _run_chunked(["openssl", "dgst", "-sha256", "-r"], root, sample).splitlines():
            digest, name = line.split(maxsplit=1)
            name = name.lstrip("*")
            if ours_sha[name][0].digest != digest:
                problems.append(f"sha256 of {name}: openssl {digest}, gpaisec {ours_sha[name][0].digest}")
    if hash_file(paths[0]).digest != ours_b3[str(paths[0].relative_to(root))][0].digest:
        problems.append("hash_file and hash_directory disagree")
    return problems


# -- measuring ----------------------------------------------------------------------------------


def measure(name: str, root: Path, paths: Sequence[Path], runs: int) -> dict[str, Any]:
    total = sum(p.stat().st_size for p in paths)
    print(f"[{name}] {len(paths)} files, {total / GiB:.2f} GiB: warming the page cache", file=sys.stderr)
    warm(paths)
    problems = cross_check(root, paths)
    tools = tools_for(root, paths)
    for t in tools:  # one untimed pass each: imports, thread pools, first-touch effects
        t.run()
    for r in range(runs):
        print(f"[{name}] round {r + 1}/{runs}", file=sys.stderr)
        for t in tools:
            start = time.perf_counter()
            t.run()
            t.times.append(time.perf_counter() - start)
    rows = []
    for t in tools:
        median = statistics.median(t.times)
        rows.append(
            {
                "tool": t.name,
                "algorithm": t.algorithm,
                "median_s": median,
                "gb_per_s": total / median / 1e9,
                "files_per_s": len(paths) / median,
                "runs_s": t.times,
            }
        )
    return {
        "workload": name,
        "files": len(paths),
        "bytes": total,
        "results": rows,
        "digest_problems": problems,
    }


def _speed(result: dict[str, Any], tool: str) -> float | None:
    for row in result["results"]:
        if row["tool"] == tool:
            return float(row["gb_per_s"])
    return None


def ratios(result: dict[str, Any]) -> dict[str, float]:
    pairs = {
        "gpaisec blake3 / b3sum": ("gpaisec blake3", "b3sum"),
        "gpaisec blake3 / model-signing blake3": ("gpaisec blake3", "model-signing blake3"),
        "gpaisec sha256 / model-signing sha256": ("gpaisec sha256", "model-signing sha256"),
        "gpaisec sha256 shards / model-signing sha256": ("gpaisec sha256 shards", "model-signing sha256"),
        "gpaisec sha256 / openssl dgst -sha256": ("gpaisec sha256", "openssl dgst -sha256"),
        "gpaisec blake3 / model-signing sha256 (defaults)": ("gpaisec blake3", "model-signing sha256"),
    }
    out = {}
    for label, (a, b) in pairs.items():
        sa, sb = _speed(result, a), _speed(result, b)
        if sa is not None and sb is not None:
            out[label] = sa / sb
    return out


def targets(name: str, r: dict[str, float]) -> list[dict[str, Any]]:
    wanted = (
        [
            ("gpaisec blake3 / b3sum", 0.9),
            ("gpaisec blake3 / model-signing blake3", 2.0),
            ("gpaisec sha256 / model-signing sha256", 1.2),
        ]
        if name == "large"
        else [
            ("gpaisec blake3 / model-signing blake3", 10.0),
            ("gpaisec sha256 / model-signing sha256", 10.0),
        ]
    )
    return [
        {"ratio": label, "value": r.get(label), "at_least": floor, "met": r.get(label, 0.0) >= floor}
        for label, floor in wanted
        if label in r
    ]


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}; median of {report['runs']} rounds"
    )
    print(f"load average (1, 5, 15 min): {m['loadavg_start']} at the start, {m['loadavg_end']} at the end")
    for w in report["workloads"]:
        print()
        size = f"{w['bytes'] / GiB:.2f} GiB ({w['bytes'] / 1e9:.2f} GB)"
        print(f"workload ({w['workload']}): {w['files']} files, {size}")
        print(f"  {'tool':<26} {'median s':>9} {'range s':>13} {'GB/s':>7} {'files/s':>10}")
        for row in w["results"]:
            spread = f"{min(row['runs_s']):.3f}-{max(row['runs_s']):.3f}"
            speed = f"{row['gb_per_s']:>7.2f} {row['files_per_s']:>10.0f}"
            print(f"  {row['tool']:<26} {row['median_s']:>9.3f} {spread:>13} {speed}")
        print("  ratios (higher is better for gpaisec):")
        for label, value in w["ratios"].items():
            print(f"    {label:<48} {value:6.2f}x")
        print("  targets:")
        for t in w["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            print(f"    {t['ratio']:<48} {t['value']:6.2f}x  >= {t['at_least']:<4}  {verdict}")
        for p in w["digest_problems"]:
            print(f"  DIGEST MISMATCH: {p}")
        if not w["digest_problems"]:
            print("  digests cross-checked against b3sum and openssl: equal")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=3.0, help="total size of workload (a), GiB")
    ap.add_argument("--large-files", type=int, default=6, help="files in workload (a)")
    ap.add_argument("--small-files", type=int, default=20_000, help="files in workload (b)")
    ap.add_argument("--small-total-mib", type=float, default=200.0, help="total size of workload (b), MiB")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (median reported)")
    ap.add_argument("--workload", choices=["large", "small", "both"], default="both")
    ap.add_argument("--tmp-dir", type=Path, default=None, help="where to generate the files")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args(argv)

    report: dict[str, Any] = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": args.runs,
        "workloads": [],
    }
    with tempfile.TemporaryDirectory(prefix="gpaisec-bench-", dir=args.tmp_dir) as tmp:
        todo = []
        if args.workload in ("large", "both"):
            print("generating workload (a)", file=sys.stderr)
            root = Path(tmp) / "large"
            todo.append(("large", root, make_large(root, int(args.size_gib * GiB), args.large_files)))
        if args.workload in ("small", "both"):
            print("generating workload (b)", file=sys.stderr)
            root = Path(tmp) / "small"
            todo.append(("small", root, make_small(root, args.small_files, int(args.small_total_mib * MiB))))
        for name, root, paths in todo:
            result = measure(name, root, paths, args.runs)
            result["ratios"] = ratios(result)
            result["targets"] = targets(name, result["ratios"])
            report["workloads"].append(result)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 1 if any(w["digest_problems"] for w in report["workloads"]) else 0


if __name__ == "__main__":
    sys.exit(main())
