"""The registry view says how each copy found off its approved places is stored: sealed, encrypted, plain."""

from __future__ import annotations

import shutil
from pathlib import Path

from gpaisec.crypto.files import seal_file
from gpaisec.crypto.local import LocalKeyProvider
from gpaisec.weights import registry
from gpaisec.weights.discovery import discover
from gpaisec.workspace import Workspace
from tests.weights.test_sealed import provider, world  # noqa: F401  (fixtures)


def copies_of(ws: Workspace, version: str) -> list[dict[str, object]]:
    (view,) = [v for v in registry.registry_view(ws) if v["version"] == version]
    copies: list[dict[str, object]] = view["copies"]
    return copies


def test_copies_elsewhere_are_labelled_by_what_the_scan_saw(
    world: tuple[Workspace, Path, Path],  # noqa: F811
    provider: LocalKeyProvider,  # noqa: F811
) -> None:
    ws, root, v3 = world
    shards = sorted(v3.glob("*.safetensors"))
    # A sealed copy and a plaintext copy on the unmanaged laptop, in two folders.
    sealed, plain = root / "laptop-9" / "vault", root / "laptop-9" / "Downloads"
    sealed.mkdir(parents=True)
    plain.mkdir(parents=True)
    for shard in shards:
        seal_file(shard, sealed / (shard.name + ".sealed"), provider, "weights")
    shutil.copy(shards[0], plain / "holiday.bin")
    discover(ws, [root / "laptop-9"], device="laptop-9", workers=1)
    # A plaintext copy in the managed node's scratch (registered, not approved; encrypted disk).
    scratch = root / "gpu-node-17" / "scratch"
    scratch.mkdir(parents=True)
    shutil.copy(shards[1], scratch / "tmp.safetensors")
    discover(ws, [scratch], device="gpu-node-17", workers=1)

    by_place = {str(c["location"]): c for c in copies_of(ws, "atlas:v3") if not c["approved"]}
    storage = {place.rsplit("/", 1)[-1]: c["storage"] for place, c in by_place.items()}
    assert storage == {"vault": "sealed", "Downloads": "plaintext", "scratch": "encrypted-volume"}
    assert by_place[next(p for p in by_place if p.endswith("vault"))]["files"] == len(shards)
    assert all(c["findings"] for c in by_place.values() if c["managed"] is False)


def test_the_cached_view_follows_every_change_and_is_the_callers_own(
    world: tuple[Workspace, Path, Path],  # noqa: F811
) -> None:
    ws, root, v3 = world
    first = copies_of(ws, "atlas:v3")
    first.clear()  # a caller's copy: changing it changes nothing for the next caller
    assert copies_of(ws, "atlas:v3")
    laptop = root / "laptop-9" / "Downloads"
    laptop.mkdir(parents=True)
    shutil.copy(sorted(v3.glob("*.safetensors"))[0], laptop / "x.bin")
    before = copies_of(ws, "atlas:v3")
    discover(ws, [laptop], device="laptop-9", workers=1)
    after = copies_of(ws, "atlas:v3")
    assert len(after) == len(before) + 1
    (copy,) = [c for c in after if not c["approved"]]
    assert copy["findings"]
    for finding_id in list(copy["findings"]):
        registry.resolve_finding(ws, str(finding_id), reason="laptop wiped by IT")
    (copy,) = [c for c in copies_of(ws, "atlas:v3") if not c["approved"]]
    assert copy["findings"] == []
