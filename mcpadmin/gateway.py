"""The agent endpoint: ``/agents/<id>/mcp``, one MCP server per agent over Streamable HTTP,
modern (2026-07-28) and legacy (2025-11-25, 2025-06-18, 2025-03-26) on the same URL.

The only view code of the gateway: it turns HTTP into ``protocol.server`` messages, asks
``services.gateway`` who is calling and what the agent may use, runs calls through
``services.calls``, and writes JSON or an event stream back. Agents authenticate with an
agent key (``Authorization: Bearer mcpa_…``), never with the admin's login, so the endpoint is
exempt from the login guard and from CSRF (no cookie is read); it checks ``Origin`` itself.
"""

import logging
import time

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from . import requestlog, security
from .extensions import csrf, db
from .models import utcnow
from .protocol import server
from .protocol.server import RpcFailure
from .services import agent_keys, calllog, calls
from .services import gateway as service
from .services.calllog import Outcome

bp = Blueprint("gateway", __name__)
csrf.exempt(bp)
log = logging.getLogger(__name__)

JSON = "application/json"
EVENT_STREAM = "text/event-stream"
SESSION_HEADER = "Mcp-Session-Id"
# How often a running legacy call looks for the client's notifications/cancelled.
CANCEL_CHECK_SECONDS = 1.0
# A long-lived stream with nothing to say sends a comment this often [26/http: lines starting
# with ":" are ignored], so proxies do not close it as idle.
KEEPALIVE_SECONDS = 15


@bp.route("/agents/<int:id>/mcp", methods=["POST", "GET", "DELETE"])
def endpoint(id):
    """One MCP message (POST), a legacy session's server stream (GET), or its end (DELETE)."""
    refusal = _foreign_origin()
    if refusal is not None:
        return refusal
    now = utcnow()
    modern_header = request.headers.get("MCP-Protocol-Version") in server.MODERN_VERSIONS
    session_id = None if modern_header else request.headers.get(SESSION_HEADER)
    caller = service.authenticate(id, security.bearer_token(), session_id, now)
    if caller is None:
        return _unauthorized(id)
    g.agent_id = caller.agent.id
    if modern_header and request.method != "POST":
        # [26/http §Earlier Streamable HTTP Revisions]: 405 to modern GET and DELETE.
        return Response(status=405, headers={"Allow": "POST"})
    if request.method == "GET":
        return _legacy_stream(caller, session_id)
    if request.method == "DELETE":
        return _end_session(caller, session_id)
    try:
        message = _read_message()
        if message.modern or modern_header:
            server.check_modern(message, request.headers)
            return _modern(caller, message, now)
        return _legacy(caller, message, session_id, now)
    except RpcFailure as failure:
        return _json(failure.body(), failure.status)
    except Exception:
        log.exception("agent endpoint failed on %s", request.headers.get("Mcp-Method") or "?")
        db.session.rollback()
        body = server.error(None, server.INTERNAL_ERROR, "Internal error in mcpadmin.")
        return _json(body, 500)


def _modern(caller, message, now):
    if message.kind != "request":
        return Response(status=202)  # 26 defines no client notifications; accept and drop
    method = message.method
    if method == "server/discover":
        result = server.discover_result(_instructions(caller.agent))
    elif method == "tools/list":
        extra = server.modern_result({"ttlMs": 0, "cacheScope": "private"})
        return _tools_answer(caller, message, now, extra)
    elif method == "tools/call":
        return _call(caller, message, now, modern=True)
    elif method == "subscriptions/listen":
        return _listen(caller, message)
    else:
        raise RpcFailure(
            server.METHOD_NOT_FOUND, f"Method not found: {method[:100]}", 404, request_id=message.id
        )
    return _answer(caller, message.id, result, now)


def _legacy(caller, message, session_id, now):
    if message.method == "initialize" and message.kind == "request":
        requested = message.params.get("protocolVersion")
        version = server.negotiate(requested)
        new_id = service.open_session(caller, version, message.params.get("clientInfo"))
        result = server.initialize_result(version, _instructions(caller.agent), True)
        response = _answer(caller, message.id, result, now)
        response.headers[SESSION_HEADER] = new_id
        return response
    if not session_id:
        raise RpcFailure(server.INVALID_REQUEST, "Bad request: no Mcp-Session-Id; send "
                         "initialize first.", request_id=message.id)  # fmt: skip
    if caller.session is None:  # [25N/http §Session Management]: unknown session → 404
        raise RpcFailure(server.INVALID_REQUEST, "Session not found: initialize again.", 404,
                         request_id=message.id)  # fmt: skip
    server.legacy_version(request.headers, caller.session.protocol_version)
    if message.kind != "request":
        if message.method == "notifications/cancelled":
            request_id = message.params.get("requestId")
            if isinstance(request_id, str | int):
                service.cancel(caller.session, request_id)
                db.session.commit()
        return Response(status=202)
    method = message.method
    if method == "ping":  # [25N/ping]
        result = {}
    elif method == "logging/setLevel":
        level = message.params.get("level")
        if level not in server.LOG_LEVELS:
            text = f"Invalid params: level must be one of {', '.join(server.LOG_LEVELS)}."
            raise RpcFailure(server.INVALID_PARAMS, text, 200, request_id=message.id)
        service.set_log_level(caller.session, level)
        result = {}
    elif method == "tools/list":
        return _tools_answer(caller, message, now, {})
    elif method == "tools/call":
        return _call(caller, message, now, modern=False)
    elif method == "initialize":
        raise RpcFailure(server.INVALID_REQUEST, "This session is already initialized.",
                         request_id=message.id)  # fmt: skip
    else:
        raise RpcFailure(
            server.METHOD_NOT_FOUND, f"Method not found: {method[:100]}", 200, request_id=message.id
        )
    return _answer(caller, message.id, result, now)


def _tools_answer(caller, message, now, extra: dict):
    """tools/list: one page of the agent's catalog (rendered once per catalog version), with
    ``extra`` members in the result."""
    catalog = service.catalog(caller.agent)
    try:
        tools, next_cursor = catalog.page(message.params.get("cursor"))
    except ValueError:
        raise RpcFailure(server.INVALID_PARAMS, "Invalid params: unknown cursor.", 200,
                         request_id=message.id) from None  # fmt: skip
    if next_cursor is not None:
        extra = {**extra, "nextCursor": next_cursor}
    service.touch(caller, now)
    db.session.commit()
    body = server.response_text(message.id, "tools", tools, extra)
    return Response(body, content_type=JSON)


def _call(caller, message, now, modern: bool):
    """tools/call: checked against the agent's catalog on every call, then sent upstream.
    Whatever the ending, the call log gets one row."""
    name = message.params.get("name")
    arguments = message.params.get("arguments", {})
    call = calllog.Call(requestlog.current(), caller.agent.id, caller.agent.name,
                        caller.key_id, caller.key_label, name if isinstance(name, str) else "",
                        g.get("request_bytes", 0))  # fmt: skip
    if not isinstance(name, str) or not isinstance(arguments, dict):
        failure = RpcFailure(server.INVALID_PARAMS, "Invalid params: tools/call needs a name "
                             "and an arguments object.", 200, request_id=message.id)  # fmt: skip
        return _refused(call, Outcome.PROTOCOL, failure)
    entry = service.catalog(caller.agent).entries.get(name)
    if entry is None:
        failure = RpcFailure(
            server.INVALID_PARAMS,
            f"Unknown tool: {name[:100]} is not one of agent {caller.agent.name}'s tools.",
            200,
            request_id=message.id,
        )
        return _refused(call, Outcome.NOT_ALLOWED, failure)
    call.connector_id, call.connector_name = entry.connection.connector_id, entry.connector_name
    call.upstream_tool = entry.tool.name
    if entry.changed:
        text = (f"The definition of {entry.tool.name} on {entry.connector_name} changed since it "
                f"was enabled for agent {caller.agent.name}; an operator must review it on the "
                "agent's page before it can be called again.")  # fmt: skip
        result = _error_result(requestlog.tagged(text), modern)
        response = _json(server.response(message.id, result))
        ending = (Outcome.DEFINITION_CHANGED, text, None, len(response.get_data()))
        _record(caller, entry, call, ending, now)
        return response
    connector, connection, input_schema = service.call_target(entry)
    if connector.log_arguments:
        call.arguments = calllog.redact(arguments)
    updates = calls.call_tool(
        connector,
        connection if connector.per_agent else None,
        caller.agent,
        entry.tool.name,
        arguments,
        progress_token=message.progress_token,
        input_schema=input_schema,
        log_level=_log_level(caller, message),
    )
    first = next(updates)
    takes_stream = EVENT_STREAM in request.headers.get("Accept", "")
    if not isinstance(first, calls.Outcome) and not takes_stream:
        first = _last(updates)  # the client cannot take a stream: only the result
    call.era = connector.protocol_era  # as the upstream answered (so far, for a stream)
    if isinstance(first, calls.Outcome):
        return _finish_call(caller, call, message.id, entry, first, now, modern)
    return _stream(_relay(caller, call, connector, message, entry, first, updates, modern))


def _refused(call, outcome, failure):
    """The JSON-RPC error for a call refused before dispatch; its row queued."""
    response = _json(failure.body(), failure.status)
    calllog.record(call, outcome, failure.message, _elapsed_ms(), None, len(response.get_data()))
    return response


def _log_level(caller, message) -> str | None:
    """The level of upstream log messages this call relays: the request's ``_meta`` opt-in
    (2026-07-28 sends none without it [26/chg Major 5]), or the legacy session's
    logging/setLevel."""
    if message.modern:
        level = message.meta.get(server.LOG_LEVEL)
        return level if level in server.LOG_LEVELS else None
    return caller.session.log_level if caller.session is not None else None


def _relay(caller, call, connector, message, entry, first, updates, modern):
    """The call's notifications as events while the upstream works, then its result. A client
    that goes away (modern: closing the stream cancels [26/http §Cancellation]) closes
    ``updates``, which cancels the upstream call; so does a legacy notifications/cancelled.
    The call's row counts the bytes of every event sent."""
    checked = time.monotonic()
    sent, recorded = 0, False
    try:
        event = server.sse_event(first)
        sent += len(event)
        yield event
        for update in _guarded(updates, message.id):
            if isinstance(update, calls.Outcome):
                call.era = connector.protocol_era  # as the upstream answered
                event = server.sse_event(server.response(message.id, _result(update, modern)))
                ending = (update.kind, update.error, update.upstream_ms, sent + len(event))
                recorded = True
                _record(caller, entry, call, ending, utcnow())
                yield event
                return
            event = server.sse_event(update)
            sent += len(event)
            yield event
            if caller.session is not None and time.monotonic() - checked >= CANCEL_CHECK_SECONDS:
                checked = time.monotonic()
                if service.cancelled(caller.session, message.id):
                    # [25N/cancellation]: a cancelled request gets no response.
                    recorded = True
                    ending = (Outcome.CANCELLED, "Cancelled by the agent.", None, sent)
                    _record(caller, entry, call, ending, utcnow())
                    return
        if not recorded:  # mcpadmin failed mid-stream (``_guarded`` sent the error)
            recorded = True
            ending = (Outcome.PROTOCOL, "Internal error in mcpadmin.", None, sent)
            _record(caller, entry, call, ending, utcnow())
    except GeneratorExit:
        if not recorded:  # the client closed the stream: a modern client's cancellation
            updates.close()
            ending = (Outcome.CANCELLED, "The agent closed the stream.", None, sent)
            try:
                _record(caller, entry, call, ending, utcnow())
            except Exception:  # the stream is closing either way
                log.exception("could not record a call the agent cancelled")
                db.session.rollback()
        raise
    finally:
        updates.close()


def _guarded(updates, request_id):
    """``updates``, ending in a JSON-RPC error event if mcpadmin itself fails mid-stream (the
    status line is long gone, so an error page cannot be sent)."""
    try:
        yield from updates
    except Exception:
        log.exception("agent endpoint failed while relaying a call")
        db.session.rollback()
        failure = server.error(request_id, server.INTERNAL_ERROR, "Internal error in mcpadmin.")
        yield _tagged(failure)


def _finish_call(caller, call, request_id, entry, outcome, now, modern):
    response = _json(server.response(request_id, _result(outcome, modern)))
    ending = (outcome.kind, outcome.error, outcome.upstream_ms, len(response.get_data()))
    _record(caller, entry, call, ending, now)
    return response


def _record(caller, entry, call, ending, now):
    """The connection's last call and the key's use (committed), and the call's row (queued).

    ``ending``: (outcome, error, upstream milliseconds or None, response bytes)."""
    outcome, error, upstream_ms, response_bytes = ending
    service.record_call(entry, error, now)
    service.touch(caller, now)
    db.session.commit()
    calllog.record(call, outcome, error, _elapsed_ms(), upstream_ms, response_bytes)


def _elapsed_ms() -> float:
    """Milliseconds since the request began."""
    return (time.monotonic() - g.request_started) * 1000


def _result(outcome, modern) -> dict:
    """The ``CallToolResult`` for the agent; one mcpadmin wrote (not the upstream's own
    answer) names the request id."""
    result = outcome.result
    if outcome.kind not in (Outcome.OK, Outcome.TOOL_ERROR):
        content = [{**c, "text": requestlog.tagged(c["text"])} if c.get("type") == "text" else c
                   for c in result.get("content") or ()]  # fmt: skip
        result = {**result, "content": content}
    return server.modern_result(result) if modern else result


def _error_result(text: str, modern: bool) -> dict:
    result = {"content": [{"type": "text", "text": text}], "isError": True}
    return server.modern_result(result) if modern else result


def _last(updates):
    outcome = None
    for update in updates:
        outcome = update
    return outcome


def _answer(caller, request_id, result, now):
    service.touch(caller, now)
    db.session.commit()  # ends the transaction: no connection is held between requests
    return _json(server.response(request_id, result))


def _legacy_stream(caller, session_id):
    """GET: the legacy session's server stream, which carries tools/list_changed when the
    operator changes the agent's tools or a sync changes their definitions [25N/http
    §Listening for Messages from the Server]."""
    if not session_id:
        body = server.error(None, server.INVALID_REQUEST, "Bad request: no Mcp-Session-Id.")
        return _json(body, 400)
    if caller.session is None:
        return _json(server.error(None, server.INVALID_REQUEST, "Session not found."), 404)
    if EVENT_STREAM not in request.headers.get("Accept", ""):
        body = server.error(None, server.INVALID_REQUEST, "Not acceptable: Accept must "
                            "include text/event-stream.")  # fmt: skip
        return _json(body, 406)
    changed = server.notification("notifications/tools/list_changed")
    session = caller.session.id_sha256
    baseline = service.watched_fingerprint(caller.key_id, session)
    return _stream(_watch(caller.key_id, session, baseline, [], changed, None))


def _listen(caller, message):
    """Modern ``subscriptions/listen`` [26/subs]: acknowledged first, then tools/list_changed
    whenever the agent's tools change, for as long as the stream is open (or
    ``GATEWAY_STREAM_SECONDS``, then the final result)."""
    meta = {server.SUBSCRIPTION_ID: message.id}
    asked = message.params.get("notifications")
    tools = isinstance(asked, dict) and asked.get("toolsListChanged") is True
    honored = {"toolsListChanged": True} if tools else {}
    ack = server.notification(
        "notifications/subscriptions/acknowledged", {"notifications": honored, "_meta": meta}
    )
    changed = server.notification("notifications/tools/list_changed", {"_meta": meta})
    closing = server.response(message.id, server.modern_result({"_meta": meta}))
    baseline = service.watched_fingerprint(caller.key_id, None)
    watch = _watch(caller.key_id, None, baseline, [ack], changed if tools else None, closing)
    return _stream(watch)


def _watch(key_id, session_sha256, baseline, opening, changed, closing):
    """Events for a long-lived stream: ``opening`` (or a comment, so the client sees the
    stream open), then ``changed`` each time the agent's listed tools differ from ``baseline``
    (the fingerprint when the stream was asked for; looked up every
    ``GATEWAY_WATCH_SECONDS``), a comment now and then to keep proxies from closing it, and
    ``closing`` at the end. Ends early when the key is
    revoked or expires, or the legacy session is deleted. No database connection is held
    between looks."""
    config = current_app.config
    interval, lifetime = config["GATEWAY_WATCH_SECONDS"], config["GATEWAY_STREAM_SECONDS"]
    for event in opening:
        yield server.sse_event(event)
    if not opening:
        yield b": stream open\n\n"
    last = baseline
    db.session.commit()
    ends = time.monotonic() + lifetime
    quiet_since = time.monotonic()
    while last is not None and time.monotonic() < ends:
        time.sleep(interval)
        current = service.watched_fingerprint(key_id, session_sha256)
        db.session.commit()
        if current is None:
            return
        if current != last and changed is not None:
            last, quiet_since = current, time.monotonic()
            yield server.sse_event(changed)
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
    if closing is not None:
        yield server.sse_event(closing)


def _stream(events):
    return Response(
        stream_with_context(events),
        content_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _end_session(caller, session_id):
    if not session_id:
        body = server.error(None, server.INVALID_REQUEST, "Bad request: no Mcp-Session-Id.")
        return _json(body, 400)
    if caller.session is None:
        return _json(server.error(None, server.INVALID_REQUEST, "Session not found."), 404)
    service.end_session(caller.session)
    db.session.commit()
    return Response(status=200)


def _read_message():
    """The POSTed message, after the transport checks [26/http §Sending Messages; §6.2].

    :raise RpcFailure: 406 (Accept), 415 (Content-Type), 413 (too large), 400 (not JSON-RPC).
    """
    accept = request.headers.get("Accept", "")
    if not any(kind in accept for kind in (JSON, EVENT_STREAM, "*/*")):
        raise RpcFailure(server.INVALID_REQUEST, "Not acceptable: Accept must include "
                         "application/json and text/event-stream.", 406)  # fmt: skip
    if request.mimetype != JSON:
        raise RpcFailure(server.INVALID_REQUEST, "Unsupported media type: Content-Type must "
                         "be application/json.", 415)  # fmt: skip
    limit = current_app.config["GATEWAY_MAX_REQUEST_BYTES"]
    if (request.content_length or 0) > limit:
        raise RpcFailure(server.INVALID_REQUEST, f"Request too large: at most {limit} bytes.",
                         413)  # fmt: skip
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise RpcFailure(server.INVALID_REQUEST, f"Request too large: at most {limit} bytes.",
                         413)  # fmt: skip
    g.request_bytes = len(body)
    return server.parse(body)


def _unauthorized(agent_id):
    """401 with an RFC 6750 challenge; an address that keeps failing waits (429)."""
    presented = request.headers.get("Authorization")
    wait = None
    if presented:  # only a key that was sent and failed counts: a missing one guesses nothing
        wait = agent_keys.refusal(request.remote_addr)
        if wait:
            body = server.error(None, server.INVALID_REQUEST, "Too many failed keys from this "
                                f"address: retry in {wait} seconds.")  # fmt: skip
            return _json(body, 429, {"Retry-After": str(wait)})
        wait = agent_keys.count_failure(request.remote_addr)
    realm = f'Bearer realm="mcpadmin agent {agent_id}"'
    if presented:  # [RFC 6750 §3.1]: no error code when no credential was sent
        realm += ', error="invalid_token", error_description="unknown, expired or revoked key"'
    text = ("Unauthorized: send this agent's key as Authorization: Bearer <key>; the key is "
            "missing, unknown, expired or revoked.")  # fmt: skip
    headers = {"WWW-Authenticate": realm, **({"Retry-After": str(wait)} if wait else {})}
    return _json(server.error(None, server.INVALID_REQUEST, text), 401, headers)


def _foreign_origin():
    """[26/http §Security & Endpoint]: an ``Origin`` that is present and not this app's → 403."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    config = current_app.config
    if security.origin_of(origin) in security.allowed_origins(
        config["PUBLIC_BASE_URL"], config["EXTRA_HOSTS"]
    ):
        return None
    body = server.error(None, server.INVALID_REQUEST, "Forbidden: Origin not allowed.")
    return _json(body, 403)


def _instructions(agent) -> str:
    return (f"Tools of agent {agent.name} through mcpadmin. Each tool runs on the connector "
            "its name starts with.")  # fmt: skip


def _tagged(body: dict) -> dict:
    """A JSON-RPC error naming the request id in its message; other messages as they are."""
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return body
    return {**body, "error": {**error, "message": requestlog.tagged(error["message"])}}


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    response = current_app.json.response(_tagged(body))
    response.status_code = status
    response.headers.update(headers or {})
    return response
