"""Access decisions in process: Cedar (through the PDP) against the same rules in plain Python.

    .venv/bin/python bench/authz.py [--decisions 3000] [--rounds 3] [--chunk 200] [--requests 500]
                                    [--people 200] [--grants 400] [--format json]

A world of ``--people`` people, as many devices, 50 model versions (10 released), two locations a
version and ``--grants`` grants; ``--requests`` requests drawn from it with a fixed seed (about half
allowed: grant holders, released reads, break-glass; the rest denied for one reason or several).
Every request is first decided both ways and the answers compared (verdict and determining policies).

Each variant then decides ``--decisions`` requests a round, timing each call (a batch call counts
as 100 decisions); the variants take turns every ``--chunk`` decisions, so that load from elsewhere
falls on all of them alike; the report gives the median over ``--rounds`` rounds of each figure:

  cedar_pdp                 PDP.decide, world parsed once into an EntitySet (the intended use),
                            ``now`` advancing 1 ms and the MFA age 1 s every 1,000 decisions, so the
                            decision memo answers only while no compared value has been crossed
  cedar_pdp_nomemo          the same with PDP(memo=False): Cedar evaluates every request
  cedar_pdp_batch           PDP.decide_batch, 100 requests a call (time per decision)
  cedar_pdp_request_world   PDP.decide given only the request's entities as a list (the PDP
                            remembers the last 1,024 small lists it parsed: here, all of them)
  cedar_pdp_request_cold    the same, the entities parsed on every call (no cache)
  cedar_raw                 cedarpy.is_authorized on the PDP's prepared request (Cedar alone)
  cedarpy_floor             cedarpy.is_authorized, one trivial policy, empty context and entities
  plain_indexed             evaluate_plain on the world indexed once by entity id
  plain_request_world       evaluate_plain on the request's entities, indexed on each call

Target: cedar_pdp p50 under 100 µs. On a shared two-core machine read the ratios, not the absolutes;
cedarpy_floor shows what any cedarpy call costs on this machine at this moment.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import cedarpy

from gpaisec.access import pdp as pdp_module
from gpaisec.access.pdp import (
    PDP,
    PolicySet,
    Request,
    cedar_datetime,
    device_entity,
    evaluate_plain,
    grant_entity,
    location_entity,
    model_version_entity,
    person_entity,
    request_context,
    service_account_entity,
    uid,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
Req = tuple[dict[str, str], str, dict[str, str], dict[str, Any]]


def build_world(
    people: int, grants: int, n_requests: int, seed: int = 5
) -> tuple[list[dict[str, Any]], list[Req]]:
    rng = random.Random(seed)
    world: list[dict[str, Any]] = []
    for i in range(people):
        roles = [
            r for r, p in (("break_glass", 0.05), ("approver", 0.2), ("reviewer", 0.1)) if rng.random() < p
        ]
        world.append(
            person_entity(
                f"p{i}",
                shared=rng.random() < 0.03,
                background_check_valid_until=NOW + (DAY * 300 if rng.random() < 0.95 else -DAY),
                insider_training_valid_until=NOW + (DAY * 100 if rng.random() < 0.95 else -DAY),
                roles=roles,
            )
        )
        world.append(
            device_entity(f"d{i}", managed=rng.random() < 0.95, disk_encrypted=rng.random() < 0.95, edr=True)
        )
    for i in range(10):
        world.append(service_account_entity(f"sa{i}", scopes=["weights:read", "weights:write"][: 1 + i % 2]))
    for v in range(50):
        world.append(model_version_entity(f"m{v}", model=f"model-{v // 5}", released=v < 10))
        for k in range(2):
            world.append(location_entity(f"m{v}-loc{k}", version=f"m{v}"))
    grant_of: list[
        tuple[str, str, str, str, str | None]
    ] = []  # (grant, principal type, id, action, location)
    for g in range(grants):
        person = f"p{rng.randrange(people)}"
        sa = f"sa{rng.randrange(10)}" if rng.random() < 0.1 else None
        version = f"m{rng.randrange(10, 50)}"
        location = f"{version}-loc0" if rng.random() < 0.2 else None
        action = rng.choice(("read", "read", "write", "export"))
        approvers = rng.sample([f"p{i}" for i in range(people)], 2 if rng.random() < 0.9 else 1)
        if rng.random() < 0.03:
            approvers[0] = person  # self-approval
        world.append(
            grant_entity(
                f"g{g}",
                requester=person,
                service_account=sa,
                version=version,
                location=location,
                action=action,
                approvers=approvers,
                not_before=NOW - DAY * rng.choice((1, 1, 1, -1)),
                expires=NOW + DAY * rng.choice((1, 1, 1, 1, -1)),
                state=rng.choice(("active",) * 9 + ("revoked",)),
            )
        )
        resource = f"{version}-loc0" if location else version
        grant_of.append((f"g{g}", "ServiceAccount" if sa else "Person", sa or person, action, resource))

    reqs: list[Req] = []
    for _ in range(n_requests):
        kind = rng.random()
        if kind < 0.6:  # a grant holder (most grants are good)
            g, ptype, pid, action, res = rng.choice(grant_of)
            device = f"d{pid[1:]}" if ptype == "Person" else f"d{rng.randrange(people)}"
            rtype = "Location" if "-loc" in res else "ModelVersion"
            ctx = request_context(
                now=NOW,
                device=device,
                device_managed=True,
                mfa_age_seconds=rng.choice((60, 600, 3600, 50_000)),
                source_ip="10.0.0.7",
                grant=g,
            )
            reqs.append((uid(ptype, pid), action, uid(rtype, res), ctx))
        elif kind < 0.8:  # reading a released version
            i = rng.randrange(people)
            ctx = request_context(
                now=NOW, device=f"d{i}", device_managed=True, mfa_age_seconds=99_999, source_ip="10.0.0.8"
            )
            reqs.append((uid("Person", f"p{i}"), "read", uid("ModelVersion", f"m{rng.randrange(10)}"), ctx))
        elif kind < 0.9:  # unreleased, no grant, sometimes break-glass
            i = rng.randrange(people)
            ctx = request_context(
                now=NOW,
                device=f"d{i}",
                device_managed=True,
                mfa_age_seconds=120,
                source_ip="10.0.0.9",
                break_glass=rng.random() < 0.5,
            )
            reqs.append(
                (uid("Person", f"p{i}"), "read", uid("ModelVersion", f"m{rng.randrange(10, 50)}"), ctx)
            )
        else:  # approving someone's grant
            i, g = rng.randrange(people), rng.randrange(grants)
            ctx = request_context(
                now=NOW, device=f"d{i}", device_managed=True, mfa_age_seconds=30, source_ip="10.0.1.1"
            )
            reqs.append((uid("Person", f"p{i}"), "approve", uid("Grant", f"g{g}"), ctx))
    return world, reqs


def request_entities(index: dict[tuple[str, str], dict[str, Any]], req: Req) -> list[dict[str, Any]]:
    """The entities one request touches: principal, device, resource, its version, the grant."""
    principal, _action, resource, ctx = req
    keys = [(principal["type"], principal["id"]), (resource["type"], resource["id"])]
    keys.append((ctx["device"]["type"], ctx["device"]["id"]))
    if resource["type"] == "Gpaisec::Location":
        v = index[(resource["type"], resource["id"])]["attrs"]["version"]
        keys.append((v["type"], v["id"]))
    if "grant" in ctx:
        keys.append((ctx["grant"]["type"], ctx["grant"]["id"]))
    return [index[k] for k in dict.fromkeys(keys)]


def interleaved(
    variants: dict[str, tuple[Callable[[int], object], int]], n: int, chunk: int
) -> dict[str, list[float]]:
    """Per-decision times (µs) of ``n`` decisions for each variant, the variants taking turns every
    ``chunk`` decisions so that load from elsewhere falls on all of them alike."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    counters = dict.fromkeys(variants, 0)
    for _ in range(0, n, chunk):
        for name, (fn, per_call) in variants.items():
            for _ in range(max(1, chunk // per_call)):
                i = counters[name]
                counters[name] = i + 1
                t0 = time.perf_counter_ns()
                fn(i)
                samples[name].append((time.perf_counter_ns() - t0) / 1000 / per_call)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_us": statistics.median(samples),
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "decisions_per_s": 1e6 / statistics.fmean(samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--chunk", type=int, default=200, help="decisions a variant makes before the next one's turn"
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--grants", type=int, default=400)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)

    world, reqs = build_world(args.people, args.grants, args.requests)
    index = {(e["uid"]["type"], e["uid"]["id"]): e for e in world}
    per_request = [request_entities(index, r) for r in reqs]
    policies = PolicySet.load()
    pdp = PDP(policies)
    pdp_nomemo = PDP(policies, memo=False)
    t0 = time.perf_counter()
    world_set = pdp.entities(world)
    parse_world_ms = (time.perf_counter() - t0) * 1000

    # Both evaluators agree on every request (verdict and determining policies).
    agree, allowed = 0, 0
    for r in reqs:
        c, p = pdp.decide(r[0], r[1], r[2], world_set, r[3]), evaluate_plain(r[0], r[1], r[2], index, r[3])
        agree += (c.allowed, c.determining_policies) == (p.allowed, p.determining_policies) and not c.errors
        allowed += c.allowed
    if agree != len(reqs):
        sys.stderr.write(f"Cedar and plain Python disagree on {len(reqs) - agree} of {len(reqs)} requests\n")
        return 1

    prepared = [pdp._cedar_request(Request(*r)) for r in reqs]
    floor_policy = cedarpy.PolicySet.from_str("permit (principal, action, resource);")
    floor_entities = cedarpy.Entities.from_json_str("[]")
    floor_req = {
        "principal": uid("Person", "x"),
        "action": uid("Action", "read"),
        "resource": uid("ModelVersion", "m"),
    }
    n, m = args.decisions, len(reqs)
    batches = [[Request(*reqs[(i * 100 + j) % m]) for j in range(100)] for i in range(max(1, m // 100))]

    def parse_uncached(entities: list[dict[str, Any]]) -> Any:
        return pdp_module._parse_entity_text(json.dumps(entities), policies._schema, policies.schema_text)

    # private handles: Cedar alone, without the PDP layer
    cedar_policies, cedar_world, cedar_schema = policies._cedar, world_set._handle, policies._schema

    def moving(i: int) -> dict[str, Any]:
        """Request i's context at its own time: now + i ms, its MFA age + i // 1000 s."""
        ctx = dict(reqs[i % m][3])
        ctx["now"] = cedar_datetime(NOW + timedelta(milliseconds=i))
        ctx["mfa_age_seconds"] = ctx["mfa_age_seconds"] + i // 1000
        return ctx

    # The memo answers exactly as Cedar does on a stream with moving time.
    memo_agree = sum(
        pdp.decide(*reqs[i % m][:3], world_set, moving(i))
        == pdp_nomemo.decide(*reqs[i % m][:3], world_set, moving(i))
        for i in range(2 * m)
    )
    if memo_agree != 2 * m:
        sys.stderr.write(f"the memo and Cedar disagree on {2 * m - memo_agree} of {2 * m} requests\n")
        return 1

    variants: dict[str, tuple[Callable[[int], object], int]] = {
        "cedar_pdp": (lambda i: pdp.decide(*reqs[i % m][:3], world_set, moving(i)), 1),
        "cedar_pdp_nomemo": (lambda i: pdp_nomemo.decide(*reqs[i % m][:3], world_set, moving(i)), 1),
        "cedar_pdp_batch": (lambda i: pdp.decide_batch(batches[i % len(batches)], world_set), 100),
        "cedar_pdp_request_world": (
            lambda i: pdp.decide(*reqs[i % m][:3], per_request[i % m], reqs[i % m][3]),
            1,
        ),
        "cedar_pdp_request_cold": (
            lambda i: pdp.decide(*reqs[i % m][:3], parse_uncached(per_request[i % m]), reqs[i % m][3]),
            1,
        ),
        "cedar_raw": (
            lambda i: cedarpy.is_authorized(prepared[i % m], cedar_policies, cedar_world, cedar_schema),
            1,
        ),
        "cedarpy_floor": (lambda i: cedarpy.is_authorized(floor_req, floor_policy, floor_entities), 1),
        "plain_indexed": (lambda i: evaluate_plain(*reqs[i % m][:3], index, reqs[i % m][3]), 1),
        "plain_request_world": (
            lambda i: evaluate_plain(*reqs[i % m][:3], per_request[i % m], reqs[i % m][3]),
            1,
        ),
    }
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, samples in interleaved(variants, n, args.chunk).items():
            runs[name].append(summary(samples))
    results = {
        name: {
            k: round(statistics.median(r[k] for r in rs), 1) for k in ("p50_us", "p99_us", "decisions_per_s")
        }
        for name, rs in runs.items()
    }
    p50 = {k: v["p50_us"] for k, v in results.items()}
    report: dict[str, Any] = {
        "world_entities": len(world),
        "world_parse_ms": round(parse_world_ms, 1),
        "policies": len(policies),
        "requests": m,
        "allowed": allowed,
        "cedar_plain_agree": agree,
        "memo_cedar_agree": memo_agree,
        "decisions_per_round": n,
        "rounds": args.rounds,
        "results": results,
        "ratios_p50": {
            "cedar_pdp / plain_indexed": round(p50["cedar_pdp"] / p50["plain_indexed"], 1),
            "cedar_pdp_request_world / plain_request_world": round(
                p50["cedar_pdp_request_world"] / p50["plain_request_world"], 1
            ),
            "cedar_pdp_request_cold / plain_request_world": round(
                p50["cedar_pdp_request_cold"] / p50["plain_request_world"], 1
            ),
            "cedar_pdp_nomemo / plain_indexed": round(p50["cedar_pdp_nomemo"] / p50["plain_indexed"], 1),
            "cedar_pdp_nomemo / cedar_raw (PDP layer)": round(p50["cedar_pdp_nomemo"] / p50["cedar_raw"], 2),
            "cedar_pdp_batch / cedar_pdp_nomemo": round(p50["cedar_pdp_batch"] / p50["cedar_pdp_nomemo"], 2),
            "cedar_pdp / cedarpy_floor": round(p50["cedar_pdp"] / p50["cedarpy_floor"], 2),
        },
        "target_cedar_pdp_p50_under_100_us": p50["cedar_pdp"] < 100,
    }
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    print(
        f"{report['world_entities']:,} entities (parsed once in {report['world_parse_ms']} ms), "
        f"{report['policies']} policies, {m} requests ({allowed} allowed); Cedar and plain Python agree"
    )
    print(f"{n:,} decisions per variant per round, {args.rounds} rounds, medians")
    print(f"  {'variant':<26} {'p50 µs':>9} {'p99 µs':>9} {'decisions/s':>12}")
    for name, r in results.items():
        print(f"  {name:<26} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {r['decisions_per_s']:>12,.0f}")
    print("ratios of p50:")
    for k, v in report["ratios_p50"].items():
        print(f"  {k:<48} {v}")
    verdict = "met" if report["target_cedar_pdp_p50_under_100_us"] else "NOT met"
    print(f"target cedar_pdp p50 < 100 µs: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
