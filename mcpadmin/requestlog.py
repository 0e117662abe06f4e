"""Every request's id, and (with ``LOG_FORMAT = "json"``) its one log line.

Each request gets 16 hex characters of its own in ``flask.g.request_id``, sent back as
``X-Request-Id``. The same id is in the call log row of a gateway call, in the text of every
error the agent endpoint sends, and in every JSON log line written while the request runs,
so an operator can follow one failure from the agent's message to the upstream exchange.
The id is made here, never taken from the client (a forged one would tie lines together
that do not belong together).

The agent data plane (``gateway/``) is not a Flask request: it makes its id with ``begin``,
which keeps it in a context variable that the plane's tasks and threads inherit.

The request line holds the method, the path without its query string (OAuth callbacks carry
codes there), the endpoint, the status, the duration, the
request id and, on the agent endpoint, the agent's id; never a header, a body or a query.
A streamed answer's line is written when the stream closes.
"""

import contextvars
import logging
import secrets
import time

from flask import current_app, g, has_app_context, request

HEADER = "X-Request-Id"
log = logging.getLogger("mcpadmin.requests")
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mcpadmin_request_id", default=None
)


def current() -> str | None:
    """This request's id; None outside a request (a CLI command, a background thread)."""
    request_id = _REQUEST_ID.get()
    if request_id is not None:
        return request_id
    return g.get("request_id") if has_app_context() else None


def begin() -> str:
    """A new id for a data-plane request, current in this context (and those copied from it)."""
    request_id = secrets.token_hex(8)
    _REQUEST_ID.set(request_id)
    return request_id


def tagged(text: str) -> str:
    """``text`` with the request's id appended, for a message an agent reads."""
    request_id = current()
    return f"{text} (request {request_id})" if request_id else text


def _start():
    g.request_id = secrets.token_hex(8)
    g.request_started = time.monotonic()


def _finish(response):
    request_id = g.get("request_id")
    if request_id is None:
        return response
    response.headers[HEADER] = request_id
    if current_app.config["LOG_FORMAT"] == "json":
        fields = {
            "method": request.method,
            "path": request.path,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "request_id": request_id,
        }
        if g.get("agent_id") is not None:
            fields["agent_id"] = g.agent_id
        started = g.request_started
        if response.is_streamed:  # written when the stream closes: how long it stayed open
            response.call_on_close(lambda: line(fields, started))
        else:
            line(fields, started)
    return response


def line(fields: dict, started: float):
    """The request's JSON line (``LOG_FORMAT = "json"``), its duration measured from
    ``started`` (``time.monotonic()``)."""
    fields["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
    log.info("%s %s %s", fields["method"], fields["path"], fields["status"],
             extra={"fields": fields})  # fmt: skip


def init_app(app):
    """Install the hooks; first of all, so a refused request has an id too."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
