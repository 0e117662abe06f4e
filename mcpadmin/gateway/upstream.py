"""A tool call upstream from the data plane, on the event loop: ``protocol.mcp.Client``'s call
path for a server whose era is already known, driving the same rules (``protocol.mcp``'s
functions and readers without I/O) over the async outbound client.

It never probes. Without a usable remembered era, or when the server refuses the call in a way
that may mean it changed eras, it raises ``EraUnknown`` before yielding anything, and the
caller runs the synchronous client (which probes) in a thread.

A legacy server's request on the call's stream (elicitation, sampling, roots) goes to the
client's ``asker`` (``gateway.asks``: relayed to the agent), whose answer is POSTed back in
the session that asked; without one it gets ``mcp.answer_to``'s error.

Cancellation is task cancellation: closing the generator (``aclose``) or cancelling the task
that runs it closes a modern call's stream [26/http §Cancellation]; a legacy server also gets
``notifications/cancelled`` [25N/canc], as after a legacy timeout.
"""

import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial

import anyio

from ..protocol import mcp, sse
from ..protocol.http import HttpError, Interrupted, Timeout
from ..protocol.jsonbody import NotJson, TooDeep, parse_json
from ..protocol.versions import MODERN_VERSIONS

log = logging.getLogger(__name__)


class EraUnknown(mcp.McpError):
    """The call needs a probe for the server's era, which only the synchronous client makes;
    nothing was yielded."""


class AsyncClient:
    """Calls one tool on one server, or sends it one other request (``stream_request``).
    ``era``/``version`` are the verdict remembered from earlier (afterwards: which era
    answered); ``auth`` the credential headers (the caller may swap them
    after a refresh and call again); ``pool`` keeps legacy sessions between calls, shared with
    the synchronous client; ``deadline`` (seconds) bounds the whole call. One per call."""

    def __init__(self, http, url: str, headers: dict | None, *, era: str | None,
                 version: str | None, pool: mcp.SessionPool, deadline: float):  # fmt: skip
        self.http, self.url, self.auth = http, url, dict(headers or {})
        self.era, self.version = era, version
        self.pool = pool
        self._ends = time.monotonic() + deadline
        self._ids = itertools.count(1)  # for the handshake (calls take ids unique in the process)
        self._task = "answering the call"  # for the deadline's message
        # Answers a request a legacy server sends during the call (``gateway.asks.Asker``):
        # ``await asker(request, ends)`` → the JSON-RPC answer to POST; None: refuse them all.
        self.asker = None

    @property
    def ends(self) -> float:
        """When the call's deadline runs out (``time.monotonic``)."""
        return self._ends

    async def call_tool(self, name: str, arguments: dict | None = None, *,
                        meta: dict | None = None, input_schema: dict | None = None,
                        log_level: str | None = None, capabilities: dict | None = None,
                        inputs: dict | None = None
                        ) -> AsyncIterator[mcp.CallUpdate | mcp.CallDone]:  # fmt: skip
        """As ``protocol.mcp.Client.call_tool``: a ``CallUpdate`` for each notification as it
        arrives, then one ``CallDone``. Run it under ``contextlib.aclosing`` so that stopping
        early cancels the call in the task that made it. A modern server is told the client
        ``capabilities`` and gets a retry's ``inputs`` [26/mrtr]; its ``CallDone`` may be an
        ``input_required`` result.

        :raise EraUnknown: before anything is yielded: no usable era is remembered, or the
            server refused in a way that may mean it changed eras (``era``/``version`` are
            then None). Run ``protocol.mcp.Client`` (which probes) instead.
        :raise Unauthorized, Forbidden: 401/403 (before anything was yielded: refresh, retry).
        :raise RpcError: the server answered the call with a JSON-RPC error.
        :raise TimedOut, ServerUnreachable, ConnectionLost, McpError: anything else, one
            sentence for the operator.
        """
        mcp.check_sendable(self.auth)
        self._task = f"answering the call to {name[:80]!r}"

        def build(version):
            return mcp.tool_call(name, arguments, meta, version=version,
                                 input_schema=input_schema, log_level=log_level,
                                 capabilities=capabilities, inputs=inputs)  # fmt: skip

        async with aclosing(self._relayed(build, "the call")) as updates:
            async for item in updates:
                yield item

    async def stream_request(self, method: str, params: dict, *, name: str | None = None,
                             meta: dict | None = None, log_level: str | None = None,
                             capabilities: dict | None = None, kinds=("complete",)
                             ) -> AsyncIterator[mcp.CallUpdate | mcp.CallDone]:  # fmt: skip
        """One forwarded request (``resources/read``, ``prompts/get``,
        ``completion/complete``, ``resources/subscribe``…; a modern server is told the client
        ``capabilities`` and the ``logLevel`` opt-in), relayed as ``call_tool`` relays a
        call under the same caps and deadline: a ``CallUpdate`` for each
        notification the server sends before its answer (progress for ``meta``'s
        ``progressToken``, log messages), then one ``CallDone`` with the result (of one of the
        ``kinds``). Stopping early (``aclosing``) cancels the request upstream as it cancels a
        call. Raises as ``call_tool``."""
        mcp.check_sendable(self.auth)
        self._task = f"answering {method}"
        if meta:
            params = {**params, "_meta": {**(params.get("_meta") or {}), **meta}}

        def build(version):
            return mcp.forwarded_request(method, params, version=version, name=name,
                                         log_level=log_level,
                                         capabilities=capabilities)  # fmt: skip

        async with aclosing(self._relayed(build, method, kinds)) as updates:
            async for item in updates:
                yield item

    async def _relayed(self, build, what: str, kinds=("complete", mcp.INPUT_REQUIRED)
                       ) -> AsyncIterator[mcp.CallUpdate | mcp.CallDone]:  # fmt: skip
        """The request ``build(version)`` makes (the message and its headers; version None:
        legacy), sent in the remembered era and relayed (``call_tool``)."""
        if self.era == "legacy":
            calls = self._legacy(build, kinds)
        elif self.era == "modern" and self.version in MODERN_VERSIONS:
            request, headers = build(self.version)
            calls = self._streamed(request, self.version, headers, kinds=kinds)
        else:
            raise EraUnknown("No usable protocol era is remembered for the server; it must be "
                             "probed first.")  # fmt: skip
        async with aclosing(calls):
            try:
                try:
                    first = await anext(calls)
                except mcp.McpError as exc:
                    if not mcp.era_signal(exc):
                        raise
                    # Refused before it ran: the server may have changed eras [26/ver §Backward
                    # Compatibility with Initialization-Based Versions].
                    era, self.era, self.version = self.era, None, None
                    raise EraUnknown(f"The server refused {what} as a {era} server ({exc}); "
                                     "it must be probed again.") from exc  # fmt: skip
                yield first
                async for item in calls:
                    yield item
            except HttpError as exc:
                raise mcp.translated(exc) from exc

    async def updates(self, uris: list[str]) -> AsyncIterator[dict]:
        """The ``notifications/resources/updated`` a server sends for ``uris``, as they come,
        until the deadline. A legacy server: a session of its own (never pooled: its GET
        stream is this listener's), subscribed to each URI, then its GET stream [25N/resources
        §Subscriptions; 25N/http §Listening for Messages from the Server]; the session is
        closed at the end. A modern one: ``subscriptions/listen`` for them (``_listened``).

        :raise McpError: the server refused the session or a subscription.
        """
        mcp.check_sendable(self.auth)
        self._task = "holding its resource subscriptions"
        if self.era == "modern" and self.version in MODERN_VERSIONS:
            async with aclosing(self._listened(uris)) as listened:
                async for found in listened:
                    yield found
            return
        try:
            session, version = await self._initialize()
        except HttpError as exc:
            raise mcp.translated(exc) from exc
        header = mcp.legacy_version_header(version)
        try:
            for uri in uris:
                message, _headers = mcp.forwarded_request("resources/subscribe", {"uri": uri})
                reply = await self._post(message, header, session)
                mcp.result_of(reply, self.url, "resources/subscribe", initialized=True)
            headers = {"Accept": "text/event-stream", **self.auth}
            if session:
                headers["Mcp-Session-Id"] = session
            if header:
                headers["MCP-Protocol-Version"] = header
            left = self._left()
            stream = await self.http.open("GET", self.url, headers=headers, deadline=left,
                                          read_timeout=left)  # fmt: skip
            async with stream, aclosing(_updates_in(stream, uris)) as updates:  # none on a 405
                async for found in updates:
                    yield found
        except (HttpError, sse.SseError):
            return  # the stream ended or broke: the watcher starts another while it holds
        finally:
            with anyio.CancelScope(shield=True):
                await self._close(session)

    async def _listened(self, uris: list[str]) -> AsyncIterator[dict]:
        """A modern server's ``notifications/resources/updated`` for ``uris``: one
        ``subscriptions/listen`` asking for them (``resourceSubscriptions`` [26/subs]), its
        event stream read until it ends or the deadline; a refusal or a broken stream ends it
        (the watcher starts another while the agent's stream holds)."""
        params = {"notifications": {"resourceSubscriptions": list(uris)}}
        message, _headers = mcp.forwarded_request("subscriptions/listen", params,
                                                  version=self.version)  # fmt: skip
        try:
            stream = await self._open(message, self.version)
            async with stream, aclosing(_updates_in(stream, uris)) as updates:  # none if refused
                async for found in updates:
                    yield found
        except (HttpError, sse.SseError):
            return

    async def _legacy(self, build, kinds) -> AsyncIterator[mcp.CallUpdate | mcp.CallDone]:
        """The call (``build``'s request) in the pooled session (or a new one); a 404 on it
        means the session is gone: initialize again, once [25N/http §Session Management]."""
        key = mcp.SessionPool.key(self.url, self.auth)
        pooled = self.pool.get(key)
        for _attempt in range(2):
            session, version = pooled or await self._initialize()
            self.era, self.version = "legacy", version
            if not pooled:
                self.pool.put(key, session, version)
            request, _headers = build(None)
            header = mcp.legacy_version_header(version)
            try:
                async with aclosing(self._streamed(request, header, session=session,
                                                   cancel=True, kinds=kinds)) as calls:  # fmt: skip
                    async for item in calls:
                        yield item
                return
            except mcp.Restart:
                self.pool.drop(key, session)
                pooled = None
        raise mcp.McpError(mcp.SESSION_LOST_TWICE)

    async def _streamed(self, request, version, extra=None, session=None, cancel=False,
                        kinds=("complete", mcp.INPUT_REQUIRED)
                        ) -> AsyncIterator[mcp.CallUpdate | mcp.CallDone]:  # fmt: skip
        """POST ``request`` and relay what comes back (``mcp.CallReader``). With ``cancel``
        (legacy), a request that may still be running upstream when reading stops (closed,
        cancelled, timed out, stream broken) is cancelled there.

        :raise mcp.Restart: 404 on ``session`` (the session is gone).
        """
        try:
            stream = await self._open(request, version, session, extra)
        except (Timeout, anyio.get_cancelled_exc_class()):
            if cancel:  # sent, maybe running: tell the server to stop
                await self._cancel(request["id"], version, session)
            raise
        reader = mcp.CallReader(self.url, request, version, session, kinds)
        try:
            if not reader.opened(stream.status, stream.headers, stream.content_type):
                yield reader.whole(await _read(stream))
                return
            async with aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    for item in reader.feed(chunk):
                        if isinstance(item, mcp.Respond):
                            await self._answer(await self._asked(item), version, session)
                        else:
                            yield item
                    if reader.answered:
                        return
            raise reader.unanswered()
        except Interrupted:
            raise mcp.ConnectionLost(mcp.CUT_OFF) from None
        finally:
            with anyio.CancelScope(shield=True):
                if cancel and not reader.answered:
                    await self._cancel(request["id"], version, session)
                await stream.aclose()

    async def _initialize(self) -> tuple[str | None, str]:
        """[25N/life §Initialization], as ``mcp.handshake`` steps it."""
        steps = mcp.handshake(self.url, partial(next, self._ids))
        step = next(steps)
        while True:
            if isinstance(step, mcp.Delete):
                answer = await self._close(step.session)
            else:
                answer = await self._post(step.message, step.version, step.session)
            try:
                step = steps.send(answer)
            except StopIteration as done:
                return done.value

    async def _asked(self, respond: mcp.Respond) -> mcp.Respond:
        """``respond`` with the answer the ``asker`` got (``ping`` is answered here)."""
        if self.asker is None or respond.method == "ping" or respond.request is None:
            return respond
        return mcp.Respond(respond.method, await self.asker(respond.request, self._ends))

    async def _answer(self, respond: mcp.Respond, version, session):
        """POST the answer to a request the server sent on the stream; failures are logged."""
        try:
            await self._post(respond.answer, version, session)
        except (HttpError, mcp.McpError) as exc:
            log.info("answering %s's request at %s failed: %s", respond.method, self.url, exc)

    async def _cancel(self, request_id, version, session):
        """Ask a legacy server to stop ``request_id`` [25N/canc §Cancellation Flow], shielded
        from the cancellation that may be why, with a deadline of its own (the call's may be
        what ran out). Failures are only logged."""
        limit = self.http.timeout
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(limit):
                    await self._post(mcp.cancel_note(request_id), version, session, spare=True)
            except (HttpError, mcp.McpError, TimeoutError) as exc:
                log.info("cancelling request %s at %s failed: %s", request_id, self.url, exc)

    async def _close(self, session):
        """DELETE ``session`` [25N/http §Session Management]; failures are only logged."""
        if not session:
            return
        try:
            await self.http.request("DELETE", self.url, headers={"Mcp-Session-Id": session,
                                    **self.auth}, deadline=self._left())  # fmt: skip
        except HttpError as exc:
            log.info("closing the session at %s failed: %s", self.url, exc)

    async def _post(self, message, version=None, session=None, spare=False,
                    extra=None) -> mcp.Reply:  # fmt: skip
        """POST one message; read a JSON body, or an event stream up to our response."""
        async with await self._open(message, version, session, extra, spare=spare) as stream:
            if stream.status in (202, 204) or "id" not in message:
                return mcp.Reply(stream.status, stream.headers, None)
            if 200 <= stream.status < 300 and stream.content_type == "text/event-stream":
                return mcp.Reply(stream.status, stream.headers,
                                 await self._from_stream(stream, message))  # fmt: skip
            return mcp.whole_reply(stream.status, stream.headers, stream.content_type,
                                   await _read(stream), message["id"])  # fmt: skip

    async def _open(self, message, version=None, session=None, extra=None, spare=False):
        """POST one message and return the response with its body unread (close it).
        ``spare``: a deadline of its own (a cancellation), not what is left of the call's.

        :raise McpError: the server redirected (not followed: the POST carries the credential).
        """
        headers = mcp.request_headers(self.auth, message, version, None, session, extra)
        if spare:
            deadline, read_timeout = self.http.timeout, None
        else:
            deadline = read_timeout = self._left()
        stream = await self.http.open("POST", self.url, headers=headers,
                                      data=json.dumps(message).encode(), deadline=deadline,
                                      read_timeout=read_timeout)  # fmt: skip
        if 300 <= stream.status < 400:
            await stream.aclose()
            raise mcp.redirect_refusal(stream.headers)
        return stream

    async def _from_stream(self, stream, message) -> dict:
        """The message answering ``message`` in an event stream; what comes before it is
        skipped [26/http §Receiving Messages]."""
        reader = mcp.EventReader(message["id"])
        try:
            async with aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    for _skipped in reader.feed(chunk):
                        pass
                    if reader.answer is not None:
                        return reader.answer
        except Interrupted:
            raise mcp.ConnectionLost(mcp.CUT_OFF) from None
        raise reader.unanswered(message["method"])

    def _left(self) -> float:
        """What is left of the call's deadline, for the next exchange.

        :raise Timeout: nothing.
        """
        return mcp.time_left(self._ends, self.url, self._task)


async def _read(stream) -> bytes:
    try:
        return await stream.read()
    except Interrupted:
        raise mcp.ConnectionLost(mcp.CUT_OFF) from None


async def _updates_in(stream, uris) -> AsyncIterator[dict]:
    """The ``notifications/resources/updated`` for ``uris`` in an event stream, read until it
    ends; nothing when the server answered otherwise (a refusal, a 405, a JSON body)."""
    if stream.status != 200 or stream.content_type != "text/event-stream":
        return
    parser = sse.Parser()
    async with aclosing(stream.chunks()) as chunks:
        async for chunk in chunks:
            for event in parser.feed(chunk):
                found = _updated(event.data)
                if found is not None and found["params"]["uri"] in uris:
                    yield found


def _updated(data: str) -> dict | None:
    """The ``notifications/resources/updated`` an event carries, else None."""
    try:
        message = parse_json(data)
    except (NotJson, TooDeep):
        return None
    if not isinstance(message, dict) or message.get("method") != "notifications/resources/updated":
        return None
    params = message.get("params")
    return message if isinstance(params, dict) and isinstance(params.get("uri"), str) else None
