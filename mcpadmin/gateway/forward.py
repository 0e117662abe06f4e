"""A prompts/get, resources/read, resources/(un)subscribe or completion/complete sent to the
one upstream the agent's catalog routed it to (``dispatch.Forwarded``), on the event loop, and
its answer relayed as it is (contents, ``_meta``).

It is relayed exactly as a tools/call (``ForwardResponse`` is a ``relay.CallResponse``):
progress for the agent's ``_meta.progressToken`` (the upstream gets a fresh token, given back
as the agent's own [26/prog]) and log messages at the chosen level (the legacy session's
``logging/setLevel``, or the modern request's ``_meta`` logLevel: none without it [26/chg
Major 5]) reach the agent on an event stream as they come when it accepts one, else it gets
one JSON answer at the end. A modern agent closing the stream [26/http §Cancellation] or a
legacy ``notifications/cancelled`` [25N/canc] (in this process at once, from another through
the database) cancels the upstream request, and the row says cancelled.

The upstream is asked by the async client (``upstream.AsyncClient.stream_request``) in the
era the connector last answered in, with the credential ``calls.prepare`` read: one retry
with a refreshed OAuth token after a 401 (the refresh in a pool thread, under its lock), the
same caps and deadline as a tool call. When that era is unknown or no longer holds, the
request runs once through the synchronous client in a pool thread, which probes (its
notifications are not relayed: the answer comes at the end). Whatever happens, the call log
gets one row: a failure is a JSON-RPC error whose sentence names the connector
(``calls._Pair.explained``), with the upstream's own code kept when it says "invalid params"
or "not found" so the agent sees the protocol's error (for resources/read: -32602 to a 2026
agent and the agent-side URI in ``data.uri`` [26/resources §Error Handling, SEP-2164]).

A modern agent's prompts/get and resources/read may get the upstream's ``input_required``
result as it is, and its retry goes upstream with its ``inputResponses`` and
``requestState`` (``asks.envelope``); the upstream's refusal of a tampered or invalid retry
(-32602) reaches it as that JSON-RPC error.
"""

import logging
import time

from ..protocol import mcp, server
from ..services import calls, outbound
from ..services import gateway as service
from ..services.calllog import Outcome
from . import asks, dispatch, relay, upstream

log = logging.getLogger(__name__)

# Upstream error codes relayed as they are: invalid params, and the 2025 era's "resource not
# found" [25N/resources §Error Handling; 26/resources: -32602 since SEP-2164].
KEPT_CODES = (server.INVALID_PARAMS, -32002)
SUBSCRIBING = {"resources/subscribe": True, "resources/unsubscribe": False}


class ForwardResponse(relay.CallResponse):
    """The ASGI answer to one forwarded request: ``relay.CallResponse`` (progress for the
    agent's token and log messages at its level relayed on an event stream when it takes one,
    else one JSON answer at the end; cancellation; the row), with the request sent by
    ``_forward`` and its outcome answered as the protocol's result or JSON-RPC error."""

    def __init__(self, plane, request: dispatch.Request, forwarded: dispatch.Forwarded):
        super().__init__(plane, request, forwarded)
        self.code: int | None = None  # the upstream's JSON-RPC code to keep (``_kept``)

    async def _outcome(self, forward) -> calls.Outcome:
        forwarded = self.prepared
        outcome, self.code = await _forward(self.plane, forwarded, forward)
        subscribing = SUBSCRIBING.get(forwarded.method)
        session = forwarded.caller.session
        if outcome.kind == Outcome.OK and subscribing is not None and session is not None:
            await self.plane.run(service.remember_subscription, session,
                                 forwarded.item.connection.connector_id,
                                 forwarded.params["uri"], subscribing)  # fmt: skip
        return outcome

    def _reply(self, outcome: calls.Outcome) -> tuple[int, dict]:
        forwarded, message = self.prepared, self.prepared.message
        if outcome.kind == Outcome.OK:
            result = outcome.result
            return 200, server.response(message.id, server.modern_result(result)
                                        if forwarded.modern else result)  # fmt: skip
        data, code = None, self.code
        if code is not None and forwarded.method == "resources/read":
            data = {"uri": forwarded.call.tool}  # the agent-side URI [26/resources §Error…]
            code = server.INVALID_PARAMS if forwarded.modern else code  # SEP-2164
        return 200, server.error(message.id, code or server.INTERNAL_ERROR, outcome.error, data)


async def _forward(plane, forwarded, forward) -> tuple[calls.Outcome, int | None]:
    """The upstream's answer as an ``Outcome``, and the JSON-RPC code of a failure to keep;
    ``forward`` gets each notification the agent sees (``calls._Pair.relayed``)."""
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
            result = await _request(client, forwarded, forward)
        except mcp.Unauthorized:
            if target.auth_type != "oauth" or not target.headers:
                raise
            client.auth = await plane.run(target.refreshed)
            result = await _request(client, forwarded, forward)
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


async def _request(client, forwarded, forward) -> dict:
    """The request upstream with a fresh progress token when the agent sent one; what it
    sends before its answer relayed as a tool call's (``relay.call``)."""
    target = forwarded.target
    progress_token = forwarded.message.progress_token
    sent = asks.envelope(forwarded.message, forwarded.method)
    updates = client.stream_request(forwarded.method, forwarded.params, name=forwarded.name,
                                    meta=target.meta(progress_token),
                                    log_level=forwarded.log_level,
                                    capabilities=sent.capabilities, kinds=sent.kinds)  # fmt: skip
    return await relay.until_done(updates, target, progress_token, forwarded.log_level,
                                  forwarded.modern, forward, forwarded.method)  # fmt: skip


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
