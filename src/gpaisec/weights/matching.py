"""Match scanned weight files against registered artifacts (pure: no I/O, no database).

A :class:`MatchIndex` is built once from the registered artifacts (per artifact: model, version and
the :class:`~gpaisec.weights.fingerprint.FileDigests` of each file, computed at registration). It
holds two dictionaries:

* whole files by (format, size, header digest, sample digest), and
* distinctive tensors by (dtype, shape, sampled digest) -- never by name or file.

:meth:`MatchIndex.match` looks every scanned file up in both and returns a :class:`Discovery`:

* :attr:`MatchKind.FILE_COPY` / :attr:`MatchKind.RENAMED_COPY`: the whole file is a registered file,
  under the same file name (wherever it now is) or under another name;
* :attr:`MatchKind.TENSOR_COPY`: the file is not a registered file, but holds tensors of a
  registered version -- re-sharded into a different number of files, with renamed tensors, merged
  with other tensors, or with bytes appended;
* :attr:`MatchKind.SEALED_COPY`: a gpaisec sealed file whose (unencrypted, checked) header names a
  registered file's plaintext: same length and same plain BLAKE3 or SHA-256 digest. It counts as a
  copy of the whole registered file (and so of its tensors) for coverage. Nothing is decrypted, so
  its evidence is :attr:`Evidence.HEADER`: the header's claim, which ``--confirm`` cannot change.

Coverage is counted in bytes of *units*: each evidence tensor of a version once (duplicates within
a version count once), and each registered file without evidence tensors (GGUF, ONNX, ...) as a
whole. Evidence tensors are the distinctive ones (not constant, at least 1 KiB); when the tensors of
at least ``min_evidence_bytes`` hold 90 % of those bytes, only they are used, which lets the walker
skip, unopened, every file too small to hold one (:attr:`MatchIndex.min_candidate_size`).
A version is *found* when the union of all scanned files covers at least
``found_coverage`` of it. A file holding registered tensors is reported if it is a whole-file copy,
if its matched tensors reach ``min_match_bytes``, or if it contributes to a found version; so a
shared small tensor in an unrelated file is never reported on its own.

A third dictionary holds registered files by (algorithm, plaintext digest, size), for sealed copies:
BLAKE3 from :attr:`FileDigests.digest`, SHA-256 from :attr:`FileDigests.sha256` (kept since
registration computes it) -- see :func:`gpaisec.weights.artifacts.load_match_index` for records
registered before that.

Evidence starts as :attr:`Evidence.SAMPLED` (sampled digests agree). Give the matched files'
:class:`~gpaisec.weights.fingerprint.FileDigests` back in :class:`ScannedFile` and match again to
get :attr:`Evidence.CONFIRMED` (full BLAKE3 digests agree) or :attr:`Evidence.MODIFIED` (the samples
agree but the full digests differ: an edited copy, still derived from the registered weights).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from gpaisec.errors import InputError
from gpaisec.weights.fingerprint import (
    DEFAULT_SCHEME,
    Digest,
    FileDigests,
    FileFingerprint,
    FileKey,
    FingerprintDecodeError,
    SamplingScheme,
    TensorKey,
)
from gpaisec.weights.formats import Format, display_path

__all__ = [
    "DEFAULT_FOUND_COVERAGE",
    "DEFAULT_MIN_EVIDENCE_BYTES",
    "DEFAULT_MIN_MATCH_BYTES",
    "Discovery",
    "Evidence",
    "Match",
    "MatchIndex",
    "MatchKind",
    "RegisteredArtifact",
    "RegisteredFile",
    "ScannedFile",
    "SchemeMismatchError",
    "VersionFinding",
]

DEFAULT_MIN_MATCH_BYTES: Final = 1 << 20
"""Tensor bytes a file must share with a version to be reported on its own (1 MiB)."""

DEFAULT_MIN_EVIDENCE_BYTES: Final = 64 * 1024
"""Distinctive tensors smaller than this (norms, biases) are left out of the evidence of an artifact
whose larger tensors hold at least 90 % of its distinctive bytes. They would add almost nothing to
coverage, and the walker would have to open every file big enough to hold one."""

DEFAULT_FOUND_COVERAGE: Final = 0.5
"""Fraction of a version's bytes the scanned files must cover for the version to count as found."""

Unit: TypeAlias = TensorKey | int
"""A distinctive tensor (its key) or a registered file counted whole (its index in the artifact)."""


class SchemeMismatchError(InputError):
    """Fingerprints made under different sampling schemes cannot be compared."""

    title = "fingerprint scheme mismatch"


class MatchKind(enum.StrEnum):
    FILE_COPY = "file-copy"
    RENAMED_COPY = "renamed-copy"
    TENSOR_COPY = "tensor-copy"
    SEALED_COPY = "sealed-copy"


class Evidence(enum.StrEnum):
    SAMPLED = "sampled"
    CONFIRMED = "confirmed"
    MODIFIED = "modified"
    HEADER = "sealed-header"
    """A sealed file's header names the registered plaintext's digest and length (not decrypted)."""


_RANK: Final = {Evidence.MODIFIED: 0, Evidence.HEADER: 1, Evidence.SAMPLED: 2, Evidence.CONFIRMED: 3}


def _bad(what: str) -> FingerprintDecodeError:
    return FingerprintDecodeError(
        f"stored artifact record is malformed: {what}",
        hint="re-register the artifact to recompute its fingerprints",
    )


@dataclass(frozen=True)
class RegisteredFile:
    """One file of a registered artifact: where it was registered and its digests."""

    path: str
    digests: FileDigests

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "digests": self.digests.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegisteredFile:
        if not isinstance(data, Mapping) or not isinstance(data.get("path"), str):
            raise _bad("a file needs a string 'path'")
        digests = data.get("digests")
        if not isinstance(digests, Mapping):
            raise _bad("a file needs 'digests'")
        return cls(path=data["path"], digests=FileDigests.from_json(digests))


@dataclass(frozen=True)
class RegisteredArtifact:
    """A registered model version's weight files. ``artifact_id`` is passed through to matches."""

    model: str
    version: str
    files: tuple[RegisteredFile, ...]
    artifact_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "artifact_id": self.artifact_id,
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegisteredArtifact:
        if not isinstance(data, Mapping):
            raise _bad("an artifact must be an object")
        model, version, artifact_id = data.get("model"), data.get("version"), data.get("artifact_id")
        files = data.get("files")
        if not isinstance(model, str) or not isinstance(version, str):
            raise _bad("an artifact needs string 'model' and 'version'")
        if artifact_id is not None and not isinstance(artifact_id, str):
            raise _bad("'artifact_id' must be a string or null")
        if not isinstance(files, list):
            raise _bad("an artifact needs a list of 'files'")
        return cls(
            model=model,
            version=version,
            artifact_id=artifact_id,
            files=tuple(RegisteredFile.from_json(f) for f in files),
        )


@dataclass(frozen=True)
class ScannedFile:
    """A file found by the walker: its fingerprint, and its full digests once computed."""

    path: str
    fingerprint: FileFingerprint
    digests: FileDigests | None = None


@dataclass(frozen=True)
class Match:
    """A scanned file holding (part of) a registered version.

    ``matched_bytes`` counts the version's units found in the file; ``candidate_bytes`` is the
    file's tensor bytes (safetensors) or its size. ``registered_path`` names the registered file a
    whole-file copy equals; ``at_registered_path`` is true when the scanned file *is* at that path.
    """

    path: str
    model: str
    version: str
    artifact_id: str | None
    kind: MatchKind
    evidence: Evidence
    matched_bytes: int
    candidate_bytes: int
    tensors_matched: int = 0
    tensors_modified: int = 0
    registered_path: str | None = None
    at_registered_path: bool = False
    format: Format | None = None

    @property
    def sealed(self) -> bool:
        return self.kind is MatchKind.SEALED_COPY

    @property
    def candidate_fraction(self) -> float:
        return self.matched_bytes / self.candidate_bytes if self.candidate_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": display_path(self.path),
            "model": self.model,
            "version": self.version,
            "artifact_id": self.artifact_id,
            "kind": self.kind.value,
            "evidence": self.evidence.value,
            "matched_bytes": self.matched_bytes,
            "candidate_bytes": self.candidate_bytes,
            "tensors_matched": self.tensors_matched,
            "tensors_modified": self.tensors_modified,
            "registered_path": self.registered_path,
            "at_registered_path": self.at_registered_path,
            "format": self.format.value if self.format is not None else None,
        }


@dataclass(frozen=True)
class VersionFinding:
    """How much of one registered version the scanned files hold, taken together."""

    model: str
    version: str
    artifact_id: str | None
    covered_bytes: int
    total_bytes: int
    found: bool
    evidence: Evidence
    paths: tuple[str, ...]

    @property
    def coverage(self) -> float:
        return self.covered_bytes / self.total_bytes if self.total_bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "artifact_id": self.artifact_id,
            "covered_bytes": self.covered_bytes,
            "total_bytes": self.total_bytes,
            "coverage": round(self.coverage, 6),
            "found": self.found,
            "evidence": self.evidence.value,
            "paths": [display_path(p) for p in self.paths],
        }


@dataclass(frozen=True)
class Discovery:
    """The result of matching: per-file matches and per-version findings, both sorted."""

    matches: tuple[Match, ...] = ()
    findings: tuple[VersionFinding, ...] = ()

    def paths_to_confirm(self) -> tuple[str, ...]:
        """Paths whose evidence is only sampled: compute their FileDigests and match again."""
        seen: dict[str, None] = {}
        for match in self.matches:
            if match.evidence is Evidence.SAMPLED:
                seen.setdefault(match.path)
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "matches": [m.to_json() for m in self.matches],
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class _Pair:
    """What one scanned file shares with one artifact."""

    files: list[tuple[int, Evidence]] = field(default_factory=list)
    units: dict[Unit, Evidence] = field(default_factory=dict)
    sealed: bool = False

    def add(self, unit: Unit, evidence: Evidence) -> None:
        old = self.units.get(unit)
        if old is None or _RANK[evidence] > _RANK[old]:
            self.units[unit] = evidence


class MatchIndex:
    """Registered artifacts, indexed for dictionary lookups of scanned fingerprints."""

    def __init__(
        self,
        artifacts: Iterable[RegisteredArtifact],
        *,
        min_match_bytes: int = DEFAULT_MIN_MATCH_BYTES,
        found_coverage: float = DEFAULT_FOUND_COVERAGE,
        min_evidence_bytes: int = DEFAULT_MIN_EVIDENCE_BYTES,
    ) -> None:
        if min_match_bytes < 0 or min_evidence_bytes < 0:
            raise InputError(
                f"min_match_bytes and min_evidence_bytes must not be negative, got {min_match_bytes} "
                f"and {min_evidence_bytes}"
            )
        if not 0.0 < found_coverage <= 1.0:
            raise InputError(f"found_coverage must be in (0, 1], got {found_coverage}")
        self.min_match_bytes = min_match_bytes
        self.found_coverage = found_coverage
        self.min_evidence_bytes = min_evidence_bytes
        self.artifacts: tuple[RegisteredArtifact, ...] = tuple(artifacts)
        schemes = {f.digests.fingerprint.scheme for a in self.artifacts for f in a.files}
        if len(schemes) > 1:
            raise SchemeMismatchError(
                "the registered artifacts were fingerprinted under different sampling schemes",
                hint="re-register the older artifacts so that all use the current scheme",
            )
        self.scheme: SamplingScheme = schemes.pop() if schemes else DEFAULT_SCHEME
        self._by_file: dict[FileKey, list[tuple[int, int]]] = {}
        self._by_digest: dict[Digest, RegisteredFile] = {}
        self._by_plaintext: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
        self._sealed_units: list[list[list[Unit]]] = []
        self._by_tensor: dict[TensorKey, list[int]] = {}
        self._units: list[dict[Unit, int]] = []
        self._full: list[dict[TensorKey, set[Digest]]] = []
        self._file_units: list[list[int | None]] = []
        smallest: int | None = None
        for a_index, artifact in enumerate(self.artifacts):
            units: dict[Unit, int] = {}
            full: dict[TensorKey, set[Digest]] = {}
            file_units: list[int | None] = []
            sealed_units: list[list[Unit]] = []
            evidence = self._evidence(artifact)
            for f_index, registered in enumerate(artifact.files):
                if registered.digests.digest is None:
                    raise InputError(
                        f"registered file {registered.path} of {artifact.model} {artifact.version} has no "
                        "whole-file digest",
                        hint="register files with digest_file(path) (whole_file=True)",
                    )
                self._by_digest.setdefault(registered.digests.digest, registered)
                fingerprint = registered.digests.fingerprint
                for algorithm, plain in (
                    ("blake3", registered.digests.digest),
                    ("sha256", registered.digests.sha256),
                ):
                    if plain is not None:
                        key = (algorithm, plain, fingerprint.size)
                        self._by_plaintext.setdefault(key, []).append((a_index, f_index))
                self._by_file.setdefault(fingerprint.key, []).append((a_index, f_index))
                sizes = [fingerprint.size]
                used = [t for t in registered.digests.tensors if t.key in evidence]
                if fingerprint.format is Format.SAFETENSORS and used:
                    file_units.append(None)
                    sealed_units.append([t.key for t in used])
                    for tensor in used:
                        units[tensor.key] = tensor.nbytes
                        full.setdefault(tensor.key, set()).add(tensor.digest)
                        holders = self._by_tensor.setdefault(tensor.key, [])
                        if not holders or holders[-1] != a_index:
                            holders.append(a_index)
                        # The smallest safetensors file that could hold this tensor.
                        sizes.append(tensor.nbytes + 10)
                else:
                    units[f_index] = fingerprint.size
                    file_units.append(f_index)
                    sealed_units.append([f_index])
                least = min(sizes)
                smallest = least if smallest is None else min(smallest, least)
            self._units.append(units)
            self._full.append(full)
            self._file_units.append(file_units)
            self._sealed_units.append(sealed_units)
        self._smallest = smallest

    def _evidence(self, artifact: RegisteredArtifact) -> set[TensorKey]:
        """The tensors of an artifact used as evidence: its distinctive tensors, without those
        under ``min_evidence_bytes`` when the larger ones hold at least 90 % of the bytes."""
        distinctive = {
            t.key: t.nbytes
            for f in artifact.files
            if f.digests.fingerprint.format is Format.SAFETENSORS
            for t in f.digests.tensors
            if t.distinctive
        }
        large = {k for k, n in distinctive.items() if n >= self.min_evidence_bytes}
        large_bytes = sum(distinctive[k] for k in large)
        if large and large_bytes >= 0.9 * sum(distinctive.values()):
            return large
        return set(distinctive)

    @property
    def min_candidate_size(self) -> int | None:
        """No file smaller than this can match anything in the index (None for an empty index).

        Use it as the walker's size threshold: smaller files are skipped without being opened.
        """
        return self._smallest

    def registered_file(self, digest: Digest) -> RegisteredFile | None:
        """The registered file whose whole-file BLAKE3 digest is ``digest``, if any."""
        return self._by_digest.get(digest)

    def total_bytes(self, artifact_index: int) -> int:
        return sum(self._units[artifact_index].values())

    def match(self, scanned: Iterable[ScannedFile]) -> Discovery:
        """Match scanned files; see the module docs for the rules. Pure and linear in the input."""
        files = list(scanned)
        pairs: dict[tuple[int, int], _Pair] = {}
        for s_index, item in enumerate(files):
            fingerprint = item.fingerprint
            if fingerprint.scheme != self.scheme:
                raise SchemeMismatchError(
                    f"{display_path(item.path)} was fingerprinted under a different sampling scheme "
                    "than the registered artifacts",
                    hint="fingerprint scanned files with MatchIndex.scheme",
                )
            # Whole files.
            for a_index, f_index in self._by_file.get(fingerprint.key, ()):
                registered = self.artifacts[a_index].files[f_index]
                if item.digests is None or item.digests.digest is None:
                    evidence = Evidence.SAMPLED
                elif item.digests.digest == registered.digests.digest:
                    evidence = Evidence.CONFIRMED
                else:
                    evidence = Evidence.MODIFIED
                pair = pairs.setdefault((s_index, a_index), _Pair())
                pair.files.append((f_index, evidence))
                unit = self._file_units[a_index][f_index]
                if unit is not None:
                    pair.add(unit, evidence)
            # Sealed copies, by the plaintext digest and length in their checked header.
            sealed = fingerprint.sealed
            if sealed is not None:
                key = (sealed.digest_algorithm, sealed.plaintext_digest, sealed.plaintext_length)
                for a_index, f_index in self._by_plaintext.get(key, ()):
                    pair = pairs.setdefault((s_index, a_index), _Pair())
                    pair.files.append((f_index, Evidence.HEADER))
                    pair.sealed = True
                    for sealed_unit in self._sealed_units[a_index][f_index]:
                        pair.add(sealed_unit, Evidence.HEADER)
            # Tensors, by content (safetensors only).
            full_digests = item.digests.tensors if item.digests is not None else None
            for t_index, tensor in enumerate(fingerprint.tensors):
                holders = self._by_tensor.get(tensor.key)
                if not holders:
                    continue
                for a_index in holders:
                    if full_digests is None:
                        evidence = Evidence.SAMPLED
                    elif full_digests[t_index].digest in self._full[a_index][tensor.key]:
                        evidence = Evidence.CONFIRMED
                    else:
                        evidence = Evidence.MODIFIED
                    pairs.setdefault((s_index, a_index), _Pair()).add(tensor.key, evidence)

        # Coverage of each artifact by all scanned files together.
        covered: dict[int, set[Unit]] = {}
        for (_s, a_index), pair in pairs.items():
            covered.setdefault(a_index, set()).update(pair.units)
        found = {
            a_index: self._fraction(a_index, units) >= self.found_coverage
            for a_index, units in covered.items()
        }

        emitted: list[tuple[int, int, Match]] = []
        for (s_index, a_index), pair in pairs.items():
            matched = sum(self._units[a_index][u] for u in pair.units)
            if not pair.files and not found[a_index] and matched < self.min_match_bytes:
                continue
            emitted.append((s_index, a_index, self._make_match(files[s_index], a_index, pair, matched)))

        findings: list[VersionFinding] = []
        by_artifact: dict[int, list[tuple[Match, _Pair]]] = {}
        for s_index, a_index, match in emitted:
            by_artifact.setdefault(a_index, []).append((match, pairs[(s_index, a_index)]))
        for a_index, reported in by_artifact.items():
            union: set[Unit] = set()
            for _match, pair in reported:
                union.update(pair.units)
            artifact = self.artifacts[a_index]
            total = self.total_bytes(a_index)
            covered_bytes = sum(self._units[a_index][u] for u in union)
            worst = min((m.evidence for m, _p in reported), key=_RANK.__getitem__)
            findings.append(
                VersionFinding(
                    model=artifact.model,
                    version=artifact.version,
                    artifact_id=artifact.artifact_id,
                    covered_bytes=covered_bytes,
                    total_bytes=total,
                    found=bool(total) and covered_bytes / total >= self.found_coverage,
                    evidence=worst,
                    paths=tuple(sorted({m.path for m, _p in reported})),
                )
            )
        ordered = sorted((m for _s, _a, m in emitted), key=lambda m: (m.model, m.version, m.path))
        findings.sort(key=lambda f: (f.model, f.version, f.artifact_id or ""))
        return Discovery(matches=tuple(ordered), findings=tuple(findings))

    def _fraction(self, a_index: int, units: set[Unit]) -> float:
        total = self.total_bytes(a_index)
        return sum(self._units[a_index][u] for u in units) / total if total else 0.0

    def _make_match(self, item: ScannedFile, a_index: int, pair: _Pair, matched: int) -> Match:
        artifact = self.artifacts[a_index]
        fingerprint = item.fingerprint
        evidences = [e for _f, e in pair.files] + list(pair.units.values())
        if Evidence.MODIFIED in evidences:
            evidence = Evidence.MODIFIED
        elif evidences and all(e is Evidence.CONFIRMED for e in evidences):
            evidence = Evidence.CONFIRMED
        elif Evidence.HEADER in evidences:
            evidence = Evidence.HEADER
        else:
            evidence = Evidence.SAMPLED
        tensor_units = [u for u in pair.units if not isinstance(u, int)]
        modified = sum(1 for u in tensor_units if pair.units[u] is Evidence.MODIFIED)
        candidate_bytes = fingerprint.tensor_bytes if fingerprint.tensors else fingerprint.size
        if not pair.files:
            return Match(
                path=item.path,
                model=artifact.model,
                version=artifact.version,
                artifact_id=artifact.artifact_id,
                kind=MatchKind.TENSOR_COPY,
                evidence=evidence,
                matched_bytes=matched,
                candidate_bytes=candidate_bytes,
                tensors_matched=len(tensor_units),
                tensors_modified=modified,
                format=fingerprint.format,
            )
        if pair.sealed:  # the plaintext of a registered file, sealed
            f_index = next(f for f, e in pair.files if e is Evidence.HEADER)
            registered = artifact.files[f_index]
            return Match(
                path=item.path,
                model=artifact.model,
                version=artifact.version,
                artifact_id=artifact.artifact_id,
                kind=MatchKind.SEALED_COPY,
                evidence=evidence,
                matched_bytes=matched,
                # As for a plaintext copy: the registered file's tensor bytes, or its size.
                candidate_bytes=registered.digests.fingerprint.tensor_bytes
                or registered.digests.fingerprint.size,
                tensors_matched=len(tensor_units),
                tensors_modified=modified,
                registered_path=registered.path,
                format=fingerprint.format,
            )
        # A whole-file copy: prefer the registered file with the same name (a file registered twice
        # under different names is a copy of both).
        name = os.path.basename(item.path)
        f_index = next(
            (f for f, _e in pair.files if artifact.files[f].name == name),
            pair.files[0][0],
        )
        registered = artifact.files[f_index]
        return Match(
            path=item.path,
            model=artifact.model,
            version=artifact.version,
            artifact_id=artifact.artifact_id,
            kind=MatchKind.FILE_COPY if registered.name == name else MatchKind.RENAMED_COPY,
            evidence=evidence,
            matched_bytes=matched,
            candidate_bytes=candidate_bytes,
            tensors_matched=len(tensor_units),
            tensors_modified=modified,
            registered_path=registered.path,
            at_registered_path=os.path.normpath(item.path) == os.path.normpath(registered.path),
            format=fingerprint.format,
        )
