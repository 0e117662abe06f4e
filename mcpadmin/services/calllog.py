"""The call log: one ``CallRecord`` per agent ``tools/call`` that reached tool dispatch (and
per call an operator made as an agent from the console), and the one place such rows are
written.

A row names the agent, the key (its id and label, never the key) or the operator who made the
call from the console, the connector and tool,
how the call ended (``Outcome``), how long it took, one line of error (scrubbed, then cut)
and the sizes of the request and the answer. Results are never stored; arguments only where
the connector says so (``Connector.log_arguments``), with every value under a secret-looking
key replaced (``redact``). ``CALL_LOG = False`` writes no row (to measure what the log costs).

A call only queues its row; a writer thread per process writes the queue in batches
(``Writer``), so the call never waits for a disk sync and a log that cannot be written never
costs a call its answer.
"""

import atexit
import json
import logging
import os
import re
import threading
import weakref
from dataclasses import dataclass
from enum import StrEnum

from flask import current_app
from sqlalchemy import insert

from ..extensions import db
from ..models import CallRecord, utcnow
from . import metrics, scrub

log = logging.getLogger(__name__)

# The writer: rows wait at most this long, or until this many wait; at most this many wait
# (the oldest are dropped past it); a batch the database refuses is tried this many times.
FLUSH_SECONDS = 1.0
BATCH = 200
MAX_PENDING = 10_000
ATTEMPTS = 3
# Arguments kept at most, as JSON; a larger set is replaced by a note that it was cut.
MAX_ARGUMENTS_BYTES = 4096
MAX_ERROR = 300  # characters of the one-line error
REDACTED = "[redacted]"
# Keys whose values look secret, once lower-cased with "-" and "_" removed: any key equal
# to one of these or ending in one ("github_token", "X-Api-Key", "clientSecret").
_SECRET_WORDS = ("token", "password", "passwd", "pwd", "secret", "authorization", "auth",
                 "key", "cookie", "credential", "session", "sessionid", "bearer",
                 "signature", "passphrase", "otp")  # fmt: skip
_SECRET_KEY = re.compile("(" + "|".join(_SECRET_WORDS) + ")s?$")  # plurals too


class Outcome(StrEnum):
    """How an agent's tool call ended; ``services.calls`` reports the upstream ones."""

    OK = "ok"
    TOOL_ERROR = "tool_error"  # the upstream answered isError: true
    PROTOCOL = "protocol_error"  # invalid params, or the upstream broke the protocol
    NOT_ALLOWED = "refused_not_allowed"  # not one of the agent's tools
    DEFINITION_CHANGED = "refused_definition_changed"  # held until an operator reviews it
    NO_CREDENTIAL = "refused_no_credential"
    NEEDS_RECONNECT = "refused_needs_reconnect"
    TIMEOUT = "upstream_timeout"
    DOWN = "upstream_down"
    # The agent gave up: legacy notifications/cancelled, or a modern client closed the stream.
    CANCELLED = "cancelled"


class Kind(StrEnum):
    """What a row records (``CallRecord.kind``)."""

    TOOL = "tool"  # tools/call
    RESOURCE = "resource"  # resources/read
    PROMPT = "prompt"  # prompts/get
    COMPLETION = "completion"  # completion/complete
    SUBSCRIPTION = "subscription"  # resources/subscribe, resources/unsubscribe
    # A request the upstream sent back during a call, relayed to the agent.
    ELICITATION = "elicitation"
    SAMPLING = "sampling"
    ROOTS = "roots"


@dataclass
class Call:
    """What the gateway knows of one call, filled in as the call goes on."""

    request_id: str
    agent_id: int
    agent_name: str
    key_id: int | None  # None: an operator's call from the console (``operator_name``)
    key_label: str | None
    tool: str
    request_bytes: int
    operator_name: str | None = None
    connector_id: int | None = None
    connector_name: str | None = None
    upstream_tool: str | None = None
    era: str | None = None
    arguments: dict | None = None  # already redacted (``redact``); None: not kept
    kind: str = Kind.TOOL


def redact(arguments) -> dict:
    """A copy of ``arguments`` fit for the log: each value under a secret-looking key (any
    case, any nesting, ``_``/``-`` spellings) is ``REDACTED``; larger than
    ``MAX_ARGUMENTS_BYTES`` as JSON, a note saying it was cut replaces the whole."""
    copy = _redacted(arguments)
    if not isinstance(copy, dict):
        copy = {"value": copy}
    size = len(json.dumps(copy, ensure_ascii=False, default=str).encode())
    if size > MAX_ARGUMENTS_BYTES:
        return {"_cut": f"{size} bytes of arguments; only {MAX_ARGUMENTS_BYTES} are kept."}
    return copy


def secret_looking(key) -> bool:
    """Whether values under ``key`` are kept out of the log."""
    folded = str(key).lower().replace("-", "").replace("_", "")
    return bool(_SECRET_KEY.search(folded))


def _redacted(value):
    if isinstance(value, dict):
        return {str(k): REDACTED if secret_looking(k) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def one_line(text: str | None) -> str | None:
    """``text`` as the row keeps it: one line of at most ``MAX_ERROR`` characters. It only
    cuts: ``text`` comes scrubbed (``calls.Outcome.error``, or the gateway's own words), so a
    cut cannot leave a piece of a credential that scrubbing would not have recognised."""
    return None if text is None else scrub.one_line(str(text), MAX_ERROR)


def record(call: Call, outcome: Outcome, error: str | None, total_ms: float,
           upstream_ms: float | None, response_bytes: int, app=None):  # fmt: skip
    """Queue the call's row (``Writer``: no database work on the call's path) and count it in
    the metrics. Never raises for the log's sake; writes nothing with ``CALL_LOG`` off.
    ``app``: the app whose log it is (default: the current app)."""
    metrics.observe_call(call.agent_name, call.connector_name, str(outcome), total_ms / 1000)
    app = app or current_app._get_current_object()
    if not app.config["CALL_LOG"]:
        return
    row = {
        "at": utcnow(),
        "request_id": call.request_id or "",
        "agent_id": call.agent_id,
        "agent_name": call.agent_name[:100],
        "key_id": call.key_id,
        "key_label": (call.key_label or "")[:100] or None,
        "operator_name": (call.operator_name or "")[:80] or None,
        "connector_id": call.connector_id,
        "connector_name": (call.connector_name or "")[:100] or None,
        "tool": call.tool[:200],
        "upstream_tool": (call.upstream_tool or "")[:200] or None,
        "kind": str(call.kind),
        "era": call.era,
        "outcome": str(outcome),
        "total_ms": round(total_ms, 3),
        "upstream_ms": None if upstream_ms is None else round(upstream_ms, 3),
        "error": one_line(error),
        "request_bytes": call.request_bytes,
        "response_bytes": response_bytes,
    }
    if call.arguments is not None:  # absent, the column is SQL NULL (None would be JSON null)
        row["arguments"] = call.arguments
    writer(app).add(row)


def writer(app) -> "Writer":
    """The app's writer in this process (made on first use)."""
    with _WRITERS_LOCK:
        found = app.extensions.get(_EXTENSION)
        if found is None:
            found = app.extensions[_EXTENSION] = Writer(app)
            _WRITERS.add(found)
        return found


def flush(app=None):
    """Write the rows waiting in ``app``'s writer (default: the current app) now."""
    app = app or current_app._get_current_object()
    if _EXTENSION in app.extensions:
        app.extensions[_EXTENSION].flush()


def discard(app):
    """Forget the rows ``app``'s writer still holds and stop it (a test's app is done)."""
    found = app.extensions.pop(_EXTENSION, None)
    if found is not None:
        found.stop()
        _WRITERS.discard(found)


class Writer:
    """Rows waiting to be written, and the thread that writes them: every ``FLUSH_SECONDS``,
    or at once when ``BATCH`` rows wait, in one statement and one commit of its own. A call
    never waits for the database on the log's behalf (on SQLite a commit that writes is a
    disk sync: more than a fast call's tenth). Rows still waiting when the process exits
    are written then (``atexit``); a crash loses at most the last ``FLUSH_SECONDS``.

    A batch that cannot be written is tried again with the next, up to ``ATTEMPTS`` times,
    then dropped with a warning; at most ``MAX_PENDING`` rows wait (the oldest go first).
    Warnings name the error's class and the number of rows, nothing of what they hold.
    """

    THREAD_NAME = "call-log"

    def __init__(self, app):
        self.app = app
        self.pending: list[dict] = []
        self.failures = 0
        self.lock = threading.Lock()  # the pending rows
        self.writing = threading.Lock()  # one batch at a time
        self.wake = threading.Event()
        self.stopped = False
        self.thread: threading.Thread | None = None
        self.pid = None

    def add(self, row: dict):
        with self.lock:
            self.pending.append(row)
            if len(self.pending) > MAX_PENDING:
                dropped = len(self.pending) - MAX_PENDING
                del self.pending[:dropped]
                log.warning("the call log dropped %d rows: the database is not keeping up",
                            dropped)  # fmt: skip
            full = len(self.pending) >= BATCH
        self._ensure_thread()
        if full:
            self.wake.set()

    def flush(self):
        with self.writing:
            with self.lock:
                rows, self.pending = self.pending, []
            if not rows or self.stopped:
                return
            try:
                with self.app.app_context():
                    try:
                        db.session.execute(insert(CallRecord), rows)
                        db.session.commit()
                    finally:
                        db.session.remove()
                self.failures = 0
            except Exception as exc:  # noqa: BLE001 (any database failure: calls go on)
                self._failed(rows, exc)

    def _failed(self, rows, exc):
        self.failures += 1
        if self.failures >= ATTEMPTS:
            self.failures = 0
            log.warning("%d call log rows could not be written (%s) and were dropped",
                        len(rows), type(exc).__name__)  # fmt: skip
            return
        log.warning("%d call log rows could not be written (%s); trying again",
                    len(rows), type(exc).__name__)  # fmt: skip
        with self.lock:
            self.pending[:0] = rows

    def stop(self):
        """Drop what waits and end the thread (soon: it is woken); a batch being written
        is finished first, so nothing is written once this returns."""
        self.stopped = True
        with self.writing, self.lock:
            self.pending = []
        self.wake.set()

    def _ensure_thread(self):
        if self.thread is not None and self.thread.is_alive() and self.pid == os.getpid():
            return
        with self.lock:  # a forked worker inherits no thread: start its own
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
                self.thread.start()

    def _run(self):
        """Write every ``FLUSH_SECONDS`` (or when woken) until nothing waits, then end: an
        idle process keeps no thread (the next row starts one)."""
        while not self.stopped:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            self.flush()
            with self.lock:
                if not self.pending:
                    self.thread = None
                    return


_EXTENSION = "mcpadmin_call_log"
_WRITERS: "weakref.WeakSet[Writer]" = weakref.WeakSet()
_WRITERS_LOCK = threading.Lock()


@atexit.register
def _flush_all():
    for found in list(_WRITERS):
        found.flush()
