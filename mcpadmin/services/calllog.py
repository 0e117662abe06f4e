"""The call log: one ``CallRecord`` per agent ``tools/call`` that reached tool dispatch, and
the one place such rows are written.

A row names the agent, the key (its id and label, never the key), the connector and tool,
how the call ended (``Outcome``), how long it took, one capped line of error and the sizes
of the request and the answer. Results are never stored; arguments only where the connector
says so (``Connector.log_arguments``), with every value under a secret-looking key replaced
(``redact``). ``CALL_LOG = False`` writes no row (to measure what the log costs).

The row joins the transaction the gateway commits at the end of a call anyway: no extra
commit on the hot path. ``commit`` is that commit, made so that a row that cannot be written
never costs the call its answer.
"""

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from flask import current_app

from ..extensions import db
from ..models import CallRecord, utcnow
from . import metrics

log = logging.getLogger(__name__)

# Arguments kept at most, as JSON; a larger set is replaced by a note that it was cut.
MAX_ARGUMENTS_BYTES = 4096
MAX_ERROR = 300  # characters of the one-line error
REDACTED = "[redacted]"
# Keys whose values look secret, once lower-cased with "-" and "_" removed: any key equal
# to one of these or ending in one ("github_token", "X-Api-Key", "clientSecret").
_SECRET_WORDS = ("token", "password", "passwd", "pwd", "secret", "authorization", "auth",
                 "apikey", "key", "cookie", "credential", "credentials", "session",
                 "sessionid", "bearer", "signature", "privatekey", "passphrase",
                 "otp")  # fmt: skip
_SECRET_KEY = re.compile("(" + "|".join(_SECRET_WORDS) + ")s?$")


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


@dataclass
class Call:
    """What the gateway knows of one call, filled in as the call goes on."""

    request_id: str
    agent_id: int
    agent_name: str
    key_id: int
    key_label: str | None
    tool: str
    request_bytes: int
    connector_id: int | None = None
    connector_name: str | None = None
    upstream_tool: str | None = None
    era: str | None = None
    arguments: dict | None = None  # already redacted (``redact``); None: not kept


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
    """``text`` as the row keeps it: one line of at most ``MAX_ERROR`` characters."""
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def record(call: Call, outcome: Outcome, error: str | None, total_ms: float,
           upstream_ms: float | None, response_bytes: int):  # fmt: skip
    """Add the call's row to the session (the caller commits, best with ``commit``) and count
    it in the metrics. Writes nothing with ``CALL_LOG`` off."""
    metrics.observe_call(call.agent_name, call.connector_name, str(outcome), total_ms / 1000)
    if not current_app.config["CALL_LOG"]:
        return
    db.session.add(
        CallRecord(
            at=utcnow(),
            request_id=call.request_id,
            agent_id=call.agent_id,
            agent_name=call.agent_name[:100],
            key_id=call.key_id,
            key_label=(call.key_label or "")[:100] or None,
            connector_id=call.connector_id,
            connector_name=(call.connector_name or "")[:100] or None,
            tool=call.tool[:200],
            upstream_tool=(call.upstream_tool or "")[:200] or None,
            era=call.era,
            outcome=str(outcome),
            total_ms=round(total_ms, 3),
            upstream_ms=None if upstream_ms is None else round(upstream_ms, 3),
            error=one_line(error),
            request_bytes=call.request_bytes,
            response_bytes=response_bytes,
            arguments=call.arguments,
        )
    )


def commit(bookkeeping: Callable[[], None]):
    """Commit the transaction holding a call's row and ``bookkeeping`` (already run once).
    If the commit fails, roll back and commit ``bookkeeping`` again without the row, logging
    a warning (the database's error class only); if that fails too, log it and go on:
    the call's answer goes out whatever happens here. What the call changed on the session's
    objects (an upstream's era, a credential found dead) is then learnt again on the next
    call."""
    try:
        db.session.commit()
        return
    except Exception as exc:  # noqa: BLE001 (any database failure: the answer still goes out)
        db.session.rollback()
        log.warning("the call log row could not be written (%s); the call went on",
                    type(exc).__name__)  # fmt: skip
    try:
        bookkeeping()
        db.session.commit()
    except Exception as exc:  # noqa: BLE001
        db.session.rollback()
        log.warning("a call's bookkeeping could not be written (%s)", type(exc).__name__)
