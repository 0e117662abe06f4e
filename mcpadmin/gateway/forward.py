"""A prompts/get, resources/read, resources/(un)subscribe or completion/complete sent to the
one upstream the agent's catalog routed it to (``dispatch.Forwarded``), on the event loop, and
its answer relayed as it is (contents, ``_meta``).

The upstream is asked by the async client (``upstream.AsyncClient.request``) in the era the
connector last answered in, with the credential ``calls.prepare`` read: one retry with a
refreshed OAuth token after a 401 (the refresh in a pool thread, under its lock), the same
caps and deadline as a tool call. When that era is unknown or no longer holds, the request
runs once through the synchronous client in a pool thread, which probes. Whatever happens,
the answer is one JSON-RPC message and the call log gets one row: a failure is a JSON-RPC
error whose sentence names the connector (``calls._Pair.explained``), with the upstream's own
code kept when it says "invalid params" or "not found" so the agent sees the protocol's error
(for resources/read: -32602 to a 2026 agent and the agent-side URI in ``data.uri``
[26/resources §Error Handling, SEP-2164]).

A modern agent's prompts/get and resources/read may get the upstream's ``input_required``
result as it is, and its retry goes upstream with its ``inputResponses`` and
``requestState`` (``asks.envelope``); the upstream's refusal of a tampered or invalid retry
(-32602) reaches it as that JSON-RPC error.
"""

import logging
import time

from ..models import utcnow
from ..protocol import mcp, server
from ..services import calllog, calls, outbound
from ..services import gateway as service
from ..services.calllog import Outcome
from . import asks, dispatch, upstream

log = logging.getLogger(__name__)

# Upstream error codes relayed as they are: invalid params, and the 2025 era's "resource not
# found" [25N/resources §Error Handling; 26/resources: -32602 since SEP-2164].
KEPT_CODES = (server.INVALID_PARAMS, -32002)
SUBSCRIBING = {"resources/subscribe": True, "resources/unsubscribe": False}


async def answer(plane, request: dispatch.Request, forwarded: dispatch.Forwarded):
    """The agent's answer (``dispatch.Answer``) to a forwarded request; its row queued."""
    try:
        outcome, code = await _forward(plane, forwarded)
    except Exception:
        log.exception("agent endpoint failed while forwarding %s", forwarded.method)
        text = "Internal error in mcpadmin."
        outcome, code = forwarded.target.pair.failed(Outcome.PROTOCOL, text), None
    message = forwarded.message
    if outcome.kind == Outcome.OK:
        result = outcome.result
        body = dispatch.encode(server.response(message.id, server.modern_result(result)
                                               if forwarded.modern else result))  # fmt: skip
        subscribing = SUBSCRIBING.get(forwarded.method)
        session = forwarded.caller.session
        if subscribing is not None and session is not None:
            await plane.run(service.remember_subscription, session,
                            forwarded.item.connection.connector_id, forwarded.params["uri"],
                            subscribing)  # fmt: skip
    else:
        data = None
        if code is not None and forwarded.method == "resources/read":
            data = {"uri": forwarded.call.tool}  # the agent-side URI [26/resources §Error…]
            code = server.INVALID_PARAMS if forwarded.modern else code  # SEP-2164
        error = server.error(message.id, code or server.INTERNAL_ERROR, outcome.error, data)
        body = dispatch.encode(error)
    await _finish(plane, request, forwarded, outcome, len(body))
    return dispatch.Answer(200, body)


async def _forward(plane, forwarded) -> tuple[calls.Outcome, int | None]:
    """The upstream's answer as an ``Outcome``, and the JSON-RPC code of a failure to keep."""
    target = forwarded.target
    pair = target.pair
    if forwarded.method in SUBSCRIBING and target.era == "modern":
        return _kept_here(forwarded), None
    client, code = None, None
    try:
        if plane.http is None:  # no outbound client on this loop (yet): the synchronous one
            raise upstream.EraUnknown("no async client")
        client = upstream.AsyncClient(plane.http, target.url, target.headers, era=target.era,
                                      version=target.version, pool=calls.POOL,
                                      deadline=target.timeout)  # fmt: skip
        try:
            result = await _request(client, forwarded)
        except mcp.Unauthorized:
            if target.auth_type != "oauth" or not target.headers:
                raise
            client.auth = await plane.run(target.refreshed)
            result = await _request(client, forwarded)
    except upstream.EraUnknown:  # the era and the holder's state recorded there
        return await plane.run(_in_thread, forwarded)
    except calls.Refused as exc:
        outcome = pair.failed(exc.kind, str(exc))
    except mcp.McpError as exc:
        code = _kept(exc)
        if target.needs_thread(exc):
            outcome = await plane.run(target.explained, exc)
        else:
            outcome = target.explained(exc)
    else:
        outcome = pair.succeeded(result)
    era = (client.era, client.version) if client is not None else (None, None)
    if target.changes(outcome, *era):  # a pool trip only then
        await plane.run(target.finished, outcome, *era)
    outcome.upstream_ms = (time.monotonic() - target.started) * 1000
    return outcome, code


async def _request(client, forwarded) -> dict:
    sent = asks.envelope(forwarded.message, forwarded.method)
    return await client.request(forwarded.method, forwarded.params, name=forwarded.name,
                                log_level=forwarded.log_level, capabilities=sent.capabilities,
                                kinds=sent.kinds)  # fmt: skip


def _in_thread(forwarded) -> tuple[calls.Outcome, int | None]:
    """The request through the synchronous client (which probes), in a pool thread; what it
    changed (the era, the holder's state) committed, as after a sync."""
    target = forwarded.target
    pair = target.pair
    code, client = None, None
    try:
        connector = target.bind()
        http = outbound.http(deadline=target.timeout, read_timeout=target.timeout,
                             keep_alive=True)  # fmt: skip
        client = mcp.Client(http, target.url, target.headers, era=connector.protocol_era,
                            version=connector.protocol_version, pool=calls.POOL,
                            deadline=target.timeout)  # fmt: skip

        sent = asks.envelope(forwarded.message, forwarded.method)

        def attempt():
            return client.request(forwarded.method, forwarded.params, name=forwarded.name,
                                  log_level=forwarded.log_level, capabilities=sent.capabilities,
                                  kinds=sent.kinds)  # fmt: skip

        try:
            result = attempt()
        except mcp.Unauthorized:
            if target.auth_type != "oauth" or not target.headers:
                raise
            client.auth = target.refreshed()
            result = attempt()
    except calls.Refused as exc:
        outcome = pair.failed(exc.kind, str(exc))
    except mcp.McpError as exc:
        code = _kept(exc)
        outcome = pair.explained(exc)
    else:
        outcome = pair.succeeded(result)
    era = (client.era, client.version) if client is not None else (None, None)
    target.finished(outcome, *era)
    outcome.upstream_ms = (time.monotonic() - target.started) * 1000
    return outcome, code


def _kept_here(forwarded) -> calls.Outcome:
    """A legacy agent's resources/(un)subscribe of a resource a 2026-07-28 upstream serves:
    that era has no such request (its updates come on ``subscriptions/listen`` [26/subs]), so
    the gateway answers it (``{}`` [25N/resources §Subscriptions]) and keeps the subscription
    itself (``answer``); the session's GET stream listens upstream for it while it holds
    (``streams.Hub._feed``). The URI was routed to one of the agent's resources already."""
    outcome = forwarded.target.pair.succeeded({})
    outcome.upstream_ms = 0.0
    return outcome


def _kept(exc: mcp.McpError) -> int | None:
    if isinstance(exc, mcp.RpcError) and exc.code in KEPT_CODES:
        return exc.code
    return None


async def _finish(plane, request, forwarded, outcome: calls.Outcome, response_bytes: int):
    """The row (queued), and the connection's last call and the key's use when due (a pool
    trip only then), as ``relay.CallResponse._finish``."""
    now = utcnow()
    ending = (outcome.kind, outcome.error, outcome.upstream_ms, response_bytes)
    caller, item, call = forwarded.caller, forwarded.item, forwarded.call
    if service.pending_writes(caller, item, outcome.error, now, plane.app):
        await plane.run(dispatch.record, caller, item, call, ending, request, now)
        return
    calllog.record(call, outcome.kind, outcome.error, dispatch.elapsed_ms(request),
                   outcome.upstream_ms, response_bytes, app=plane.app)  # fmt: skip
