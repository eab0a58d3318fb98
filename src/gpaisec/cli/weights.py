"""`gpaisec weights hash | sign | verify`: integrity of a model directory, and OMS signatures.

These commands work on files and need no workspace. When a workspace exists, signing and every
verification (passed or failed) are also written to its audit log.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec.audit.service import record
from gpaisec.cli import common
from gpaisec.errors import InputError
from gpaisec.integrity import (
    DEFAULT_SHARD_SIZE,
    HashParams,
    Manifest,
    VerificationError,
    hash_directory,
    sign,
    terminal_progress,
    verify,
)

app = typer.Typer(
    help="Hash, sign and verify model weights (OpenSSF Model Signing format).", no_args_is_help=True
)

KEY_PASSWORD_ENV = "GPAISEC_SIGNING_KEY_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def _params(algorithm: str, shards: bool, shard_size: int, allow_symlinks: bool) -> HashParams:
    kwargs: dict[str, Any] = {
        "algorithm": algorithm,
        "allow_symlinks": allow_symlinks,
    }  # HashParams checks them
    if shards:
        kwargs |= {"method": "shards", "shard_size": shard_size}
    return HashParams(**kwargs)


def _audit(action: str, obj: str, details: dict[str, Any]) -> None:
    """Record in the workspace's audit log if there is a workspace; never create one for this."""
    home = Path(common.STATE.workspace_dir or os.environ.get("GPAISEC_HOME") or ".gpaisec")
    if not home.is_dir() and not os.environ.get("GPAISEC_DATABASE_URL"):
        return
    ws = common.workspace()
    with ws.transaction() as s:
        record(s, actor=ws.actor, action=action, object=obj, details=details)


def _manifest_json(m: Manifest) -> dict[str, Any]:
    return {
        "digest": str(m.digest()),
        "params": m.params.to_dict(),
        "files": {path: [r.digest for r in rs] for path, rs in m.files.items()},
    }


@app.command("hash")
def hash_cmd(
    directory: Annotated[Path, typer.Argument(help="The model directory.")],
    algorithm: Annotated[str, typer.Option(help="blake3 (default, fastest) or sha256 (interop).")] = "blake3",
    shards: Annotated[bool, typer.Option(help="One digest per shard of each file.")] = False,
    shard_size: Annotated[int, typer.Option(help="Shard size in bytes with --shards.")] = DEFAULT_SHARD_SIZE,
    allow_symlinks: Annotated[bool, typer.Option(help="Follow symlinks inside the directory.")] = False,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Hash every file of a model directory and print the manifest."""
    with terminal_progress("hashing") as progress:
        manifest = hash_directory(
            directory, _params(algorithm, shards, shard_size, allow_symlinks), progress=progress
        )
    data = _manifest_json(manifest)

    def render() -> None:
        common.print_table(
            f"{directory} ({manifest.params.algorithm})",
            ["file", "digest"],
            [[p, ", ".join(d)] for p, d in data["files"].items()],
        )
        common.stdout.print(f"manifest {data['digest']}")

    common.emit(fmt, data, render)


def _key_password(key: Path) -> bytes | None:
    try:
        head = key.read_bytes()[:200]
    except OSError as exc:
        raise InputError(f"cannot read the key {key}: {exc.strerror}") from None
    if b"ENCRYPTED" not in head:
        return None
    env = os.environ.get(KEY_PASSWORD_ENV)
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise InputError(
            f"the key {key} is encrypted", hint=f"set {KEY_PASSWORD_ENV} or run on a terminal to be asked"
        )
    return getpass.getpass(f"password for {key}: ").encode()


@app.command("sign")
def sign_cmd(
    directory: Annotated[Path, typer.Argument(help="The model directory.")],
    key: Annotated[Path, typer.Option(help="PEM EC private key (P-256/384/521).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the signature bundle.")],
    algorithm: Annotated[str, typer.Option(help="blake3 or sha256.")] = "blake3",
    shards: Annotated[bool, typer.Option(help="One digest per shard of each file.")] = False,
    shard_size: Annotated[int, typer.Option()] = DEFAULT_SHARD_SIZE,
    allow_symlinks: Annotated[bool, typer.Option()] = False,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Sign a model directory: an OMS bundle that `model_signing verify key` also accepts."""
    password = _key_password(key)
    with terminal_progress("hashing") as progress:
        manifest = sign(
            directory,
            key,
            output,
            params=_params(algorithm, shards, shard_size, allow_symlinks),
            password=password,
            progress=progress,
        )
    details = {
        "directory": str(directory.absolute()),
        "signature": str(output),
        "manifest": str(manifest.digest()),
    }
    _audit("weights.sign", f"directory:{directory.absolute()}", details)
    common.emit(fmt, details, lambda: common.info(f"signed {len(manifest.files)} files -> {output}"))


@app.command("verify")
def verify_cmd(
    directory: Annotated[Path, typer.Argument(help="The model directory.")],
    signature: Annotated[Path, typer.Option(help="The signature bundle.")],
    public_key: Annotated[Path, typer.Option(help="The signer's PEM public key.")],
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Verify a model directory against a signature; fails naming changed, missing and extra files."""
    obj = f"directory:{directory.absolute()}"
    try:
        with terminal_progress("verifying") as progress:
            manifest = verify(directory, signature, public_key, progress=progress)
    except VerificationError as exc:
        details: dict[str, Any] = {"signature": str(signature), "result": "failed", "reason": exc.message}
        if exc.diff is not None:
            details["diff"] = exc.diff.to_dict()
        _audit("weights.verify", obj, details)
        if fmt is common.OutputFormat.json:
            common.print_json({"directory": str(directory), "verified": False, **details})
        raise
    data = {
        "directory": str(directory),
        "verified": True,
        "files": len(manifest.files),
        "manifest": str(manifest.digest()),
    }
    _audit(
        "weights.verify",
        obj,
        {"signature": str(signature), "result": "verified", "manifest": data["manifest"]},
    )
    common.emit(fmt, data, lambda: common.info(f"verified: {len(manifest.files)} files match the signature"))
