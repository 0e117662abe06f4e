"""HTTP in and out for ``/agents/<id>/mcp`` (Streamable HTTP, both eras on one URL).

The transport checks what needs no database (Host, Origin, Accept, Content-Type; the guard
already read the body within its time and size), turns the request into a
``dispatch.Request``, has ``dispatch.handle`` decide it in one pool trip, and writes the
decision out: a JSON answer, a relayed call (``relay.CallResponse``), a forwarded request
relayed the same way (``forward.ForwardResponse``) or a held stream (``streams``). Agents
authenticate with an agent key (``Authorization: Bearer mcpa_…``), never with the admin's
login: no cookie is read, so no CSRF token either.

Every answer carries ``X-Request-Id``; with ``LOG_FORMAT = "json"`` each request writes one
line (a stream's when it closes).
"""

import logging
import time

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .. import requestlog, security
from ..crypto import token_digest
from ..protocol import server
from ..protocol.server import RpcFailure
from . import dispatch, forward, relay, streams
from .guard import client_address

log = logging.getLogger(__name__)

JSON = "application/json"
EVENT_STREAM = "text/event-stream"


async def endpoint(plane, request: Request):
    """One MCP message (POST), a legacy session's server stream (GET), or its end (DELETE)."""
    plane.started()
    requestlog.begin()
    started = time.monotonic()
    agent_id = request.path_params["agent_id"]
    try:
        answer = await _handle(plane, request, agent_id, started)
    except Exception:
        log.exception("agent endpoint failed on %s", request.headers.get("Mcp-Method") or "?")
        body = server.error(None, server.INTERNAL_ERROR, "Internal error in mcpadmin.")
        answer = _json(500, body)
    return Logged(answer, plane, request, agent_id, started)


async def _handle(plane, request: Request, agent_id: int, started: float):
    config = plane.config
    headers = request.headers
    if not security.allowed_host(headers.get("host"), config["PUBLIC_BASE_URL"],
                                 config["EXTRA_HOSTS"]):  # fmt: skip
        text = (f"Unknown host {str(headers.get('host'))[:100]!r}: agents reach this server at "
                f"{config['PUBLIC_BASE_URL']} (MCPADMIN_PUBLIC_BASE_URL; other names go in "
                "MCPADMIN_EXTRA_HOSTS).")  # fmt: skip
        return _json(400, server.error(None, server.INVALID_REQUEST, text))
    origin = headers.get("origin")
    if origin is not None and security.origin_of(origin) not in plane.origins:
        # [26/http §Security]: an Origin that is present and not this app's → 403.
        return _json(403, server.error(None, server.INVALID_REQUEST, "Forbidden: Origin not "
                                       "allowed."))  # fmt: skip
    modern_header = headers.get("mcp-protocol-version") in server.MODERN_VERSIONS
    accept = headers.get("accept", "")
    incoming = dispatch.Request(
        method=request.method,
        agent_id=agent_id,
        key=security.bearer_of(headers.get("authorization")),
        session_id=None if modern_header else headers.get("mcp-session-id"),
        modern_header=modern_header,
        accept=accept,
        headers=headers,
        address=client_address(request.scope, config["TRUSTED_PROXY_HOPS"]),
        started=started,
    )
    if request.method == "POST":
        try:
            incoming.message, incoming.body_bytes = await _read_message(request, accept)
        except RpcFailure as failure:
            return _json(failure.status, failure.body())
    decided = await plane.run(dispatch.handle, incoming)
    if isinstance(decided, dispatch.Answer):
        if decided.status == 202 and incoming.session_id:
            _cancelled_here(plane, incoming)
        return _json(decided.status, decided.body, decided.headers)
    if isinstance(decided, dispatch.Prepared):
        return relay.CallResponse(plane, incoming, decided)
    if isinstance(decided, dispatch.Forwarded):
        return forward.ForwardResponse(plane, incoming, decided)
    return _held(plane, decided)


async def _read_message(request: Request, accept: str):
    """The POSTed message and its size, after the transport checks [26/http §Sending
    Messages; §6.2].

    :raise RpcFailure: 406 (Accept), 415 (Content-Type), 400 (not JSON-RPC).
    """
    if not any(kind in accept for kind in (JSON, EVENT_STREAM, "*/*")):
        raise RpcFailure(server.INVALID_REQUEST, "Not acceptable: Accept must include "
                         "application/json and text/event-stream.", 406)  # fmt: skip
    mimetype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if mimetype != JSON:
        raise RpcFailure(server.INVALID_REQUEST, "Unsupported media type: Content-Type must "
                         "be application/json.", 415)  # fmt: skip
    body = await request.body()  # read whole by the guard, within its time and size limits
    return server.parse(body), len(body)


def _cancelled_here(plane, incoming):
    """A legacy ``notifications/cancelled`` for a call this process runs stops it now (the
    database row tells the other processes)."""
    message = incoming.message
    if message is None or message.method != "notifications/cancelled":
        return
    request_id = message.params.get("requestId")
    key = (token_digest(incoming.session_id), str(request_id)[:200])
    running = plane.running.get(key)
    if running is not None:
        running.cancel("Cancelled by the agent.")


def _held(plane, held: dispatch.Held):
    try:
        stream = plane.hub.admit(held.caller, held.session_sha256, held.fingerprint)
    except streams.Full as full:
        headers = {"Retry-After": str(streams.RETRY_AFTER_SECONDS)}
        return _json(full.status, server.error(None, server.INVALID_REQUEST, str(full)), headers)
    events = plane.hub.events(stream, held.opening, held.changed, held.closing)
    return HeldResponse(plane.hub, stream, events)


class HeldResponse(StreamingResponse):
    """A held stream's answer; its place under the caps is given back however it ends."""

    def __init__(self, hub, stream, events):
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type=EVENT_STREAM, headers=headers)
        self.hub, self.stream = hub, stream

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.release(self.stream)


class Logged:
    """An answer sent with ``X-Request-Id``, then (``LOG_FORMAT = "json"``) its request line."""

    def __init__(self, answer, plane, request, agent_id, started):
        self.answer, self.plane, self.request = answer, plane, request
        self.agent_id, self.started = agent_id, started
        self.request_id = requestlog.current() or ""

    async def __call__(self, scope, receive, send):
        status = 500
        request_id = self.request_id.encode()

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.answer(scope, receive, sending)
        finally:
            if self.plane.config["LOG_FORMAT"] == "json":
                fields = {
                    "method": self.request.method,
                    "path": self.request.url.path,
                    "endpoint": "gateway.endpoint",
                    "status": status,
                    "request_id": self.request_id,
                    "agent_id": self.agent_id,
                }
                requestlog.line(fields, self.started)


def _json(status: int, body=None, headers: dict | None = None):
    """A JSON answer (a ``str`` body is already encoded JSON); none for ``body`` None."""
    content = dispatch.encode(body) if body is not None else b""
    raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in
           (headers or {}).items()]  # fmt: skip
    return _Whole(status, content, raw)


class _Whole:
    def __init__(self, status, body, headers):
        self.status, self.body, self.headers = status, body, headers

    async def __call__(self, scope, receive, send):
        kind = JSON if self.body else "text/plain"
        await relay.send_whole(send, self.status, self.body, kind, self.headers)
