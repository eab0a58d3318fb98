"""Registering a version's weights: the manifest that identifies them and the fingerprints that
let discovery recognise copies without hashing whole files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gpaisec.audit.service import record
from gpaisec.errors import InputError
from gpaisec.integrity import HashParams, Manifest, ProgressCallback, hash_directory
from gpaisec.store.base import new_id, utcnow
from gpaisec.weights.fingerprint import digest_file
from gpaisec.weights.formats import Format, sniff
from gpaisec.weights.matching import MatchIndex, RegisteredArtifact, RegisteredFile
from gpaisec.weights.models import Artifact, ArtifactFile, ModelVersion
from gpaisec.weights.registry import create_version
from gpaisec.workspace import Workspace

__all__ = ["load_match_index", "register_version"]


def _fingerprints(source: Path, manifest: Manifest) -> list[ArtifactFile]:
    files = []
    for rel in manifest.files:
        path = source / rel
        size = path.stat().st_size
        fmt = sniff(str(path))
        fingerprint: dict[str, Any] | None = None
        if fmt is not Format.UNKNOWN:
            fingerprint = digest_file(str(path)).to_json()
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
    """The discovery index over every registered artifact, and the versions by ``model:version``."""
    from gpaisec.weights.fingerprint import FileDigests

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
            RegisteredFile(path=f.path, digests=FileDigests.from_json(f.fingerprint))
            for f in a.files
            if f.fingerprint is not None
        )
        registered.append(
            RegisteredArtifact(
                model=a.version.model.name, version=a.version.name, files=files, artifact_id=a.id
            )
        )
    return MatchIndex(registered), versions
