"""The HTTP API (FastAPI): the same service functions as the CLI, over HTTP.

::

    from gpaisec.api import Settings, create_app
    ws = Workspace.open(home)
    app = create_app(ws, Settings.load(ws.keys_dir))

See docs/api.md for the authentication model, CSRF, errors and endpoints.
"""

from gpaisec.api.app import API_PREFIX, PUBLIC_OPERATIONS, create_app
from gpaisec.api.settings import Settings

__all__ = ["API_PREFIX", "PUBLIC_OPERATIONS", "Settings", "create_app"]
