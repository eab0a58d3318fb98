"""Build the password blocklist shipped in ``src/gpaisec/access/data/``.

Sources (installed with ``pip install -e '.[data]'``; nothing is downloaded):

- zxcvbn 4.5.0 ``zxcvbn.frequency_lists.FREQUENCY_LISTS``: passwords, english_wikipedia, surnames,
  us_tv_and_film, female_names, male_names;
- Django 5.2 ``django/contrib/auth/common-passwords.txt.gz``.

Every entry is NFC-normalised, stripped and lower-cased (the same folding
:mod:`gpaisec.access.passwords` applies to a candidate), empty entries are dropped, the rest
deduplicated and sorted by code point. The output is byte-identical on every run:

- ``blocklist.txt.gz``: one entry a line, UTF-8, ``\\n``-terminated, gzip level 9 with no file name
  and mtime 0;
- ``blocklist.json``: the count, the sources with their versions, sizes and digests (SHA-256 of the
  raw entries joined by ``\n``), and the SHA-256 of both the gzip file and the text inside it (the
  text digest does not depend on the zlib build).

Usage::

    python scripts/make_blocklist.py            # write into src/gpaisec/access/data/
    python scripts/make_blocklist.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import io
import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ZXCVBN_VERSION = "4.5.0"
DJANGO_SERIES = "5.2."
ZXCVBN_LISTS = ("passwords", "english_wikipedia", "surnames", "us_tv_and_film", "female_names", "male_names")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "gpaisec" / "access" / "data"
TEXT_NAME = "blocklist.txt.gz"
META_NAME = "blocklist.json"


class SourceError(Exception):
    """A source package is missing or is not the pinned version."""


def fold(entry: str) -> str:
    """The folding applied to every entry, and by gpaisec.access.passwords to every candidate."""
    return unicodedata.normalize("NFC", entry).strip().lower()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError as exc:
        raise SourceError(f"{dist} is not installed (pip install -e '.[data]')") from exc


def load_sources() -> list[tuple[str, list[str]]]:
    """The raw source lists, named, in a fixed order. Refuses any version but the pinned ones."""
    zx_version = _version("zxcvbn")
    if zx_version != ZXCVBN_VERSION:
        raise SourceError(f"zxcvbn {zx_version} is installed; the blocklist is built from {ZXCVBN_VERSION}")
    dj_version = _version("django")
    if not dj_version.startswith(DJANGO_SERIES):
        raise SourceError(f"Django {dj_version} is installed; the blocklist is built from {DJANGO_SERIES}*")

    import django
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    sources: list[tuple[str, list[str]]] = []
    for name in ZXCVBN_LISTS:
        sources.append((f"zxcvbn {zx_version} FREQUENCY_LISTS[{name!r}]", list(FREQUENCY_LISTS[name])))
    path = Path(django.__file__).parent / "contrib" / "auth" / "common-passwords.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        # Named by series, not patch release: the list has not changed within 5.2, and the digest below
        # would show it if it did.
        sources.append(
            (f"Django {DJANGO_SERIES[:-1]} contrib/auth/common-passwords.txt.gz", fh.read().splitlines())
        )
    return sources


def build_entries(lists: Iterable[Iterable[str]]) -> list[str]:
    """Fold, drop empties, deduplicate, sort."""
    return sorted({f for entries in lists for e in entries if (f := fold(e))})


def encode(entries: Sequence[str]) -> tuple[bytes, bytes]:
    """(text, gzip bytes) for the entries; deterministic."""
    text = "".join(f"{e}\n" for e in entries).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    return text, buf.getvalue()


def build() -> tuple[bytes, bytes]:
    """(gzip bytes, JSON bytes) of the blocklist, from the installed sources."""
    sources = load_sources()
    entries = build_entries(lst for _, lst in sources)
    text, gz = encode(entries)
    meta: dict[str, Any] = {
        "file": TEXT_NAME,
        "count": len(entries),
        "sha256": hashlib.sha256(gz).hexdigest(),
        "text_sha256": hashlib.sha256(text).hexdigest(),
        "folding": "Unicode NFC, strip leading/trailing whitespace, str.lower(); empties dropped",
        "order": "deduplicated, sorted by code point",
        "generator": "scripts/make_blocklist.py",
        "sources": [
            {"name": name, "entries": len(lst), "sha256": hashlib.sha256("\n".join(lst).encode()).hexdigest()}
            for name, lst in sources
        ],
    }
    return gz, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUT, help="where to write the files")
    parser.add_argument("--check", action="store_true", help="compare with the files there; write nothing")
    args = parser.parse_args(argv)
    try:
        gz, meta = build()
    except SourceError as exc:
        sys.stderr.write(f"make_blocklist: {exc}\n")
        return 2
    out: Path = args.output_dir
    count = json.loads(meta)["count"]
    if args.check:
        stale = [n for n, data in ((TEXT_NAME, gz), (META_NAME, meta)) if _read(out / n) != data]
        if stale:
            sys.stderr.write(f"make_blocklist: {', '.join(stale)} in {out} differ from a fresh build\n")
            return 1
        sys.stderr.write(f"make_blocklist: {out} is up to date ({count} entries)\n")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / TEXT_NAME).write_bytes(gz)
    (out / META_NAME).write_bytes(meta)
    sys.stderr.write(f"make_blocklist: wrote {count} entries to {out}\n")
    return 0


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
