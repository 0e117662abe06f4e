"""One MCP message from an agent, decided in one trip to a pool thread (``blocking``): who is
calling, then the handler its method names. Most methods are answered right here (an
``Answer``); ``tools/call`` comes back as a ``Prepared`` call for ``relay`` to send upstream on
the event loop, a prompt, resource or completion request as a ``Forwarded`` one for
``forward``, and a stream (legacy GET, modern ``subscriptions/listen``) as a ``Held`` one for
``streams``. Nothing here touches HTTP: ``transport`` turns requests into a ``Request`` and
writes the answers out.

Modern (2026-07-28) and legacy (2025-11-25, 2025-06-18, 2025-03-26) share the URL: a request
whose ``MCP-Protocol-Version`` header names a modern version, or whose body carries the modern
``_meta`` envelope, is modern; anything else belongs to a legacy session.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import requestlog
from ..extensions import db
from ..models import utcnow
from ..protocol import server
from ..protocol.server import RpcFailure
from ..services import agent_keys, calllog, calls, forwarding
from ..services import gateway as service
from ..services.calllog import Outcome
from . import asks

JSON = "application/json"
EVENT_STREAM = "text/event-stream"
SESSION_HEADER = "Mcp-Session-Id"


@dataclass
class Request:
    """What the transport read: the HTTP method, the agent id in the URL, the headers that
    matter, the key, the client's address and (POST) the parsed message."""

    method: str
    agent_id: int
    key: str | None
    session_id: str | None
    modern_header: bool
    accept: str
    headers: Mapping  # case-insensitive: MCP-Protocol-Version, Mcp-Method… (modern checks)
    address: str | None
    message: server.Message | None = None
    body_bytes: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Answer:
    """A whole HTTP answer: a JSON-RPC body (or none), its status and extra headers."""

    status: int
    body: dict | str | bytes | None = None  # a dict is JSON-encoded; str and bytes are JSON
    headers: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """A tools/call that passed every check, with its credential headers: for ``relay``."""

    caller: service.Caller
    entry: service.Entry
    call: calllog.Call
    target: calls.Target
    message: server.Message
    modern: bool
    takes_stream: bool
    log_level: str | None


@dataclass
class Forwarded:
    """A request for one upstream (``FORWARDED``) that passed every check, its route found in
    the agent's catalog and its credential headers read: for ``forward``."""

    caller: service.Caller
    item: object  # the ``agent_surface.Item`` it falls under (its connection)
    call: calllog.Call
    target: calls.Target
    message: server.Message
    method: str
    params: dict  # as the upstream gets them: its own names
    name: str | None  # the upstream's URI or prompt name (a modern ``Mcp-Name``)
    modern: bool
    log_level: str | None
    takes_stream: bool  # the agent accepts an event stream: notifications as they come

    @property
    def entry(self):
        """What the row's connection updates come from, as a ``Prepared`` call's entry."""
        return self.item


# The methods relayed to one upstream, and the kind of their call log row.
FORWARDED = {
    "resources/read": calllog.Kind.RESOURCE,
    "prompts/get": calllog.Kind.PROMPT,
    "completion/complete": calllog.Kind.COMPLETION,
    "resources/subscribe": calllog.Kind.SUBSCRIPTION,
    "resources/unsubscribe": calllog.Kind.SUBSCRIPTION,
}
# Removed as of 2026-07-28 (resource updates come on subscriptions/listen [26/subs]).
LEGACY_ONLY = ("resources/subscribe", "resources/unsubscribe")
# The lists answered from the stored catalog: the result member of each.
LISTS = {
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


@dataclass
class Held:
    """A long-lived stream to open: the first events, the ones to send when the agent's
    tools, resources or prompts change (``CHANGES`` order, each None when the client asked
    for none), and the last one."""

    caller: service.Caller
    session_sha256: str | None
    fingerprint: str
    opening: list
    changed: list
    closing: dict | None


# The list_changed notifications, in the order of the parts of ``Catalog.fingerprint``, and
# the ``subscriptions/listen`` filter member that opts in to each [26/subs].
CHANGES = (
    ("notifications/tools/list_changed", "toolsListChanged"),
    ("notifications/resources/list_changed", "resourcesListChanged"),
    ("notifications/prompts/list_changed", "promptsListChanged"),
)


def handle(request: Request):
    """The answer to ``request``: an ``Answer``, a ``Prepared`` call or a ``Held`` stream.
    Commits what it changed (no transaction outlives the trip)."""
    now = utcnow()
    try:
        caller = service.authenticate(request.agent_id, request.key, request.session_id, now)
        if caller is None:
            return unauthorized(request)
        if request.modern_header and request.method != "POST":
            # [26/http §Earlier Streamable HTTP Revisions]: 405 to modern GET and DELETE.
            return Answer(405, headers={"Allow": "POST"})
        if request.method == "GET":
            return _legacy_stream(caller, request)
        if request.method == "DELETE":
            return _end_session(caller, request)
        message = request.message
        if message.modern or request.modern_header:
            server.check_modern(message, request.headers)
            return _modern(caller, request, now)
        return _legacy(caller, request, now)
    except RpcFailure as failure:
        db.session.rollback()
        return Answer(failure.status, failure.body())


def _modern(caller, request, now):
    message = request.message
    if message.kind != "request":
        return Answer(202)  # 26 defines no client notifications; accept and drop
    method = message.method
    if method == "server/discover":
        result = server.discover_result(_instructions(caller.agent))
    elif method == "tools/list":
        extra = server.modern_result({"ttlMs": 0, "cacheScope": "private"})
        return _tools_answer(caller, message, now, extra)
    elif method == "tools/call":
        return _call(caller, request, now, modern=True)
    elif method in LISTS:
        extra = server.modern_result({"ttlMs": 0, "cacheScope": "private"})
        return _list_answer(caller, message, now, LISTS[method], extra)
    elif method in FORWARDED and method not in LEGACY_ONLY:
        return _forward(caller, request, now, modern=True)
    elif method == "subscriptions/listen":
        return _listen(caller, message)
    else:
        raise RpcFailure(
            server.METHOD_NOT_FOUND, f"Method not found: {method[:100]}", 404, request_id=message.id
        )
    return _answer(caller, message.id, result, now)


def _legacy(caller, request, now):
    message, session_id = request.message, request.session_id
    if message.method == "initialize" and message.kind == "request":
        requested = message.params.get("protocolVersion")
        version = server.negotiate(requested)
        new_id = service.open_session(caller, version, message.params.get("clientInfo"),
                                      message.params.get("capabilities"))  # fmt: skip
        result = server.initialize_result(version, _instructions(caller.agent), True)
        answer = _answer(caller, message.id, result, now)
        answer.headers[SESSION_HEADER] = new_id
        return answer
    if not session_id:
        raise RpcFailure(server.INVALID_REQUEST, "Bad request: no Mcp-Session-Id; send "
                         "initialize first.", request_id=message.id)  # fmt: skip
    if caller.session is None:  # [25N/http §Session Management]: unknown session → 404
        raise RpcFailure(server.INVALID_REQUEST, "Session not found: initialize again.", 404,
                         request_id=message.id)  # fmt: skip
    server.legacy_version(request.headers, caller.session.protocol_version)
    if message.kind != "request":
        if message.kind == "response":  # the agent's answer to a request ``asks`` relayed
            asks.received(caller.session, message)
        if message.method == "notifications/cancelled":
            request_id = message.params.get("requestId")
            if isinstance(request_id, str | int):
                service.cancel(caller.session, request_id)
                db.session.commit()
        return Answer(202)
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
        return _call(caller, request, now, modern=False)
    elif method in LISTS:
        return _list_answer(caller, message, now, LISTS[method], {})
    elif method in FORWARDED:
        return _forward(caller, request, now, modern=False)
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
    _touch(caller, now)
    return Answer(200, server.response_text(message.id, "tools", tools, extra))


def _list_answer(caller, message, now, member: str, extra: dict):
    """prompts/list, resources/list, resources/templates/list: one page of what the agent's
    connections ticked (``agent_surface``), rendered once per catalog version."""
    pages = service.catalog(caller.agent).surface.lists[member]
    try:
        encoded, next_cursor = pages.page(message.params.get("cursor"))
    except ValueError:  # [26/page]: an invalid cursor is -32602
        raise RpcFailure(server.INVALID_PARAMS, "Invalid params: unknown cursor.", 200,
                         request_id=message.id) from None  # fmt: skip
    if next_cursor is not None:
        extra = {**extra, "nextCursor": next_cursor}
    _touch(caller, now)
    return Answer(200, server.response_text(message.id, member, encoded, extra))


def _forward(caller, request, now, modern: bool):
    """resources/read, prompts/get, completion/complete, resources/(un)subscribe: routed by
    the agent's catalog to one connector and its own names; ``Forwarded`` with the
    credential read (refreshed if due), or refused here with a sentence, -32602 for what the
    agent does not have [26/resources §Error Handling: resource not found is -32602]. The
    call log gets its row either way."""
    message = request.message
    call = calllog.Call(requestlog.current(), caller.agent.id, caller.agent.name,
                        caller.key_id, caller.key_label, message.method, request.body_bytes,
                        kind=FORWARDED[message.method])  # fmt: skip
    surface = service.catalog(caller.agent).surface
    try:
        route, params = forwarding.route(surface, caller.agent.name, message)
    except forwarding.Refusal as refusal:
        call.tool = refusal.name or message.method
        failure = RpcFailure(server.INVALID_PARAMS, str(refusal), 200, refusal.data,
                             request_id=message.id)  # fmt: skip
        return _refused(request, call, refusal.outcome, failure)
    item = route.item
    call.tool, call.upstream_tool = route.name, route.upstream
    call.connector_id, call.connector_name = item.connection.connector_id, item.connector_name
    if item.changed and message.method == "prompts/get":
        text = item.held_back(caller.agent.name)
        body = encode(server.error(message.id, server.INVALID_PARAMS, text))
        record(caller, item, call, (Outcome.DEFINITION_CHANGED, text, None, len(body)), request,
               now)  # fmt: skip
        return Answer(200, body)
    connector, connection = service.forward_target(item)
    call.era = connector.protocol_era
    target = calls.prepare(connector, connection, caller.agent.name, route.upstream, None, None)
    if isinstance(target, calls.Outcome):  # refused before sending: no credential, dead grant
        body = encode(server.error(message.id, server.INTERNAL_ERROR, target.error))
        record(caller, item, call, (target.kind, target.error, target.upstream_ms, len(body)),
               request, now)  # fmt: skip
        return Answer(200, body)
    db.session.commit()  # a refresh committed its own; nothing else is held during the call
    name = route.upstream if message.method in server.NAMED_METHODS else None
    return Forwarded(caller, item, call, target, message, message.method, params, name, modern,
                     _log_level(caller, message), EVENT_STREAM in request.accept)  # fmt: skip


def _call(caller, request, now, modern: bool):
    """tools/call: checked against the agent's catalog on every call, and a modern call's
    ``Mcp-Param-*`` headers against its arguments (-32020, HTTP 400: the gateway reads the
    body, so it MUST [26/http §Server Behavior for Custom Headers]; the upstream gets its own
    headers from the arguments, ``mcp.param_headers``); a call that may go upstream comes back
    ``Prepared`` (its credential read, refreshed if due). A refusal is answered here, and the
    call log gets its row."""
    message = request.message
    name = message.params.get("name")
    arguments = message.params.get("arguments", {})
    call = calllog.Call(requestlog.current(), caller.agent.id, caller.agent.name,
                        caller.key_id, caller.key_label, name if isinstance(name, str) else "",
                        request.body_bytes)  # fmt: skip
    if not isinstance(name, str) or not isinstance(arguments, dict):
        failure = RpcFailure(server.INVALID_PARAMS, "Invalid params: tools/call needs a name "
                             "and an arguments object.", 200, request_id=message.id)  # fmt: skip
        return _refused(request, call, Outcome.PROTOCOL, failure)
    entry = service.catalog(caller.agent).entries.get(name)
    if entry is None:
        failure = RpcFailure(server.INVALID_PARAMS, service.unknown_tool(name, caller.agent.name),
                             200, request_id=message.id)  # fmt: skip
        return _refused(request, call, Outcome.NOT_ALLOWED, failure)
    call.connector_id, call.connector_name = entry.connection.connector_id, entry.connector_name
    call.upstream_tool = entry.tool.name
    if modern:  # the listed schema keeps x-mcp-header: the agent's client mirrors them
        try:
            server.check_param_headers(message, request.headers, entry.tool.input_schema)
        except RpcFailure as failure:
            return _refused(request, call, Outcome.PROTOCOL, failure)
    if entry.changed:
        text = entry.held_back(caller.agent.name)
        result = error_result(requestlog.tagged(text), modern)
        body = encode(server.response(message.id, result))
        ending = (Outcome.DEFINITION_CHANGED, text, None, len(body))
        record(caller, entry, call, ending, request, now)
        return Answer(200, body)
    connector, connection, input_schema = service.call_target(entry)
    if connector.log_arguments:
        call.arguments = calllog.redact(arguments)
    call.era = connector.protocol_era
    target = calls.prepare(connector, connection, caller.agent.name, entry.tool.name, arguments,
                           input_schema)  # fmt: skip
    if isinstance(target, calls.Outcome):  # refused before sending: no credential, dead grant
        body = encode(server.response(message.id, result_for(target, modern)))
        ending = (target.kind, target.error, target.upstream_ms, len(body))
        record(caller, entry, call, ending, request, now)
        return Answer(200, body)
    takes_stream = EVENT_STREAM in request.accept
    asks.carry(target, message, caller.session, takes_stream)
    db.session.commit()  # a refresh committed its own; nothing else is held during the call
    return Prepared(caller, entry, call, target, message, modern, takes_stream,
                    _log_level(caller, message))  # fmt: skip


def _refused(request, call, outcome, failure):
    """The JSON-RPC error for a call refused before dispatch; its row queued."""
    db.session.rollback()
    body = encode(failure.body())
    calllog.record(call, outcome, failure.message, elapsed_ms(request), None, len(body))
    return Answer(failure.status, body)


def _log_level(caller, message) -> str | None:
    """The level of upstream log messages this call relays: the request's ``_meta`` opt-in
    (2026-07-28 sends none without it [26/chg Major 5]), or the legacy session's
    logging/setLevel."""
    if message.modern:
        level = message.meta.get(server.LOG_LEVEL)
        return level if level in server.LOG_LEVELS else None
    return caller.session.log_level if caller.session is not None else None


def record(caller, entry, call, ending, request, now):
    """The connection's last call and the key's use (committed), and the call's row (queued).

    ``ending``: (outcome, error, upstream milliseconds or None, response bytes)."""
    outcome, error, upstream_ms, response_bytes = ending
    service.record_call(entry, error, now)
    service.touch(caller, now)
    db.session.commit()
    calllog.record(call, outcome, error, elapsed_ms(request), upstream_ms, response_bytes)


def elapsed_ms(request: Request) -> float:
    """Milliseconds since the request began."""
    return (time.monotonic() - request.started) * 1000


def result_for(outcome, modern) -> dict:
    """The ``CallToolResult`` for the agent; one mcpadmin wrote (not the upstream's own
    answer) names the request id."""
    result = outcome.result
    if outcome.kind not in (Outcome.OK, Outcome.TOOL_ERROR):
        content = [{**c, "text": requestlog.tagged(c["text"])} if c.get("type") == "text" else c
                   for c in result.get("content") or ()]  # fmt: skip
        result = {**result, "content": content}
    return server.modern_result(result) if modern else result


def encode(body) -> bytes:
    """A JSON-RPC body as sent: compact UTF-8, request ids named in error messages."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(tagged(body), separators=(",", ":"), ensure_ascii=False).encode()


def tagged(body: dict) -> dict:
    """A JSON-RPC error naming the request id in its message; other messages as they are."""
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return body
    return {**body, "error": {**error, "message": requestlog.tagged(error["message"])}}


def error_result(text: str, modern: bool) -> dict:
    result = {"content": [{"type": "text", "text": text}], "isError": True}
    return server.modern_result(result) if modern else result


def _touch(caller, now):
    service.touch(caller, now)
    db.session.commit()  # ends the transaction: no connection is held between requests


def _answer(caller, request_id, result, now) -> Answer:
    _touch(caller, now)
    return Answer(200, server.response(request_id, result))


def _legacy_stream(caller, request):
    """GET: the legacy session's server stream, which carries tools/list_changed (and
    resources/, prompts/list_changed) when the operator changes what the agent has ticked or a
    sync changes their definitions [25N/http §Listening for Messages from the Server]."""
    if not request.session_id:
        return Answer(400, server.error(None, server.INVALID_REQUEST,
                                        "Bad request: no Mcp-Session-Id."))  # fmt: skip
    if caller.session is None:
        return Answer(404, server.error(None, server.INVALID_REQUEST, "Session not found."))
    if EVENT_STREAM not in request.accept:
        return Answer(406, server.error(None, server.INVALID_REQUEST, "Not acceptable: Accept "
                                        "must include text/event-stream."))  # fmt: skip
    changed = [server.notification(method) for method, _ in CHANGES]
    fingerprint = service.catalog(caller.agent).fingerprint()
    db.session.commit()
    return Held(caller, caller.session.id_sha256, fingerprint, [], changed, None)


def _listen(caller, message):
    """Modern ``subscriptions/listen`` [26/subs]: acknowledged first, then tools/,
    resources/ and prompts/list_changed (those the client opted in to) whenever that list of
    the agent's changes, for as long as the stream is open (or ``GATEWAY_STREAM_SECONDS``,
    then the final result)."""
    meta = {server.SUBSCRIPTION_ID: message.id}
    asked = message.params.get("notifications")
    asked = asked if isinstance(asked, dict) else {}
    honored = {member: True for _, member in CHANGES if asked.get(member) is True}
    ack = server.notification(
        "notifications/subscriptions/acknowledged", {"notifications": honored, "_meta": meta}
    )
    changed = [server.notification(method, {"_meta": meta}) if member in honored else None
               for method, member in CHANGES]  # fmt: skip
    closing = server.response(message.id, server.modern_result({"_meta": meta}))
    fingerprint = service.catalog(caller.agent).fingerprint()
    db.session.commit()
    return Held(caller, None, fingerprint, [ack], changed, closing)


def _end_session(caller, request):
    if not request.session_id:
        return Answer(400, server.error(None, server.INVALID_REQUEST,
                                        "Bad request: no Mcp-Session-Id."))  # fmt: skip
    if caller.session is None:
        return Answer(404, server.error(None, server.INVALID_REQUEST, "Session not found."))
    service.end_session(caller.session)
    db.session.commit()
    return Answer(200)


def unauthorized(request: Request) -> Answer:
    """401 with an RFC 6750 challenge; an address that keeps failing waits (429)."""
    db.session.rollback()
    wait = None
    presented = request.headers.get("Authorization")
    if presented:  # only a key that was sent and failed counts: a missing one guesses nothing
        wait = agent_keys.refusal(request.address)
        if wait:
            body = server.error(None, server.INVALID_REQUEST, "Too many failed keys from this "
                                f"address: retry in {wait} seconds.")  # fmt: skip
            return Answer(429, body, {"Retry-After": str(wait)})
        wait = agent_keys.count_failure(request.address)
    realm = f'Bearer realm="mcpadmin agent {request.agent_id}"'
    if presented:  # [RFC 6750 §3.1]: no error code when no credential was sent
        realm += ', error="invalid_token", error_description="unknown, expired or revoked key"'
    text = ("Unauthorized: send this agent's key as Authorization: Bearer <key>; the key is "
            "missing, unknown, expired or revoked, or the agent's owner is "
            "deactivated.")  # fmt: skip
    headers = {"WWW-Authenticate": realm, **({"Retry-After": str(wait)} if wait else {})}
    return Answer(401, server.error(None, server.INVALID_REQUEST, text), headers)


def _instructions(agent) -> str:
    return (f"Tools, prompts and resources of agent {agent.name} through mcpadmin. Each tool "
            "and prompt runs on the connector its name starts with; a resource URI under "
            "mcpadmin://<connector>/ is that connector's.")  # fmt: skip
