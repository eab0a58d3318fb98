"""``python -m gpaisec`` runs the CLI."""

from gpaisec.cli.app import entrypoint

entrypoint()
