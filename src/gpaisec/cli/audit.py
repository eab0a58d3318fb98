"""`gpaisec audit`: verify, prove, export and read the tamper-evident audit log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec._files import write_atomically
from gpaisec.audit import offline, service
from gpaisec.audit._keys import load_public_key
from gpaisec.audit._verifier import VerifyResult
from gpaisec.cli import common
from gpaisec.cli.common import FormatOption, OutputFormat
from gpaisec.errors import InputError

app = typer.Typer(
    help="The tamper-evident audit log: verify it, prove entries, export it for auditors.",
    no_args_is_help=True,
)

PublicKeyOption = Annotated[
    Path | None,
    typer.Option("--public-key", help="The log's published public key (PEM, base64 or signed-note vkey)."),
]


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _result_json(r: VerifyResult, **extra: Any) -> dict[str, Any]:
    return {
        "verified": True,
        **extra,
        "tree_size": r.tree_size,
        "root": r.root.hex(),
        "checkpoints": r.checkpoints,
        "origin": r.origin,
        "key_id": r.key_id if r.checkpoints else None,
        "latest_checkpoint_time": _time(r.latest.time) if r.latest else None,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def verify(
    export: Annotated[
        Path | None, typer.Option("--export", help="Verify an export directory instead of the database.")
    ] = None,
    public_key: PublicKeyOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Recompute the whole log from its entries and check every signed checkpoint."""
    if export is not None:
        key = load_public_key(public_key) if public_key is not None else None
        r = offline.verify_export(export, public_key=key).result
        data = _result_json(r, export=str(export))
        where = f"export {export}"
    else:
        if public_key is not None:
            raise InputError("--public-key applies to --export; the workspace's own key is used otherwise")
        r = service.verify(common.workspace())
        data = _result_json(r)
        where = "the audit log"

    def render() -> None:
        common.stdout.print(
            f"[green]{where} verifies[/]: {r.tree_size} entries, {r.checkpoints} signed checkpoints",
            highlight=False,
        )
        if r.tree_size:
            common.stdout.print(f"root {r.root.hex()}\nkey  {r.key_id}", highlight=False)
        if export is not None and public_key is None:
            common.info(
                "the key was taken from the export: compare its id with the one the provider published"
            )

    common.emit(fmt, data, render)


@app.command()
def prove(
    event_id: Annotated[int, typer.Argument(help="The entry's sequence number (from 'audit log').")],
    checkpoint: Annotated[
        int | None,
        typer.Option("--checkpoint", help="Prove against the checkpoint of this size (default: latest)."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the proof file here.")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """An inclusion proof for one entry, with the signed checkpoint; checkable offline."""
    proof = service.prove(common.workspace(), event_id, checkpoint=checkpoint)
    data = proof.to_json()
    if output is not None:
        _write_json(output, data)
        common.info(
            f"wrote the proof of entry {event_id} (tree size {proof.tree_size}) to {output}; "
            f"check it with: gpaisec audit check-proof {output} --public-key KEY"
        )
        return

    def render() -> None:
        common.print_table(
            f"Inclusion proof for entry {event_id}",
            ["field", "value"],
            [
                ("entry", data["entry"]),
                ("leaf hash", data["leaf_hash"]),
                ("tree size", proof.tree_size),
                ("audit path", f"{len(proof.proof)} hashes"),
                ("key id", proof.key_id),
            ],
        )
        common.info("use --output FILE (or --format json) for the proof itself")

    common.emit(fmt, data, render)


@app.command("check-proof")
def check_proof(
    file: Annotated[Path, typer.Argument(help="A proof file from 'audit prove' or 'audit consistency'.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The log's published public key (PEM, base64 or vkey).")
    ],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Check an inclusion or consistency proof file against the log's public key (no database)."""
    summary = offline.verify_proof_file(file, load_public_key(public_key))

    def render() -> None:
        if summary["kind"] == "inclusion":
            e = summary["entry"]
            common.stdout.print(
                f"[green]proof verifies[/]: entry {summary['seq']} is in the log of size "
                f"{summary['tree_size']} signed at {summary['checkpoint_time']}\n"
                f"{e['time']}  {e['actor']}  {e['action']}  {e['object']}",
                highlight=False,
            )
        else:
            common.stdout.print(
                f"[green]proof verifies[/]: the log of size {summary['old_size']} is a prefix of the log of "
                f"size {summary['new_size']}",
                highlight=False,
            )

    common.emit(fmt, summary, render)


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="A new directory to write the export into.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Write entries, checkpoints, public key and manifest into DIRECTORY for an auditor."""
    r = service.export(common.workspace(), directory)
    data = {
        "export": str(r.path),
        "tree_size": r.tree_size,
        "checkpoints": r.checkpoints,
        "root": r.root.hex(),
        "key_id": r.key_id,
    }

    def render() -> None:
        common.stdout.print(
            f"exported {r.tree_size} entries and {r.checkpoints} checkpoints to {r.path}\n"
            f"key id {r.key_id}\n"
            f"an auditor checks it with: python -m gpaisec.audit.offline {r.path} --public-key KEY",
            highlight=False,
        )

    common.emit(fmt, data, render)


def _parse_since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--since {value!r} is not a date or time", hint="use YYYY-MM-DD or ISO 8601"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@app.command("log")
def log_cmd(
    actor: Annotated[str | None, typer.Option("--actor", help="Only entries by this actor.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (or a prefix: 'device.*').")
    ] = None,
    obj: Annotated[str | None, typer.Option("--object", help="Only entries about this object.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries at or after this time (UTC).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (the latest).")] = 50,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Who did what, when: the latest entries, oldest first."""
    entries = service.log(
        common.workspace(), actor=actor, action=action, object=obj, since=_parse_since(since), limit=limit
    )
    data = [
        {
            "seq": e.seq,
            "time": _time(e.time),
            "actor": e.actor,
            "action": e.action,
            "object": e.object,
            "details": e.details,
        }
        for e in entries
    ]
    common.emit(
        fmt,
        data,
        lambda: common.print_table(
            None,
            ["seq", "time", "actor", "action", "object", "details"],
            [
                (
                    d["seq"],
                    d["time"],
                    d["actor"],
                    d["action"],
                    d["object"],
                    json.dumps(d["details"], ensure_ascii=False, sort_keys=True),
                )
                for d in data
            ],
            empty="no audit entries match",
        ),
    )


@app.command()
def consistency(
    old_size: Annotated[
        int, typer.Argument(help="The earlier checkpoint's tree size (0 for the empty log).")
    ],
    new_size: Annotated[int, typer.Argument(help="The later checkpoint's tree size.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the proof file here.")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Prove that the log at OLD_SIZE is a prefix of the log at NEW_SIZE (nothing rewritten)."""
    proof = service.consistency(common.workspace(), old_size, new_size)
    data = proof.to_json()
    if output is not None:
        _write_json(output, data)
        common.info(f"wrote the consistency proof {old_size} -> {new_size} to {output}")
        return

    def render() -> None:
        common.print_table(
            f"Consistency proof {old_size} -> {new_size}",
            ["field", "value"],
            [
                ("old root", data["old_root"]),
                ("new root", data["new_root"]),
                ("proof", f"{len(proof.proof)} hashes"),
                ("key id", proof.key_id),
            ],
        )

    common.emit(fmt, data, render)
