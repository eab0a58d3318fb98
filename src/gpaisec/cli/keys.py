"""`gpaisec keys`: key-encryption keys in a local key file, a PKCS#11 HSM or a TPM 2.0."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec.cli import common
from gpaisec.crypto import find_sealed, retirable_versions, rewrap
from gpaisec.crypto.config import PROVIDERS, list_keks, provider_for, register_kek
from gpaisec.errors import ConflictError, InputError

app = typer.Typer(help="Key-encryption keys that wrap the data keys of sealed weights.", no_args_is_help=True)


@app.command("init")
def init_cmd(
    provider: Annotated[str, typer.Option(help=f"One of {', '.join(PROVIDERS)}.")],
    label: Annotated[str, typer.Option(help="The key's name.")] = "weights-kek",
    token_label: Annotated[str | None, typer.Option(help="PKCS#11 token label.")] = None,
    library: Annotated[str | None, typer.Option(help="PKCS#11 module (default: SoftHSM2's).")] = None,
    tcti: Annotated[str | None, typer.Option(help="TPM TCTI, e.g. swtpm:host=127.0.0.1,port=2321.")] = None,
) -> None:
    """Create a key-encryption key; it never leaves the HSM or TPM (or the passphrase-encrypted file)."""
    settings: dict[str, Any] = {"provider": provider}
    if provider == "pkcs11":
        if not token_label:
            raise InputError("--token-label is required with --provider pkcs11")
        settings |= {"token_label": token_label, "library": library}
    if provider == "tpm" and tcti:
        settings["tcti"] = tcti
    p = register_kek(common.workspace(), label, settings)
    common.info(f"key {label} created in the {provider} provider, version {p.current_version(label)}")


@app.command("list")
def list_cmd(fmt: common.FormatOption = common.OutputFormat.table) -> None:
    """List the workspace's key-encryption keys and where they live."""
    keks = list_keks(common.workspace())
    data = [{"label": k, **v} for k, v in sorted(keks.items())]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            "Keys",
            ["label", "provider", "settings"],
            [
                [
                    d["label"],
                    d["provider"],
                    ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("label", "provider") and v),
                ]
                for d in data
            ],
            empty="no keys: create one with `gpaisec keys init --provider pkcs11 --token-label T`",
        ),
    )


@app.command("rotate")
def rotate_cmd(
    label: str,
    rewrap_dirs: Annotated[
        list[Path] | None,
        typer.Option("--rewrap", help="Rewrap every sealed file under DIR (data untouched)."),
    ] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Create a new key version; with --rewrap, rewrap the data keys of sealed files to it."""
    provider = provider_for(common.workspace(), label)
    version = provider.rotate(label)
    moved = []
    for directory in rewrap_dirs or []:
        for path in find_sealed(directory):
            old, new = rewrap(path, provider, version, key_id=label)
            moved.append({"path": str(path), "from": old, "to": new})
    data = {"label": label, "version": version, "rewrapped": moved}
    common.emit(
        fmt, data, lambda: common.info(f"{label} is now at version {version}; {len(moved)} files rewrapped")
    )


@app.command("retire")
def retire_cmd(
    label: str,
    version: int,
    sealed: Annotated[
        list[Path], typer.Option("--in", help="Directories whose sealed files must not use it.")
    ],
) -> None:
    """Retire an old key version, refused while any sealed file under --in still uses it."""
    provider = provider_for(common.workspace(), label)
    paths = [p for d in sealed for p in find_sealed(d)]
    if version not in retirable_versions(provider, label, paths):
        raise ConflictError(
            f"version {version} of {label} cannot be retired: it is current or still wraps a file's data key",
            hint="rotate, then `gpaisec keys rotate --rewrap DIR` first",
        )
    provider.retire(label, version)
    common.info(f"{label} version {version} retired")
