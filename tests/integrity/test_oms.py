"""OMS signatures: interoperability with model-signing both ways, and every way to fail."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gpaisec.errors import InputError, IntegrityError
from gpaisec.integrity import (
    BUNDLE_MEDIA_TYPE,
    HashParams,
    Manifest,
    Problem,
    VerificationError,
    check_directory,
    hash_directory,
    public_key_hint,
    sign,
    statement_for,
    verify,
    verify_signature,
)
from gpaisec.integrity._oms import pae
from tests.integrity.conftest import write_key_pair

model_signing = pytest.importorskip("model_signing")
from model_signing import hashing as ms_hashing  # noqa: E402
from model_signing import signing as ms_signing  # noqa: E402
from model_signing import verifying as ms_verifying  # noqa: E402

PARAMS = [
    HashParams(),
    HashParams(algorithm="sha256"),
    HashParams(algorithm="sha256", method="shards", shard_size=65_536),
]
IDS = ["blake3-files", "sha256-files", "sha256-shards"]


def ms_config(params: HashParams) -> Any:
    config = ms_hashing.Config()
    if params.method == "shards":
        return config.use_shard_serialization(hashing_algorithm="sha256", shard_size=params.shard_size)
    return config.use_file_serialization(hashing_algorithm=params.algorithm)


def ms_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_signing", *args], capture_output=True, text=True)


def read_bundle(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def payload_of(bundle: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return data


def sign_statement(statement: dict[str, Any], private_key: Path, out: Path) -> None:
    """Sign any statement the way an OMS signer does (independent of gpaisec's sign)."""
    key = serialization.load_pem_private_key(private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = json.dumps(statement).encode()
    sig = key.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    out.write_text(
        json.dumps(
            {
                "mediaType": BUNDLE_MEDIA_TYPE,
                "verificationMaterial": {"publicKey": {"hint": public_key_hint(key.public_key())}},
                "dsseEnvelope": {
                    "payload": base64.b64encode(payload).decode(),
                    "payloadType": "application/vnd.in-toto+json",
                    "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
                },
            }
        )
    )


def raises(problem: Problem) -> Any:
    return pytest.raises(VerificationError, check=lambda e: e.problem is problem)


# -- interop: model-signing verifies ours ---------------------------------------------------


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_model_signing_api_verifies_our_signature(
    model: Path, tmp_path: Path, keys: dict[str, Path], params: HashParams
) -> None:
    sig = tmp_path / "model.sig"
    signed = sign(model, keys["private"], sig, params=params)
    assert signed.params == params
    # No hashing config given: model-signing reads method, algorithm and shard size from our
    # signature, exactly as it would for one of its own.
    ms_verifying.Config().use_elliptic_key_verifier(public_key=keys["public"]).verify(model, sig)
    (model / "config.json").write_bytes(b'{"hidden": 9}')
    with pytest.raises(ValueError, match="Signature mismatch"):
        ms_verifying.Config().use_elliptic_key_verifier(public_key=keys["public"]).verify(model, sig)


def test_model_signing_cli_verifies_our_sha256_signature(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    # The CLI always re-hashes with its defaults (SHA-256, per file), so that is what it can check.
    sig = tmp_path / "model.sig"
    sign(model, keys["private"], sig, params=HashParams(algorithm="sha256"))
    ok = ms_cli("verify", "key", "--signature", str(sig), "--public_key", str(keys["public"]), str(model))
    assert ok.returncode == 0, ok.stderr
    assert "Verification succeeded" in ok.stdout
    (model / "tokenizer" / "vocab.txt").write_bytes(b"evil")
    bad = ms_cli("verify", "key", "--signature", str(sig), "--public_key", str(keys["public"]), str(model))
    assert bad.returncode != 0
    assert "tokenizer/vocab.txt" in bad.stderr


def test_model_signing_verifies_our_p384_signature(model: Path, tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path, "p384", ec.SECP384R1())
    sign(model, private, tmp_path / "s.sig")
    ms_verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, tmp_path / "s.sig")
    verify(model, tmp_path / "s.sig", public)


# -- interop: we verify model-signing's --------------------------------------------------------


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_we_verify_model_signing_api_signature(
    model: Path, tmp_path: Path, keys: dict[str, Path], params: HashParams
) -> None:
    sig = tmp_path / "theirs.sig"
    ms_signing.Config().use_elliptic_key_signer(private_key=keys["private"]).set_hashing_config(
        ms_config(params)
    ).sign(model, sig)
    manifest = verify(model, sig, keys["public"])
    assert manifest.params == params
    assert manifest == hash_directory(model, params)
    assert manifest.model_name == "model"


def test_we_verify_model_signing_cli_signature_kept_inside_the_model(
    model: Path, keys: dict[str, Path]
) -> None:
    sig = model / "model.sig"
    out = ms_cli("sign", "key", "--private_key", str(keys["private"]), "--signature", str(sig), str(model))
    assert out.returncode == 0, out.stderr
    manifest = verify(model, sig, keys["public"])
    assert "model.sig" in manifest.params.ignore_paths  # the CLI records its own signature
    assert "model.sig" not in manifest.files


def test_we_detect_tampering_under_a_model_signing_signature(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    sig = tmp_path / "theirs.sig"
    ms_signing.Config().use_elliptic_key_signer(private_key=keys["private"]).sign(model, sig)
    (model / "model-00002-of-00002.safetensors").write_bytes(b"swapped weights")
    (model / "backdoor.py").write_bytes(b"import os")
    with raises(Problem.CONTENT) as info:
        verify(model, sig, keys["public"])
    diff = info.value.diff
    assert diff is not None
    assert diff.changed == ("model-00002-of-00002.safetensors",)
    assert diff.extra == ("backdoor.py",)
    assert isinstance(info.value, IntegrityError)
    assert info.value.exit_code == 4


# -- our own signatures ------------------------------------------------------------------------


def test_bundle_layout_matches_model_signing(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    ours, theirs = tmp_path / "ours.sig", tmp_path / "theirs.sig"
    manifest = sign(model, keys["private"], ours, params=HashParams(algorithm="sha256"))
    ms_signing.Config().use_elliptic_key_signer(private_key=keys["private"]).sign(model, theirs)
    a, b = read_bundle(ours), read_bundle(theirs)
    assert a["mediaType"] == b["mediaType"] == BUNDLE_MEDIA_TYPE
    assert a["verificationMaterial"] == b["verificationMaterial"]
    assert a["dsseEnvelope"]["payloadType"] == b["dsseEnvelope"]["payloadType"]
    assert a["dsseEnvelope"]["signatures"][0]["keyid"] == b["dsseEnvelope"]["signatures"][0]["keyid"] == ""
    pa, pb = payload_of(a), payload_of(b)
    # Same statement, field for field. model-signing lists ignore_paths in set order, so sort.
    for p in (pa, pb):
        p["predicate"]["serialization"]["ignore_paths"].sort()
    assert pa == pb
    assert pa == json.loads(json.dumps(statement_for(manifest)))


def test_signature_inside_model_is_recorded_and_left_out(model: Path, keys: dict[str, Path]) -> None:
    sig = model / "sigs" / "model.sig"
    sig.parent.mkdir()
    manifest = sign(model, keys["private"], sig)
    assert "sigs/model.sig" in manifest.params.ignore_paths
    assert verify(model, sig, keys["public"]) == manifest
    ms_verifying.Config().use_elliptic_key_verifier(public_key=keys["public"]).verify(model, sig)


def test_signature_file_is_written_whole_and_readable(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    sig = tmp_path / "out" / "m.sig"
    sig.parent.mkdir()
    sign(model, keys["private"], sig)
    assert os.stat(sig).st_mode & 0o777 == 0o644
    assert os.listdir(sig.parent) == ["m.sig"]


def test_sign_an_existing_manifest(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    manifest = hash_directory(model, HashParams(algorithm="sha256"))
    sign(manifest, keys["private"], tmp_path / "s.sig")
    assert verify(model, tmp_path / "s.sig", keys["public"]) == manifest
    with pytest.raises(InputError, match="params differ"):
        sign(manifest, keys["private"], tmp_path / "t.sig", params=HashParams())


def test_verify_signature_alone_returns_the_signed_manifest(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    manifest = sign(model, keys["private"], tmp_path / "s.sig")
    assert verify_signature(tmp_path / "s.sig", keys["public"]) == manifest


def test_check_directory_against_a_trusted_manifest(model: Path) -> None:
    manifest = hash_directory(model)
    assert check_directory(model, manifest) == manifest
    (model / "empty.bin").write_bytes(b"!")
    with raises(Problem.CONTENT) as info:
        check_directory(model, manifest)
    assert info.value.diff is not None
    assert info.value.diff.changed == ("empty.bin",)


# -- keys ---------------------------------------------------------------------------------------


def test_wrong_key_is_named_as_such(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    sign(model, keys["private"], tmp_path / "s.sig")
    with raises(Problem.KEY) as info:
        verify(model, tmp_path / "s.sig", keys["other_public"])
    assert "another key" in info.value.message


def test_without_a_key_hint_the_signature_still_decides(
    model: Path, tmp_path: Path, keys: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sig = tmp_path / "s.sig"
    sign(model, keys["private"], sig)
    bundle = read_bundle(sig)
    del bundle["verificationMaterial"]["publicKey"]["hint"]
    sig.write_text(json.dumps(bundle))
    with caplog.at_level(logging.WARNING, logger="gpaisec.integrity"):
        verify(model, sig, keys["public"])
    assert "names no public key" in caplog.text
    with raises(Problem.SIGNATURE):
        verify(model, sig, keys["other_public"])


def test_encrypted_private_key(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enc = tmp_path / "enc.pem"
    enc.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse battery staple"),
        )
    )
    pub = tmp_path / "enc.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    sign(model, enc, tmp_path / "s.sig", password=b"correct horse battery staple")
    verify(model, tmp_path / "s.sig", pub)
    with pytest.raises(InputError, match="encrypted and no password"):
        sign(model, enc, tmp_path / "s.sig")
    with pytest.raises(InputError, match="wrong password"):
        sign(model, enc, tmp_path / "s.sig", password=b"wrong")
    with pytest.raises(InputError, match="not encrypted"):
        sign(model, keys["private"], tmp_path / "s.sig", password=b"x")


def test_non_ec_and_missing_keys_are_refused(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(InputError, match="not an EC key"):
        sign(model, rsa_key, tmp_path / "s.sig")
    with pytest.raises(InputError, match="cannot read private key"):
        sign(model, tmp_path / "absent.pem", tmp_path / "s.sig")
    sign(model, keys["private"], tmp_path / "s.sig")
    with pytest.raises(InputError, match="not a PEM public key"):
        verify(model, tmp_path / "s.sig", keys["private"])
    assert not (tmp_path / "absent.sig").exists()


# -- tampered signatures -----------------------------------------------------------------------


@pytest.fixture
def signed(model: Path, tmp_path: Path, keys: dict[str, Path]) -> tuple[Path, Path, dict[str, Any]]:
    sig = tmp_path / "s.sig"
    sign(model, keys["private"], sig)
    return model, sig, read_bundle(sig)


def test_altered_payload_breaks_the_signature(
    signed: tuple[Path, Path, dict[str, Any]], keys: dict[str, Path]
) -> None:
    model, sig, bundle = signed
    statement = payload_of(bundle)
    # The attacker updates the signed digest to match a replaced file, keeping the signature.
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    with raises(Problem.SIGNATURE):
        verify(model, sig, keys["public"])


def test_altered_signature_bytes_fail(
    signed: tuple[Path, Path, dict[str, Any]], keys: dict[str, Path]
) -> None:
    model, sig, bundle = signed
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    with raises(Problem.SIGNATURE):
        verify(model, sig, keys["public"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.1"), "mediaType"),
        (lambda b: b["dsseEnvelope"].update(payloadType="text/plain"), "payloadType"),
        (lambda b: b["dsseEnvelope"]["signatures"].append(b["dsseEnvelope"]["signatures"][0]), "exactly one"),
        (lambda b: b["dsseEnvelope"].update(signatures=[]), "exactly one"),
        (lambda b: b["dsseEnvelope"].update(payload="***"), "not valid base64"),
        (lambda b: b.pop("dsseEnvelope"), "dsseEnvelope is missing"),
        (lambda b: b.pop("verificationMaterial"), "verificationMaterial is missing"),
    ],
)
def test_malformed_bundles_are_format_failures(
    signed: tuple[Path, Path, dict[str, Any]], keys: dict[str, Path], mutate: Any, message: str
) -> None:
    model, sig, bundle = signed
    mutate(bundle)
    sig.write_text(json.dumps(bundle))
    with raises(Problem.FORMAT) as info:
        verify(model, sig, keys["public"])
    assert message in info.value.message


def test_not_json_and_duplicate_keys_are_refused(
    signed: tuple[Path, Path, dict[str, Any]], keys: dict[str, Path]
) -> None:
    model, sig, bundle = signed
    sig.write_text("{not json")
    with raises(Problem.FORMAT):
        verify(model, sig, keys["public"])
    text = json.dumps(bundle)
    sig.write_text(text[:-1] + ', "mediaType": "x"}')
    with raises(Problem.FORMAT) as info:
        verify(model, sig, keys["public"])
    assert "repeats the key" in info.value.message


# Validly signed, hostile or broken statements: the signer's key is trusted, the content is not.


def _statement(model: Path) -> dict[str, Any]:
    return json.loads(json.dumps(statement_for(hash_directory(model, HashParams(algorithm="sha256")))))


def _reroot(statement: dict[str, Any]) -> None:
    import hashlib

    h = hashlib.sha256()
    for r in statement["predicate"]["resources"]:
        h.update(bytes.fromhex(r["digest"]))
    statement["subject"][0]["digest"]["sha256"] = h.hexdigest()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["predicate"]["resources"][0].update(name="../../etc/passwd"), "not a relative path"),
        (lambda s: s["predicate"]["resources"][0].update(name="/etc/passwd"), "not a relative path"),
        (lambda s: s["predicate"]["resources"][0].update(algorithm="md5"), "was hashed with 'md5'"),
        (lambda s: s["predicate"]["serialization"].update(hash_type="blake2"), "'blake2'"),
        (lambda s: s["predicate"]["serialization"].update(tensor_level=True), "does not know"),
        (lambda s: s["predicate"]["serialization"].update(ignore_paths=["../up"]), "unusable serialization"),
        (lambda s: s["predicate"]["serialization"].update(allow_symlinks="false"), "allow_symlinks"),
        (lambda s: s.update(predicateType="https://model_signing/Digests/v0.1"), "predicateType"),
        (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "not an in-toto Statement v1"),
        (lambda s: s["subject"].append(s["subject"][0]), "exactly one"),
        (lambda s: s["predicate"]["resources"].append(s["predicate"]["resources"][0]), "appears twice"),
    ],
)
def test_hostile_signed_statements_are_refused(
    model: Path, tmp_path: Path, keys: dict[str, Path], mutate: Any, message: str
) -> None:
    statement = _statement(model)
    mutate(statement)
    _reroot(statement)
    sign_statement(statement, keys["private"], tmp_path / "s.sig")
    with raises(Problem.FORMAT) as info:
        verify(model, tmp_path / "s.sig", keys["public"])
    assert message in info.value.message


def test_subject_digest_must_cover_the_resources(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    statement = _statement(model)
    statement["predicate"]["resources"].pop()  # drop a file, but keep the old subject digest
    sign_statement(statement, keys["private"], tmp_path / "s.sig")
    with raises(Problem.FORMAT) as info:
        verify(model, tmp_path / "s.sig", keys["public"])
    assert "does not match the resources" in info.value.message


def test_a_removed_resource_with_a_fixed_root_shows_up_as_extra(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    statement = _statement(model)
    statement["predicate"]["resources"] = [
        r for r in statement["predicate"]["resources"] if r["name"] != "config.json"
    ]
    _reroot(statement)
    sign_statement(statement, keys["private"], tmp_path / "s.sig")
    with raises(Problem.CONTENT) as info:
        verify(model, tmp_path / "s.sig", keys["public"])
    assert info.value.diff is not None
    assert info.value.diff.extra == ("config.json",)


def test_float_shard_size_from_protobuf_is_accepted(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    statement = json.loads(
        json.dumps(
            statement_for(
                hash_directory(model, HashParams(algorithm="sha256", method="shards", shard_size=4096))
            )
        )
    )
    statement["predicate"]["serialization"]["shard_size"] = 4096.0
    sign_statement(statement, keys["private"], tmp_path / "s.sig")
    assert verify(model, tmp_path / "s.sig", keys["public"]).params.shard_size == 4096
    statement["predicate"]["serialization"]["shard_size"] = 4096.5
    sign_statement(statement, keys["private"], tmp_path / "s.sig")
    with raises(Problem.FORMAT):
        verify(model, tmp_path / "s.sig", keys["public"])


def test_refused_symlink_at_verification_is_an_input_error(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    sign(model, keys["private"], tmp_path / "s.sig")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(tmp_path / "s.sig")
    with pytest.raises(InputError, match="symbolic link"):
        verify(model, tmp_path / "s.sig", keys["public"])


def test_manifest_json_survives_a_round_trip_through_a_signature(
    model: Path, tmp_path: Path, keys: dict[str, Path]
) -> None:
    manifest = sign(model, keys["private"], tmp_path / "s.sig")
    assert Manifest.from_json(verify_signature(tmp_path / "s.sig", keys["public"]).to_json()) == manifest


def test_unwritable_output_is_an_input_error(model: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="cannot write the signature"):
        sign(model, keys["private"], tmp_path / "no-such-dir" / "s.sig")
    with pytest.raises(InputError, match="cannot write the signature"):
        sign(model, keys["private"], tmp_path)  # a directory
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
