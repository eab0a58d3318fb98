"""The ``gpaisec`` command. ``main(argv)`` is callable from tests.

Exit codes: 0 success; 1 a check or verification found a problem; 2 bad input or usage;
3 workspace, database or environment; 4 integrity failure; 5 not found; 6 denied by policy.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from click.exceptions import Abort as ClickAbort
from click.exceptions import ClickException, Exit

from gpaisec import __version__
from gpaisec.cli import common
from gpaisec.errors import GpaisecError

# typer 0.29 and newer raise usage errors from a bundled copy of click; older ones from click itself.
try:
    from typer._click.exceptions import ClickException as _BundledClickException
except ImportError:  # pragma: no cover - older typer
    _BundledClickException = ClickException  # type: ignore[misc,assignment]
USAGE_ERRORS: tuple[type[Exception], ...] = (ClickException, _BundledClickException)
EXITS: tuple[type[Exception], ...] = (Exit, typer.Exit)
ABORTS: tuple[type[BaseException], ...] = (ClickAbort, typer.Abort)

app = typer.Typer(
    name="gpaisec",
    help="Protect unreleased model weights and prove conformance with the EU GPAI Code of Practice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpaisec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", envvar="GPAISEC_HOME", help="Workspace directory (default ./.gpaisec)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    common.STATE.workspace_dir = workspace
    common.STATE.verbose = verbose
    common.STATE._workspace = None


def _register() -> None:
    from gpaisec.cli import access, assess, audit, catalog, demo, keys, registry, serve, weights

    app.add_typer(catalog.app, name="catalog")
    app.add_typer(audit.app, name="audit")
    app.add_typer(weights.app, name="weights")
    app.add_typer(keys.app, name="keys")
    assess.register(app)
    registry.register(app)
    demo.register(app)
    access.register(app)
    serve.register(app)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (for tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    try:
        rc = app(args=args, standalone_mode=False, prog_name="gpaisec")
        if isinstance(rc, int):
            return rc
    except GpaisecError as exc:
        if verbose:
            traceback.print_exc()
        common.stderr.print(f"[bold red]error:[/] {exc.diagnostics()}", highlight=False)
        return exc.exit_code
    except EXITS as exc:
        return int(getattr(exc, "exit_code", 0))
    except ABORTS:
        common.stderr.print("aborted")
        return 130
    except USAGE_ERRORS as exc:
        exc.show()  # type: ignore[attr-defined]
        return 2
    except KeyboardInterrupt:
        common.stderr.print("interrupted")
        return 130
    finally:
        ws = common.STATE._workspace
        if ws is not None:
            ws.close()
            common.STATE._workspace = None
    return 0


def entrypoint() -> None:
    sys.exit(main())
