"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` or ``flask --app wsgi run``.

A configuration the app refuses ends the process with the reason as one sentence on stderr.
"""

import sys

from mcpadmin import create_app
from mcpadmin.config import ConfigError

# gunicorn's "App failed to load" status: its master stops, instead of restarting workers that
# would fail the same way forever. Any other caller just sees a failed exit.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as exc:
    print(f"mcpadmin cannot start: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
