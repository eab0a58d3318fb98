"""Registering a version's weights: the manifest that identifies them and the fingerprints that
let discovery recognise copies without hashing whole files.

What each file's record keeps, and why (no schema change: all of it is in the ``fingerprint`` JSON
of :class:`~gpaisec.weights.models.ArtifactFile`, beside the manifest's own ``digest`` column):

* the manifest's digest, ``algorithm:hex`` -- the algorithm the manifest was hashed with, of the
  whole file (method ``files``) or of each shard, comma-separated (method ``shards``);
* plain BLAKE3 of the whole file (:attr:`FileDigests.digest`), whatever the manifest used;
* plain SHA-256 of the whole file (:attr:`FileDigests.sha256`), taken from the manifest when it is
  exactly that (SHA-256, method ``files``) and otherwise computed in the same read as BLAKE3.

A gpaisec sealed file's header records BLAKE3 or SHA-256 of its whole plaintext, so with both kept
a sealed copy of any registered file is recognised from its header alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gpaisec.audit.service import record
from gpaisec.errors import InputError
from gpaisec.integrity import HashParams, Manifest, ProgressCallback, hash_directory
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.fingerprint import Digest, FileDigests, digest_file
from gpaisec.weights.formats import Format, sniff
from gpaisec.weights.matching import MatchIndex, RegisteredArtifact, RegisteredFile
from gpaisec.weights.models import Artifact, ArtifactFile, ModelVersion
from gpaisec.weights.registry import create_version
from gpaisec.workspace import Workspace

__all__ = ["load_match_index", "register_version"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _manifest_sha256(manifest: Manifest, rel: str) -> Digest | None:
    """The whole file's SHA-256 if that is what the manifest recorded for it, else None."""
    resources = manifest.files[rel]
    if manifest.params.algorithm != "sha256" or manifest.params.method != "files" or len(resources) != 1:
        return None
    return Digest(resources[0].digest)


def _fingerprints(source: Path, manifest: Manifest) -> list[ArtifactFile]:
    files = []
    for rel in manifest.files:
        path = source / rel
        size = path.stat().st_size
        fmt = sniff(str(path))
        fingerprint: dict[str, Any] | None = None
        if fmt is not Format.UNKNOWN:
            known = _manifest_sha256(manifest, rel)
            digests = digest_file(str(path), sha256=known is None)
            if known is not None:
                digests = dataclasses.replace(digests, sha256=known)
            fingerprint = digests.to_json()
        resources = manifest.files[rel]
        digest = resources[0].digest if len(resources) == 1 else ",".join(r.digest for r in resources)
        files.append(
            ArtifactFile(
                path=rel,
                size=size,
                digest=f"{manifest.params.algorithm}:{digest}"[:160],
                format=str(fmt),
                fingerprint=fingerprint,
            )
        )
    return files


def register_version(
    ws: Workspace,
    model: str,
    version: str,
    *,
    source: Path,
    released: bool | None = None,
    training_flop: float | None = None,
    params: HashParams | None = None,
    progress: ProgressCallback | None = None,
) -> Artifact:
    """Hash ``source``, fingerprint its weight files, and register them as ``model:version``.

    The hashing happens before the transaction; the version, its artifact and the audit event are
    written together or not at all.
    """
    if not source.is_dir():
        raise InputError(
            f"{source} is not a directory", hint="give the directory holding the version's files"
        )
    manifest = hash_directory(source, params, progress=progress)
    if not manifest.resources:
        raise InputError(f"{source} holds no files to register")
    files = _fingerprints(source, manifest)
    if not any(f.fingerprint for f in files):
        raise InputError(
            f"no file in {source} is in a known weight format",
            hint="expected safetensors, GGUF, PyTorch, pickle, ONNX, HDF5 or NumPy files",
        )
    with ws.transaction() as s:
        v = create_version(s, ws, model, version, released=released, training_flop=training_flop)
        artifact = Artifact(
            id=new_id("art"),
            version_id=v.id,
            manifest_digest=str(manifest.digest()),
            algorithm=manifest.params.algorithm,
            manifest=_manifest_json(manifest),
            file_count=len(files),
            total_size=sum(f.size for f in files),
            source=os.fspath(source.absolute()),
            registered_at=utcnow(),
            registered_by=ws.actor,
            files=files,
        )
        s.add(artifact)
        record(
            s,
            actor=ws.actor,
            action="artifact.register",
            object=f"version:{model}:{version}",
            details={
                "artifact": artifact.id,
                "manifest": artifact.manifest_digest,
                "files": artifact.file_count,
                "bytes": artifact.total_size,
                "source": artifact.source,
            },
        )
    return artifact


def _manifest_json(manifest: Manifest) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(manifest.to_json(indent=None))
    return data


def load_match_index(s: Session) -> tuple[MatchIndex, dict[str, ModelVersion]]:
    """The discovery index over every registered artifact, and the versions by ``model:version``.

    A file registered before its SHA-256 was kept gets it from the manifest when the manifest holds
    exactly that (see the module docs); otherwise only a BLAKE3-sealed copy of it can be recognised.
    """
    artifacts = list(
        s.scalars(
            select(Artifact).options(
                selectinload(Artifact.files),
                selectinload(Artifact.version).selectinload(ModelVersion.model),
            )
        )
    )
    registered = []
    versions: dict[str, ModelVersion] = {}
    for a in artifacts:
        versions[a.version.ref] = a.version
        files = tuple(
            RegisteredFile(path=f.path, digests=_with_sha256(FileDigests.from_json(f.fingerprint), f.digest))
            for f in a.files
            if f.fingerprint is not None
        )
        registered.append(
            RegisteredArtifact(
                model=a.version.model.name, version=a.version.name, files=files, artifact_id=a.id
            )
        )
    return MatchIndex(registered), versions


def _with_sha256(digests: FileDigests, manifest_digest: str) -> FileDigests:
    algorithm, _sep, value = manifest_digest.partition(":")
    if digests.sha256 is not None or algorithm != "sha256" or not _HEX64.fullmatch(value):
        return digests
    return dataclasses.replace(digests, sha256=Digest(value))
