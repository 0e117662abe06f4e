"""Structured logs: with ``LOG_FORMAT = "json"`` every log line is one JSON object with
``time``, ``level``, ``logger``, ``message``, ``request_id`` (when written during a request)
and the record's own ``fields`` (the request and outbound lines carry theirs), plus the
traceback when there is one. Text stays the default and is left as it was.

Messages are the same as in text: ``logsafe`` has escaped their control characters, and
nothing that logs here puts a secret in them. The development server's own access lines are
dropped in JSON mode: they repeat each request with its query string (``requestlog`` writes
the request line instead).
"""

import json
import logging
import sys
from datetime import UTC, datetime

from . import requestlog

_MARK = "mcpadmin_json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        request_id = entry.get("request_id") or requestlog.current()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _not_dev_server_access(record: logging.LogRecord) -> bool:
    return not (record.name == "werkzeug" and record.levelno < logging.WARNING)


def install(app):
    """In JSON mode: one JSON handler on the root logger (replacing the one an earlier app
    of this process installed), Flask's own handler removed (its lines reach the root), and
    the request and outbound lines let through at INFO. Text mode: nothing changes."""
    if app.config["LOG_FORMAT"] != "json":
        return
    from flask.logging import default_handler

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_not_dev_server_access)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    app.logger.removeHandler(default_handler)
    for name in ("mcpadmin.requests", "mcpadmin.outbound"):
        logging.getLogger(name).setLevel(logging.INFO)
