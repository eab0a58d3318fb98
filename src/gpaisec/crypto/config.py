"""Which key provider holds each key-encryption key (KEK) of a workspace.

``<workspace>/keys/kek.json`` (mode 0600) maps a KEK label to its provider and the provider's
non-secret settings. Secrets never live here: the local passphrase comes from
``GPAISEC_KEK_PASSPHRASE`` or a prompt, the PKCS#11 user PIN from ``GPAISEC_PKCS11_PIN`` or a prompt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from gpaisec._files import write_atomically
from gpaisec.crypto.keys import (
    KeyProvider,
    SecretSource,
    audit_to_workspace,
    secret_from_env,
    secret_from_prompt,
)
from gpaisec.errors import ConfigError, InputError, NotFoundError
from gpaisec.workspace import Workspace

__all__ = ["PROVIDERS", "load_provider", "provider_for", "register_kek"]

PROVIDERS = ("local", "pkcs11", "tpm")
PASSPHRASE_ENV = "GPAISEC_KEK_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
PIN_ENV = "GPAISEC_PKCS11_PIN"


def _path(ws: Workspace) -> Path:
    return ws.keys_dir / "kek.json"


def _read(ws: Workspace) -> dict[str, Any]:
    path = _path(ws)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="restore it from a backup") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a KEK configuration", hint="restore it from a backup")
    return data


def _secret(env: str, prompt: str) -> SecretSource:
    if os.environ.get(env):
        return secret_from_env(env)
    if not sys.stdin.isatty():
        raise ConfigError(f"no secret: {env} is not set and there is no terminal", hint=f"export {env}")
    return secret_from_prompt(prompt)


def load_provider(ws: Workspace, settings: dict[str, Any]) -> KeyProvider:
    kind = settings.get("provider")
    audit = audit_to_workspace(ws, provider=str(kind))
    if kind == "local":
        from gpaisec.crypto.local import LocalKeyProvider

        return LocalKeyProvider(
            ws.keys_dir / "local", _secret(PASSPHRASE_ENV, "KEK passphrase: "), audit=audit
        )
    if kind == "pkcs11":
        from gpaisec.crypto.hsm import DEFAULT_LIBRARY, Pkcs11KeyProvider

        return Pkcs11KeyProvider(
            str(settings["token_label"]),
            _secret(PIN_ENV, "HSM user PIN: "),
            library=settings.get("library") or DEFAULT_LIBRARY,
            audit=audit,
        )
    if kind == "tpm":
        from gpaisec.crypto.tpm import TpmKeyProvider

        return TpmKeyProvider(ws.keys_dir / "tpm", tcti=settings.get("tcti"), audit=audit)
    raise ConfigError(
        f"unknown key provider {kind!r} in {_path(ws)}", hint=f"use one of {', '.join(PROVIDERS)}"
    )


def provider_for(ws: Workspace, label: str) -> KeyProvider:
    settings = _read(ws).get(label)
    if settings is None:
        raise NotFoundError(f"no key {label!r} in this workspace", hint="create it with `gpaisec keys init`")
    return load_provider(ws, settings)


def register_kek(ws: Workspace, label: str, settings: dict[str, Any]) -> KeyProvider:
    """Create KEK ``label`` in its provider (version 1) and remember where it lives."""
    if settings.get("provider") not in PROVIDERS:
        raise InputError(
            f"unknown provider {settings.get('provider')!r}", hint=f"use one of {', '.join(PROVIDERS)}"
        )
    config = _read(ws)
    if label in config:
        raise InputError(f"key {label!r} already exists", hint="rotate it with `gpaisec keys rotate`")
    provider = load_provider(ws, settings)
    provider.create(label)
    ws.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config[label] = settings
    write_atomically(
        _path(ws), json.dumps(config, indent=2, sort_keys=True) + "\n", what="the key configuration"
    )
    os.chmod(_path(ws), 0o600)
    return provider


def list_keks(ws: Workspace) -> dict[str, Any]:
    return _read(ws)
