"""Small generated safetensors models, for the demo and for trying gpaisec without real weights.

Nothing is downloaded: tensors are deterministic pseudo-random bytes from a seed.
"""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

__all__ = ["write_sample_model"]


def _tensors(seed: int, layers: int, dim: int) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    rng = random.Random(seed)  # noqa: S311 - sample data, deterministic on purpose
    out: dict[str, tuple[str, tuple[int, ...], bytes]] = {}

    def add(name: str, shape: tuple[int, ...]) -> None:
        count = 1
        for d in shape:
            count *= d
        out[name] = ("BF16", shape, rng.randbytes(2 * count))

    add("model.embed_tokens.weight", (512, dim))
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            add(f"model.layers.{i}.self_attn.{proj}.weight", (dim, dim))
        add(f"model.layers.{i}.mlp.up_proj.weight", (4 * dim, dim))
        add(f"model.layers.{i}.mlp.down_proj.weight", (dim, 4 * dim))
    add("lm_head.weight", (512, dim))
    return out


def _write(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(body)))
        f.write(body)
        for _, _, data in tensors.values():
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_sample_model(
    directory: Path, *, seed: int = 1, layers: int = 4, dim: int = 256, shards: int = 2
) -> list[Path]:
    """Write a transformer-shaped model as ``shards`` safetensors files plus a config; return the shards."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(seed, layers, dim)
    names = list(tensors)
    paths = []
    for i in range(shards):
        part = {n: tensors[n] for n in names[i * len(names) // shards : (i + 1) * len(names) // shards]}
        path = directory / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        _write(path, part)
        paths.append(path)
    (directory / "config.json").write_text(
        json.dumps({"hidden_size": dim, "num_hidden_layers": layers, "torch_dtype": "bfloat16"}, indent=2)
    )
    return paths
