"""Helpers for the weight-discovery tests: a tiny safetensors writer, synthetic models, re-sharding.

Import the helpers with ``from tests.weights.conftest import ...``; the fixtures below expose the
committed hostile fixtures and their generator script.
"""

from __future__ import annotations

import importlib.util
import json
import random
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HOSTILE = FIXTURES / "hostile"

_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1}


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]
    data: bytes


Tensors = Mapping[str, Tensor]


def nbytes(dtype: str, shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count * _ITEMSIZE[dtype]


def random_tensor(rng: random.Random, dtype: str, shape: Sequence[int]) -> Tensor:
    return Tensor(dtype, tuple(shape), rng.randbytes(nbytes(dtype, shape)))


def constant_tensor(dtype: str, shape: Sequence[int], element: bytes) -> Tensor:
    return Tensor(dtype, tuple(shape), element * (nbytes(dtype, shape) // len(element)))


def safetensors_bytes(
    tensors: Tensors,
    *,
    metadata: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    trailing: bytes = b"",
) -> bytes:
    """Serialise tensors like the reference writer: JSON header padded to 8 bytes, then data."""
    names = list(order) if order is not None else sorted(tensors)
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in names:
        tensor = tensors[name]
        header[name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(tensor.data)],
        }
        offset += len(tensor.data)
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + b"".join(tensors[n].data for n in names) + trailing


def write_safetensors(path: Path, tensors: Tensors, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(tensors, **kwargs))  # type: ignore[arg-type]
    return path


def make_model(seed: int, *, layers: int = 3, dim: int = 64, dtype: str = "BF16") -> dict[str, Tensor]:
    """A small transformer-shaped model with random (distinctive) tensors and a few constant ones."""
    rng = random.Random(seed)
    tensors = {"embed.weight": random_tensor(rng, dtype, (256, dim))}
    for layer in range(layers):
        prefix = f"layers.{layer}"
        for proj in ("q", "k", "v", "o"):
            tensors[f"{prefix}.attn.{proj}.weight"] = random_tensor(rng, dtype, (dim, dim))
        tensors[f"{prefix}.mlp.up.weight"] = random_tensor(rng, dtype, (4 * dim, dim))
        tensors[f"{prefix}.mlp.down.weight"] = random_tensor(rng, dtype, (dim, 4 * dim))
        # Norm initialised to ones, bias to zeros: identical in unrelated models.
        tensors[f"{prefix}.norm.weight"] = constant_tensor(dtype, (dim,), b"\x80\x3f")
        tensors[f"{prefix}.mlp.up.bias"] = constant_tensor(dtype, (4 * dim,), b"\x00\x00")
    tensors["head.weight"] = random_tensor(rng, dtype, (256, dim))
    return tensors


def reshard(
    tensors: Tensors,
    n_files: int,
    *,
    rename: Callable[[str], str] = lambda name: name,
    seed: int | None = None,
) -> list[dict[str, Tensor]]:
    """Split tensors into ``n_files`` shards (optionally shuffled and renamed)."""
    names = sorted(tensors)
    if seed is not None:
        random.Random(seed).shuffle(names)
    shards: list[dict[str, Tensor]] = [{} for _ in range(n_files)]
    for index, name in enumerate(names):
        shards[index * n_files // len(names)][rename(name)] = tensors[name]
    return shards


def write_shards(directory: Path, shards: Sequence[Tensors], pattern: str) -> list[Path]:
    """Write shards as ``pattern.format(i=..., n=...)`` files in ``directory``."""
    return [
        write_safetensors(directory / pattern.format(i=index + 1, n=len(shards)), shard)
        for index, shard in enumerate(shards)
    ]


def _load_make_hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_hostile", FIXTURES / "make_hostile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_hostile", module)
    spec.loader.exec_module(module)
    return module


make_hostile_module = _load_make_hostile()


@pytest.fixture(scope="session")
def make_hostile() -> ModuleType:
    """The committed script that builds tests/fixtures/hostile/."""
    return make_hostile_module


@pytest.fixture(scope="session")
def hostile() -> Path:
    return HOSTILE
