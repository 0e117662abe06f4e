"""An MCP client for Streamable HTTP that lists a server's tools (and, for a sync, its
resources, resource templates and prompts, with its capabilities) and calls them, in either
protocol era.

- **Modern** (2026-07-28): stateless requests, each carrying its version and client info in
  ``params._meta``; found by probing ``server/discover``.
- **Legacy** (2025-11-25, 2025-06-18, 2025-03-26): ``initialize`` → ``notifications/initialized``
  → requests with ``Mcp-Session-Id`` → DELETE.

Era detection follows ``shared/PROTOCOL.md`` §1.2: probe, adopt a mutual modern version, fall
back to ``initialize`` only on legacy signals (a 4xx without a modern error, ``-32601``, a
discover result listing only legacy versions) and never on 401/403/5xx/network errors. A known
era (cached by the caller) skips the probe; if it no longer works the server is probed again.

A tool call (``Client.call_tool``) streams: the notifications the server sends while the tool
runs come out as they arrive, then the result. Legacy sessions are kept in a ``SessionPool``
between calls, so a call costs no handshake.

No Flask, no database: the caller passes the ``Http`` client and the auth headers, and stores
``Listing.era``/``version`` (or the client's, after a call) for next time. Failures raise
``McpError`` (or a subclass) whose message is one sentence for the operator.

The rules of one exchange (the request and its headers, reading a JSON body or an event
stream, a call's answer and what it relays, the legacy handshake) are functions and small
readers without I/O, after ``Client``: it drives them over ``Http``, and the data plane's
``gateway.upstream.AsyncClient`` over its async client, so the two cannot drift apart.
"""

import base64
import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from functools import partial

from . import http as transport
from . import sse
from .http import Http, HttpError, Interrupted, Stream, Timeout
from .jsonbody import NotJson, TooDeep, parse_json
from .urls import HEADER_TOKEN, unsendable_header
from .versions import LEGACY_VERSIONS, MODERN_VERSIONS, WITHOUT_VERSION_HEADER

log = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcpadmin", "version": "0.1.0"}
# [26/http §Sending Messages] MUST list both; some SDK versions refuse */* with 406.
ACCEPT = "application/json, text/event-stream"
META = "io.modelcontextprotocol/"

MAX_PAGES = 200  # per list
MAX_TOOLS = 10_000  # per list: tools, resources, resource templates, prompts alike
SYNC_DEADLINE = 120.0  # seconds for a whole listing, every page and handshake included

# JSON-RPC codes [26/ver §Protocol Version Negotiation; 26/base §_meta; 26/chg Minor 12].
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022
MODERN_REQUEST_ERRORS = (HEADER_MISMATCH, MISSING_CLIENT_CAPABILITY, INVALID_PARAMS)
# The client capabilities mcpadmin declares in a legacy upstream session: the requests a server
# may send back during a call, which the gateway relays to the agent when the agent's own client
# declared them, and refuses with an error otherwise [25N/life §Capability Negotiation].
ASK_CAPABILITIES = {"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}
# ``resultType`` of a 2026-07-28 answer asking the client for input first [26/mrtr].
INPUT_REQUIRED = "input_required"

# [26/tools §Tool Names] SHOULD: 1–128 of A-Z a-z 0-9 _ - . (SEP-986). Warn, don't reject;
# pages flag every name outside it (``is_standard_tool_name``).
TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# RFC 9110 §5.6.2 token, for x-mcp-header names.
MAX_STORED_NAME = 255
# [26/http §Value Encoding]: a header value goes as is when it is printable ASCII without
# leading or trailing whitespace, else (or when it already looks encoded) as
# ``=?base64?<base64 of its UTF-8>?=``.
HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
HEADER_ENCODED = re.compile(r"=\?base64\?.*\?=")
SESSIONS_KEPT = 1000  # legacy sessions a pool keeps, least recently used dropped first
CUT_OFF = "The server closed the connection before its answer was complete."
SESSION_LOST_TWICE = "The server lost the session twice in a row (404); the call was not made."

# Request ids for tool calls, unique in the process: calls share pooled legacy sessions, and
# a session's ids must not collide [25N/base §Requests].
_CALL_IDS = itertools.count(1)


class McpError(Exception):
    """The server could not be listed; ``str()`` is one sentence for the operator."""

    status: int | None = None


class HttpStatusError(McpError):
    """The server answered an HTTP error status."""

    def __init__(self, message: str, status: int, www_authenticate: str = ""):
        super().__init__(message)
        self.status = status
        self.www_authenticate = www_authenticate


class Unauthorized(HttpStatusError):
    """401: the credential is missing, expired or refused."""


class Forbidden(HttpStatusError):
    """403: the credential is valid but not allowed (maybe ``insufficient_scope``)."""

    @property
    def insufficient_scope(self) -> bool:
        return "insufficient_scope" in self.www_authenticate


class ConnectionLost(McpError):
    """The connection broke before the answer was complete."""


class TimedOut(McpError):
    """The server did not answer, or not completely, in time."""


class ServerUnreachable(McpError):
    """The server could not be reached (refused connection, DNS, TLS)."""


class SessionRequired(McpError):
    """The server answered 400 "Missing session ID": it expects a legacy session."""


class RpcError(McpError):
    """The server answered a JSON-RPC error object."""

    def __init__(self, method: str, code, message: str, data=None, status: int = 200):
        text = str(message or "no message").strip()[:300]
        super().__init__(f"The server answered {method} with error {code}: {text}")
        self.code, self.rpc_message, self.data, self.status = code, text, data, status


# The lists a sync reads after ``tools/list``, each only when the server declared the
# capability [26/server/resources §Capabilities; 26/server/prompts §Capabilities]:
# (Listing field, method, result key, capability, what one item is called).
SURFACE_LISTS = (
    ("resources", "resources/list", "resources", "resources", "resource"),
    ("templates", "resources/templates/list", "resourceTemplates", "resources",
     "resource template"),
    ("prompts", "prompts/list", "prompts", "prompts", "prompt"),
)  # fmt: skip


@dataclass
class Listing:
    """One sync's listing. ``capabilities`` is what the server declared (initialize result or
    ``server/discover``; None: not learned). ``resources``/``templates``/``prompts`` are raw
    wire items, ``[]`` when the capability is not declared, None when they were not listed
    (the capabilities are unknown, or that list failed: a warning says so) and whatever was
    stored before should stay."""

    tools: list[dict]
    era: str  # "modern" or "legacy"
    version: str
    requests: int = 0
    ttl_ms: int = 0
    cache_scope: str | None = None
    warnings: list[str] = field(default_factory=list)
    capabilities: dict | None = None
    resources: list[dict] | None = None
    templates: list[dict] | None = None
    prompts: list[dict] | None = None


@dataclass
class CallUpdate:
    """A notification the server sent while the tool ran (``notifications/progress``,
    ``notifications/message``…), exactly as received."""

    message: dict


@dataclass
class CallDone:
    """The call's ``CallToolResult`` exactly as sent: ``content``, ``structuredContent``,
    ``isError`` and ``_meta`` untouched (``isError: true`` is a result, not an exception)."""

    result: dict


class SessionPool:
    """Legacy sessions kept between tool calls, so a call costs no handshake
    [25N/http §Session Management]. Process-local and thread-safe; keyed by the server's URL
    and a digest of the credential headers, so a session opened with one credential is never
    used with another. An optimisation only: losing it (a restart) costs one handshake. The
    least recently used sessions beyond ``size`` are forgotten (the server expires them)."""

    def __init__(self, size: int = SESSIONS_KEPT):
        self.size = size
        self._lock = threading.Lock()
        self._sessions: OrderedDict[tuple, tuple[str | None, str]] = OrderedDict()

    @staticmethod
    def key(url: str, headers: dict) -> tuple[str, str]:
        canonical = json.dumps(sorted((name.lower(), value) for name, value in headers.items()))
        return url, hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key) -> tuple[str | None, str] | None:
        """The pooled ``(session id, protocol version)``, or None."""
        with self._lock:
            found = self._sessions.get(key)
            if found is not None:
                self._sessions.move_to_end(key)
            return found

    def put(self, key, session: str | None, version: str):
        with self._lock:
            self._sessions[key] = (session, version)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.size:
                self._sessions.popitem(last=False)

    def drop(self, key, session: str | None):
        """Forget ``key``'s session if it is still ``session`` (another call may have replaced
        it with a live one meanwhile)."""
        with self._lock:
            found = self._sessions.get(key)
            if found is not None and found[0] == session:
                del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class Reply:
    """One answer as the rules read it (``result_of``): its status and headers, and the
    JSON-RPC response to our request found in the body (or an error object)."""

    status: int
    headers: dict
    message: dict | None
    text: str = ""


class ListProblem(McpError):
    """A list answer that cannot be followed (no list, endless pages, too many items)."""


class Restart(Exception):
    """Start again: the listing (an invalid cursor), or a call or listing in a new legacy
    session (the pooled one vanished: 404)."""


class Client:
    """Lists one server's tools (and resources, templates, prompts) or calls one of them.
    ``era``/``version`` are a cached verdict from earlier (None: probe); ``capabilities``
    the server's capabilities cached with them (a remembered modern era skips
    ``server/discover`` when they are given). ``pool`` keeps legacy sessions between calls
    (without one, a call opens a session and closes it). ``deadline`` bounds the whole
    listing or call. Not thread-safe; build one per sync or call (the pool is what is
    shared)."""

    def __init__(self, http: Http, url: str, headers: dict | None = None, *, era=None,
                 version=None, max_pages=MAX_PAGES, max_tools=MAX_TOOLS,
                 deadline=SYNC_DEADLINE, pool: SessionPool | None = None,
                 capabilities: dict | None = None):  # fmt: skip
        self.http, self.url, self.auth = http, url, dict(headers or {})
        self.era, self.version = era, version
        self.capabilities = capabilities if isinstance(capabilities, dict) else None
        self.max_pages, self.max_tools = max_pages, max_tools
        self.pool = pool
        self.requests = 0
        self._pages_listed = 0  # pages answered in this listing, all attempts
        self._ends = time.monotonic() + deadline
        self._next_id = 0
        self._task = "listing its tools"  # for the deadline's message
        self._surface = False  # list resources, templates and prompts after the tools

    def list_tools(self, *, surface: bool = False) -> Listing:
        """Every tool the server lists, all pages, in one era; with ``surface``, then, in the
        same session, its resources, resource templates and prompts, each only when the
        server declared the capability (``Listing``; a failed list after the tools is a
        warning, not a failure). Without it those stay None.

        :raise Unauthorized, Forbidden: 401/403 (the caller may refresh and retry).
        :raise McpError: anything else (HTTP failures included, and a credential header that
            cannot be sent), one sentence for the operator.
        """
        check_sendable(self.auth)
        self._surface = surface
        try:
            return self._list_tools()
        except HttpError as exc:
            raise translated(exc) from exc

    def call_tool(self, name: str, arguments: dict | None = None, *, meta: dict | None = None,
                  input_schema: dict | None = None,
                  log_level: str | None = None) -> Iterator[CallUpdate | CallDone]:  # fmt: skip
        """Call tool ``name``: a ``CallUpdate`` for each notification the server sends while
        it runs, as it arrives, then one ``CallDone`` [26/tools §Calling Tools]. ``meta`` goes
        into ``params._meta`` (a ``progressToken``, say) beside the modern envelope; the tool's
        listed ``input_schema`` gives the ``Mcp-Param-*`` headers a modern call carries;
        ``log_level`` asks a modern server for log messages (a legacy one sends them anyway).
        Afterwards ``era``/``version`` say which era answered.

        Closing the iterator before ``CallDone`` cancels the call: a modern request's stream is
        closed [26/http §Cancellation]; a legacy server gets ``notifications/cancelled``, then
        the stream is closed [25N/canc]. A legacy timeout sends the cancellation too.

        :raise Unauthorized, Forbidden: 401/403 (before anything was yielded: refresh, retry).
        :raise RpcError: the server answered the call with a JSON-RPC error.
        :raise TimedOut, ServerUnreachable, ConnectionLost, McpError: anything else, one
            sentence for the operator.
        """
        check_sendable(self.auth)
        self._task = f"answering the call to {name[:80]!r}"
        remembered = self.era == "legacy" or (
            self.era == "modern" and self.version in MODERN_VERSIONS
        )
        calls = self._tool_call(name, arguments, meta, input_schema, log_level)
        try:
            try:
                first = next(calls)
            except McpError as exc:
                if not remembered or not era_signal(exc):
                    raise
                # Refused before it ran, in a way that may mean the server changed eras:
                # probe again [26/ver §Backward Compatibility with Initialization-Based Versions].
                log.info("%s refused a call as a %s server (%s); probing again", self.url,
                         self.era, exc)  # fmt: skip
                self.era = self.version = None
                calls = self._tool_call(name, arguments, meta, input_schema)
                first = next(calls)
            yield first
            yield from calls
        except HttpError as exc:
            raise translated(exc) from exc
        finally:
            calls.close()

    def _list_tools(self) -> Listing:
        remembered = {"legacy": self._legacy}
        if self.version in MODERN_VERSIONS:
            remembered["modern"] = partial(self._modern, self.version)
        if self.era not in remembered:
            return self._detected()
        try:
            return remembered[self.era]()
        except (Unauthorized, Forbidden, ConnectionLost):
            raise  # the credential or the network, not the era: probing would not help
        except McpError as exc:
            if self._pages_listed:
                raise  # the era works; the listing itself failed
            # Any other failure may mean the server changed eras: probe again
            # [26/http §Backward Compatibility]. If that fails too, what the remembered era
            # said is the better account.
            log.info("%s failed as a %s server (%s); probing again", self.url, self.era, exc)
            try:
                return self._detected()
            except (Unauthorized, Forbidden):
                raise
            except McpError:
                raise exc from None

    def _detected(self) -> Listing:
        """Probe for the era, then list in it."""
        version = self._probe()
        return self._modern(version) if version else self._legacy()

    # -- era detection ---------------------------------------------------------------------

    def _probe(self) -> str | None:
        """The modern version to use, or None for legacy [26/ver §Protocol Version Negotiation;
        26/http §Backward Compatibility]."""
        offered = MODERN_VERSIONS[0]
        for _attempt in range(2):
            reply = self._post(self._request("server/discover", {}, offered), offered)
            if reply.status in (401, 403):
                raise _status_error(reply, self.url)
            if reply.status >= 500:
                raise _status_error(reply, self.url)
            error = (reply.message or {}).get("error")
            if 200 <= reply.status < 300 and reply.message is not None and error is None:
                result = reply.message.get("result")
                supported = result.get("supportedVersions") if isinstance(result, dict) else None
                mutual = _mutual(supported if isinstance(supported, list) else [])
                if mutual:
                    self.capabilities = _capabilities(result)
                return mutual  # None: only legacy versions, or a result we cannot read
            if not isinstance(error, dict):
                if 200 <= reply.status < 300 and reply.message is None:
                    return None  # a 2xx body we cannot parse: legacy (SDK behaviour)
                if 400 <= reply.status < 500:
                    return None  # a 4xx without a JSON-RPC error: legacy
                raise _status_error(reply, self.url)
            code = error.get("code")
            if code == UNSUPPORTED_VERSION:
                data = error.get("data") if isinstance(error.get("data"), dict) else {}
                supported = [v for v in data.get("supported") or [] if isinstance(v, str)]
                mutual = _mutual(supported)
                if mutual and mutual != offered:
                    offered = mutual
                    continue  # retry once with the mutual version
                if mutual is None and any(v in LEGACY_VERSIONS for v in supported):
                    return None
                raise McpError(
                    "The server speaks only protocol versions mcpadmin does not know "
                    f"({', '.join(supported) or 'none listed'})."
                )
            if code in MODERN_REQUEST_ERRORS and reply.status == 400:
                # A modern server refusing our envelope: per spec, fix the request, never fall
                # back [26/http §Backward Compatibility].
                raise RpcError("server/discover", code, error.get("message"), status=400)
            if 400 <= reply.status < 500 or code == METHOD_NOT_FOUND:
                return None  # -32601, -32600, -32000, "Session not found"…: legacy
            raise RpcError("server/discover", code, error.get("message"), status=reply.status)
        raise McpError("The server kept refusing every protocol version mcpadmin offered.")

    # -- modern era ------------------------------------------------------------------------

    def _modern(self, version: str) -> Listing:
        for _attempt in range(2):
            listing = Listing(tools=[], era="modern", version=version, ttl_ms=None)
            try:
                self._pages(listing, partial(self._call_modern, version))
                break
            except Restart:
                continue
        else:
            raise McpError("The server refused its own page cursor twice; listing abandoned.")
        listing.ttl_ms = listing.ttl_ms or 0
        return self._finish(listing)

    def _call_modern(self, version, method, params):
        reply = self._post(self._request(method, params, version), version, method)
        return result_of(reply, self.url, method)

    def _discover(self, version) -> dict | None:
        """The capabilities of a modern server whose era was remembered without them
        [26/server/discover]; None (with a warning from the caller) if it will not say."""
        try:
            return _capabilities(self._call_modern(version, "server/discover", {}))
        except (Unauthorized, Forbidden, ConnectionLost, TimedOut):
            raise
        except McpError as exc:
            log.info("server/discover at %s failed after tools/list: %s", self.url, exc)
            return None

    # -- legacy era ------------------------------------------------------------------------

    def _legacy(self) -> Listing:
        for _attempt in range(2):
            session, version = self._initialize()
            listing = Listing(tools=[], era="legacy", version=version)
            try:
                self._pages(listing, partial(self._call_legacy, session, version))
            except Restart:
                continue  # the session vanished (404): initialize again, once
            except BaseException:
                self._close(session, version)
                raise
            self._close(session, version)
            return self._finish(listing)
        raise McpError("The server lost the session twice in a row (404); listing abandoned.")

    def _initialize(self) -> tuple[str | None, str]:
        """[25N/life §Initialization]: the session id (may be None) and the agreed version;
        the server's capabilities from the initialize result go to ``self.capabilities``."""
        steps = handshake(self.url, self._new_id)
        step = next(steps)
        while True:
            if isinstance(step, Delete):
                answer = self._close(step.session, None)
            else:
                answer = self._post(step.message, step.version, session=step.session)
                if step.message.get("method") == "initialize" and answer.message:
                    self.capabilities = _capabilities(answer.message.get("result"))
            try:
                step = steps.send(answer)
            except StopIteration as done:
                return done.value

    def _call_legacy(self, session, version, method, params):
        request = self._request(method, params)
        reply = self._post(request, legacy_version_header(version), session=session)
        if reply.status == 404 and session:
            raise Restart()  # [25N/http §Session Management]: start a new session
        return result_of(reply, self.url, method, initialized=True)

    def _close(self, session, version):
        """DELETE the session [25N/http §Session Management]; 405 (not allowed) is fine."""
        if not session:
            return
        headers = {"Mcp-Session-Id": session, **self.auth}
        if version and version != WITHOUT_VERSION_HEADER:
            headers["MCP-Protocol-Version"] = version
        try:
            self.requests += 1
            self._http().request("DELETE", self.url, headers=headers)
        except HttpError as exc:
            log.info("closing the session at %s failed: %s", self.url, exc)

    # -- tool calls ------------------------------------------------------------------------

    def _tool_call(
        self, name, arguments, meta, input_schema, log_level=None
    ) -> Iterator[CallUpdate | CallDone]:
        """One attempt at the call, in the remembered era or the one a probe finds."""
        version = self.version if self.era == "modern" and self.version in MODERN_VERSIONS else None
        if version is None and self.era != "legacy":
            version = self._probe()
        if version is None:
            yield from self._tool_call_legacy(name, arguments, meta)
            return
        self.era, self.version = "modern", version
        request, headers = tool_call(name, arguments, meta, version=version,
                                     input_schema=input_schema, log_level=log_level)  # fmt: skip
        yield from self._streamed(request, version, headers)

    def _tool_call_legacy(self, name, arguments, meta) -> Iterator[CallUpdate | CallDone]:
        """The call in a pooled session (or a new one); a 404 on it means the session is gone:
        initialize again, once [25N/http §Session Management]."""
        key = SessionPool.key(self.url, self.auth)
        pooled = self.pool.get(key) if self.pool is not None else None
        for _attempt in range(2):
            session, version = pooled or self._initialize()
            self.era, self.version = "legacy", version
            if self.pool is not None and not pooled:
                self.pool.put(key, session, version)
            request, _headers = tool_call(name, arguments, meta)
            header = legacy_version_header(version)
            cancel = partial(self._cancel, request["id"], header, session)
            try:
                yield from self._streamed(request, header, session=session, cancel=cancel)
                return
            except Restart:
                if self.pool is not None:
                    self.pool.drop(key, session)
                pooled = None
            finally:
                if self.pool is None:
                    self._close(session, version)
        raise McpError(SESSION_LOST_TWICE)

    def _streamed(self, request, version, extra=None, session=None,
                  cancel=None) -> Iterator[CallUpdate | CallDone]:  # fmt: skip
        """POST ``request`` and relay what comes back (``CallReader``). ``cancel`` runs when
        the request may still be running upstream and no answer will be read (closed early,
        timed out, stream broken).

        :raise Restart: 404 on ``session`` (the session is gone).
        """
        try:
            stream = self._open(request, version, "tools/call", session, extra)
        except Timeout:
            if cancel is not None:  # sent, maybe running: tell the server to stop
                cancel()
            raise
        reader = CallReader(self.url, request, version, session)
        try:
            if not reader.opened(stream.status, stream.headers, stream.content_type):
                yield reader.whole(_read(stream))
                return
            for chunk in _chunks(stream):
                for item in reader.feed(chunk):
                    if isinstance(item, Respond):
                        self._answer(item, version, session)
                    else:
                        yield item
                if reader.answered:
                    return
            raise reader.unanswered()
        finally:
            if not reader.answered and cancel is not None:
                cancel()
            stream.close()

    def _answer(self, respond: "Respond", version, session):
        """POST the answer to a request a legacy server sent on the stream; failures are only
        logged."""
        try:
            self._post(respond.answer, version, session=session)
        except (HttpError, McpError) as exc:
            log.info("answering %s's request at %s failed: %s", respond.method, self.url, exc)

    def _cancel(self, request_id, version, session):
        """Ask a legacy server to stop ``request_id`` [25N/canc §Cancellation Flow], with a
        deadline of its own (the call's may be what ran out). Failures are only logged."""
        spare = replace(self.http, deadline=self.http.timeout, read_timeout=None)
        try:
            self._post(cancel_note(request_id), version, session=session, http=spare)
        except (HttpError, McpError) as exc:
            log.info("cancelling request %s at %s failed: %s", request_id, self.url, exc)

    # -- pagination ------------------------------------------------------------------------

    def _pages(self, listing: Listing, call):
        """Every list of the listing, in one era: ``call(method, params)`` answers a result.
        Tools first (a failure fails the listing), then each surface list the server
        declared (a failure is a warning, and that list stays None)."""
        listing.tools = self._list(partial(call, "tools/list"), "tools", "tool", listing)
        listing.capabilities = self.capabilities
        if not self._surface:
            return
        if listing.era == "modern" and self.capabilities is None:
            self.capabilities = self._discover(listing.version)
        listing.capabilities = self.capabilities
        if listing.capabilities is None:
            listing.warnings.append(
                "The server did not say what it offers besides tools; its stored resources, "
                "templates and prompts are kept."
            )
            return
        for name, method, key, capability, noun in SURFACE_LISTS:
            if not isinstance(listing.capabilities.get(capability), dict):
                setattr(listing, name, [])  # not offered [26/server/resources §Capabilities]
                continue
            try:
                setattr(listing, name, self._list(partial(call, method), key, noun))
            except RpcError as exc:
                if name == "templates" and exc.code == METHOD_NOT_FOUND:
                    setattr(listing, name, [])  # resources without templates
                    continue
                listing.warnings.append(f"Listing the {noun}s failed ({exc}); the stored "
                                        f"{noun}s are kept.")  # fmt: skip
            except ListProblem as exc:
                listing.warnings.append(f"{exc} The stored {noun}s are kept.")
            except Restart:
                # A refused cursor or a lost session after the tools were listed: the tools
                # stand; this list is left for the next sync.
                listing.warnings.append(f"The server broke off listing its {noun}s (a page "
                                        f"was refused); the stored {noun}s are kept.")  # fmt: skip

    def _list(self, call, key: str, noun: str, listing: Listing | None = None) -> list:
        """Follow ``nextCursor`` to the end [26/page §Implementation Guidelines], bounded;
        ``listing`` (tools only) collects the cache fields of a modern answer.

        :raise Restart: the server refused its own cursor (drop everything, start over).
        :raise ListProblem: an answer without the list, or too many pages or items.
        """
        items, cursor, seen = [], None, set()
        for _page in range(self.max_pages):
            params = {} if cursor is None else {"cursor": cursor}
            try:
                result = call(params)
            except RpcError as exc:
                if cursor is not None and exc.code == INVALID_PARAMS:
                    raise Restart() from exc  # invalid cursor: drop pages, start over
                raise
            page = result.get(key)
            if not isinstance(page, list):
                raise ListProblem(f"The server's {noun} list answer has no {noun} list."
                                  if key != "tools" else
                                  "The server's tools/list answer has no tool list.")  # fmt: skip
            self._pages_listed += 1
            items.extend(page)
            if len(items) > self.max_tools:
                raise ListProblem(f"The server lists more than {self.max_tools} {noun}s; stopped.")
            if listing is not None and listing.era == "modern":
                _cache_fields(listing, result)
            cursor = result.get("nextCursor")
            if cursor is None:
                return items
            if not isinstance(cursor, str) or cursor in seen:
                raise ListProblem("The server sent the same page cursor twice; stopped listing.")
            seen.add(cursor)
        raise ListProblem(f"The server's {noun} list goes on past {self.max_pages} pages; stopped.")

    def _finish(self, listing: Listing) -> Listing:
        listing.tools, warnings = checked_tools(listing.tools)
        listing.warnings[:0] = warnings  # after them, those of the lists that followed
        for warning in listing.warnings:
            log.warning("%s: %s", self.url, warning)
        listing.requests = self.requests
        self.era, self.version = listing.era, listing.version
        return listing

    # -- one exchange ----------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _request(self, method, params, modern_version=None) -> dict:
        return request_message(method, params, self._new_id(), modern_version)

    def _post(self, payload, version=None, mcp_method=None, session=None, http=None) -> Reply:
        """POST one message; read a JSON body, or an event stream up to our response."""
        with self._open(payload, version, mcp_method, session, http=http) as stream:
            if stream.status in (202, 204) or "id" not in payload:
                return Reply(stream.status, stream.headers, None)
            if 200 <= stream.status < 300 and stream.content_type == "text/event-stream":
                return Reply(stream.status, stream.headers, self._from_stream(stream, payload))
            return whole_reply(stream.status, stream.headers, stream.content_type,
                               _read(stream), payload["id"])  # fmt: skip

    def _open(self, payload, version=None, mcp_method=None, session=None, extra=None,
              http=None) -> Stream:  # fmt: skip
        """POST one message and return the response with its body unread (close it).

        :raise McpError: the server redirected (not followed: the POST carries the credential).
        """
        headers = request_headers(self.auth, payload, version, mcp_method, session, extra)
        body = json.dumps(payload).encode()
        self.requests += 1
        stream = (http or self._http()).open("POST", self.url, headers=headers, data=body)
        if 300 <= stream.status < 400:
            stream.close()
            raise redirect_refusal(stream.headers)
        return stream

    def _from_stream(self, stream: Stream, payload) -> dict:
        """The message answering ``payload`` in an SSE body; notifications, pings and server
        requests before it are skipped [26/http §Receiving Messages]."""
        reader = EventReader(payload["id"])
        for chunk in _chunks(stream):
            for _skipped in reader.feed(chunk):
                pass
            if reader.answer is not None:
                return reader.answer
        raise reader.unanswered(payload["method"])

    def _http(self) -> Http:
        """The client, with a deadline no later than the end of the whole listing."""
        remaining = time_left(self._ends, self.url, self._task)
        per_call = self.http.deadline or 3 * self.http.timeout
        return replace(self.http, deadline=min(per_call, remaining))

    # -- any other request (resources/read, prompts/get, completion/complete…) -------------

    def request(self, method: str, params: dict, *, name: str | None = None,
                log_level: str | None = None, capabilities: dict | None = None,
                kinds=("complete",)) -> dict:  # fmt: skip
        """Send one request the gateway forwards (``forwarded_request``) and return its
        result, in the remembered era or the one a probe finds; a remembered era refused in a
        way that may mean the server changed eras is probed again, once. Notifications and
        server requests before the answer are skipped. Afterwards ``era``/``version`` say
        which era answered. A modern server is told the client ``capabilities``; ``kinds``:
        the ``resultType`` values taken (``result_of``).

        :raise Unauthorized, Forbidden: 401/403 (the caller may refresh and retry).
        :raise RpcError: the server answered with a JSON-RPC error.
        :raise TimedOut, ServerUnreachable, ConnectionLost, McpError: anything else, one
            sentence for the operator.
        """
        check_sendable(self.auth)
        self._task = f"answering {method}"
        remembered = self.era == "legacy" or (
            self.era == "modern" and self.version in MODERN_VERSIONS
        )
        try:
            try:
                return self._request_once(method, params, name, log_level, capabilities, kinds)
            except McpError as exc:
                if not remembered or not era_signal(exc):
                    raise
                log.info("%s refused %s as a %s server (%s); probing again", self.url, method,
                         self.era, exc)  # fmt: skip
                self.era = self.version = None
                return self._request_once(method, params, name, log_level, capabilities, kinds)
        except HttpError as exc:
            raise translated(exc) from exc

    def _request_once(self, method, params, name, log_level, capabilities, kinds) -> dict:
        version = self.version if self.era == "modern" and self.version in MODERN_VERSIONS else None
        if version is None and self.era != "legacy":
            version = self._probe()
        if version is not None:
            self.era, self.version = "modern", version
            message, headers = forwarded_request(method, params, version=version, name=name,
                                                 log_level=log_level,
                                                 capabilities=capabilities)  # fmt: skip
            with self._open(message, version, method, extra=headers) as stream:
                if 200 <= stream.status < 300 and stream.content_type == "text/event-stream":
                    reply = Reply(stream.status, stream.headers, self._from_stream(stream, message))
                else:
                    reply = whole_reply(stream.status, stream.headers, stream.content_type,
                                        _read(stream), message["id"])  # fmt: skip
            return result_of(reply, self.url, method, kinds=kinds)
        key = SessionPool.key(self.url, self.auth)
        pooled = self.pool.get(key) if self.pool is not None else None
        for _attempt in range(2):
            session, version = pooled or self._initialize()
            self.era, self.version = "legacy", version
            if self.pool is not None and not pooled:
                self.pool.put(key, session, version)
            message, _headers = forwarded_request(method, params)
            try:
                reply = self._post(message, legacy_version_header(version), session=session)
            finally:
                if self.pool is None:
                    self._close(session, version)
            if reply.status == 404 and session:  # the session is gone [25N/http §Session…]
                if self.pool is not None:
                    self.pool.drop(key, session)
                pooled = None
                continue
            return result_of(reply, self.url, method, initialized=True)
        raise McpError(SESSION_LOST_TWICE)


# -- the rules of one exchange, without I/O ----------------------------------------------------
# ``Client`` above and the data plane's ``gateway.upstream.AsyncClient`` both drive these: they
# build what to send, and read what came back, so the two clients cannot drift apart.


def check_sendable(auth: dict):
    """:raise McpError: a credential header would hold characters HTTP cannot carry."""
    unsendable = unsendable_header(auth)
    if unsendable:
        raise McpError(
            f"The stored credential cannot be sent: its {unsendable} header would hold "
            "characters HTTP cannot carry (outside Latin-1, or a line break). Re-enter it."
        )


def time_left(ends: float, url: str, task: str) -> float:
    """Seconds left until ``ends`` (``time.monotonic``) for the next exchange of ``task``.

    :raise Timeout: none are left.
    """
    remaining = ends - time.monotonic()
    if remaining <= 0:
        raise Timeout(f"{url} did not finish {task} in time.")
    return remaining


def request_message(method, params, request_id, modern_version=None,
                    capabilities=None) -> dict:  # fmt: skip
    """A JSON-RPC request; with ``modern_version``, carrying the modern envelope in
    ``params._meta`` beside what ``params`` already holds there (``capabilities``: the client
    capabilities declared; none by default)."""
    params = dict(params)
    if modern_version:  # [26/base §_meta]: version and capabilities MUST, client info SHOULD
        params["_meta"] = {
            **(params.get("_meta") or {}),
            META + "protocolVersion": modern_version,
            META + "clientInfo": CLIENT_INFO,
            META + "clientCapabilities": dict(capabilities or {}),
        }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def tool_call(name, arguments=None, meta=None, *, version=None, input_schema=None,
              log_level=None, capabilities=None, inputs=None) -> tuple[dict, dict]:  # fmt: skip
    """The ``tools/call`` request [26/tools §Calling Tools] and the headers it adds, its id
    unique in the process. With a modern ``version``: the envelope (declaring
    ``capabilities``), the ``logLevel`` opt-in, ``inputs`` (a retry's ``inputResponses`` and
    ``requestState`` [26/mrtr], as they are) and ``Mcp-Name``/``Mcp-Param-*``; without
    (legacy): none of them."""
    params = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta:
        params["_meta"] = dict(meta)
    if version is None:
        return request_message("tools/call", params, next(_CALL_IDS)), {}
    if log_level:  # [26/chg Major 5]: no log messages without this opt-in
        params["_meta"] = {**(params.get("_meta") or {}), META + "logLevel": log_level}
    params.update(inputs or {})
    request = request_message("tools/call", params, next(_CALL_IDS), version, capabilities)
    # [26/http §Standard Request Headers]: Mcp-Name is REQUIRED for tools/call.
    headers = {"Mcp-Name": header_value(name), **param_headers(input_schema, arguments)}
    return request, headers


def request_headers(auth, message, version=None, mcp_method=None, session=None,
                    extra=None) -> dict:  # fmt: skip
    """The headers of the POST carrying ``message``: ``version`` is the modern one, the
    legacy session's (None for 2025-03-26 and before ``initialize``), ``session`` its id."""
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", **auth}
    if version:
        headers["MCP-Protocol-Version"] = version
    if version in MODERN_VERSIONS:  # [26/http §Standard Request Headers]
        headers["Mcp-Method"] = mcp_method or message["method"]
    if session:
        headers["Mcp-Session-Id"] = session
    headers.update(extra or {})
    return headers


def redirect_refusal(headers) -> McpError:
    """Why a 3xx answer to a POST is not followed: the POST carries the credential."""
    target = headers.get("Location", "another address")
    return McpError(
        f"The server redirected to {target[:200]}; redirects are not followed "
        "with credentials, so put the final address in the connector URL."
    )


def whole_reply(status: int, headers, content_type: str, raw: bytes, request_id) -> Reply:
    """A whole JSON (or error) body, with the response to ``request_id`` found in it.

    :raise McpError: a 2xx body that is neither JSON nor an event stream, or JSON too deep.
    """
    if 200 <= status < 300 and content_type != "application/json":
        raise McpError(
            f"The server answered with Content-Type {content_type or 'none'!r}, "
            "neither JSON nor an event stream."
        )
    message = _match(_json(raw), request_id, strict=200 <= status < 300)
    text = raw.decode("utf-8", errors="replace")[:200]
    return Reply(status, headers, message, text)


def result_of(reply: Reply, url: str, method: str, initialized: bool = False,
              kinds=("complete",)) -> dict:  # fmt: skip
    """The ``result`` of a reply, or the error it carries as an exception.
    ``initialized``: the request was sent in a legacy session mcpadmin initialized; ``kinds``:
    the ``resultType`` values the caller takes."""
    error = (reply.message or {}).get("error")
    if reply.status >= 300 and not isinstance(error, dict):
        raise _status_error(reply, url, method)
    if reply.status in (401, 403):
        raise _status_error(reply, url, method)
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if reply.status == 400 and _is_session_required(message):
            raise SessionRequired(_session_required(method, initialized))
        raise RpcError(method, code, message, error.get("data"), reply.status)
    if reply.status == 202:
        raise McpError(f"The server accepted {method} but sent no answer (202).")
    if reply.message is None:
        raise McpError(f"The server's answer to {method} is not a JSON-RPC response.")
    result = reply.message.get("result")
    if not isinstance(result, dict):
        raise McpError(f"The server's answer to {method} has no result object.")
    kind = result.get("resultType", "complete")  # [26/base §ResultType]: absent = complete
    if kind not in kinds:
        raise McpError(f"The server answered {method} with resultType {str(kind)[:40]!r}.")
    return result


class EventReader:
    """The JSON-RPC messages of an event stream (SSE) up to the answer to ``request_id``, fed
    chunk by chunk as they arrive; keep-alives, empty and non-``message`` events skipped, the
    ones that are not JSON counted [26/http §Receiving Messages]."""

    def __init__(self, request_id):
        self.request_id = request_id
        self.answer: dict | None = None  # the response to our request, once it came
        self.unreadable = 0
        self._events = sse.Parser()

    def feed(self, chunk: bytes) -> Iterator:
        """The messages ``chunk`` completes before the answer (notifications, server requests,
        batches of them), in order; the answer itself goes to ``answer`` and ends the feed.

        :raise McpError: the stream is unusable, or carried JSON nested too deeply.
        """
        try:
            events = self._events.feed(chunk)
        except sse.SseError as exc:
            raise McpError(f"The server's event stream is unusable: {exc}.") from None
        for event in events:
            if event.event != "message" or not event.data.strip():
                continue
            try:
                message = parse_json(event.data)
            except TooDeep as exc:
                raise McpError(f"The server's event stream carried {exc}.") from None
            except NotJson:
                self.unreadable += 1
                continue
            found = _match(message, self.request_id, strict=True)
            if found is not None:
                self.answer = found
                return
            yield message

    def unanswered(self, method: str) -> McpError:
        """The stream ended before the answer."""
        detail = f" ({self.unreadable} event(s) were not JSON)" if self.unreadable else ""
        return McpError(f"The server's event stream ended without an answer to {method}{detail}.")


@dataclass
class Respond:
    """A request a legacy server sent on a call's stream (``request``, as received), and the
    ``answer`` to POST back unless the caller relays it (``gateway.asks``)."""

    method: str
    answer: dict
    request: dict | None = None


class CallReader:
    """The response to one ``tools/call`` (or another request relayed the same way, whose
    result may be of the ``resultType`` values in ``kinds``): say how it ``opened``, then
    give it the body ``whole``, or ``feed`` it each chunk of an event stream until
    ``answered`` (``unanswered`` when the stream ends first). Until ``answered`` the call may
    still be running upstream: a caller that stops reading then cancels it."""

    def __init__(self, url: str, request: dict, version: str | None, session: str | None,
                 kinds=("complete", INPUT_REQUIRED)):  # fmt: skip
        self.url, self.request, self.version, self.session = url, request, version, session
        self.kinds = kinds
        self.answered = False
        self._events = EventReader(request["id"])
        self._status, self._headers, self._type = 0, {}, ""

    def opened(self, status: int, headers, content_type: str) -> bool:
        """Whether the body is an event stream to ``feed`` (else read it for ``whole``).

        :raise Restart: 404 on the session: it is gone and nothing ran [25N/http §Session
            Management].
        """
        self._status, self._headers, self._type = status, headers, content_type
        streamed = 200 <= status < 300 and content_type == "text/event-stream"
        self.answered = not streamed  # refused, a JSON body or an HTTP error: nothing runs
        if status == 404 and self.session:
            raise Restart()
        return streamed

    def whole(self, raw: bytes) -> CallDone:
        """:raise RpcError, McpError: the body is an error, or not an answer."""
        return self._done(whole_reply(self._status, self._headers, self._type, raw,
                                      self.request["id"]))  # fmt: skip

    def feed(self, chunk: bytes) -> Iterator[CallUpdate | CallDone | Respond]:
        """What ``chunk`` completes, in order: a ``CallUpdate`` for each notification, a
        ``Respond`` for each request from a legacy server (a modern one sends none
        [26/http §Receiving Messages]), then the ``CallDone`` once the answer came.

        :raise RpcError, McpError: the answer is an error; the stream is unusable.
        """
        for message in self._events.feed(chunk):
            for each in message if isinstance(message, list) else [message]:
                if not isinstance(each, dict) or not isinstance(each.get("method"), str):
                    continue
                if "id" not in each:
                    yield CallUpdate(each)
                elif self.version not in MODERN_VERSIONS:
                    yield Respond(each["method"], answer_to(each), each)
        if self._events.answer is not None:
            self.answered = True
            yield self._done(Reply(self._status, self._headers, self._events.answer))

    def unanswered(self) -> McpError:
        method = self.request["method"]
        return McpError(f"The server's event stream ended without an answer to {method}.")

    def _done(self, reply: Reply) -> CallDone:
        """A modern server may answer ``input_required`` [26/mrtr]: a result, passed on."""
        return CallDone(result_of(reply, self.url, self.request["method"],
                                  initialized=bool(self.session), kinds=self.kinds))  # fmt: skip


def answer_to(request: dict) -> dict:
    """The answer to a request a legacy server sent [25N/http §Sending Messages to the
    Server] when nobody relays it: ``ping`` gets ``{}`` [25N/ping]; anything else -32601."""
    if request["method"] == "ping":
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": {}}
    return refusal(request, "mcpadmin does not serve this method")


def refusal(request: dict, text: str, code: int = METHOD_NOT_FOUND) -> dict:
    """The error answering a server's ``request`` that will not be relayed: -32601 by
    default, what a client without a handler for the method answers (the TypeScript SDK's
    ``Protocol`` does), with ``text`` saying why."""
    return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": text}}


def cancel_note(request_id) -> dict:
    """``notifications/cancelled`` for ``request_id`` [25N/canc §Cancellation Flow]."""
    params = {"requestId": request_id, "reason": "The caller cancelled the call."}
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}


@dataclass
class Post:
    """A step of ``handshake``: POST ``message`` (legacy ``version`` header, ``session``);
    send the ``Reply`` back in."""

    message: dict
    version: str | None = None
    session: str | None = None


@dataclass
class Delete:
    """A step of ``handshake``: close ``session`` (DELETE; failures only logged); send None
    back in."""

    session: str | None


def handshake(url: str, next_id) -> Generator[Post | Delete, Reply | None, tuple[str | None, str]]:
    """The legacy handshake [25N/life §Initialization] as steps for a client to perform
    (``next_id()`` numbers its requests); returns the session id (may be None) and the
    agreed version.

    :raise McpError: (or a subclass) refused, or a version mcpadmin does not speak chosen.
    """
    offered = LEGACY_VERSIONS[0]
    for _attempt in range(2):
        params = {"protocolVersion": offered, "capabilities": ASK_CAPABILITIES,
                  "clientInfo": CLIENT_INFO}  # fmt: skip
        reply = yield Post(request_message("initialize", params, next_id()))
        error = (reply.message or {}).get("error")
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, dict) and isinstance(data.get("supported"), list):
            # [25N/life §Error Handling]: -32602 with the versions the server supports.
            mutual = next((v for v in LEGACY_VERSIONS if v in data["supported"]), None)
            if mutual and mutual != offered:
                offered = mutual
                continue
        result = result_of(reply, url, "initialize")
        session = reply.headers.get("mcp-session-id") or None
        version = result.get("protocolVersion")
        if version not in LEGACY_VERSIONS:
            yield Delete(session)
            raise McpError(
                f"The server chose protocol version {str(version)[:40]!r}, which mcpadmin "
                f"does not speak (it offered {offered})."
            )
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        note = yield Post(initialized, legacy_version_header(version), session)
        if not 200 <= note.status < 300:
            raise _status_error(note, url, "notifications/initialized")
        return session, version
    raise McpError("The server refused every protocol version mcpadmin offered.")


# -- pure helpers ------------------------------------------------------------------------------


def header_value(value: str) -> str:
    """``value`` as an ``Mcp-Name`` (or ``Mcp-Param-*``) header carries it [26/http §Value
    Encoding]: as is when HTTP keeps it intact, else ``=?base64?…?=`` over its UTF-8."""
    plain = HEADER_SAFE.fullmatch(value) and not HEADER_ENCODED.fullmatch(value)
    if plain and value == value.strip():
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode("ascii") + "?="


def param_headers(input_schema, arguments) -> dict[str, str]:
    """The ``Mcp-Param-<name>`` headers of a modern call [26/http §Custom Headers from Tool
    Parameters]: one per argument present (not null) whose property, statically reachable
    through ``properties``, carries ``x-mcp-header``; a boolean as ``true``/``false``, other
    scalars as text, each encoded by ``header_value``. The schema is one ``checked_tools``
    kept."""
    headers = {}

    def walk(schema, values, depth):
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict) or not isinstance(values, dict) or depth > 32:
            return
        for key, prop in properties.items():
            if not isinstance(prop, dict) or values.get(key) is None:
                continue
            value, header = values[key], prop.get("x-mcp-header")
            if isinstance(header, str) and isinstance(value, str | int | float):
                text = ("true" if value else "false") if isinstance(value, bool) else str(value)
                headers[f"Mcp-Param-{header}"] = header_value(text)
            walk(prop, value, depth + 1)

    walk(input_schema, arguments, 0)
    return headers


def translated(exc: HttpError) -> McpError:
    """The transport failure as an ``McpError`` whose type says what went wrong."""
    if isinstance(exc, Timeout):
        return TimedOut(str(exc))
    if isinstance(exc, transport.Unreachable):
        return ServerUnreachable(str(exc))
    if isinstance(exc, Interrupted):
        return ConnectionLost(str(exc))
    return McpError(str(exc))


def era_signal(exc: McpError) -> bool:
    """Whether a call refused this way may mean the server changed eras (a 4xx refusal that is
    not about the credential and not a modern server fixing our request); it did not run."""
    if isinstance(exc, SessionRequired):
        return True
    if isinstance(exc, RpcError):
        return exc.status in (400, 404, 405) and exc.code not in MODERN_REQUEST_ERRORS
    if isinstance(exc, HttpStatusError) and not isinstance(exc, Unauthorized | Forbidden):
        return exc.status in (400, 404, 405)
    return False


def _mutual(supported: list) -> str | None:
    return next((v for v in MODERN_VERSIONS if v in supported), None)


def legacy_version_header(version: str) -> str | None:
    # [25J/chg]: MCP-Protocol-Version exists from 2025-06-18 on; 2025-03-26 has none.
    return None if version == WITHOUT_VERSION_HEADER else version


def _session_required(method: str, initialized: bool) -> str:
    """What a 400 "Missing session ID" answer to ``method`` means for the operator."""
    if initialized:
        return ("The server requires a session (400 “Missing session ID”) but did not assign "
                "one when mcpadmin initialized.")  # fmt: skip
    return (f"The server answered {method} with 400 “Missing session ID”, but it never "
            "assigned mcpadmin a session to send.")  # fmt: skip


def _is_session_required(message) -> bool:
    return isinstance(message, str) and "session" in message.lower()


def _read(stream: Stream) -> bytes:
    try:
        return stream.read()
    except Interrupted:
        raise ConnectionLost(CUT_OFF) from None


def _chunks(stream: Stream) -> Iterator[bytes]:
    try:
        yield from stream.chunks()
    except Interrupted:  # the connection broke while reading
        raise ConnectionLost(CUT_OFF) from None


def _json(raw: bytes):
    """The parsed body, or None when it is not JSON (a legacy signal while probing).

    :raise McpError: JSON nested too deeply to read.
    """
    try:
        return parse_json(raw)
    except TooDeep as exc:
        raise McpError(f"The server answered with {exc}.") from None
    except NotJson:
        return None


def _match(message, request_id, strict: bool) -> dict | None:
    """The JSON-RPC response for ``request_id`` in a message or batch. With ``strict`` False
    (an HTTP error body) any error object counts: servers answer ``id: null`` or their own."""
    candidates = message if isinstance(message, list) else [message]
    for candidate in candidates:
        if not isinstance(candidate, dict) or "method" in candidate:
            continue  # a notification or a server request
        if candidate.get("id") == request_id and ("result" in candidate or "error" in candidate):
            return candidate
        if not strict and isinstance(candidate.get("error"), dict):
            return candidate
    return None


STATUS_MESSAGES = {
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found: check the connector URL",
    405: "405 Method Not Allowed: is this the server's MCP endpoint?",
    406: f"406 Not Acceptable although mcpadmin sent Accept: {ACCEPT}",
    415: "415 Unsupported Media Type for Content-Type: application/json",
    429: "429 Too Many Requests: try again later",
}


def _status_error(reply: Reply, url: str, method: str | None = None) -> McpError:
    status = reply.status
    what = STATUS_MESSAGES.get(status) or (
        f"{status}: the server failed" if status >= 500 else f"HTTP {status}"
    )
    during = f" to {method}" if method else ""
    challenge = reply.headers.get("WWW-Authenticate", "")
    if status == 401:
        return Unauthorized(f"The server answered {what}{during}.", status, challenge)
    if status == 403:
        return Forbidden(f"The server answered {what}{during}.", status, challenge)
    error = (reply.message or {}).get("error")
    if isinstance(error, dict) and error.get("message"):
        what += f" ({str(error['message'])[:200]})"
    return HttpStatusError(f"The server answered {what}{during}.", status, challenge)


def _cache_fields(listing: Listing, result: dict):
    """Freshness of the whole list: the shortest page TTL; private if any page is
    [26/cache §Cacheable Model]. Absent or negative ``ttlMs`` counts as 0."""
    ttl = result.get("ttlMs")
    ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else 0
    listing.ttl_ms = ttl if listing.ttl_ms is None else min(listing.ttl_ms, ttl)
    scope = result.get("cacheScope")
    if scope == "private" or listing.cache_scope == "private":
        listing.cache_scope = "private"
    elif scope == "public":
        listing.cache_scope = "public"


def _capabilities(result) -> dict | None:
    """The ``capabilities`` object of an initialize or ``server/discover`` result, if any."""
    capabilities = result.get("capabilities") if isinstance(result, dict) else None
    return capabilities if isinstance(capabilities, dict) else None


def is_standard_tool_name(name: str) -> bool:
    """Whether ``name`` follows the spec's tool-name rule exactly (no trailing newline)."""
    return TOOL_NAME.fullmatch(name) is not None


def checked_tools(tools: list) -> tuple[list[dict], list[str]]:
    """The tools fit to store, and a warning for each problem.

    Dropped: entries without a string name, duplicates (the first wins), names too long to
    store, and tools with an invalid ``x-mcp-header`` [26/tools §x-mcp-header MUST exclude].
    Kept with a warning: names outside ``[A-Za-z0-9_.-]{1,128}`` (a SHOULD) and input schemas
    whose root is not ``type: object``.
    """
    kept, warnings, names = [], [], set()
    for tool in tools:
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not name:
            warnings.append("A tool without a name was skipped.")
            continue
        shown = name[:80]
        if name in names:
            warnings.append(f"Tool {shown!r} is listed twice; the first definition is kept.")
            continue
        if len(name) > MAX_STORED_NAME:
            warnings.append(f"Tool {shown!r}… has a name longer than {MAX_STORED_NAME}; skipped.")
            continue
        problem = _header_problem(tool.get("inputSchema"))
        if problem:
            warnings.append(f"Tool {shown!r} was skipped: {problem}.")
            continue
        if not is_standard_tool_name(name):
            warnings.append(f"Tool name {shown!r} does not follow the MCP naming rule.")
        schema = tool.get("inputSchema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            warnings.append(f"Tool {shown!r} has an input schema whose root is not an object.")
        names.add(name)
        kept.append(tool)
    return kept, warnings


def _header_problem(schema) -> str | None:
    """What is wrong with the schema's ``x-mcp-header`` annotations, if anything. They may
    only sit on statically reachable string, integer or boolean properties, with token names
    unique regardless of case."""
    seen = set()

    def walk(node, depth):
        if not isinstance(node, dict) or depth > 32:
            return None
        for prop in (
            (node.get("properties") or {}).values()
            if isinstance(node.get("properties"), dict)
            else ()
        ):
            if not isinstance(prop, dict):
                continue
            if "x-mcp-header" in prop:
                header = prop["x-mcp-header"]
                if not isinstance(header, str) or not HEADER_TOKEN.match(header):
                    return f"x-mcp-header {str(header)[:40]!r} is not a valid header name"
                if prop.get("type") not in ("string", "integer", "boolean"):
                    return f"x-mcp-header {header!r} is on a property that is not a scalar"
                if header.lower() in seen:
                    return f"x-mcp-header {header!r} is used twice"
                seen.add(header.lower())
            problem = walk(prop, depth + 1)
            if problem:
                return problem
        return None

    return walk(schema, 0)


def forwarded_request(method: str, params: dict, *, version: str | None = None,
                      name: str | None = None, log_level: str | None = None,
                      capabilities: dict | None = None) -> tuple[dict, dict]:  # fmt: skip
    """A request the gateway forwards for an agent (``resources/read``, ``prompts/get``,
    ``completion/complete``, ``resources/subscribe``…), its id unique in the process, and the
    headers it adds. With a modern ``version``: the envelope (declaring ``capabilities``), the
    ``logLevel`` opt-in [26/chg Major 5] and ``Mcp-Name`` (the URI or prompt name, REQUIRED
    for ``resources/read`` and ``prompts/get`` [26/http §Standard Request Headers]); without
    (legacy): none of them."""
    params = dict(params)
    if version is None:
        return request_message(method, params, next(_CALL_IDS)), {}
    if log_level:
        params["_meta"] = {**(params.get("_meta") or {}), META + "logLevel": log_level}
    request = request_message(method, params, next(_CALL_IDS), version, capabilities)
    return request, ({"Mcp-Name": header_value(name)} if name is not None else {})
