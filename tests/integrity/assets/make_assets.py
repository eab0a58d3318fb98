"""Build the committed golden and hostile signature fixtures in this directory.

Run from the repository root, with model-signing installed (test extra):

    .venv/bin/python -m tests.integrity.assets.make_assets

It makes a fresh P-256 key (only the public half is kept), the golden model tree of
:func:`golden_model`, and then:

* ``ms-sha256-files.sig``, ``ms-blake3-files.sig``, ``ms-sha256-shards.sig``: signatures made by
  model-signing 1.1.1 itself (its API, key method), which gpaisec must always verify;
* ``hostile-*.sig``: signatures that must be refused, each named for what is wrong with it.

The tests rebuild the model tree from :func:`golden_model`, so only the spec is committed.
"""

from __future__ import annotations

import base64
import json
import random
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).parent

# model path -> (random seed, size in bytes)
_SPEC: dict[str, tuple[int, int]] = {
    "model-00001-of-00002.safetensors": (1, 70_000),
    "model-00002-of-00002.safetensors": (2, 33_333),
    "tokenizer/tokenizer.json": (3, 1_000),
    "a-b": (4, 10),
    "a/c": (5, 11),
}


def golden_model(root: Path) -> Path:
    """Write the golden model tree under ``root`` (deterministic bytes) and return ``root``."""
    for name, (seed, size) in _SPEC.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(seed).randbytes(size))
    (root / "config.json").write_bytes(b'{"architectures": ["Tiny"], "hidden_size": 8}\n')
    (root / "empty.txt").write_bytes(b"")
    return root


def _pae(payload: bytes) -> bytes:
    kind = b"application/vnd.in-toto+json"
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _resign(bundle: dict[str, object], statement: dict[str, object], key: ec.EllipticCurvePrivateKey) -> dict:
    payload = json.dumps(statement, indent=2).encode()
    sig = key.sign(_pae(payload), ec.ECDSA(hashes.SHA256()))
    out = json.loads(json.dumps(bundle))
    out["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    out["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    return out


def main() -> None:
    from model_signing import hashing, signing

    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.TemporaryDirectory() as tmp:
        priv = Path(tmp) / "key.pem"
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        model = golden_model(Path(tmp) / "golden-model")
        configs = {
            "ms-sha256-files.sig": hashing.Config().use_file_serialization(hashing_algorithm="sha256"),
            "ms-blake3-files.sig": hashing.Config().use_file_serialization(hashing_algorithm="blake3"),
            "ms-sha256-shards.sig": hashing.Config().use_shard_serialization(
                hashing_algorithm="sha256", shard_size=16_384
            ),
        }
        for name, config in configs.items():
            signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(config).sign(
                model, HERE / name
            )
    (HERE / "signer.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    base = json.loads((HERE / "ms-sha256-files.sig").read_text())
    statement = json.loads(base64.b64decode(base["dsseEnvelope"]["payload"]))

    # The payload edited after signing (a resource digest replaced), signature kept.
    edited = json.loads(json.dumps(statement))
    edited["predicate"]["resources"][0]["digest"] = "0" * 64
    tampered = json.loads(json.dumps(base))
    tampered["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(edited).encode()).decode()
    hostile = {"hostile-payload-edited.sig": tampered}

    # Validly signed, but a resource name climbs out of the model directory.
    traversal = json.loads(json.dumps(statement))
    traversal["predicate"]["resources"][0]["name"] = "../../../etc/passwd"
    hostile["hostile-path-traversal.sig"] = _resign(base, traversal, key)

    # Validly signed, but the subject digest does not cover the listed resources.
    dropped = json.loads(json.dumps(statement))
    dropped["predicate"]["resources"].pop()
    hostile["hostile-root-digest-mismatch.sig"] = _resign(base, dropped, key)

    # Another bundle media type.
    other_media = json.loads(json.dumps(base))
    other_media["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
    hostile["hostile-media-type.sig"] = other_media

    for name, bundle in hostile.items():
        (HERE / name).write_text(json.dumps(bundle, separators=(",", ":")))


if __name__ == "__main__":
    main()
