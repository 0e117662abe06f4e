"""Long-lived streams (a legacy session's GET, a modern ``subscriptions/listen``) at the cost
of a coroutine each, never a thread.

One ``Hub`` per process holds them all and one watcher task looks for them every
``GATEWAY_WATCH_SECONDS``, in one trip to a pool thread whatever the number of streams: the
catalog version (when it moved, the fingerprints of the held agents' catalogs, in one query
for those not cached), which held keys are still usable and which held legacy sessions still
exist. A stream whose agent's listed tools, resources or prompts changed gets
``notifications/tools/list_changed`` (``resources/``, ``prompts/``) for each list that did;
one whose key was revoked or expired, or whose session was deleted, ends.

Caps: ``GATEWAY_MAX_STREAMS_PER_KEY`` streams per agent key and ``GATEWAY_MAX_STREAMS`` per
process. Beyond one, the answer is at once 429 (the key's) or 503 (the process's), with
``Retry-After`` and a sentence naming the cap: never a wait.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from ..protocol import server
from ..services import gateway as service
from . import upstream

log = logging.getLogger(__name__)

# A stream with nothing to say sends a comment this often [26/http: lines starting with ":"
# are ignored], so proxies do not close it as idle.
KEEPALIVE_SECONDS = 15
# What a refused stream is told to wait before trying again.
RETRY_AFTER_SECONDS = 30
_IDS = itertools.count(1)


class Full(Exception):
    """A cap is reached: ``status`` (429 or 503), ``str()`` the sentence saying which."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


@dataclass(eq=False)
class Stream:
    """One held stream: whose, what it last showed, and the flags the watcher sets."""

    key_id: int
    agent: service.AgentView
    session_sha256: str | None
    fingerprint: str
    id: int = field(default_factory=lambda: next(_IDS))
    changed: bool = False
    ended: bool = False
    final: bool = True  # send the closing event when it ends (not for a revoked key)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # A legacy session's resource subscriptions as last read ((connector id, upstream URI)),
    # the tasks relaying their updates (``Hub._feed``), and the updates waiting to be sent.
    subscriptions: frozenset = frozenset()
    feeds: list = field(default_factory=list)
    pending: list = field(default_factory=list)

    def push(self, message: dict):
        self.pending.append(message)
        self.wake.set()

    def notify(self, fingerprint: str):
        self.fingerprint, self.changed = fingerprint, True
        self.wake.set()

    def end(self, final: bool = False):
        self.ended, self.final = True, final
        self.wake.set()


class Hub:
    """This process's held streams and their watcher."""

    def __init__(self, pool, config):
        self.pool = pool
        self.http = None  # the async outbound client (``start``), for resource updates
        self.interval = config["GATEWAY_WATCH_SECONDS"]
        self.lifetime = config["GATEWAY_STREAM_SECONDS"]
        self.per_key = config["GATEWAY_MAX_STREAMS_PER_KEY"]
        self.total = config["GATEWAY_MAX_STREAMS"]
        self.streams: dict[int, Stream] = {}
        self.per_key_count: Counter = Counter()
        self.version: int | None = None
        self.draining = False
        self._task: asyncio.Task | None = None

    # -- admission ---------------------------------------------------------------------------

    def admit(self, caller, session_sha256, fingerprint) -> Stream:
        """A new held stream for ``caller``.

        :raise Full: the key's or the process's cap is reached, or the process is stopping."""
        if self.draining:
            raise Full(503, "This mcpadmin process is stopping: retry in a moment, another one "
                       "will answer.")  # fmt: skip
        if self.per_key_count[caller.key_id] >= self.per_key:
            raise Full(429, f"This agent key already holds {self.per_key} open streams, the "
                       "most one key may (MCPADMIN_GATEWAY_MAX_STREAMS_PER_KEY): close one, or "
                       f"retry in {RETRY_AFTER_SECONDS} seconds.")  # fmt: skip
        if len(self.streams) >= self.total:
            raise Full(503, f"This mcpadmin process holds {self.total} open streams, the most "
                       "it may (MCPADMIN_GATEWAY_MAX_STREAMS): retry in "
                       f"{RETRY_AFTER_SECONDS} seconds.")  # fmt: skip
        stream = Stream(caller.key_id, caller.agent, session_sha256, fingerprint)
        self.streams[stream.id] = stream
        self.per_key_count[caller.key_id] += 1
        return stream

    def release(self, stream: Stream):
        for task in stream.feeds:
            task.cancel()
        stream.feeds = []
        if self.streams.pop(stream.id, None) is not None:
            self.per_key_count[stream.key_id] -= 1
            if self.per_key_count[stream.key_id] <= 0:
                del self.per_key_count[stream.key_id]

    # -- the events of one stream ------------------------------------------------------------

    async def events(self, stream: Stream, opening: list, changed: list,
                     closing: dict | None):  # fmt: skip
        """The stream's bytes: ``opening`` (or a comment, so the client sees it open), then
        whenever the watcher says so, the ``changed`` notification of each part of the
        fingerprint that moved (tools, resources, prompts: ``Catalog.fingerprint``; None: not
        asked for), keep-alive comments when quiet, and ``closing`` after
        ``GATEWAY_STREAM_SECONDS``. Ends early when the watcher ends it."""
        shown = stream.fingerprint.split()
        try:
            for event in opening:
                yield server.sse_event(event)
            if not opening:
                yield b": stream open\n\n"
            ends = time.monotonic() + self.lifetime
            while not stream.ended:
                left = ends - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(stream.wake.wait(), min(left, KEEPALIVE_SECONDS))
                except TimeoutError:
                    if time.monotonic() < ends:
                        yield b": keep-alive\n\n"
                    continue
                stream.wake.clear()
                while stream.pending and not stream.ended:
                    yield server.sse_event(stream.pending.pop(0))
                if stream.changed and not stream.ended:
                    stream.changed = False
                    now = stream.fingerprint.split()
                    for before, after, note in zip(shown, now, changed, strict=False):
                        if before != after and note is not None:
                            yield server.sse_event(note)
                    shown = now
            if closing is not None and stream.final:
                yield server.sse_event(closing)
        finally:
            self.release(stream)

    # -- the watcher -------------------------------------------------------------------------

    def start(self, http=None):
        self.http = http
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="stream-watcher")

    def drain(self):
        """The process is stopping: end every held stream now (their clients reconnect
        elsewhere) and refuse new ones."""
        self.draining = True
        for stream in list(self.streams.values()):
            stream.end(final=True)

    async def stop(self):
        self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self):
        while True:
            await asyncio.sleep(self.interval)
            if not self.streams:
                continue
            try:
                await self.look()
            except Exception:  # the next look tries again; streams are not ended for it
                log.exception("the stream watcher could not read the database")

    async def look(self):
        """One look for every held stream (one pool trip, a few statements)."""
        held = list(self.streams.values())
        agents = {s.agent.id for s in held}
        keys = {s.key_id for s in held}
        sessions = {s.session_sha256 for s in held if s.session_sha256 is not None}
        state = await self.pool.run(service.watch_state, keys, sessions, agents, self.version)
        self.version = state.version
        for stream in held:
            if stream.key_id not in state.usable_keys or (
                stream.session_sha256 is not None and stream.session_sha256 not in state.sessions
            ):
                stream.end()
                continue
            fingerprint = state.fingerprints.get(stream.agent.id)
            if fingerprint is not None and fingerprint != stream.fingerprint:
                stream.notify(fingerprint)
            if stream.session_sha256 is not None:
                subscriptions = state.subscriptions.get(stream.session_sha256, frozenset())
                if subscriptions != stream.subscriptions:
                    self._refeed(stream, subscriptions)

    # -- resource updates ----------------------------------------------------------------------

    def _refeed(self, stream: Stream, subscriptions: frozenset):
        """(Re)start the tasks relaying the upstream resource updates a legacy session
        subscribed to: one per connector."""
        stream.subscriptions = subscriptions
        for task in stream.feeds:
            task.cancel()
        stream.feeds = []
        if not subscriptions or self.http is None:
            return
        by_connector: dict = {}
        for connector_id, uri in sorted(subscriptions):
            by_connector.setdefault(connector_id, []).append(uri)
        loop = asyncio.get_running_loop()
        stream.feeds = [loop.create_task(self._feed(stream, c, uris), name="resource-updates")
                        for c, uris in by_connector.items()]  # fmt: skip

    async def _feed(self, stream: Stream, connector_id: int, uris: list[str]):
        """Relay ``notifications/resources/updated`` for ``uris`` from the connector to the
        stream, under the agent-side URIs, while the stream holds. Failures are logged; the
        next change of the session's subscriptions starts again."""
        try:
            found = await self.pool.run(service.feed_target, stream.agent, connector_id, uris)
            if found is None:
                return
            target, names = found
            client = upstream.AsyncClient(self.http, target.url, target.headers,
                                          era=target.era, version=target.version, pool=None,
                                          deadline=self.lifetime)  # fmt: skip
            async with contextlib.aclosing(client.updates(uris)) as updates:
                async for message in updates:
                    uri = message["params"]["uri"]
                    params = {**message["params"], "uri": names.get(uri, uri)}
                    stream.push(server.notification("notifications/resources/updated", params))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relaying resource updates for a held stream failed")
