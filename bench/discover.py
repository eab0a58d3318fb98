"""Benchmark weight discovery against hashing the whole tree with b3sum.

    .venv/bin/python bench/discover.py                       # 100,000 files, 3 GiB of weights
    .venv/bin/python bench/discover.py --weights-gib 0.3 --files 20000 --runs 3 --format json

Builds a tree of ``--files`` files, mostly small non-weight files, holding ``--weights-gib`` GiB of
weight files among which copies of a registered model are planted:

* a shard moved elsewhere under its own name (expect file-copy),
* a shard renamed to a cache blob (renamed-copy),
* the whole model re-sharded into 5 files with renamed, shuffled tensors (tensor-copy),
* 40 % of the tensors in 2 more files (tensor-copy),
* a registered GGUF file renamed (renamed-copy),

and decoys that must not match: a model with the same architecture, tensor names, shapes and file
sizes but other values; a GGUF file of the same size; pickles, .npy and PyTorch zips.

The originals live outside the tree. Registration (full digests of the originals) is timed once.
Then, taking turns after one warm-up round (page cache), each of ``--runs`` rounds times:

* ``scan``: walk + sniff + sampled fingerprints + match (what ``gpaisec discover`` needs to find
  copies), checked against the planted set: every copy found, no false match;
* ``scan, N workers``: the same with the walk shared out to ``--workers`` processes;
* ``scan+confirm``: the parallel scan plus full BLAKE3 of the matched files and a second match;
* ``b3sum``: ``find TREE -type f -print0 | xargs -0 b3sum`` (every byte hashed).

The medians and the ratios b3sum / scan are printed (target: at least 10). The machine is shared
and the figures are noisy: compare ratios, not absolute times. The tree is kept with ``--keep``
and reused by a later run given the same ``--workdir`` and sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blake3 import blake3

from gpaisec.weights.fingerprint import digest_file
from gpaisec.weights.matching import (
    Discovery,
    Evidence,
    MatchIndex,
    MatchKind,
    RegisteredArtifact,
    RegisteredFile,
)
from gpaisec.weights.walk import scan

GIB = 1 << 30
MIB = 1 << 20
TARGET_RATIO = 10.0
LAYOUT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Data


def random_bytes(seed: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes (BLAKE3 XOF)."""
    return blake3(seed.encode()).digest(length=n)


def architecture(target: int) -> tuple[int, int, int]:
    """(dim, vocab, layers) of a BF16 transformer of about ``target`` bytes."""
    dim = 2048 if target >= 512 * MIB else 1024 if target >= 64 * MIB else 256
    vocab = 16 * dim
    per_layer = 2 * (4 * dim * dim + 8 * dim * dim + 2 * dim)
    layers = max(1, round((target - 2 * 2 * vocab * dim) / per_layer))
    return dim, vocab, layers


def model_tensors(dim: int, vocab: int, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    tensors: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, dim))]
    for layer in range(layers):
        p = f"model.layers.{layer}"
        tensors += [
            (f"{p}.input_layernorm.weight", (dim,)),
            (f"{p}.self_attn.q_proj.weight", (dim, dim)),
            (f"{p}.self_attn.k_proj.weight", (dim, dim)),
            (f"{p}.self_attn.v_proj.weight", (dim, dim)),
            (f"{p}.self_attn.o_proj.weight", (dim, dim)),
            (f"{p}.post_attention_layernorm.weight", (dim,)),
            (f"{p}.mlp.up_proj.weight", (4 * dim, dim)),
            (f"{p}.mlp.down_proj.weight", (dim, 4 * dim)),
        ]
    tensors += [("model.norm.weight", (dim,)), ("lm_head.weight", (vocab, dim))]
    return tensors


def nbytes(shape: tuple[int, ...]) -> int:
    return 2 * math.prod(shape)


def write_safetensors(
    path: Path, tensors: list[tuple[str, tuple[int, ...]]], data: Callable[[str], bytes]
) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes(shape)],
        }
        offset += nbytes(shape)
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(body)) + body)
        for name, _shape in tensors:
            handle.write(data(name))


def split(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i * len(items) // n : (i + 1) * len(items) // n] for i in range(n)]


# --------------------------------------------------------------------------------------------------
# Tree


def build(workdir: Path, files: int, weights_gib: float) -> dict[str, Any]:
    """Create registry/ (originals) and tree/ (scanned); return the manifest of what was planted."""
    started = time.perf_counter()
    registry, tree = workdir / "registry", workdir / "tree"
    weights = int(weights_gib * GIB)
    gguf_size = max(MIB, int(weights * 0.08))
    misc_size = max(MIB, int(weights * 0.02))
    model_size = int((weights - 2 * gguf_size - misc_size) / 3.07)
    dim, vocab, layers = architecture(model_size)
    tensors = model_tensors(dim, vocab, layers)
    ours: dict[str, bytes] = {}

    def our_data(name: str) -> bytes:
        if name not in ours:
            ours[name] = random_bytes(f"frontier/{name}", nbytes(dict(tensors)[name]))
        return ours[name]

    # Originals: 3 shards and a GGUF file.
    shards = split(tensors, 3)
    originals = []
    for i, shard in enumerate(shards, 1):
        path = registry / "frontier-v1" / f"model-{i:05d}-of-00003.safetensors"
        write_safetensors(path, shard, our_data)
        originals.append(path)
    gguf = registry / "frontier-v1-gguf" / "frontier-q4_k_m.gguf"
    gguf.parent.mkdir(parents=True, exist_ok=True)
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + random_bytes("frontier/gguf", gguf_size - 8))

    expected: dict[str, str] = {}

    def plant(relative: str, kind: MatchKind) -> Path:
        expected[relative] = kind.value
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    shutil.copyfile(
        originals[0], plant(f"home/user3/backups/frontier/{originals[0].name}", MatchKind.FILE_COPY)
    )
    shutil.copyfile(originals[1], plant("var/cache/pip/http/9/f/3/1/blob-9f31c2", MatchKind.RENAMED_COPY))
    shuffled = list(tensors)
    random.Random(7).shuffle(shuffled)
    renamed = {name: "transformer." + name.replace(".", "_") for name, _s in tensors}
    original_name = {new: old for old, new in renamed.items()}
    for i, part in enumerate(split(shuffled, 5)):
        path = plant(f"tmp/.x11-cache/part-{i}.bin", MatchKind.TENSOR_COPY)
        write_safetensors(path, [(renamed[n], s) for n, s in part], lambda n: our_data(original_name[n]))
    partial = [t for t in tensors if nbytes(t[1]) > 64 * 1024][: max(2, int(len(tensors) * 0.4))]
    for i, part in enumerate(split(partial, 2)):
        path = plant(f"home/user7/Downloads/checkpoint-{i}.safetensors", MatchKind.TENSOR_COPY)
        write_safetensors(path, part, our_data)
    shutil.copyfile(gguf, plant("srv/share/q.bin", MatchKind.RENAMED_COPY))

    # Decoys: same architecture and sizes, other values; a GGUF file of the same size; other formats.
    for i, shard in enumerate(shards, 1):
        path = tree / "home/user1/models/other-lab" / f"model-{i:05d}-of-00003.safetensors"
        write_safetensors(path, shard, lambda n: random_bytes(f"other/{n}", nbytes(dict(tensors)[n])))
    other_gguf = tree / "home/user2/gguf/other-q4_k_m.gguf"
    other_gguf.parent.mkdir(parents=True)
    other_gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + random_bytes("other/gguf", gguf_size - 8))
    misc = tree / "home/user4/experiments"
    misc.mkdir(parents=True)
    chunk = max(64 * 1024, misc_size // 4)
    (misc / "legacy.pt").write_bytes(
        b"\x80\x02" + b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + random_bytes("m/pt", chunk)
    )
    (misc / "emb.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}" + random_bytes("m/npy", chunk))
    with zipfile.ZipFile(misc / "ckpt.pt", "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/data/0", random_bytes("m/zip", chunk))
    (misc / "opt.pkl").write_bytes(b"\x80\x04\x95" + random_bytes("m/pkl", chunk))

    weight_files = sum(1 for p in tree.rglob("*") if p.is_file())
    small = files - weight_files
    rng = random.Random(1)
    text = (b"def function(argument):\n    return argument * 2  # a comment\n" * 2000)[: 1 << 20]
    pool = random_bytes("pool", 1 << 20)
    per_dir = 150
    written = 0
    for d in range((small + per_dir - 1) // per_dir):
        directory = tree / "home" / f"user{d % 10}" / f"project{d // 10 % 20}" / f"src{d}"
        directory.mkdir(parents=True, exist_ok=True)
        for f in range(min(per_dir, small - written)):
            size = min(1 << 20, int(rng.lognormvariate(math.log(1536), 1.0)))
            roll = rng.random()
            if roll < 0.85:
                data, name = text[:size], f"module{f}.py"
            elif roll < 0.95:
                start = rng.randrange(0, len(pool) - size + 1)
                data, name = pool[start : start + size], f"image{f}.png"
            elif roll < 0.98:
                data, name = b"PK\x03\x04" + pool[:size], f"doc{f}.docx"
            else:
                data, name = b'{"key": "value"}\n' * (size // 17 + 1), f"config{f}.json"
            (directory / name).write_bytes(data)
            written += 1
    return {
        "layout": LAYOUT_VERSION,
        "files": files,
        "weights_gib": weights_gib,
        "architecture": {"dim": dim, "vocab": vocab, "layers": layers, "tensors": len(tensors)},
        "originals": [str(p) for p in originals],
        "gguf": str(gguf),
        "expected": expected,
        "build_seconds": round(time.perf_counter() - started, 1),
    }


# --------------------------------------------------------------------------------------------------
# Measurements


def tree_totals(tree: Path) -> tuple[int, int]:
    count = total = 0
    for root, _dirs, names in os.walk(tree):
        for name in names:
            count += 1
            total += os.lstat(os.path.join(root, name)).st_size
    return count, total


def check(discovery: Discovery, tree: Path, expected: dict[str, str], *, confirmed: bool) -> dict[str, Any]:
    found = {os.path.relpath(m.path, tree): m for m in discovery.matches}
    missing = sorted(p for p in expected if p not in found)
    wrong_kind = sorted(p for p, kind in expected.items() if p in found and found[p].kind.value != kind)
    false_matches = sorted(p for p in found if p not in expected)
    unconfirmed = sorted(p for p, m in found.items() if confirmed and m.evidence is not Evidence.CONFIRMED)
    versions = {f"{f.model}@{f.version}": round(f.coverage, 4) for f in discovery.findings if f.found}
    ok = not (missing or wrong_kind or false_matches or unconfirmed) and set(versions) == {
        "frontier@v1",
        "frontier@v1-gguf",
    }
    return {
        "ok": ok,
        "planted": len(expected),
        "found": len(expected) - len(missing),
        "missing": missing,
        "wrong_kind": wrong_kind,
        "false_matches": false_matches,
        "unconfirmed": unconfirmed,
        "versions_found": versions,
    }


def b3sum(tree: Path) -> float:
    started = time.perf_counter()
    subprocess.run("find . -type f -print0 | xargs -0 b3sum > /dev/null", shell=True, cwd=tree, check=True)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "runs": [round(v, 4) for v in values]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("b3sum") is None:
        raise SystemExit("b3sum is not installed: apt-get update && apt-get install -y b3sum")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpaisec-bench-"))
    manifest_path = workdir / "manifest.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if (manifest["layout"], manifest["files"], manifest["weights_gib"]) != (
            LAYOUT_VERSION,
            args.files,
            args.weights_gib,
        ):
            shutil.rmtree(workdir / "tree", ignore_errors=True)
            shutil.rmtree(workdir / "registry", ignore_errors=True)
            manifest = None
    built = manifest is None
    if manifest is None:
        print(
            f"building {args.files} files with {args.weights_gib} GiB of weights in {workdir} ...",
            file=sys.stderr,
        )
        manifest = build(workdir, args.files, args.weights_gib)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    tree = workdir / "tree"
    try:
        count, total = tree_totals(tree)
        weights_bytes = sum(p.stat().st_size for rel in manifest["expected"] for p in [tree / rel])

        # Registration: full digests of the originals, once.
        started = time.perf_counter()
        shards = tuple(RegisteredFile(p, digest_file(p, require_weights=True)) for p in manifest["originals"])
        gguf = (RegisteredFile(manifest["gguf"], digest_file(manifest["gguf"], require_weights=True)),)
        index = MatchIndex(
            [
                RegisteredArtifact("frontier", "v1", shards, "a1"),
                RegisteredArtifact("frontier", "v1-gguf", gguf, "a2"),
            ]
        )
        registration = time.perf_counter() - started
        registered_bytes = sum(f.digests.size for a in index.artifacts for f in a.files)

        print("warm-up round ...", file=sys.stderr)
        b3sum(tree)
        scan(tree, index, confirm=False)
        timings: dict[str, list[float]] = {"scan": [], "scan_parallel": [], "scan_confirm": [], "b3sum": []}
        checks: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        threshold = index.min_candidate_size
        for round_ in range(args.runs):
            print(f"round {round_ + 1}/{args.runs} ...", file=sys.stderr)
            timings["b3sum"].append(b3sum(tree))

            started = time.perf_counter()
            report = scan(tree, index, confirm=False)
            timings["scan"].append(time.perf_counter() - started)
            checks["scan"] = check(report.discovery, tree, manifest["expected"], confirmed=False)
            stats = report.stats.to_json() | {
                "fingerprinted": report.fingerprinted,
                "problems": len(report.problems),
            }

            started = time.perf_counter()
            report = scan(tree, index, confirm=False, workers=args.workers)
            timings["scan_parallel"].append(time.perf_counter() - started)
            checks["scan_parallel"] = check(report.discovery, tree, manifest["expected"], confirmed=False)

            started = time.perf_counter()
            report = scan(tree, index, confirm=True, workers=args.workers)
            timings["scan_confirm"].append(time.perf_counter() - started)
            checks["scan_confirm"] = check(report.discovery, tree, manifest["expected"], confirmed=True)

        medians = {k: statistics.median(v) for k, v in timings.items()}
        return {
            "tree": {
                "files": count,
                "bytes": total,
                "planted_copy_bytes": weights_bytes,
                "architecture": manifest["architecture"],
                "build_seconds": manifest["build_seconds"],
            },
            "registration": {
                "seconds": round(registration, 3),
                "bytes": registered_bytes,
                "gb_per_s": round(registered_bytes / registration / 1e9, 2),
            },
            "size_threshold": threshold,
            "timings_s": {k: summary(v) for k, v in timings.items()},
            "workers": args.workers,
            "ratio_b3sum_over_scan": round(medians["b3sum"] / medians["scan"], 2),
            "ratio_b3sum_over_scan_parallel": round(medians["b3sum"] / medians["scan_parallel"], 2),
            "ratio_b3sum_over_scan_confirm": round(medians["b3sum"] / medians["scan_confirm"], 2),
            "target_ratio": TARGET_RATIO,
            "meets_target": max(
                medians["b3sum"] / medians["scan"], medians["b3sum"] / medians["scan_parallel"]
            )
            >= TARGET_RATIO,
            "walk_stats": stats,
            "checks": checks,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_includes_build": built,
            "machine": {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
        }
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def print_text(result: dict[str, Any]) -> None:
    tree, reg, times = result["tree"], result["registration"], result["timings_s"]
    print(
        f"tree: {tree['files']} files, {tree['bytes'] / GIB:.2f} GiB "
        f"({tree['planted_copy_bytes'] / GIB:.2f} GiB planted copies)"
    )
    print(f"registration: {reg['bytes'] / GIB:.2f} GiB in {reg['seconds']:.2f} s ({reg['gb_per_s']} GB/s)")
    print(f"size threshold from the index: {result['size_threshold']} bytes")
    labels = {
        "scan": "scan",
        "scan_parallel": f"scan, {result['workers']} workers",
        "scan_confirm": f"scan+confirm, {result['workers']} workers",
        "b3sum": "b3sum",
    }
    for name, label in labels.items():
        print(f"{label:>24}: median {times[name]['median']:.3f} s  runs {times[name]['runs']}")
    print(
        f"b3sum / scan         = {result['ratio_b3sum_over_scan']:.1f}x  "
        f"(target {result['target_ratio']:.0f}x: {'met' if result['meets_target'] else 'NOT met'})"
    )
    print(f"b3sum / scan, {result['workers']} workers = {result['ratio_b3sum_over_scan_parallel']:.1f}x")
    print(f"b3sum / scan+confirm = {result['ratio_b3sum_over_scan_confirm']:.1f}x")
    for name, checked in result["checks"].items():
        print(
            f"{name}: planted {checked['planted']}, found {checked['found']}, false matches "
            f"{len(checked['false_matches'])}, versions {checked['versions_found']} "
            f"-> {'OK' if checked['ok'] else 'FAILED'}"
        )
    print(f"walk: {result['walk_stats']}")
    print(f"peak RSS {result['peak_rss_mib']} MiB; machine {result['machine']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the tree (default 100000)")
    parser.add_argument(
        "--weights-gib", type=float, default=3.0, help="GiB of weight files in the tree (default 3)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed rounds after a warm-up (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel scan (default 2)")
    parser.add_argument("--workdir", help="build the tree here and keep it for later runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    result = run(args)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print_text(result)
    return 0 if all(c["ok"] for c in result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
