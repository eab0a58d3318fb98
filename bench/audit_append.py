"""Audit log benchmark: append rate against a plain SQLite insert loop, and proof times on 1,000,000 leaves.

    .venv/bin/python bench/audit_append.py [--events 100000] [--batch 1000] [--rounds 3]
                                           [--proof-leaves 1000000] [--samples 2000] [--format json]

1. Appends: ``--events`` events in transactions of ``--batch``, through ``record`` inside
   ``Workspace.transaction()`` (canonical JSON, leaf hashes, tree nodes, head update and one signed
   checkpoint per transaction), against a plain loop that inserts the same rows into the same table
   (same DDL and indexes, same pragmas: WAL, synchronous=FULL, BEGIN IMMEDIATE per batch) with
   ``sqlite3`` ``executemany`` and ``json.dumps``. The two take turns, ``--rounds`` times; medians.
2. Proofs: inclusion and consistency proofs for random leaves of a ``--proof-leaves`` tree, generated
   from stored subtree hashes (in memory, and from the SQLite store through
   ``store_inclusion_proof`` and the full ``prove()``), and verified; median and p99.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from gpaisec.audit import merkle, service
from gpaisec.audit.models import AUDIT_TABLES, AuditEntry
from gpaisec.store import create_db_engine
from gpaisec.store.base import Base
from gpaisec.workspace import Workspace

LEAF_QUERY = text("SELECT leaf_hash FROM audit_entry WHERE seq = :s")


def events(n: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    rng = random.Random(7)
    actions = ["access.decide", "weights.read", "device.update", "grant.approve"]
    return [
        (
            f"user:{rng.randrange(50)}",
            actions[i % 4],
            f"version:model-{i % 7}:v{i % 13}",
            {"decision": "allow", "mfa_age_s": rng.randrange(3600), "device": f"dev-{i % 97}"},
        )
        for i in range(n)
    ]


def new_workspace(root: Path, name: str) -> Workspace:
    home = root / name
    home.mkdir(mode=0o700)
    url = f"sqlite:///{home / 'gpaisec.db'}"
    engine = create_db_engine(url)
    Base.metadata.create_all(engine, tables=AUDIT_TABLES)
    return Workspace(home=home, database_url=url, engine=engine, actor="bench")


def run_record(root: Path, evs: list[tuple[str, str, str, dict[str, Any]]], batch: int, tag: str) -> float:
    ws = new_workspace(root, f"record-{tag}")
    ws.audit_signer()  # key creation is not part of the measurement
    t0 = time.perf_counter()
    for start in range(0, len(evs), batch):
        with ws.transaction() as s:
            for actor, action, obj, details in evs[start : start + batch]:
                service.record(s, actor=actor, action=action, object=obj, details=details)
    elapsed = time.perf_counter() - t0
    ws.close()
    return len(evs) / elapsed


def run_plain(root: Path, evs: list[tuple[str, str, str, dict[str, Any]]], batch: int, tag: str) -> float:
    path = root / f"plain-{tag}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    table = AuditEntry.__table__
    dialect = sqlite_dialect.dialect()
    conn.execute(str(CreateTable(table).compile(dialect=dialect)))  # type: ignore[arg-type]
    for index in table.indexes:
        conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
    sql = (
        "INSERT INTO audit_entry (seq, time, actor, action, object, entry, leaf_hash) VALUES (?,?,?,?,?,?,?)"
    )
    t0 = time.perf_counter()
    seq = 0
    for start in range(0, len(evs), batch):
        rows = []
        for actor, action, obj, details in evs[start : start + batch]:
            now = dt.datetime.now(dt.UTC)
            entry = json.dumps(
                {
                    "seq": seq,
                    "time": now.isoformat(),
                    "actor": actor,
                    "action": action,
                    "object": obj,
                    "details": details,
                }
            ).encode()
            rows.append((seq, now.strftime("%Y-%m-%d %H:%M:%S.%f"), actor, action, obj, entry, b""))
            seq += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(evs) / elapsed


def timings(fn: Callable[[int], object], args: list[int]) -> dict[str, float]:
    samples = []
    for a in args:
        t0 = time.perf_counter_ns()
        fn(a)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return {
        "median_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
    }


def bench_memory_proofs(leaves_n: int, idx: list[int], olds: list[int]) -> dict[str, Any]:
    """Proofs from every perfect subtree kept in memory, as a store keeps them."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    tree = merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(leaves_n))
    out["memory_build_s"] = round(time.perf_counter() - t0, 2)
    root_hash = tree.root()
    proofs = {i: merkle.inclusion_proof(i, leaves_n, tree) for i in idx}
    cons = {o: merkle.consistency_proof(o, leaves_n, tree) for o in olds}
    old_roots = {o: merkle.root_at(o, tree) for o in olds}
    out["memory_inclusion_generate"] = timings(lambda i: merkle.inclusion_proof(i, leaves_n, tree), idx)
    out["inclusion_verify"] = timings(
        lambda i: merkle.verify_inclusion(tree.levels[0][i], i, leaves_n, proofs[i], root_hash), idx
    )
    out["memory_consistency_generate"] = timings(lambda o: merkle.consistency_proof(o, leaves_n, tree), olds)
    out["consistency_verify"] = timings(
        lambda o: merkle.verify_consistency(o, leaves_n, old_roots[o], root_hash, cons[o]), olds
    )
    return out


def bench_proofs(root: Path, leaves_n: int, samples: int) -> dict[str, Any]:
    rng = random.Random(11)
    idx = [rng.randrange(leaves_n) for _ in range(samples)]
    olds = [rng.randrange(1, leaves_n) for _ in range(samples)]
    out: dict[str, Any] = {"leaves": leaves_n, **bench_memory_proofs(leaves_n, idx, olds)}
    # From the SQLite store: a real log of leaves_n entries appended with record_many.
    ws = new_workspace(root, "proofs")
    t0 = time.perf_counter()
    step = 20_000
    for start in range(0, leaves_n, step):
        with ws.transaction() as s:
            service.record_many(
                s,
                (
                    service.AuditEvent("bench", "weights.read", f"version:m:{i % 97}", {"i": i})
                    for i in range(start, min(leaves_n, start + step))
                ),
            )
    out["store_build_s"] = round(time.perf_counter() - t0, 1)
    out["store_build_appends_per_s"] = round(leaves_n / (time.perf_counter() - t0))
    size = leaves_n
    with ws.reader() as s:
        latest = service.prove(ws, 0)
        assert latest.tree_size == size
        store_root = merkle.root_at(size, service._StoreNodes(s))

        def store_prove_and_verify(i: int) -> None:
            path = service.store_inclusion_proof(s, i, size)
            leaf = service._b(s.execute(LEAF_QUERY, {"s": i}).scalar_one(), "leaf")
            merkle.verify_inclusion(leaf, i, size, path, store_root)

        out["store_inclusion_generate"] = timings(lambda i: service.store_inclusion_proof(s, i, size), idx)
        out["store_inclusion_generate_and_verify"] = timings(store_prove_and_verify, idx)
    few = idx[: max(50, samples // 10)]
    out["prove_end_to_end"] = timings(lambda i: service.prove(ws, i), few)
    ws.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proof-leaves", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    evs = events(args.events)
    report: dict[str, Any] = {"events": args.events, "batch": args.batch, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="gpaisec-bench-") as tmp:
        root = Path(tmp)
        plain, ours = [], []
        for r in range(args.rounds):  # taking turns, so drift hits both alike
            plain.append(run_plain(root, evs, args.batch, str(r)))
            ours.append(run_record(root, evs, args.batch, str(r)))
        report["plain_sqlite_appends_per_s"] = [round(x) for x in plain]
        report["record_appends_per_s"] = [round(x) for x in ours]
        report["plain_median"] = round(statistics.median(plain))
        report["record_median"] = round(statistics.median(ours))
        report["ratio_record_to_plain"] = round(statistics.median(ours) / statistics.median(plain), 3)
        if args.proof_leaves:
            report["proofs"] = bench_proofs(root, args.proof_leaves, args.samples)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    print(f"appends: {args.events:,} events in batches of {args.batch:,}, {args.rounds} rounds (medians)")
    plain, ours = report["plain_sqlite_appends_per_s"], report["record_appends_per_s"]
    print(f"  plain sqlite3 executemany : {report['plain_median']:>9,}/s  {plain}")
    print(f"  audit record + seal       : {report['record_median']:>9,}/s  {ours}")
    print(f"  ratio record / plain      : {report['ratio_record_to_plain']:.2f}  (target >= 0.50)")
    if "proofs" in report:
        p = report["proofs"]
        print(f"proofs on a {p['leaves']:,}-leaf tree (microseconds, median / p99; target < 1000)")
        for name in (
            "memory_inclusion_generate",
            "inclusion_verify",
            "memory_consistency_generate",
            "consistency_verify",
            "store_inclusion_generate",
            "store_inclusion_generate_and_verify",
            "prove_end_to_end",
        ):
            t = p[name]
            print(f"  {name:<38}: {t['median_us']:>8.1f} / {t['p99_us']:>8.1f}")
        print(
            f"  (store built with record_many in {p['store_build_s']} s = "
            f"{p['store_build_appends_per_s']:,} appends/s; memory tree in {p['memory_build_s']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
