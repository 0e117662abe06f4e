"""A ``tools/call`` sent upstream from the event loop, and its answer relayed to the agent.

``CallResponse`` is the ASGI response of a prepared call (``dispatch.Prepared``), and the
base of a forwarded request's (``forward.ForwardResponse``), relayed the same way. It runs the
upstream call as a task of its own, which passes what the upstream sends (progress and log
notifications, as ``services.calls`` keeps them, then one ``calls.Outcome``) through a memory
stream, and it answers with JSON when the outcome comes first or the client takes no stream,
else with an event stream that carries each notification as it arrives.

A request the upstream sends back during the call (elicitation, sampling, roots; or a 2026
upstream's ``input_required`` result for a 2025 agent) goes to the agent on the same stream,
by ``asks``, which also states the rule for each pair of eras.

Cancellation is task cancellation: a modern client closing the stream [26/http
§Cancellation], a legacy ``notifications/cancelled`` [25N/canc] (at once when this process
runs the call, else within ``CANCEL_CHECK_SECONDS`` through the database) cancels the upstream
task, which cancels the upstream request. Whatever the ending, the call log gets one row.

The upstream is called by the async client (``upstream.AsyncClient`` over ``outbound``) in
the era the connector last answered in. When that era is unknown or no longer holds, the call
runs once through the synchronous client in a pool thread, which probes (the same path a sync
takes).
"""

import contextlib
import logging
import threading
import time
from types import SimpleNamespace

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectSendStream

from ..extensions import db
from ..models import utcnow
from ..protocol import mcp, server
from ..services import calllog, calls
from ..services import gateway as service
from ..services.calllog import Outcome
from . import asks, dispatch, upstream

log = logging.getLogger(__name__)

JSON = "application/json"
# How often a running legacy call looks in the database for a notifications/cancelled that
# another process received.
CANCEL_CHECK_SECONDS = 1.0
_BUFFER = 64  # notifications waiting for a slow client before the upstream task waits


class CallResponse:
    """The ASGI answer to one prepared ``tools/call``. ``forward.ForwardResponse`` answers a
    forwarded request the same way: it says what goes upstream (``_outcome``) and how the
    outcome is answered (``_reply``)."""

    def __init__(self, plane, request: dispatch.Request, prepared: dispatch.Prepared):
        self.plane, self.request, self.prepared = plane, request, prepared
        self.entry = prepared.entry  # whose connection's last call the row updates
        self.key = None
        session = prepared.caller.session
        if session is not None and prepared.message.id is not None:
            self.key = (session.id_sha256, str(prepared.message.id)[:200])
        self.cancelled_by: str | None = None
        self.stop = threading.Event()  # seen by a call running in a pool thread
        self.sent = 0

    async def __call__(self, scope, receive, send):
        sender, updates = anyio.create_memory_object_stream(_BUFFER)
        with updates:
            await self._answer(scope, receive, send, sender, updates)

    async def _answer(self, scope, receive, send, sender, updates):
        prepared = self.prepared
        async with anyio.create_task_group() as group:
            self.upstream_scope = anyio.CancelScope()
            group.start_soon(self._upstream, sender)
            if self.key is not None:
                self.plane.running[self.key] = self
                group.start_soon(self._cancel_checks)
            if prepared.modern:  # any disconnect, before an answer is streamed or not
                group.start_soon(self._disconnects, receive)
            try:
                first = await updates.receive()
                if not isinstance(first, calls.Outcome) and not prepared.takes_stream:
                    async for first in updates:  # the client cannot take a stream: only the end
                        if isinstance(first, calls.Outcome):
                            break
                    else:
                        raise anyio.EndOfStream  # cancelled before its outcome
                if isinstance(first, calls.Outcome):
                    await self._json(send, first)
                else:
                    if not prepared.modern:
                        group.start_soon(self._disconnects, receive)
                    await self._stream(send, first, updates)
            except anyio.EndOfStream:  # the upstream task was cancelled before its outcome
                await self._ended_without_outcome(send)
            finally:
                self.plane.running.pop(self.key, None)
                group.cancel_scope.cancel()

    # -- the upstream task ------------------------------------------------------------------

    async def _upstream(self, sender: ObjectSendStream):
        async with sender:
            with self.upstream_scope:
                try:
                    outcome = await self._outcome(sender.send)
                except Exception:
                    log.exception("agent endpoint failed while relaying %s",
                                  self.prepared.message.method)  # fmt: skip
                    outcome = self.prepared.target.pair.failed(
                        Outcome.PROTOCOL, "Internal error in mcpadmin."
                    )
                await sender.send(outcome)

    async def _outcome(self, forward) -> calls.Outcome:
        """Send the request upstream, ``forward`` each notification the agent gets, and
        return how it ended."""
        return await call(self.plane, self.prepared, forward, self.stop)

    def cancel(self, why: str):
        """Stop the upstream call (a legacy ``notifications/cancelled``, or a modern client
        that closed the stream); the row says ``why``."""
        if self.cancelled_by is None:
            self.cancelled_by = why
        self.stop.set()
        self.upstream_scope.cancel()

    async def _cancel_checks(self):
        """A legacy call's cancellation received by another process, looked up now and then."""
        session = self.prepared.caller.session
        request_id = self.prepared.message.id
        while True:
            await anyio.sleep(CANCEL_CHECK_SECONDS)
            if await self.plane.run(service.cancelled, session, request_id):
                self.cancel("Cancelled by the agent.")
                return

    async def _disconnects(self, receive):
        """A client that closes the call's connection cancels it: a modern one at any time
        [26/http §Cancellation: the server MUST treat a client disconnect as cancellation], a
        legacy one once its answer is streamed."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.cancel("The agent closed the stream.")
                return

    # -- answers ----------------------------------------------------------------------------

    def _reply(self, outcome: calls.Outcome) -> tuple[int, dict]:
        """The HTTP status (when the answer is not streaming) and the JSON-RPC response."""
        return 400 if outcome.rpc_error else 200, answer(self.prepared, outcome)

    async def _json(self, send, outcome: calls.Outcome):
        status, reply = self._reply(outcome)
        body = dispatch.encode(reply)
        await self._finish(outcome.kind, outcome.error, outcome.upstream_ms, len(body))
        await send_whole(send, status, body, JSON)

    async def _stream(self, send, first, updates):
        await send({"type": "http.response.start", "status": 200,
                    "headers": stream_headers()})  # fmt: skip
        event = server.sse_event(first)
        self.sent += len(event)
        await send({"type": "http.response.body", "body": event, "more_body": True})
        async for update in updates:
            if isinstance(update, calls.Outcome):
                event = server.sse_event(dispatch.tagged(self._reply(update)[1]))
                ending = (update.kind, update.error, update.upstream_ms, self.sent + len(event))
                await self._finish(*ending)
                await send({"type": "http.response.body", "body": event, "more_body": False})
                return
            event = server.sse_event(update)
            self.sent += len(event)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        raise anyio.EndOfStream

    async def _ended_without_outcome(self, send):
        """The upstream task was cancelled: a legacy cancellation gets no response
        [25N/canc]; the stream (if any) just ends."""
        why = self.cancelled_by or "Internal error in mcpadmin."
        kind = Outcome.CANCELLED if self.cancelled_by else Outcome.PROTOCOL
        with anyio.CancelScope(shield=True):
            await self._finish(kind, why, None, self.sent)
        try:
            if not self.sent:
                await send({"type": "http.response.start", "status": 200,
                            "headers": stream_headers()})  # fmt: skip
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client is gone

    async def _finish(self, kind, error, upstream_ms, response_bytes):
        """The call's row (queued), and the connection's last call and the key's use when
        they are due (a pool trip only then)."""
        prepared, request = self.prepared, self.request
        now = utcnow()
        ending = (kind, error, upstream_ms, response_bytes)
        if service.pending_writes(prepared.caller, self.entry, error, now, self.plane.app):
            with anyio.CancelScope(shield=True):
                await self.plane.run(dispatch.record, prepared.caller, self.entry,
                                     prepared.call, ending, request, now)  # fmt: skip
            return
        calllog.record(prepared.call, kind, error, dispatch.elapsed_ms(request), upstream_ms,
                       response_bytes, app=self.plane.app)  # fmt: skip


async def call(plane, prepared: dispatch.Prepared, forward, stop: threading.Event) -> calls.Outcome:
    """Call the tool upstream: ``forward`` each notification the agent gets (progress for its
    token, log messages at its level: ``calls._Pair.relayed``), and return the outcome. One
    retry with a refreshed OAuth token after a 401 (the refresh in a pool thread, under its
    lock). ``stop`` is set when the call is cancelled (seen by a call in a pool thread)."""
    target = prepared.target
    pair = target.pair
    progress_token = prepared.message.progress_token
    meta = target.meta(progress_token)
    client = None
    try:
        if plane.http is None:  # no outbound client on this loop (yet): the synchronous one
            raise _Probe()
        client = upstream.AsyncClient(plane.http, target.url, target.headers, era=target.era,
                                      version=target.version, pool=calls.POOL,
                                      deadline=target.timeout)  # fmt: skip
        client.asker = asker = asks.Asker(plane, prepared, forward)

        async def once(inputs):
            updates = client.call_tool(target.tool, target.arguments, meta=meta,
                                       input_schema=target.input_schema,
                                       log_level=prepared.log_level,
                                       capabilities=target.capabilities,
                                       inputs=inputs)  # fmt: skip
            return await until_done(updates, target, progress_token, prepared.log_level,
                                    prepared.modern, forward, "the call")  # fmt: skip

        async def attempt():
            """The call; for a 2025 agent, again with the answers while a 2026 upstream asks
            for input (``asks``: at most ``MAX_ROUNDS`` rounds)."""
            inputs = target.inputs
            for _round in range(asks.MAX_ROUNDS):
                result = await once(inputs)
                if prepared.modern or not asks.input_required(result):
                    return result
                inputs = await asker.inputs(result, client.ends)
            raise calls.Refused(Outcome.PROTOCOL, asks.too_many_rounds(pair.agent_name))

        try:
            result = await attempt()
        except mcp.Unauthorized:
            if target.auth_type != "oauth" or not target.headers:
                raise
            client.auth = await plane.run(target.refreshed)
            result = await attempt()
    except (_Probe, upstream.EraUnknown):  # the era and the holder's state recorded there
        return await _in_thread(plane, prepared, forward, stop)
    except calls.Refused as exc:
        outcome = pair.failed(exc.kind, str(exc))
    except mcp.McpError as exc:
        refused = None
        if prepared.modern:  # the agent's to fix: its own -32021, or its retry's -32602
            refused = target.missing_capability(exc) or asks.refused_retry(prepared, exc)
        if refused is not None:  # answered as that JSON-RPC error (``_json``)
            outcome = refused
        elif target.needs_thread(exc):
            outcome = await plane.run(target.explained, exc)
        else:
            outcome = target.explained(exc)
    else:
        outcome = pair.succeeded(result)
    era = (client.era, client.version) if client is not None else (None, None)
    if not prepared.modern and asks.input_required(outcome.result):  # (the thread's call)
        outcome = pair.failed(Outcome.PROTOCOL, f"{pair.name} asked for input that mcpadmin "
                              "could not relay on this call; try again.")  # fmt: skip
    if target.changes(outcome, *era):  # a pool trip only then
        await plane.run(target.finished, outcome, *era)
    outcome.upstream_ms = (time.monotonic() - target.started) * 1000
    return outcome


def answer(prepared: dispatch.Prepared, outcome: calls.Outcome) -> dict:
    """The agent's response to the call: the outcome's JSON-RPC error (sent with HTTP 400 when
    the answer is not already streaming), else its result."""
    if outcome.rpc_error is not None:
        error = outcome.rpc_error
        return server.error(prepared.message.id, error["code"], error["message"], error["data"])
    return server.response(prepared.message.id, dispatch.result_for(outcome, prepared.modern))


async def until_done(updates, target, progress_token, log_level, modern, forward, what: str):
    """The result at the end of an upstream request's ``updates`` (``mcp.CallUpdate`` items,
    then one ``mcp.CallDone``); each notification before it is ``forward``-ed as the agent
    gets it (``calls._Pair.relayed``: progress for its token, log messages at its level).

    :raise McpError: the updates ended without an answer to ``what``.
    """
    async with contextlib.aclosing(updates):
        async for item in updates:
            if isinstance(item, mcp.CallDone):
                return item.result
            message = target.pair.relayed(item.message, target.upstream_token, progress_token,
                                          log_level, modern)  # fmt: skip
            if message is not None:
                await forward(message)
    raise mcp.McpError(f"The server ended {what} without an answer.")


class _Probe(Exception):
    """The call must go through the synchronous client (it probes the upstream's era)."""


async def _in_thread(plane, prepared, forward, stop: threading.Event) -> calls.Outcome:
    """The call through ``calls.call_tool`` (the synchronous client) in a pool thread: each
    notification is forwarded from the thread as it arrives, and what the call changed (the
    era, the holder's state) committed. A cancelled call (``stop``) is closed at the thread's
    next notification (the synchronous client then cancels upstream)."""
    target = prepared.target

    def work():
        connector = target.bind()
        agent = SimpleNamespace(name=target.pair.agent_name)
        updates = calls.call_tool(connector, target.pair.connection, agent, target.tool,
                                  target.arguments, prepared.message.progress_token,
                                  input_schema=target.input_schema,
                                  log_level=prepared.log_level)  # fmt: skip
        try:
            for item in updates:
                if isinstance(item, calls.Outcome):
                    db.session.commit()  # the era, the holder's state: as after a sync
                    return item
                if stop.is_set():
                    return None
                anyio.from_thread.run(forward, item)
        finally:
            updates.close()
        return None

    outcome = await plane.run(work)
    if outcome is None:  # stopped by ``CallResponse.cancel``, whose cancelled scope raises here
        await anyio.lowlevel.checkpoint()
        raise anyio.get_cancelled_exc_class()()  # (not reached)
    return outcome


def stream_headers() -> list:
    return [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]


async def send_whole(send, status: int, body: bytes, content_type: str, headers=()):
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
           *headers]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
