"""Which sealed directory serves each model version on this server, and the output limits of each.

``<workspace>/serving.json`` (mode 0600, written whole or not at all)::

    {"atlas:v3": {"sealed_dir": "/srv/sealed/atlas-v3", "key": "weights-kek",
                  "bytes_per_second": 52428800, "max_bytes_per_grant": 21474836480}}

Every interface that serves weights must have both limits (appendix 4.3(3): harden interfaces, for
example by limiting the rate of output): :func:`configure_serving` refuses to write an entry without
them and :func:`served_version` refuses to use one. Each write is also recorded in the audit log as
``serving.configure`` with the limits, which is what the A4.3(3) check reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpaisec._files import write_atomically
from gpaisec.audit.service import record
from gpaisec.errors import ConfigError, InputError, NotFoundError
from gpaisec.workspace import Workspace

__all__ = [
    "LIMITS",
    "SERVING_FILE",
    "ServedVersion",
    "check_file_name",
    "configure_serving",
    "read_serving",
    "served_version",
]

SERVING_FILE = "serving.json"
LIMITS = ("bytes_per_second", "max_bytes_per_grant")


@dataclass(frozen=True)
class ServedVersion:
    """One version this server serves: where its sealed files are, the KEK, and the output limits."""

    ref: str
    sealed_dir: Path
    key: str
    bytes_per_second: int
    max_bytes_per_grant: int

    def path_of(self, name: str) -> Path:
        """The sealed file holding ``name`` (``<sealed_dir>/<name>.sealed``); ``name`` is checked."""
        return self.sealed_dir / f"{check_file_name(name)}.sealed"


def check_file_name(name: str) -> str:
    """``name`` if it names a file directly inside the sealed directory; raises InputError otherwise."""
    if (
        not name
        or "/" in name
        or "\\" in name
        or ".." in name
        or name.startswith(".")
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
        or len(name) > 255
    ):
        raise InputError(
            f"{name!r} is not a file name in the sealed directory",
            hint="name one file: no '/', no '..', no leading dot",
        )
    return name


def _path(ws: Workspace) -> Path:
    return ws.home / SERVING_FILE


def _positive(ref: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(
            f"{ref} in {SERVING_FILE} has no usable {name} ({value!r})",
            hint="every interface that serves weights needs a positive bytes_per_second and "
            "max_bytes_per_grant (appendix 4.3(3))",
        )
    return value


def read_serving(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The raw configuration (empty if there is none); raises ConfigError if it cannot be read."""
    path = _path(ws)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="restore it from a backup") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path} is not a serving configuration", hint="restore it from a backup")
    return data


def served_version(ws: Workspace, ref: str) -> ServedVersion:
    """How ``ref`` is served here; NotFoundError if it is not, ConfigError if an entry lacks a limit."""
    entry = read_serving(ws).get(ref)
    if entry is None:
        raise NotFoundError(f"{ref} is not served by this server", hint=f"configure it in {SERVING_FILE}")
    sealed_dir, key = entry.get("sealed_dir"), entry.get("key")
    if not isinstance(sealed_dir, str) or not sealed_dir or not isinstance(key, str) or not key:
        raise ConfigError(f"{ref} in {SERVING_FILE} needs a sealed_dir and a key")
    return ServedVersion(
        ref=ref,
        sealed_dir=Path(sealed_dir),
        key=key,
        bytes_per_second=_positive(ref, "bytes_per_second", entry.get("bytes_per_second")),
        max_bytes_per_grant=_positive(ref, "max_bytes_per_grant", entry.get("max_bytes_per_grant")),
    )


def configure_serving(
    ws: Workspace,
    ref: str,
    *,
    sealed_dir: str | os.PathLike[str],
    key: str,
    bytes_per_second: int,
    max_bytes_per_grant: int,
) -> ServedVersion:
    """Serve ``ref`` from ``sealed_dir`` with these limits; written atomically and audited."""
    model, sep, version = ref.partition(":")
    if not sep or not model or not version:
        raise InputError(f"{ref!r} is not a model version", hint="write it as model:version")
    for name, value in (("bytes_per_second", bytes_per_second), ("max_bytes_per_grant", max_bytes_per_grant)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(
                f"{name} must be a positive whole number of bytes, not {value!r}",
                hint="every interface that serves weights needs both limits (appendix 4.3(3))",
            )
    directory = Path(sealed_dir).absolute()
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", hint="seal the weights there first")
    if not key:
        raise InputError("the key-encryption key label is empty")
    config = read_serving(ws)
    entry = {
        "sealed_dir": str(directory),
        "key": key,
        "bytes_per_second": bytes_per_second,
        "max_bytes_per_grant": max_bytes_per_grant,
    }
    config[ref] = entry
    with ws.transaction() as s:
        record(
            s,
            actor=ws.actor,
            action="serving.configure",
            object=f"version:{ref}",
            details={"ref": ref, **entry},
        )
        write_atomically(
            _path(ws),
            json.dumps(config, indent=2, sort_keys=True) + "\n",
            what="the serving configuration",
            mode=0o600,
        )
    return served_version(ws, ref)
