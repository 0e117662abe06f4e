"""The outbound HTTP client configured from the app: every service builds its client here.

With ``LOG_FORMAT = "json"`` each exchange writes one line (``mcpadmin.outbound``): method,
host, path without its query, status or error kind, duration, response bytes, and the request
id of the request it was made for (``requestlog``). Never a header, a query or a body.
"""

import logging
import threading
from urllib.parse import urlsplit

import requests
from flask import current_app

from ..protocol.http import Exchange, Http

_kept = threading.local()
log = logging.getLogger("mcpadmin.outbound")


def http(
    timeout: float | None = None,
    deadline: float | None = None,
    read_timeout: float | None = None,
    keep_alive: bool = False,
) -> Http:
    """A client with the configured timeout, size limit and address policy.

    :param timeout: a shorter per-call timeout for callers bound by a lock.
    :param deadline: the whole exchange's limit (default: three timeouts).
    :param read_timeout: a longer limit for each read (a tool call may work for minutes).
    :param keep_alive: reuse this thread's connections (tool calls through the gateway: one
        connect per upstream and thread, not one per call). A kept connection was checked
        against the address policy when it was opened, and is kept per policy.
    """
    config = current_app.config
    allow_private, allow_loopback = config["ALLOW_PRIVATE_NETWORKS"], config["ALLOW_LOOPBACK"]
    extra = {"session": _thread_session((allow_private, allow_loopback))} if keep_alive else {}
    return Http(
        timeout=min(timeout or config["HTTP_TIMEOUT"], config["HTTP_TIMEOUT"]),
        max_bytes=config["HTTP_MAX_BYTES"],
        allow_private=allow_private,
        allow_loopback=allow_loopback,
        deadline=deadline,
        read_timeout=read_timeout,
        observer=_log_exchange if config["LOG_FORMAT"] == "json" else None,
        **extra,
    )


def _log_exchange(exchange: Exchange):
    parts = urlsplit(exchange.url)
    fields = {
        "method": exchange.method,
        "host": parts.hostname,
        "path": parts.path or "/",
        "status": exchange.status,
        "error": exchange.error,
        "duration_ms": round(exchange.seconds * 1000, 3),
        "response_bytes": exchange.response_bytes,
    }
    outcome = exchange.status if exchange.status is not None else exchange.error
    log.info("outbound %s %s%s %s", exchange.method, parts.hostname, fields["path"], outcome,
             extra={"fields": fields})  # fmt: skip


def _thread_session(policy: tuple) -> requests.Session:
    """This thread's kept session for one address policy (``requests.Session`` is not
    shared between threads)."""
    sessions = getattr(_kept, "sessions", None)
    if sessions is None:
        sessions = _kept.sessions = {}
    if policy not in sessions:
        sessions[policy] = requests.Session()
    return sessions[policy]
