"""Manifest values: what was hashed, how, and the digest of every file or shard.

A :class:`Manifest` pairs a :class:`HashParams` (every parameter that shaped the digests) with
one :class:`Resource` per file (method ``files``) or per shard of a file (method ``shards``).
The model is the same as OpenSSF Model Signing's: resources are named and ordered the way
model-signing names and orders them, so a manifest turns into a signature payload and back with
nothing lost. On top of that it has a canonical JSON form and a canonical digest
(:meth:`Manifest.digest`) that binds the parameters, every path and every digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, Literal, NamedTuple, NewType

from gpaisec.errors import InputError
from gpaisec.integrity._paths import (
    check_model_path,
    is_model_path,
    normalize_model_path,
    path_sort_key,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_IGNORE_PATHS",
    "DEFAULT_SHARD_SIZE",
    "MANIFEST_SCHEMA",
    "METHODS",
    "Algorithm",
    "FileDigest",
    "HashParams",
    "HexDigest",
    "Manifest",
    "ManifestDiff",
    "ManifestDigest",
    "Method",
    "Resource",
]

Algorithm = Literal["blake3", "sha256"]
"""A content hash: BLAKE3 (default, fastest) or SHA-256 (for interop)."""

Method = Literal["files", "shards"]
"""One digest per file, or one per ``shard_size`` bytes of each file (model-signing's names)."""

HexDigest = NewType("HexDigest", str)
"""A 32-byte digest as 64 lower-case hex characters."""

ManifestDigest = NewType("ManifestDigest", str)
"""The canonical digest of a manifest, ``sha256:<64 hex>``."""

ALGORITHMS: Final[tuple[Algorithm, ...]] = ("blake3", "sha256")
METHODS: Final[tuple[Method, ...]] = ("files", "shards")
MANIFEST_SCHEMA: Final = "gpaisec.integrity.manifest/v1"

DEFAULT_SHARD_SIZE: Final = 1_000_000_000
"""model-signing's default shard size (1 GB), used when method is ``shards`` and none is given."""

DEFAULT_IGNORE_PATHS: Final[tuple[str, ...]] = (".git", ".gitattributes", ".github", ".gitignore")
"""Git metadata at the top of the model directory, which model-signing always leaves out."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _check_hex(value: object, what: str) -> HexDigest:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise InputError(
            f"{what} is not a 32-byte digest in lower-case hex: {value!r}",
            hint="digests are 64 characters 0-9a-f; the manifest or signature is damaged",
        )
    return HexDigest(value)


@dataclass(frozen=True)
class HashParams:
    """Every parameter that shapes the digests of a manifest.

    Two manifests can only be compared when their parameters are equal; a verifier re-hashes a
    model with the parameters recorded in its manifest or signature.

    Attributes:
        algorithm: ``blake3`` (default) or ``sha256``.
        method: ``files`` (one digest per file, default) or ``shards`` (one digest per
            ``shard_size`` bytes of each file; SHA-256 only). BLAKE3 already hashes one file on
            all cores, so it needs no shards (model-signing also refuses BLAKE3 shards).
        shard_size: bytes per shard; only for ``shards`` (default 1 GB, as model-signing).
        allow_symlinks: follow symbolic links to regular files instead of refusing them.
        ignore_paths: model paths left out, each with everything under it; kept sorted.
            Defaults to git metadata (:data:`DEFAULT_IGNORE_PATHS`), as model-signing does.
    """

    algorithm: Algorithm = "blake3"
    method: Method = "files"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE_PATHS

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InputError(
                f"unknown hash algorithm {self.algorithm!r}",
                hint=f"use one of: {', '.join(ALGORITHMS)}",
            )
        if self.method not in METHODS:
            raise InputError(
                f"unknown hashing method {self.method!r}", hint=f"use one of: {', '.join(METHODS)}"
            )
        if self.method == "files":
            if self.shard_size is not None:
                raise InputError(
                    "shard_size only applies to method 'shards'",
                    hint="drop shard_size, or set method='shards'",
                )
        else:
            if self.algorithm == "blake3":
                raise InputError(
                    "BLAKE3 manifests are made per file, not per shard",
                    hint="BLAKE3 already hashes each file on all cores; use method='files', "
                    "or algorithm='sha256' for shards",
                )
            if self.shard_size is None:
                object.__setattr__(self, "shard_size", DEFAULT_SHARD_SIZE)
            elif isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int):
                raise InputError(f"shard_size must be an integer, got {self.shard_size!r}")
            elif self.shard_size < 1:
                raise InputError(
                    f"shard_size must be at least 1 byte, got {self.shard_size}",
                    hint=f"the usual value is {DEFAULT_SHARD_SIZE} (1 GB)",
                )
        if isinstance(self.ignore_paths, str):
            raise InputError(
                "ignore_paths must be a sequence of paths, not one string",
                hint=f"write ignore_paths=({self.ignore_paths!r},)",
            )
        tidy = sorted(
            {normalize_model_path(p, what="ignore path") for p in self.ignore_paths}, key=path_sort_key
        )
        object.__setattr__(self, "ignore_paths", tuple(tidy))
        object.__setattr__(self, "allow_symlinks", bool(self.allow_symlinks))

    @property
    def resource_algorithm(self) -> str:
        """The algorithm name each resource carries (model-signing's ``digest_name``)."""
        if self.method == "shards":
            return f"{self.algorithm}-sharded-{self.shard_size}"
        return self.algorithm

    def with_ignored(self, *paths: str) -> HashParams:
        """A copy that also ignores ``paths``."""
        return HashParams(
            algorithm=self.algorithm,
            method=self.method,
            shard_size=self.shard_size,
            allow_symlinks=self.allow_symlinks,
            ignore_paths=(*self.ignore_paths, *paths),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain form for JSON (all fields, always present)."""
        return {
            "algorithm": self.algorithm,
            "method": self.method,
            "shard_size": self.shard_size,
            "allow_symlinks": self.allow_symlinks,
            "ignore_paths": list(self.ignore_paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HashParams:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        expected = {"algorithm", "method", "shard_size", "allow_symlinks", "ignore_paths"}
        if set(data) != expected:
            raise InputError(
                f"manifest params have keys {sorted(data)}, expected {sorted(expected)}",
                hint="the manifest was written by another program or has been edited",
            )
        allow = data["allow_symlinks"]
        ignore = data["ignore_paths"]
        if not isinstance(allow, bool):
            raise InputError(f"allow_symlinks must be true or false, got {allow!r}")
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise InputError(f"ignore_paths must be a list of strings, got {ignore!r}")
        return cls(
            algorithm=data["algorithm"],
            method=data["method"],
            shard_size=data["shard_size"],
            allow_symlinks=allow,
            ignore_paths=tuple(ignore),
        )


class Resource(NamedTuple):
    """The digest of one file (``start``/``end`` are ``None``) or of bytes [start, end) of it.

    A named tuple rather than a frozen dataclass: a manifest of 100,000 files builds 100,000 of
    these, and a frozen dataclass costs about five times as much to construct.
    """

    path: str
    digest: str  # a HexDigest; plain str here to keep construction cheap
    start: int | None = None
    end: int | None = None

    @property
    def name(self) -> str:
        """The OMS resource name: ``path`` for a file, ``path:start:end`` for a shard."""
        if self.start is None:
            return self.path
        return f"{self.path}:{self.start}:{self.end}"

    def sort_key(self) -> tuple[str, int, int]:
        """Order of model-signing: by path components, then by shard offsets."""
        return (self.path.replace("/", "\x00"), self.start or 0, self.end or 0)


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The whole-content digest of one file, as :func:`hash_file` returns it."""

    algorithm: Algorithm
    digest: HexDigest
    size: int


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """How an actual manifest differs from an expected one, by file path.

    ``changed``: in both, different content (for shards: any shard differs, or the file's shards
    are not the same ranges, such as after truncation); ``missing``: expected but absent;
    ``extra``: present but not expected. Each tuple is sorted.
    """

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the manifests describe the same content."""
        return not (self.changed or self.missing or self.extra)

    def summary(self, limit: int = 5) -> str:
        """One line such as ``1 changed (a.bin); 2 extra (x, y)``, listing at most ``limit`` each."""
        parts = []
        for label, paths in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra)):
            if paths:
                shown = ", ".join(paths[:limit])
                more = f", and {len(paths) - limit} more" if len(paths) > limit else ""
                parts.append(f"{len(paths)} {label} ({shown}{more})")
        return "; ".join(parts) if parts else "no differences"

    def to_dict(self) -> dict[str, list[str]]:
        """Plain form for JSON output."""
        return {"changed": list(self.changed), "missing": list(self.missing), "extra": list(self.extra)}


@dataclass(frozen=True)
class Manifest:
    """Per-file (or per-shard) digests of a model directory, with the parameters that made them.

    Construction validates and canonicalises: resources are checked against ``params``, sorted
    the way model-signing sorts them, and duplicates are refused. ``model_name`` is informative
    only (the directory's name): it is not compared and not part of :meth:`digest`.
    """

    params: HashParams
    resources: tuple[Resource, ...]
    model_name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.params, HashParams):
            raise InputError("Manifest params must be a HashParams")
        shards = self.params.method == "shards"
        limit = self.params.shard_size or 0
        hex_ok = _HEX64.fullmatch
        for r in self.resources:  # one tight loop: manifests of 100,000 files are normal
            if not is_model_path(r.path):
                check_model_path(r.path, what="manifest path")
            if not isinstance(r.digest, str) or not hex_ok(r.digest):
                _check_hex(r.digest, f"digest of {r.path!r}")
            if r.start is None and r.end is None:
                if shards:
                    raise InputError(f"resource {r.path!r} has no shard range in a 'shards' manifest")
            elif not shards:
                raise InputError(f"resource {r.name!r} has a shard range in a 'files' manifest")
            elif r.start is None or r.end is None or not (0 <= r.start < r.end <= r.start + limit):
                raise InputError(
                    f"shard {r.name!r} is not a range of 1 to {limit} bytes",
                    hint="the manifest or signature is damaged",
                )
        ordered = tuple(sorted(self.resources, key=Resource.sort_key))
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a.path != b.path:
                continue
            if a.start == b.start:
                raise InputError(
                    f"resource {a.name!r} appears twice", hint="the manifest or signature is damaged"
                )
            if a.end is not None and b.start is not None and b.start < a.end:
                raise InputError(f"shards {a.name!r} and {b.name!r} overlap")
        object.__setattr__(self, "resources", ordered)

    @classmethod
    def _trusted(cls, params: HashParams, resources: list[Resource], model_name: str) -> Manifest:
        """Build from the engine's own output: sorted, but not re-validated.

        The engine only emits paths it built from directory entries it checked, and digests a
        hash object printed, so the per-resource checks (about 5 µs each) add nothing there.
        """
        manifest = object.__new__(cls)
        object.__setattr__(manifest, "params", params)
        if params.method == "files":  # one resource per path: sort by a C-level key, no calls
            keys = [r.path.replace("/", "\x00") for r in resources]
            ordered = tuple(r for _, r in sorted(zip(keys, resources, strict=True), key=itemgetter(0)))
        else:
            ordered = tuple(sorted(resources, key=Resource.sort_key))
        object.__setattr__(manifest, "resources", ordered)
        object.__setattr__(manifest, "model_name", model_name)
        return manifest

    # -- views ------------------------------------------------------------------------------

    @functools.cached_property
    def files(self) -> Mapping[str, tuple[Resource, ...]]:
        """Resources grouped by file path, in canonical order."""
        grouped: dict[str, list[Resource]] = {}
        for r in self.resources:
            grouped.setdefault(r.path, []).append(r)
        return {path: tuple(rs) for path, rs in grouped.items()}

    def oms_root_digest(self) -> HexDigest:
        """SHA-256 over the raw resource digests in canonical order: the OMS subject digest.

        It does not cover names or parameters; use :meth:`digest` to identify a manifest.
        """
        h = hashlib.sha256()
        for r in self.resources:
            h.update(bytes.fromhex(r.digest))
        return HexDigest(h.hexdigest())

    # -- canonical form -----------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for r in self.resources:
            item: dict[str, Any] = {"path": r.path, "digest": r.digest}
            if r.start is not None:
                item["start"] = r.start
                item["end"] = r.end
            resources.append(item)
        return {"schema": MANIFEST_SCHEMA, "params": self.params.to_dict(), "resources": resources}

    def canonical_bytes(self) -> bytes:
        """Sorted-key, no-whitespace UTF-8 JSON of everything but ``model_name``."""
        return json.dumps(self._body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )

    def digest(self) -> ManifestDigest:
        """``sha256:<hex>`` of :meth:`canonical_bytes`; equal manifests have equal digests."""
        return ManifestDigest("sha256:" + hashlib.sha256(self.canonical_bytes()).hexdigest())

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text for storage or exchange; :meth:`from_json` reads it back."""
        body = self._body()
        body["model_name"] = self.model_name
        return json.dumps(body, indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse :meth:`to_json` output, refusing anything malformed with an :class:`InputError`."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError("manifest JSON must be an object")
        if data.get("schema") != MANIFEST_SCHEMA:
            raise InputError(
                f"manifest schema is {data.get('schema')!r}, expected {MANIFEST_SCHEMA!r}",
                hint="this file is not a gpaisec manifest, or a newer version wrote it",
            )
        extra_keys = set(data) - {"schema", "params", "resources", "model_name"}
        if extra_keys:
            raise InputError(f"manifest has unknown keys: {sorted(extra_keys)}")
        params_raw, resources_raw = data.get("params"), data.get("resources")
        name = data.get("model_name", "")
        if not isinstance(params_raw, dict) or not isinstance(resources_raw, list):
            raise InputError("manifest needs a 'params' object and a 'resources' list")
        if not isinstance(name, str):
            raise InputError("manifest model_name must be a string")
        params = HashParams.from_dict(params_raw)
        return cls(params=params, resources=tuple(_parse_resource(r) for r in resources_raw), model_name=name)

    # -- comparison -----------------------------------------------------------------------------

    def diff(self, actual: Manifest) -> ManifestDiff:
        """Compare ``self`` (expected) with ``actual``, file by file.

        Raises:
            InputError: the two were made with different parameters, so digests cannot be compared.
        """
        if self.params != actual.params:
            raise InputError(
                "cannot compare manifests made with different parameters "
                f"({self.params.to_dict()} against {actual.params.to_dict()})",
                hint="hash the directory again with the expected manifest's params",
            )
        want, have = self.files, actual.files
        changed = [p for p in want if p in have and want[p] != have[p]]
        missing = [p for p in want if p not in have]
        extra = [p for p in have if p not in want]
        return ManifestDiff(tuple(changed), tuple(missing), tuple(extra))


def _parse_resource(raw: object) -> Resource:
    if not isinstance(raw, dict):
        raise InputError(f"manifest resource must be an object, got {raw!r}")
    keys = set(raw)
    if keys not in ({"path", "digest"}, {"path", "digest", "start", "end"}):
        raise InputError(f"manifest resource has keys {sorted(keys)}, expected path, digest[, start, end]")
    path = raw["path"]
    if not isinstance(path, str):
        raise InputError(f"manifest resource path must be a string, got {path!r}")
    start, end = raw.get("start"), raw.get("end")
    for v in (start, end):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise InputError(f"shard offsets of {path!r} must be integers, got {v!r}")
    return Resource(path, _check_hex(raw["digest"], f"digest of {path!r}"), start, end)
