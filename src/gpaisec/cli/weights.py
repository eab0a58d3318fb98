"""`gpaisec weights hash | sign | verify`: integrity of a model directory, and OMS signatures.

These commands work on files and need no workspace. When a workspace exists, signing and every
verification (passed or failed) are also written to its audit log.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec.audit.service import record
from gpaisec.cli import common
from gpaisec.crypto import find_sealed, seal_directory, unseal_to
from gpaisec.crypto.config import provider_for
from gpaisec.crypto.memory import is_memory_backed, memory_dir
from gpaisec.errors import ConfigError, DeniedError, InputError
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


@app.command("seal")
def seal_cmd(
    directory: Annotated[Path, typer.Argument(help="The model directory.")],
    key: Annotated[str, typer.Option(help="The key-encryption key's label.")] = "weights-kek",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: DIR.sealed")] = None,
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Seal every file: AES-256-GCM chunks, data key wrapped in the HSM/TPM; no plaintext written anywhere."""
    ws = common.workspace()
    out = output or directory.with_name(directory.name + ".sealed")
    with common.stderr.status("sealing…"):
        results = seal_directory(directory, out, provider_for(ws, key), key)
    total = sum(r.plaintext_length for r in results)
    data = {"output": str(out), "files": len(results), "bytes": total}
    with ws.transaction() as s:
        record(
            s,
            actor=ws.actor,
            action="weights.seal",
            object=f"directory:{directory.absolute()}",
            details={"output": str(out.absolute()), "key": key, "files": len(results), "bytes": total},
        )
    common.emit(fmt, data, lambda: common.info(f"sealed {len(results)} files ({total:,} bytes) into {out}"))


@app.command("unseal")
def unseal_cmd(
    sealed: Annotated[Path, typer.Argument(help="A directory of sealed files.")],
    into: Annotated[Path, typer.Option(help="A directory on tmpfs, e.g. /dev/shm/eval-42.")],
    key: Annotated[str, typer.Option(help="The key-encryption key's label.")] = "weights-kek",
    unsafe_persistent: Annotated[
        bool, typer.Option("--unsafe-persistent", help="UNSAFE: allow a disk file system (audited).")
    ] = False,
) -> None:
    """Unseal into memory-backed storage only; a disk file system is refused unless --unsafe-persistent."""
    ws = common.workspace()
    if not is_memory_backed(into.parent if not into.exists() else into):
        if not unsafe_persistent:
            raise ConfigError(
                f"{into} is not on a memory-backed file system; refusing to write plaintext weights to disk",
                hint="unseal under /dev/shm, or use `gpaisec weights open` which needs no directory at all",
            )
        common.stderr.print(f"[bold red]UNSAFE[/] unsealing to persistent storage at {into}")
    provider = provider_for(ws, key)
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = list(find_sealed(sealed))
    with ws.transaction() as s:
        record(
            s,
            actor=ws.actor,
            action="weights.unseal",
            object=f"directory:{sealed.absolute()}",
            details={
                "into": str(into.absolute()),
                "files": len(files),
                "unsafe_persistent": unsafe_persistent,
            },
        )
    for path in files:
        rel = path.relative_to(sealed) if path != sealed else Path(path.name)
        target = into / str(rel).removesuffix(".sealed")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            unseal_to(path, fd, provider)
        except BaseException:
            os.close(fd)
            target.unlink(missing_ok=True)
            raise
        os.close(fd)
    common.info(f"unsealed {len(files)} files into {into}")


@app.command("open", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def open_cmd(
    ctx: typer.Context,
    sealed: Annotated[Path, typer.Argument(help="A directory of sealed files.")],
    version: Annotated[str, typer.Option(help="MODEL:VERSION the files are, for the access decision.")],
    key: Annotated[str, typer.Option(help="The key-encryption key's label.")] = "weights-kek",
) -> None:
    """After a policy allow, unseal into memory, run the command after `--` ({dir} is the directory), wipe.

    Example: gpaisec weights open atlas-v3.sealed --version atlas:v3 -- python serve.py {dir}
    """
    from gpaisec.access.decide import check_access
    from gpaisec.cli.access import _session

    command = list(ctx.args)
    if not command:
        raise InputError("give the command to run after `--`", hint="e.g. -- python serve.py {dir}")
    ws = common.workspace()
    username, token = _session()
    decision = check_access(ws, username, "read", version, session=token)
    if not decision.allowed:
        raise DeniedError(
            f"{username} may not read {version}: {'; '.join(decision.reasons) or 'no policy permits it'}",
            hint="request a grant with `gpaisec access request`",
        )
    provider = provider_for(ws, key)
    # A private 0700 directory on tmpfs (memory_dir checks the file system and wipes it on exit).
    with memory_dir(sealed, provider, base="/dev/shm") as md:  # noqa: S108
        assert md.root is not None
        argv = [a.replace("{dir}", str(md.root)) for a in command]
        with ws.transaction() as s:
            record(
                s,
                actor=f"user:{username}",
                action="weights.open",
                object=f"version:{version}",
                details={
                    "sealed": str(sealed.absolute()),
                    "files": len(md.files),
                    "locked": md.locked,
                    "command": argv[0],
                    "policies": list(decision.determining_policies),
                },
            )
        rc = subprocess.run(argv, check=False).returncode  # noqa: S603 - the user's own command, no shell
    raise typer.Exit(rc)


@app.command("serve-config")
def serve_config_cmd(
    version: Annotated[str, typer.Argument(help="MODEL:VERSION to serve over the API.")],
    sealed_dir: Annotated[Path, typer.Option(help="The directory of its sealed files on this server.")],
    bytes_per_second: Annotated[int, typer.Option(help="Output rate limit per principal and per grant.")],
    max_bytes_per_grant: Annotated[int, typer.Option(help="Total bytes one grant may read.")],
    key: Annotated[str, typer.Option(help="The key-encryption key's label.")] = "weights-kek",
    fmt: common.FormatOption = common.OutputFormat.table,
) -> None:
    """Serve a version's sealed files at GET /api/v1/weights/..., within these limits (audited)."""
    from gpaisec.crypto.serving import configure_serving

    served = configure_serving(
        common.workspace(),
        version,
        sealed_dir=sealed_dir,
        key=key,
        bytes_per_second=bytes_per_second,
        max_bytes_per_grant=max_bytes_per_grant,
    )
    data = {
        "version": served.ref,
        "sealed_dir": str(served.sealed_dir),
        "bytes_per_second": served.bytes_per_second,
        "max_bytes_per_grant": served.max_bytes_per_grant,
    }
    common.emit(
        fmt, data, lambda: common.info(f"{served.ref} is served from {served.sealed_dir} within its limits")
    )
