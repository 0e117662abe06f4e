"""The Flask admin app alone (WSGI): what ``flask --app wsgi <command>`` loads. Served, the app
runs inside the ASGI application (``asgi.py``), beside the agent data plane.

A configuration the app refuses ends the process with the reason as one sentence on stderr.
"""

import sys

from mcpadmin import create_app
from mcpadmin.config import APP_LOAD_ERROR, ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"mcpadmin cannot start: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
