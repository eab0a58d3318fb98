"""Load and validate the catalog data files.

Loading a catalog directory takes these steps; each failure is a :class:`CatalogError` naming the
file, the place inside it (path and line) and what to do:

  1. read ``catalog.yaml`` (the manifest) and every file it names, as UTF-8 YAML (safe loader);
     a duplicate key in a mapping is an error, not "the last one wins";
  2. check each file against its schema (``_schema``): types, required fields, id syntax, no unknown
     keys; check it declares the manifest's catalog version and version of the Code;
  3. check ids: unique across the catalog, and consistent with the Code's numbering (M6.2 sits under
     C6 and has number "6.2"; A4.2(1) sits under A4.2);
  4. check references: every AI Act reference, measure, threat actor and crosswalk subject named
     anywhere exists;
  5. compute the digest over the files read and build the :class:`Catalog`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gpaisec.catalog import _schema as s
from gpaisec.catalog._model import (
    AIActFacts,
    Article,
    Catalog,
    CatalogGroup,
    CatalogItem,
    Chapter,
    Crosswalk,
    CrosswalkLevel,
    CrosswalkMapping,
    Framework,
    IncidentReporting,
    IncidentType,
    OversightLevel,
    ThreatActor,
)
from gpaisec.errors import CatalogError

__all__ = ["MANIFEST", "load_catalog", "packaged_data_dir"]

MANIFEST = "catalog.yaml"
_HINT_PACKAGED = "the packaged catalog is damaged: reinstall gpaisec (editing it? see docs/catalog.md)"
_HINT_CUSTOM = "correct the file (docs/catalog.md describes the format)"

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V", bound=s.VersionedFile)
Loc = tuple[int | str, ...]


def packaged_data_dir() -> Traversable:
    """The directory of data files shipped inside the package."""
    return resources.files("gpaisec.catalog").joinpath("data")


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog.

    With no ``path``: the catalog packaged with gpaisec, loaded once and cached. With ``path``: a
    directory holding ``catalog.yaml`` and the files it names (or the manifest file itself), read
    afresh on each call.
    """
    if path is None:
        override = os.environ.get("GPAISEC_CATALOG")
        if not override:
            return _packaged()
        path = Path(override)
        return _custom_cached(str(path.absolute()))
    return _load_path(Path(path))


@functools.cache
def _custom_cached(path: str) -> Catalog:
    """A catalog named by ``GPAISEC_CATALOG`` (a newer edition of the Code, say), loaded once."""
    return _load_path(Path(path))


def _load_path(path: Path) -> Catalog:
    if path.is_file():
        return _Loader(path.parent, path.name, _HINT_CUSTOM).load()
    if not path.is_dir():
        raise CatalogError(
            f"catalog directory {path} does not exist", hint="give a directory holding catalog.yaml"
        )
    return _Loader(path, MANIFEST, _HINT_CUSTOM).load()


@functools.cache
def _packaged() -> Catalog:
    return _Loader(packaged_data_dir(), MANIFEST, _HINT_PACKAGED).load()


# --- YAML with line numbers and no silent duplicate keys -------------------------------------------


# libyaml's parser when PyYAML was built with it (about ten times faster), else the pure-Python one.
# Both are the *safe* loaders: no Python object tags.
_SafeLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class _Doc:
    """One parsed file: its name (as shown to people), data, node tree and raw bytes."""

    name: str
    data: dict[str, Any]
    node: yaml.Node
    raw: bytes


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _codepoint(character: object) -> str:
    return f"U+{character:04X}" if isinstance(character, int) else repr(character)


class _AliasError(Exception):
    def __init__(self, path: str, line: int) -> None:
        self.path = path
        self.line = line


def _walk_duplicates(
    node: yaml.Node, path: str, seen: set[int] | None = None, line: int | None = None
) -> Iterator[tuple[str, yaml.Node]]:
    """Yield (path, key node) for each key given twice in one mapping.

    Raises :class:`_AliasError` at a node reached twice: the composer shares a node only for an
    alias (``*name``). Catalog files have no use for aliases, and refusing them rules out "billion
    laughs" files whose expansion would exhaust time or memory. ``line`` is where the reference to
    ``node`` is written (its key's line), which for an alias differs from the node's own line.
    """
    seen = set() if seen is None else seen
    if id(node) in seen:
        raise _AliasError(path or "(top level)", line if line is not None else node.start_mark.line + 1)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in keys:
                yield child, key_node
            keys.add(key)
            yield from _walk_duplicates(value_node, child, seen, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk_duplicates(item, f"{path}[{i}]", seen, None)


def _node_at(node: yaml.Node, loc: Loc) -> yaml.Node:
    """The deepest node along ``loc`` (pydantic's error location), for its line number."""
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = next((v for k, v in node.value if str(k.value) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
    return node


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _innermost_id(data: Any, loc: Loc) -> str | None:
    """The ``id`` of the innermost mapping along ``loc`` that has one, to name the entry."""
    found = None
    for part in loc:
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            found = data["id"]
        in_dict = isinstance(data, dict) and isinstance(part, str) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return found
        data = data[part]
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        found = data["id"]
    return found


class _Loader:
    def __init__(self, root: Traversable | Path, manifest: str, hint: str) -> None:
        self.root = root
        self.manifest = manifest
        self.hint = hint
        self.docs: dict[str, _Doc] = {}

    # -- errors -----------------------------------------------------------------------------------

    def _where(self, doc: _Doc, loc: Loc) -> str:
        line = _node_at(doc.node, loc).start_mark.line + 1
        entry = _innermost_id(doc.data, loc)
        named = f" (in {entry})" if entry and loc else ""
        return f"{doc.name}, {_format_loc(loc)}{named}, line {line}"

    def fail(self, doc: _Doc, loc: Loc, problem: str, hint: str | None = None) -> CatalogError:
        return CatalogError(f"catalog file {self._where(doc, loc)}: {problem}", hint=hint or self.hint)

    # -- step 1: read and parse -------------------------------------------------------------------

    def _display(self, name: str) -> str:
        return str(self.root.joinpath(name))

    def read(self, name: str) -> _Doc:
        if name in self.docs:
            raise CatalogError(
                f"catalog file {self._display(self.manifest)}: {name} is named more than once",
                hint=self.hint,
            )
        shown = self._display(name)
        try:
            raw = self.root.joinpath(name).read_bytes()
        except OSError as exc:
            raise CatalogError(
                f"catalog file {shown} cannot be read: {exc.strerror or exc}",
                hint=f"restore it, or remove it from {self.manifest}" if name != self.manifest else self.hint,
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CatalogError(
                f"catalog file {shown}: not UTF-8 text (byte {exc.start})", hint=self.hint
            ) from None
        try:
            node, data = self._parse(text, shown)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "malformed"
            raise CatalogError(
                f"catalog file {shown}: not valid YAML{at}: {problem}", hint=self.hint
            ) from None
        except yaml.reader.ReaderError as exc:
            raise CatalogError(
                f"catalog file {shown}: not valid YAML: character {_codepoint(exc.character)} "
                f"at offset {exc.position} is not allowed",
                hint=self.hint,
            ) from None
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())
            raise CatalogError(f"catalog file {shown}: not valid YAML: {problem}", hint=self.hint) from None
        except RecursionError:
            raise CatalogError(f"catalog file {shown}: nested too deeply", hint=self.hint) from None
        if not isinstance(data, dict):
            raise CatalogError(
                f"catalog file {shown}, line 1: expected a mapping of keys at the top, "
                f"got {type(data).__name__}",
                hint=self.hint,
            )
        doc = _Doc(name=shown, data=data, node=node, raw=raw)
        self.docs[name] = doc
        return doc

    def _parse(self, text: str, shown: str) -> tuple[yaml.Node, Any]:
        """Compose the node tree (for line numbers), refuse duplicate keys, then build the data."""
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise CatalogError(f"catalog file {shown} is empty", hint=self.hint)
            try:
                dup = next(_walk_duplicates(node, ""), None)
            except _AliasError as exc:
                raise CatalogError(
                    f"catalog file {shown}, {exc.path}, line {exc.line}: "
                    "aliases (*name) are not allowed in catalog files",
                    hint=self.hint,
                ) from None
            if dup is not None:
                path, key_node = dup
                raise CatalogError(
                    f"catalog file {shown}, {path}, line {key_node.start_mark.line + 1}: "
                    "key given twice in the same mapping",
                    hint=self.hint,
                )
            return node, loader.construct_document(node)
        finally:
            loader.dispose()

    # -- step 2: schema ----------------------------------------------------------------------------

    def validate(self, doc: _Doc, model: type[M]) -> M:
        try:
            return model.model_validate(doc.data)
        except ValidationError as exc:
            # A misspelt key gives "unknown key" and "required key missing": name the cause first.
            errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
            first = errors[0]
            loc: Loc = tuple(first["loc"])
            msg = first["msg"]
            if first["type"] == "missing":
                msg = f"required key {loc[-1]!r} is missing"
            elif first["type"] == "extra_forbidden":
                msg = f"unknown key {loc[-1]!r}"
            elif first["type"] == "tuple_type":
                msg = f"expected a list, got {type(first.get('input')).__name__}"
            elif first["type"] == "string_pattern_mismatch":
                pattern = str((first.get("ctx") or {}).get("pattern", ""))
                wanted = s.PATTERN_EXAMPLES.get(pattern, f"text matching {pattern}")
                msg = f"{_shorten(first.get('input'))} is not {wanted}"
            elif first["type"] == "string_type" and isinstance(first.get("input"), int | float):
                msg = f'expected text, got the number {first["input"]!r} (quote it: "{first["input"]}")'
            elif "input" in first and not isinstance(first["input"], dict | list):
                msg = f"{msg}, got {_shorten(first['input'])}"
            extra = len(errors) - 1
            more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
            raise self.fail(doc, loc, msg + more) from None

    def versioned(self, name: str, model: type[V], manifest: s.ManifestFile) -> tuple[_Doc, V]:
        doc = self.read(name)
        value = self.validate(doc, model)
        if value.catalog_version != manifest.catalog_version:
            raise self.fail(
                doc,
                ("catalog_version",),
                f"catalog_version {value.catalog_version!r} differs from {manifest.catalog_version!r} "
                f"in {self.manifest}",
                hint="update every file of a catalog together",
            )
        if value.framework_version != manifest.framework.version:
            raise self.fail(
                doc,
                ("framework_version",),
                f"framework_version {value.framework_version!r} differs from "
                f"{manifest.framework.version!r} in {self.manifest}",
                hint="update every file of a catalog together",
            )
        return doc, value

    # -- steps 3-5 ---------------------------------------------------------------------------------

    def load(self) -> Catalog:
        mdoc = self.read(self.manifest)
        manifest = self.validate(mdoc, s.ManifestFile)
        adoc, ai_act = self.versioned(manifest.ai_act, s.AiActFile, manifest)
        vdoc, vocab = self.versioned(manifest.vocabularies, s.VocabulariesFile, manifest)
        chapter_docs: list[tuple[int, _Doc, s.ChapterFile]] = []
        for ci, ref in enumerate(manifest.chapters):
            for fi, name in enumerate(ref.files):
                cdoc, chapter_file = self.versioned(name, s.ChapterFile, manifest)
                if chapter_file.chapter != ref.id:
                    raise self.fail(
                        cdoc,
                        ("chapter",),
                        f"chapter {chapter_file.chapter!r} but {self.manifest} lists this file under "
                        f"chapter {ref.id!r} (chapters[{ci}].files[{fi}])",
                    )
                chapter_docs.append((ci, cdoc, chapter_file))
        crosswalk_docs = [self.versioned(name, s.CrosswalkFile, manifest) for name in manifest.crosswalks]

        # step 3: ids -----------------------------------------------------------------------------
        self._unique_chapters(mdoc, manifest)
        articles = self._articles(adoc, ai_act)
        commitments: list[CatalogGroup] = []
        measures: list[CatalogItem] = []
        areas: list[CatalogGroup] = []
        objectives: list[CatalogItem] = []
        seen: dict[str, str] = {}
        pending_refs: list[tuple[_Doc, Loc, str, str]] = []  # (doc, loc, kind of target, value)

        def claim(doc: _Doc, loc: Loc, ident: str) -> None:
            if ident in seen:
                raise self.fail(doc, loc, f"duplicate id {ident!r}, already used at {seen[ident]}")
            line = _node_at(doc.node, loc).start_mark.line + 1
            seen[ident] = f"{Path(doc.name).name} line {line}"

        for _ci, cdoc, cf in chapter_docs:
            for gi, c in enumerate(cf.commitments):
                gloc: Loc = ("commitments", gi)
                claim(cdoc, (*gloc, "id"), c.id)
                prefix = c.id[: -len("C" + c.number)]
                if c.id != f"{prefix}C{c.number}" or "." in c.number:
                    raise self.fail(cdoc, (*gloc, "number"), f"commitment {c.id} has number {c.number!r}")
                self._refs(pending_refs, cdoc, (*gloc, "ai_act"), "article", c.ai_act)
                child_ids = []
                for mi, m in enumerate(c.measures):
                    mloc: Loc = (*gloc, "measures", mi)
                    claim(cdoc, (*mloc, "id"), m.id)
                    if not m.number.startswith(c.number + ".") or m.id != f"{prefix}M{m.number}":
                        raise self.fail(
                            cdoc,
                            (*mloc, "id"),
                            f"measure {m.id} with number {m.number!r} does not fit commitment {c.id} "
                            f"(expected {prefix}M{c.number}.<n>)",
                        )
                    self._refs(pending_refs, cdoc, (*mloc, "ai_act"), "article", m.ai_act)
                    measures.append(
                        CatalogItem(
                            id=m.id,
                            kind="measure",
                            chapter=cf.chapter,
                            parent=c.id,
                            number=m.number,
                            title=m.title,
                            statement=m.statement,
                            ai_act=m.ai_act,
                            evidence_guidance=m.evidence_guidance,
                        )
                    )
                    child_ids.append(m.id)
                commitments.append(
                    CatalogGroup(
                        id=c.id,
                        kind="commitment",
                        chapter=cf.chapter,
                        number=c.number,
                        title=c.title,
                        summary=c.summary,
                        ai_act=c.ai_act,
                        items=tuple(child_ids),
                    )
                )
            for ai, a in enumerate(cf.areas):
                aloc: Loc = ("areas", ai)
                claim(cdoc, (*aloc, "id"), a.id)
                if a.id != f"A{a.number}":
                    raise self.fail(cdoc, (*aloc, "number"), f"area {a.id} has number {a.number!r}")
                child_ids = []
                area_articles: list[str] = []
                for oi, o in enumerate(a.objectives):
                    oloc: Loc = (*aloc, "objectives", oi)
                    claim(cdoc, (*oloc, "id"), o.id)
                    if not o.number.startswith(a.number + "(") or o.id != f"A{o.number}":
                        raise self.fail(
                            cdoc,
                            (*oloc, "id"),
                            f"objective {o.id} with number {o.number!r} does not fit area {a.id} "
                            f"(expected A{a.number}(<n>))",
                        )
                    self._refs(pending_refs, cdoc, (*oloc, "ai_act"), "article", o.ai_act)
                    self._refs(pending_refs, cdoc, (*oloc, "measures"), "measure", o.measures)
                    objectives.append(
                        CatalogItem(
                            id=o.id,
                            kind="objective",
                            chapter=cf.chapter,
                            parent=a.id,
                            number=o.number,
                            title=o.title,
                            statement=o.objective,
                            ai_act=o.ai_act,
                            evidence_guidance=o.evidence_guidance,
                            default_measure=o.default_measure,
                            related_measures=o.measures,
                        )
                    )
                    child_ids.append(o.id)
                    area_articles.extend(x for x in o.ai_act if x not in area_articles)
                areas.append(
                    CatalogGroup(
                        id=a.id,
                        kind="area",
                        chapter=cf.chapter,
                        number=a.number,
                        title=a.title,
                        summary=a.summary,
                        ai_act=tuple(area_articles),
                        items=tuple(child_ids),
                    )
                )

        threat_actors = self._vocabulary(vdoc, "threat_actors", vocab.threat_actors)
        incident_types = self._vocabulary(vdoc, "serious_incidents.types", vocab.serious_incidents.types)
        oversight = self._vocabulary(vdoc, "oversight_levels", vocab.oversight_levels)
        for ti, ta in enumerate(vocab.threat_actors):
            self._refs(pending_refs, vdoc, ("threat_actors", ti, "measures"), "measure", ta.measures)
        self._refs(
            pending_refs, vdoc, ("serious_incidents", "measures"), "measure", vocab.serious_incidents.measures
        )
        self._refs(
            pending_refs,
            vdoc,
            ("documentation_retention_measures",),
            "measure",
            vocab.documentation_retention_measures,
        )
        self._refs(pending_refs, vdoc, ("oversight_measures",), "measure", vocab.oversight_measures)

        # step 4: references ----------------------------------------------------------------------
        targets = {
            "article": ({a.id for a in articles}, "AI Act reference", f"add it to {manifest.ai_act}"),
            "measure": ({m.id for m in measures}, "measure", "name a measure defined in a chapter file"),
        }
        for doc, loc, kind, value in pending_refs:
            known, label, fix = targets[kind]
            if value not in known:
                raise self.fail(
                    doc, loc, f"unknown {label} {value!r}", hint=f"{fix}, or correct the reference"
                )
        item_ids = {i.id for i in (*measures, *objectives)}
        crosswalks = [
            self._crosswalk(doc, cw, {t.id for t in vocab.threat_actors}, item_ids)
            for doc, cw in crosswalk_docs
        ]
        cw_seen: dict[str, str] = {}
        for doc, cw in crosswalk_docs:
            if cw.crosswalk in cw_seen:
                raise self.fail(
                    doc,
                    ("crosswalk",),
                    f"duplicate crosswalk id {cw.crosswalk!r}, also in {cw_seen[cw.crosswalk]}",
                )
            cw_seen[cw.crosswalk] = doc.name

        # step 5: digest and build ----------------------------------------------------------------
        sr = vocab.serious_incidents
        return Catalog(
            version=manifest.catalog_version,
            framework=Framework(**manifest.framework.model_dump()),
            last_modified=manifest.last_modified,
            digest=self._digest(),
            source=str(self.root),
            files=tuple(sorted(self.docs)),
            chapters=tuple(Chapter(id=c.id, title=c.title) for c in manifest.chapters),
            commitments=tuple(commitments),
            measures=tuple(measures),
            areas=tuple(areas),
            objectives=tuple(objectives),
            articles=tuple(articles),
            ai_act_facts=AIActFacts(**ai_act.facts.model_dump()),
            threat_actors=tuple(ThreatActor(**t.model_dump()) for t in threat_actors),
            incident_types=tuple(IncidentType(**t.model_dump()) for t in incident_types),
            incident_reporting=IncidentReporting(
                measures=sr.measures,
                clock_starts=sr.clock_starts,
                intermediate_report_every_weeks=sr.intermediate_report_every_weeks,
                final_report_days_after_resolution=sr.final_report_days_after_resolution,
                retention_years=sr.retention_years,
            ),
            documentation_retention_years=vocab.documentation_retention_years,
            oversight_levels=tuple(OversightLevel(**o.model_dump()) for o in oversight),
            crosswalks=tuple(crosswalks),
        )

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _refs(
        out: list[tuple[_Doc, Loc, str, str]], doc: _Doc, loc: Loc, kind: str, values: Sequence[str]
    ) -> None:
        out.extend((doc, (*loc, i), kind, v) for i, v in enumerate(values))

    def _unique_chapters(self, doc: _Doc, manifest: s.ManifestFile) -> None:
        seen: set[str] = set()
        for i, ch in enumerate(manifest.chapters):
            if ch.id in seen or ch.id == "all":
                problem = "reserved" if ch.id == "all" else "given twice"
                raise self.fail(doc, ("chapters", i, "id"), f"chapter id {ch.id!r} is {problem}")
            seen.add(ch.id)

    def _articles(self, doc: _Doc, ai_act: s.AiActFile) -> list[Article]:
        seen: set[str] = set()
        out = []
        for i, a in enumerate(ai_act.articles):
            if a.id in seen:
                raise self.fail(doc, ("articles", i, "id"), f"duplicate id {a.id!r}")
            seen.add(a.id)
            out.append(Article(id=a.id, title=a.title))
        return out

    def _vocabulary(self, doc: _Doc, path: str, entries: Sequence[Any]) -> Sequence[Any]:
        seen: set[str] = set()
        base: Loc = tuple(path.split("."))
        for i, entry in enumerate(entries):
            if entry.id in seen:
                raise self.fail(doc, (*base, i, "id"), f"duplicate id {entry.id!r}")
            seen.add(entry.id)
        return entries

    def _crosswalk(self, doc: _Doc, cw: s.CrosswalkFile, actors: set[str], items: set[str]) -> Crosswalk:
        levels: set[str] = set()
        for i, lvl in enumerate(cw.levels):
            if lvl.id in levels:
                raise self.fail(doc, ("levels", i, "id"), f"duplicate id {lvl.id!r}")
            levels.add(lvl.id)
        for i, tm in enumerate(cw.threat_actors):
            if tm.threat_actor not in actors:
                raise self.fail(
                    doc, ("threat_actors", i, "threat_actor"), f"unknown threat actor {tm.threat_actor!r}"
                )
            if tm.level not in levels:
                raise self.fail(doc, ("threat_actors", i, "level"), f"unknown level {tm.level!r}")
        for i, im in enumerate(cw.items):
            if im.item not in items:
                raise self.fail(doc, ("items", i, "item"), f"unknown measure or objective {im.item!r}")
            if im.level not in levels:
                raise self.fail(doc, ("items", i, "level"), f"unknown level {im.level!r}")
        return Crosswalk(
            id=cw.crosswalk,
            title=cw.title,
            source=cw.source,
            levels=tuple(CrosswalkLevel(**lvl.model_dump()) for lvl in cw.levels),
            threat_actors=tuple(
                CrosswalkMapping(subject=m.threat_actor, level=m.level, note=m.note) for m in cw.threat_actors
            ),
            items=tuple(CrosswalkMapping(subject=m.item, level=m.level, note=m.note) for m in cw.items),
        )

    def _digest(self) -> str:
        """SHA-256 over a ``sha256sum``-style listing of the files read, sorted by file name.

        The same value comes from ``sha256sum <files> | LC_ALL=C sort -k2 | sha256sum`` in the data
        directory, so anyone can check which catalog an assessment used.
        """
        listing = "".join(
            f"{hashlib.sha256(self.docs[name].raw).hexdigest()}  {name}\n" for name in sorted(self.docs)
        )
        return hashlib.sha256(listing.encode("utf-8")).hexdigest()
