"""ASGI entry point: ``gunicorn -c gunicorn.conf.py asgi:app`` (production) or ``uvicorn asgi:app``
(``scripts/serve``). The agent data plane and the admin app in one application
(``mcpadmin.gateway.app``).

A configuration the app refuses ends the process with the reason as one sentence on stderr.
"""

import sys

from mcpadmin.config import APP_LOAD_ERROR, ConfigError
from mcpadmin.gateway.app import create_asgi_app

try:
    app = create_asgi_app()
except ConfigError as exc:
    print(f"mcpadmin cannot start: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
