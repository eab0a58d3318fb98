"""OpenSSF Model Signing (OMS) signatures with elliptic-curve keys: our producer and verifier.

The format is the one model-signing 1.1.1 writes and reads with its ``key`` method, rebuilt here
from its source so that gpaisec needs no model-signing at run time (the tests check both ways):

* an in-toto Statement v1 (``_type`` ``https://in-toto.io/Statement/v1``) whose one subject is
  the model (``name``: the directory's name, informative; ``digest.sha256``: SHA-256 over the
  raw resource digests in canonical order), with ``predicateType``
  ``https://model_signing/signature/v1.0`` and a predicate holding ``serialization`` (method,
  hash_type, shard_size for shards, allow_symlinks, ignore_paths when any) and ``resources``
  (``name``: ``path`` or ``path:start:end``; ``algorithm``: ``sha256``, ``blake3`` or
  ``sha256-sharded-<shard_size>``; ``digest``: hex);
* serialised as JSON, signed as a DSSE envelope (payload type ``application/vnd.in-toto+json``;
  ECDSA over the DSSE v1 pre-authentication encoding, SHA-256/384/512 for P-256/384/521, DER
  signature, ``keyid`` empty);
* inside a sigstore bundle (media type ``application/vnd.dev.sigstore.bundle.v0.3+json``) whose
  verification material is ``publicKey.hint``: SHA-256 hex of the signer's public key PEM
  (SubjectPublicKeyInfo), and no transparency-log entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gpaisec._files import write_atomically
from gpaisec.errors import InputError
from gpaisec.integrity._engine import ProgressCallback, hash_tree
from gpaisec.integrity._errors import Problem, VerificationError
from gpaisec.integrity._manifest import HashParams, Manifest, Resource
from gpaisec.integrity._paths import check_model_path, normalize_model_path

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DSSE_PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "pae",
    "public_key_hint",
    "sign",
    "statement_for",
    "verify",
    "verify_signature",
]

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
DSSE_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"
_OLD_PREDICATE_TYPE: Final = "https://model_signing/Digests/v0.1"
_MAX_SIGNATURE_BYTES: Final = 256 << 20
_CURVE_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}

_log = logging.getLogger("gpaisec.integrity")

PathLike = str | os.PathLike[str]


# -- building blocks -------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def public_key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 hex of the key's PEM SubjectPublicKeyInfo: model-signing's ``publicKey.hint``."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _ecdsa(key: ec.EllipticCurvePublicKey) -> ec.ECDSA:
    return ec.ECDSA(_CURVE_HASHES[key.curve.name]())


def _oms_serialization(params: HashParams) -> dict[str, Any]:
    out: dict[str, Any] = {"method": params.method, "hash_type": params.algorithm}
    if params.method == "shards":
        out["shard_size"] = params.shard_size
    out["allow_symlinks"] = params.allow_symlinks
    if params.ignore_paths:
        out["ignore_paths"] = list(params.ignore_paths)
    return out


def statement_for(manifest: Manifest) -> dict[str, Any]:
    """The in-toto Statement that signs ``manifest``, exactly as model-signing structures it."""
    algorithm = manifest.params.resource_algorithm
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": manifest.model_name or "model", "digest": {"sha256": manifest.oms_root_digest()}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": _oms_serialization(manifest.params),
            "resources": [
                {"name": r.name, "algorithm": algorithm, "digest": r.digest} for r in manifest.resources
            ],
        },
    }


def _load_private_key(path: PathLike, password: bytes | None) -> ec.EllipticCurvePrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read private key {os.fspath(path)!r}: {exc.strerror or exc}",
            hint="give the path of a PEM private key file",
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        raise InputError(
            f"private key {os.fspath(path)!r} is encrypted and no password was given"
            if password is None
            else f"private key {os.fspath(path)!r} is not encrypted, but a password was given",
            hint="pass the key's password, or none for an unencrypted key",
        ) from None
    except ValueError:
        raise InputError(
            f"cannot load private key {os.fspath(path)!r} (not PEM, damaged, or wrong password)",
            hint="make an EC P-256 key with: openssl ecparam -name prime256v1 -genkey -noout -out key.pem",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _CURVE_HASHES:
        raise InputError(
            f"private key {os.fspath(path)!r} is not an EC key on P-256, P-384 or P-521",
            hint="OMS key signatures use elliptic-curve keys; P-256 is the usual choice",
        )
    return key


def _load_public_key(path: PathLike) -> ec.EllipticCurvePublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read public key {os.fspath(path)!r}: {exc.strerror or exc}",
            hint="give the path of the signer's PEM public key",
        ) from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise InputError(
            f"{os.fspath(path)!r} is not a PEM public key",
            hint="export it with: openssl ec -in key.pem -pubout -out key.pub",
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVE_HASHES:
        raise InputError(f"public key {os.fspath(path)!r} is not an EC key on P-256, P-384 or P-521")
    return key


def _inside(model_dir: PathLike, path: PathLike) -> str | None:
    """``path`` as a model path if it lies inside ``model_dir`` (after resolving), else None."""
    root = Path(model_dir).resolve()
    target = Path(path).resolve()
    try:
        rel = target.relative_to(root)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


# -- signing -----------------------------------------------------------------------------------


def sign(
    source: Manifest | PathLike,
    private_key: PathLike,
    output: PathLike,
    *,
    params: HashParams | None = None,
    password: bytes | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Sign a model directory (hashing it first) or an existing manifest; write an OMS bundle.

    Args:
        source: the model directory, or a :class:`Manifest` already made of it.
        private_key: PEM EC private key (P-256, P-384 or P-521).
        output: where to write the signature (sigstore bundle JSON). If it lies inside the
            model directory it is added to the ignore paths, so it does not sign itself.
        params: how to hash a directory (default :class:`HashParams`); with a manifest, must be
            omitted or equal to the manifest's.
        password: the private key's password, if it is encrypted (never take it from argv).
        progress: ``progress(bytes_done, bytes_total)`` while hashing.

    Returns:
        The manifest that was signed.
    """
    key = _load_private_key(private_key, password)
    if isinstance(source, Manifest):
        if params is not None and params != source.params:
            raise InputError(
                "params differ from the manifest's own",
                hint="omit params when signing an existing manifest",
            )
        manifest = source
    else:
        params = params or HashParams()
        own = _inside(source, output)
        if own is not None and own not in params.ignore_paths:
            params = params.with_ignored(own)
        manifest = hash_tree(source, params, progress=progress)
    payload = json.dumps(statement_for(manifest), indent=2).encode("utf-8")
    signature = key.sign(pae(DSSE_PAYLOAD_TYPE, payload), _ecdsa(key.public_key()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": public_key_hint(key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": DSSE_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    write_atomically(
        Path(output), json.dumps(bundle, separators=(",", ":")).encode("utf-8"), what="the signature"
    )
    return manifest


# -- verification ------------------------------------------------------------------------------


def _bad(message: str, hint: str | None = None) -> VerificationError:
    return VerificationError(
        message,
        problem=Problem.FORMAT,
        hint=hint or "the signature file is damaged or was not made by an OMS signer; get a good copy",
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _bad(f"signature JSON repeats the key {k!r}")
        out[k] = v
    return out


def _json_object(text: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(f"{what} is not a JSON object")
    return data


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"{where}.{key} is missing or not a {kind.__name__}")
    return value


def _b64(text: str, where: str) -> bytes:
    try:  # protobuf JSON writers may use the URL-safe alphabet; accept both, strictly
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where} is not valid base64") from None


def _params_from_oms(ser: Mapping[str, Any]) -> HashParams:
    known = {"method", "hash_type", "shard_size", "allow_symlinks", "ignore_paths"}
    unknown = set(ser) - known
    if unknown:
        raise VerificationError(
            f"signature uses serialization parameters this version does not know: {sorted(unknown)}",
            problem=Problem.FORMAT,
            hint="a newer model-signing made it; verify with that version",
        )
    method = _field(ser, "method", str, "serialization")
    hash_type = _field(ser, "hash_type", str, "serialization")
    allow = _field(ser, "allow_symlinks", bool, "serialization")
    if method not in ("files", "shards") or hash_type not in ("sha256", "blake3"):
        raise VerificationError(
            f"signature uses method {method!r} with hash {hash_type!r}; "
            "gpaisec verifies files or shards with sha256 or blake3",
            problem=Problem.FORMAT,
            hint="re-sign the model with sha256 or blake3",
        )
    shard_size: int | None = None
    if method == "shards":
        raw = ser.get("shard_size")
        # model-signing writes the predicate through a protobuf Struct, which turns the integer
        # into a float (1000000000.0); accept a float only when it is a whole number.
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
            raise _bad(f"serialization.shard_size must be a positive integer, got {raw!r}")
        shard_size = raw
    ignore = ser.get("ignore_paths", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise _bad("serialization.ignore_paths must be a list of strings")
    try:
        paths = tuple(normalize_model_path(p, what="signed ignore path") for p in ignore)
        return HashParams(
            algorithm=hash_type,
            method=method,
            shard_size=shard_size,
            allow_symlinks=allow,
            ignore_paths=paths,
        )
    except InputError as exc:
        raise _bad(f"signature has unusable serialization parameters: {exc.message}") from None


def _resource_from_oms(raw: object, params: HashParams) -> Resource:
    if not isinstance(raw, dict):
        raise _bad("a predicate resource is not a JSON object")
    name = _field(raw, "name", str, "resource")
    algorithm = _field(raw, "algorithm", str, "resource")
    digest = _field(raw, "digest", str, "resource")
    if algorithm != params.resource_algorithm:
        raise _bad(
            f"resource {name!r} was hashed with {algorithm!r}, "
            f"but the serialization says {params.resource_algorithm!r}"
        )
    try:
        if params.method == "files":
            return Resource(check_model_path(name, what="signed path"), digest)
        path, start, end = name.rsplit(":", 2)
        if not (start.isdigit() and end.isdigit() and start.isascii() and end.isascii()):
            raise _bad(f"shard resource name {name!r} is not path:start:end")
        return Resource(check_model_path(path, what="signed path"), digest, int(start), int(end))
    except ValueError:
        raise _bad(f"shard resource name {name!r} is not path:start:end") from None
    except InputError as exc:
        raise _bad(exc.message) from None


def manifest_from_statement(statement: Mapping[str, Any]) -> Manifest:
    """Read the manifest out of a (verified) OMS in-toto statement, checking its consistency."""
    if statement.get("_type") != STATEMENT_TYPE:
        raise _bad(f"payload is not an in-toto Statement v1 (_type {statement.get('_type')!r})")
    predicate_type = statement.get("predicateType")
    if predicate_type != PREDICATE_TYPE:
        hint = (
            "this is a pre-1.0 model-signing signature; re-sign the model with model-signing >= 1.0"
            if predicate_type == _OLD_PREDICATE_TYPE
            else None
        )
        raise _bad(f"predicateType is {predicate_type!r}, expected {PREDICATE_TYPE!r}", hint)
    subjects = _field(statement, "subject", list, "statement")
    if len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _bad(f"statement has {len(subjects)} subjects, expected exactly one (the model)")
    name = _field(subjects[0], "name", str, "subject")
    root = _field(_field(subjects[0], "digest", dict, "subject"), "sha256", str, "subject.digest")
    predicate = _field(statement, "predicate", dict, "statement")
    params = _params_from_oms(_field(predicate, "serialization", dict, "predicate"))
    raw_resources = _field(predicate, "resources", list, "predicate")
    resources = [_resource_from_oms(r, params) for r in raw_resources]
    # The subject digest covers the resource digests in the order listed (model-signing's check).
    h = hashlib.sha256()
    try:
        for r in resources:
            h.update(bytes.fromhex(r.digest))
    except ValueError:
        raise _bad("a resource digest is not hex") from None
    if h.hexdigest() != root:
        raise _bad(f"the subject digest {root} does not match the resources, which hash to {h.hexdigest()}")
    try:
        return Manifest(params=params, resources=tuple(resources), model_name=name)
    except InputError as exc:
        raise _bad(f"signed manifest is not usable: {exc.message}") from None


def verify_signature(signature: PathLike, public_key: PathLike) -> Manifest:
    """Check that ``signature`` is an OMS bundle signed by ``public_key``; return its manifest.

    This checks authenticity only; :func:`verify` also checks a model directory against it.

    Raises:
        VerificationError: problem FORMAT, KEY or SIGNATURE (see the steps below).
        InputError: the public key cannot be read.
    """
    sig_path = os.fspath(signature)
    # Step 1: read the bundle (bounded) and parse it as one JSON object without duplicate keys.
    try:
        size = os.stat(sig_path).st_size
        if size > _MAX_SIGNATURE_BYTES:
            raise _bad(f"signature {sig_path!r} is {size} bytes, more than any manifest needs")
        raw = Path(sig_path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read signature {sig_path!r}: {exc.strerror or exc}",
            hint="give the path of the signature file (a sigstore bundle, JSON)",
        ) from None
    bundle = _json_object(raw, "signature file")

    # Step 2: it must be a sigstore bundle v0.3, the only media type model-signing accepts.
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise _bad(f"bundle mediaType is {bundle.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE!r}")

    # Step 3: the key hint, when present, must name the key we were given.
    key = _load_public_key(public_key)
    material = _field(bundle, "verificationMaterial", dict, "bundle")
    public = material.get("publicKey")
    hint = public.get("hint") if isinstance(public, dict) else None
    if hint:
        if hint != public_key_hint(key):
            raise VerificationError(
                "the signature was made with another key than the one given",
                problem=Problem.KEY,
                hint=f"the signer's key hint is {hint}; verify with the matching public key",
            )
    else:
        _log.warning("signature %s names no public key; checking it with the given key", sig_path)

    # Step 4: one DSSE envelope of in-toto JSON with exactly one signature.
    envelope = _field(bundle, "dsseEnvelope", dict, "bundle")
    if envelope.get("payloadType") != DSSE_PAYLOAD_TYPE:
        raise _bad(f"DSSE payloadType is {envelope.get('payloadType')!r}, expected {DSSE_PAYLOAD_TYPE!r}")
    sigs = _field(envelope, "signatures", list, "dsseEnvelope")
    if len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise _bad(f"DSSE envelope has {len(sigs)} signatures, expected exactly one")
    payload = _b64(_field(envelope, "payload", str, "dsseEnvelope"), "DSSE payload")
    sig = _b64(_field(sigs[0], "sig", str, "signature"), "DSSE signature")

    # Step 5: the ECDSA signature must verify over the DSSE pre-authentication encoding.
    try:
        key.verify(sig, pae(DSSE_PAYLOAD_TYPE, payload), _ecdsa(key))
    except InvalidSignature:
        raise VerificationError(
            "the signature does not verify: the signed statement or the signature was altered, "
            "or another key signed it",
            problem=Problem.SIGNATURE,
            hint="get the signature again from a trusted source; do not use this model copy "
            "until it verifies",
        ) from None

    # Step 6: only now parse the signed statement, and rebuild and check the manifest from it.
    return manifest_from_statement(_json_object(payload, "signed statement"))


def verify(
    model_dir: PathLike,
    signature: PathLike,
    public_key: PathLike,
    *,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> Manifest:
    """Verify a model directory against an OMS signature; return the verified manifest.

    Never returns a verdict to check: any failure raises.

    Raises:
        VerificationError: the signature is malformed (FORMAT), made by another key (KEY), does
            not verify (SIGNATURE), or the files differ from the signed ones (CONTENT; then
            ``diff`` lists changed, missing and extra files).
        InputError: a key, the signature or a model file cannot be read, or the directory holds
            something the signed parameters refuse (a symlink, a special file).
    """
    # Steps 1-6: the signature itself (see verify_signature).
    expected = verify_signature(signature, public_key)

    # Step 7: hash the directory again with the signed parameters. A signature file kept inside
    # the model directory is left out, as model-signing's CLI does.
    own = _inside(model_dir, signature)
    actual = hash_tree(
        model_dir,
        expected.params,
        progress=progress,
        workers=workers,
        extra_ignore=frozenset([own]) if own else frozenset(),
    )

    # Step 8: every signed file must be present with the signed content, and nothing more.
    diff = expected.diff(actual)
    if not diff.empty:
        raise VerificationError(
            f"model {os.fspath(model_dir)!r} does not match its signature: {diff.summary()}",
            problem=Problem.CONTENT,
            diff=diff,
            hint="the model files changed after signing; restore them from a trusted copy, "
            "or review the change and sign again",
        )
    return expected
