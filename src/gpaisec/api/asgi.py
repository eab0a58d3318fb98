"""The API as an ASGI application factory, for ``gpaisec serve --workers N`` (one app per process).

uvicorn starts each worker process afresh and calls :func:`app_from_environment`, which opens the
workspace and loads the settings exactly as ``gpaisec serve`` does in one process. The parent passes
what it was given through the environment (no secret: the session secret stays in the workspace's
key directory, mode 0600, or in ``GPAISEC_SESSION_SECRET`` if the operator set it).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from gpaisec.api.app import create_app, tune_for_serving
from gpaisec.api.settings import Settings
from gpaisec.errors import ConfigError
from gpaisec.workspace import Workspace

__all__ = ["ENV_HOME", "ENV_HOST", "ENV_TLS", "ENV_WORKERS", "app_from_environment"]

ENV_HOME = "GPAISEC_SERVE_HOME"
ENV_HOST = "GPAISEC_SERVE_HOST"
ENV_TLS = "GPAISEC_SERVE_TLS"
ENV_WORKERS = "GPAISEC_SERVE_WORKERS"


def app_from_environment() -> FastAPI:
    home = os.environ.get(ENV_HOME)
    if not home:
        raise ConfigError(f"{ENV_HOME} is not set", hint="start the server with `gpaisec serve --workers N`")
    try:
        workers = int(os.environ.get(ENV_WORKERS, "1"))
    except ValueError:
        raise ConfigError(f"{ENV_WORKERS} must be a whole number") from None
    ws = Workspace.open(home)
    settings = Settings.load(
        ws.keys_dir,
        host=os.environ.get(ENV_HOST, "127.0.0.1"),
        tls=os.environ.get(ENV_TLS) == "1",
        workers=workers,
    )
    app = create_app(ws, settings)
    tune_for_serving(ws)
    return app
