"""Calling a tool upstream for an agent: the pair's credential (as listing uses it), one retry
with a refreshed OAuth token after a 401, the agent's progress token swapped for a fresh one
upstream and back, and every failure turned into an ``isError`` result the agent reads: one
sentence naming the connector and, when a credential is at fault, who must reconnect what.

Credentials stay out of everything the agent receives: the headers' values are scrubbed
(``scrub``: whole, and any run of ``scrub.RUN`` characters of one) from each sentence built
here and from what the upstream sends back, before anything is cut. Legacy upstream sessions
are kept in a process-wide ``SessionPool`` (an optimisation only; a restart costs one
handshake).
"""

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from flask import current_app

from ..crypto import UnreadableSecret
from ..extensions import db
from ..models import Agent, AgentConnection, Connector
from ..protocol import mcp, server
from . import lifecycle, outbound, tokens
from .calllog import Outcome as Kind  # how a call ended (``Outcome.kind``): one list
from .credentials import auth_headers
from .lifecycle import Event
from .scrub import Scrubber

POOL = mcp.SessionPool()
MAX_MESSAGE = 300  # characters of an upstream's words quoted in a sentence
MIN_SCRUBBED = 8  # shorter credential values are scrubbed from our sentences only
# The upstream answered the call (a tool's own error included): the credential works.
ANSWERED = (Event.CALL_ANSWERED, None)


@dataclass
class Outcome:
    """The end of a call: ``result`` is the ``CallToolResult`` for the agent (the upstream's,
    or an ``isError`` one built here); ``error`` is None when the call worked, else one
    sentence (credential-free) fit for ``last_call_error``; ``upstream_ms`` is the time spent
    on it, a token refresh included; ``moves`` how it moves the credential's holder
    (``lifecycle``: the event and the sentence to record), None when it moves nothing;
    ``rpc_error``: the JSON-RPC error a modern agent gets instead of ``result`` (with HTTP
    400), for a request the agent must fix (``Target.missing_capability``)."""

    result: dict
    error: str | None
    kind: str
    upstream_ms: float
    moves: tuple[Event, str | None] | None = None
    rpc_error: dict | None = None


class Refused(Exception):
    """The call cannot go upstream (or go on): no credential, an unreadable one, a dead
    grant; ``kind`` is the call log's outcome, ``str()`` the agent's sentence."""

    def __init__(self, kind: Kind, message: str):
        super().__init__(message)
        self.kind = kind


def call_tool(connector: Connector, connection: AgentConnection | None, agent: Agent,
              tool_name: str, arguments: dict | None, progress_token=None, *,
              input_schema: dict | None = None,
              log_level: str | None = None) -> Iterator[dict | Outcome]:  # fmt: skip
    """Call ``tool_name`` (the upstream's own name) on ``connector`` for ``agent``: the
    JSON-RPC notifications to relay to the agent as they arrive (``notifications/progress``
    carrying ``progress_token``, only when one was given; ``notifications/message``), then
    one ``Outcome``.

    ``connection`` is the agent's connection to a per-agent connector (None: none yet, or a
    shared connector). ``input_schema``: the tool's stored (upstream) input schema, whose
    ``x-mcp-header`` properties a modern upstream expects as ``Mcp-Param-*`` headers.
    ``log_level``: the agent asked for log messages at this level; a modern upstream is asked
    for them too (it sends none otherwise).

    Closing the iterator early cancels the upstream call. Works on the session's objects and
    never commits: the outcome's move of the holder's state (``Outcome.moves``), a dead grant
    and a step-up are recorded on the holder (through ``lifecycle``/``tokens``; a refresh
    commits on its own, as always), and the era cache on the connector when it changed; the
    caller commits after the ``Outcome``, as after a sync.
    """
    started = time.monotonic()
    pair = _Pair(connector, connection, agent.name, tool_name)
    client = None
    try:
        pair.check_credential()
        headers = pair.headers()
        limit = current_app.config["CALL_TIMEOUT"]
        http = outbound.http(deadline=limit, read_timeout=limit, keep_alive=True)
        client = mcp.Client(http, connector.url, headers, era=connector.protocol_era,
                            version=connector.protocol_version, pool=POOL,
                            deadline=limit)  # fmt: skip
        upstream_token = secrets.token_urlsafe(16) if progress_token is not None else None
        meta = {"progressToken": upstream_token} if upstream_token else None

        def attempt():
            updates = client.call_tool(tool_name, arguments, meta=meta, input_schema=input_schema,
                                       log_level=log_level)  # fmt: skip
            return _relay(updates, lambda m: pair.relayed(m, upstream_token, progress_token))

        try:
            result = yield from attempt()
        except mcp.Unauthorized:
            if connector.auth_type != "oauth" or not headers:
                raise
            client.auth = pair.headers(force_refresh=True)
            result = yield from attempt()
    except Refused as exc:
        outcome = pair.failed(exc.kind, str(exc))
    except mcp.McpError as exc:
        outcome = pair.explained(exc)
    else:
        outcome = pair.succeeded(result)
    pair.settle(outcome)
    if client is not None and client.era and (client.era, client.version) != (
        connector.protocol_era, connector.protocol_version
    ):  # fmt: skip
        connector.protocol_era, connector.protocol_version = client.era, client.version
    outcome.upstream_ms = (time.monotonic() - started) * 1000
    yield outcome


@dataclass
class Target:
    """A call ready to go upstream from the data plane's event loop: where, in which era,
    with which credential headers (``pair`` remembers their values for scrubbing and words
    every sentence), the ids to load the connector and connection again by
    (``Target.bind``) when the outcome must change their state, and that state as the call
    found it (``holder``: whether the outcome changes it needs no database)."""

    url: str
    era: str | None
    version: str | None
    auth_type: str
    headers: dict
    tool: str
    arguments: dict | None
    input_schema: dict | None
    connector_id: int
    connection_id: int | None  # the agent's connection, for a per-agent connector
    holder: tuple[str, str | None] | None  # the credential holder's (status, last_error)
    pair: "_Pair"
    timeout: float
    upstream_token: str | None = None  # the progress token the upstream gets
    started: float = field(default_factory=time.monotonic)
    # What a modern upstream gets beside the call (``gateway.asks.carry``): the client
    # capabilities to declare, and a retry's ``inputResponses``/``requestState`` [26/mrtr].
    capabilities: dict | None = None
    inputs: dict | None = None

    def bind(self):
        """Load the connector (and connection) into this thread's session for ``pair``'s
        state changes (a refresh, a dead grant, a step-up, the era, the outcome's move). Call
        in a pool thread.

        :raise Refused: the connector was deleted meanwhile."""
        connector = db.session.get(Connector, self.connector_id)
        connection = db.session.get(AgentConnection, self.connection_id) if (
            self.connection_id is not None) else None  # fmt: skip
        if connector is None:
            raise Refused(Kind.DOWN, f"{self.pair.name} was deleted during the call.")
        self.pair.connector, self.pair.connection = connector, connection
        return connector

    def meta(self, progress_token) -> dict | None:
        """The ``_meta`` the upstream gets: a fresh progress token when the agent sent one."""
        if progress_token is None:
            return None
        self.upstream_token = secrets.token_urlsafe(16)
        return {"progressToken": self.upstream_token}

    def refreshed(self) -> dict:
        """New credential headers after the upstream refused the token (a forced refresh,
        under the refresh lock; committed). Call in a pool thread.

        :raise Refused: the credential cannot be refreshed (dead grant recorded)."""
        self.bind()
        self.headers = self.pair.headers(force_refresh=True)
        db.session.commit()
        return self.headers

    def explained(self, exc: mcp.McpError) -> Outcome:
        """The outcome of a failed call. An OAuth 401 or 403 may move its holder's state
        (committed), so call it in a pool thread for those (``needs_thread``); other failures
        change nothing here (their move waits in ``Outcome.moves``)."""
        if self.needs_thread(exc):
            self.bind()
            outcome = self.pair.explained(exc)
            db.session.commit()
            return outcome
        return self.pair.explained(exc)

    def missing_capability(self, exc: mcp.McpError) -> Outcome | None:
        """The outcome of a modern agent's call the upstream refused with -32021 for client
        capabilities (its ``data.requiredCapabilities``) the agent did not declare: the
        upstream saw the agent's own declaration of each one it names (``capabilities``, by
        ``asks.carry``: elicitation, sampling, roots), so the agent gets the error itself, to
        fix its request (``Outcome.rpc_error``) [26/base §Error Codes:
        MissingRequiredClientCapabilityError, HTTP 400]. None for any other failure, and for a
        capability mcpadmin does not pass on (not the agent's to fix: an ``isError`` result)."""
        if not isinstance(exc, mcp.RpcError) or exc.code != mcp.MISSING_CLIENT_CAPABILITY:
            return None
        data = exc.data if isinstance(exc.data, dict) else {}
        required = data.get("requiredCapabilities")
        if (
            not isinstance(required, dict)
            or not required
            or any(name not in mcp.ASK_CAPABILITIES for name in required)
        ):
            return None
        outcome = self.pair.failed(
            Kind.PROTOCOL,
            f"{self.pair.name} needs client capabilities the agent's client did not declare "
            f"for {self.tool} ({', '.join(sorted(required))}): declare them in the request's "
            f"_meta ({mcp.META}clientCapabilities) and call again.",
        )
        needed = {name: value if isinstance(value, dict) and len(str(value)) <= 1000 else {}
                  for name, value in required.items()}  # fmt: skip
        outcome.rpc_error = {"code": exc.code, "message": outcome.error,
                             "data": {"requiredCapabilities": needed}}  # fmt: skip
        return outcome

    def needs_thread(self, exc: mcp.McpError) -> bool:
        """Whether ``explained`` may write: an OAuth credential refused (a dead grant, a
        step-up)."""
        return self.auth_type == "oauth" and isinstance(exc, mcp.Unauthorized | mcp.Forbidden)

    def changes(self, outcome: Outcome, era: str | None, version: str | None) -> bool:
        """Whether ending the call writes anything (``finished``): the upstream answered in
        another era, or the outcome moves the holder's state from what the call found. Most
        calls write nothing (a working credential stays Connected)."""
        if era and (era, version) != (self.era, self.version):
            return True
        moves = outcome.moves
        return moves is not None and self.holder is not None and (
            lifecycle.moved(self.holder, *moves) != self.holder)  # fmt: skip

    def finished(self, outcome: Outcome, era: str | None, version: str | None):
        """Record the era the upstream answered in when it changed, and the outcome's move of
        the holder's state, from what they are now (committed). Pool thread."""
        try:
            connector = self.bind()
        except Refused:
            return  # deleted meanwhile: nothing to record
        if era and (era, version) != (connector.protocol_era, connector.protocol_version):
            connector.protocol_era, connector.protocol_version = era, version
        self.pair.settle(outcome)
        db.session.commit()


def prepare(connector: Connector, connection: AgentConnection | None, agent_name: str,
            tool_name: str, arguments: dict | None,
            input_schema: dict | None) -> "Target | Outcome":  # fmt: skip
    """The call's ``Target``, its credential read (and refreshed when due, committed by
    ``tokens``); or the ``Outcome`` of a call refused before sending (no credential, an
    unreadable one, a dead grant). Never commits anything else."""
    pair = _Pair(connector, connection if connector.per_agent else None, agent_name, tool_name)
    try:
        pair.check_credential()
        headers = pair.headers()
    except Refused as exc:
        return pair.failed(exc.kind, str(exc))
    place = lifecycle.holder(connector, pair.connection)
    return Target(connector.url, connector.protocol_era, connector.protocol_version,
                  connector.auth_type, headers, tool_name, arguments, input_schema, connector.id,
                  pair.connection.id if pair.connection is not None else None,
                  (place.status, place.last_error) if place is not None else None, pair,
                  current_app.config["CALL_TIMEOUT"])  # fmt: skip


def _relay(updates, relayed):
    """Yield the call's notifications that ``relayed`` keeps (as it returns them); return the
    call's result."""
    try:
        for item in updates:
            if isinstance(item, mcp.CallDone):
                return item.result
            message = relayed(item.message)
            if message is not None:
                yield message
    finally:
        updates.close()
    raise mcp.McpError("The server ended the call without an answer.")


class _Pair:
    """One call's connector, agent and credential: the sentences that name them, and the
    credential values to keep out of everything the agent receives."""

    def __init__(self, connector, connection, agent_name: str, tool_name: str):
        self.connector, self.connection, self.agent_name = connector, connection, agent_name
        self.tool = tool_name[:80]
        self.name, self.auth_type = connector.name, connector.auth_type
        self.where = f"on agent {agent_name}'s page" if connector.per_agent else (
            "on the connectors page")  # fmt: skip
        self.secrets: set[str] = set()
        self._ours = self._theirs = Scrubber(())  # our sentences; what the upstream sends

    def check_credential(self):
        """:raise Refused: no credential is stored where one is needed, or it is unreadable."""
        state = lifecycle.credential_state(self.connector, self.connection)
        if state == "missing" and self.connector.per_agent:
            raise Refused(Kind.NO_CREDENTIAL, f"Agent {self.agent_name} has no credential for "
                           f"{self.name}; connect it on its page.")  # fmt: skip
        if state == "missing":
            raise Refused(Kind.NO_CREDENTIAL, f"{self.name} has no credential yet: an operator "
                           f"must connect it {self.where}.")  # fmt: skip
        if state == "unreadable":
            raise Refused(Kind.NEEDS_RECONNECT, self.unreadable())

    def headers(self, force_refresh=False) -> dict:
        """The pair's credential headers (remembered for scrubbing).

        :raise Refused: the credential cannot be read or refreshed (a dead grant is marked on
            the holder by ``tokens``).
        """
        try:
            headers = auth_headers(self.connector, self.connection, force_refresh=force_refresh)
        except UnreadableSecret:
            raise Refused(Kind.NEEDS_RECONNECT, self.unreadable()) from None
        except tokens.NeedsReconnect:
            raise Refused(Kind.NEEDS_RECONNECT, self.expired()) from None
        except tokens.TokenError as exc:
            raise Refused(Kind.DOWN, f"{self.name}'s access token could not be refreshed "
                          f"({self._quoted(exc)}); try again later.") from None  # fmt: skip
        for value in headers.values():
            self.secrets.add(value)
            self.secrets.add(value.partition(" ")[2].strip())  # the token of "Bearer <token>"
        self.secrets.discard("")
        self._ours = Scrubber(self.secrets)
        self._theirs = Scrubber(s for s in self.secrets if len(s) >= MIN_SCRUBBED)
        return headers

    def unreadable(self) -> str:
        return (f"{self.name}'s stored credential can no longer be decrypted: an operator must "
                f"renew it {self.where}.")  # fmt: skip

    def expired(self) -> str:
        return (f"{self.name}'s authorization has expired: an operator must Reconnect "
                f"{self.name} {self.where}.")  # fmt: skip

    def explained(self, exc: mcp.McpError) -> Outcome:
        """What an upstream failure means for the agent, and how it moves the holder: a
        refused credential (a dead grant is recorded here), or a server down or too slow, is
        an error until a call or a sync works again."""
        name, tool = self.name, self.tool
        if isinstance(exc, mcp.Unauthorized):
            return self.failed(*self._unauthorized())
        if isinstance(exc, mcp.Forbidden):
            return self.failed(*self._forbidden(exc))
        if isinstance(exc, mcp.RpcError):
            return self.failed(Kind.PROTOCOL, f"{name} refused the call: "
                               f"{self._quoted(exc.rpc_message)}")  # fmt: skip
        if isinstance(exc, mcp.TimedOut):
            down = Kind.TIMEOUT, f"{name} did not answer the call to {tool} in time."
        elif isinstance(exc, mcp.ServerUnreachable):
            down = Kind.DOWN, f"{name} could not be reached: {self._quoted(exc)}"
        elif isinstance(exc, mcp.ConnectionLost):
            down = Kind.DOWN, f"{name} closed the connection before answering the call to {tool}."
        elif isinstance(exc, mcp.HttpStatusError) and exc.status >= 500:
            down = Kind.DOWN, f"{name} failed to answer the call to {tool}: {self._quoted(exc)}"
        else:
            return self.failed(Kind.PROTOCOL, f"The call to {name} failed: {self._quoted(exc)}")
        return self.failed(*down, Event.CALL_FAILED)

    def _unauthorized(self) -> tuple:
        """(kind, sentence, event) for a 401 after the last try; an OAuth holder's dead grant
        is recorded here (the holder must be bound: ``Target.needs_thread``)."""
        oauth = self.auth_type == "oauth"
        place = lifecycle.holder(self.connector, self.connection) if oauth else None
        if oauth and self.secrets and place is not None:
            lifecycle.apply(place, Event.GRANT_DEAD,
                            "The server refused the access token even after a refresh: "
                            "Reconnect.")  # fmt: skip
            return Kind.NEEDS_RECONNECT, self.expired(), None
        if self.secrets:
            what = "token" if self.auth_type in ("bearer", "oauth") else "API key"
            return Kind.NEEDS_RECONNECT, (f"{self.name} refused the stored {what} (401 "
                                          f"Unauthorized): an operator must replace it "
                                          f"{self.where}."), Event.CALL_FAILED  # fmt: skip
        return Kind.NO_CREDENTIAL, (f"{self.name} requires authentication (401 Unauthorized): "
                                    "an operator must set up its credential on the connectors "
                                    "page."), Event.CALL_FAILED  # fmt: skip

    def _forbidden(self, exc: mcp.Forbidden) -> tuple[Kind, str]:
        oauth = self.auth_type == "oauth"
        place = lifecycle.holder(self.connector, self.connection) if oauth else None
        if oauth and exc.insufficient_scope and place is not None:
            if tokens.step_up(place, exc.www_authenticate) == Event.SCOPE_NEEDED:
                return Kind.NEEDS_RECONNECT, (f"{self.name} needs more permissions for "
                                              f"{self.tool}: an operator must Reconnect "
                                              f"{self.name} {self.where}.")  # fmt: skip
            return Kind.PROTOCOL, (f"{self.name} refuses this account for {self.tool} (403 "
                                   "insufficient_scope) although it holds that permission; "
                                   "reconnecting would not help.")  # fmt: skip
        return Kind.PROTOCOL, (f"{self.name} refused the call (403 Forbidden): the credential "
                               f"is valid but not allowed to call {self.tool}.")  # fmt: skip

    def relayed(self, message: dict, upstream_token, agent_token, log_level: str | None = None,
                modern: bool = False) -> dict | None:  # fmt: skip
        """The notification as the agent gets it, or None to drop it: progress only for this
        call's token, given back as the agent's own [26/prog: tokens MUST be unique, so the
        upstream got a fresh one]; log messages as they are, unless below the agent's
        ``log_level`` (an upstream asked in another era may not have been told it), and none
        to a ``modern`` agent that did not opt in [26/chg Major 5]; nothing else."""
        method = message.get("method")
        if method == "notifications/progress":
            params = message.get("params")
            if upstream_token is None or not isinstance(params, dict):
                return None
            if params.get("progressToken") != upstream_token:
                return None
            message = {**message, "params": {**params, "progressToken": agent_token}}
        elif method != "notifications/message" or not _heard(message, log_level, modern):
            return None
        return self.scrubbed(message)

    def scrubbed(self, value):
        """``value`` (JSON, keys included) with every credential value of ``MIN_SCRUBBED``
        characters or more scrubbed (``Scrubber.json``): a copy when one occurs, else
        ``value`` itself."""
        return self._theirs.json(value)

    def succeeded(self, result: dict) -> Outcome:
        result = self.scrubbed(result)
        if result.get("isError") is True:
            texts = [c.get("text") for c in result.get("content") or () if isinstance(c, dict)]
            said = next((t for t in texts if isinstance(t, str) and t.strip()), None)
            error = f"{self.name}'s tool {self.tool} reported an error"
            error += f": {self._quoted(said)}" if said else "."
            return Outcome(result, self._ours.text(error), Kind.TOOL_ERROR, 0.0, ANSWERED)
        return Outcome(result, None, Kind.OK, 0.0, ANSWERED)

    def failed(self, kind: Kind, message: str, event: Event | None = None) -> Outcome:
        """The ``isError`` result of a call that failed; ``event``: how it moves the holder,
        recording ``message`` (scrubbed, as the agent reads it)."""
        message = self._ours.text(message)
        result = {"content": [{"type": "text", "text": message}], "isError": True}
        return Outcome(result, message, kind, 0.0, (event, message) if event else None)

    def settle(self, outcome: Outcome):
        """Move the holder's state as the outcome says (nothing is written when it stays as
        it is); the caller commits."""
        place = lifecycle.holder(self.connector, self.connection)
        if outcome.moves is not None and place is not None:
            lifecycle.apply(place, *outcome.moves)

    def _quoted(self, words) -> str:
        """Upstream words fit for one of our sentences: scrubbed of every credential value,
        then on one line of at most ``MAX_MESSAGE`` characters (cut last)."""
        return self._ours.line(words, MAX_MESSAGE)


def _heard(message: dict, log_level: str | None, modern: bool) -> bool:
    """Whether a log message reaches an agent at ``log_level`` (None: a legacy agent that set
    none hears them all [25N/logging]; a modern one, none)."""
    if log_level is None:
        return not modern
    params = message.get("params")
    level = params.get("level") if isinstance(params, dict) else None
    if level not in server.LOG_LEVELS or log_level not in server.LOG_LEVELS:
        return True  # not ours to judge: the upstream chose to send it
    return server.LOG_LEVELS.index(level) >= server.LOG_LEVELS.index(log_level)
