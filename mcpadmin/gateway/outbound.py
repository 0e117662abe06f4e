"""The data plane's outbound HTTP client: ``AsyncHttp``, on httpcore's connection pool (with
httpx's URL and headers), under the outbound policy the admin side's ``protocol.http.Http``
applies (``protocol/policy.py``: the same checks, limits, failures and sentences).

- Addresses are checked where the connection is made: ``_GuardedBackend``, the httpcore
  network backend under the pool, resolves the name once, checks every address, and
  connects to a checked one; TLS (SNI, certificate verification) and the Host header keep
  the name. No proxy is ever used, whatever the environment says.
- Keep-alive connections are pooled per upstream origin and shared by every agent and
  connector of the process, so the client holds nothing of theirs: headers go with each
  request, and there is no cookie jar (a ``Set-Cookie`` is read by nobody).
- Redirects are ``policy.Route``'s alone: nothing below reads a Location (httpx's client
  parses every 3xx's Location even when not following it, and fails on a hostile one
  before the policy can refuse it; hence httpcore under httpx's models).
- Time: each connect within ``timeout``, each read within ``read_timeout``, the whole
  exchange within ``deadline`` (a cancel scope around every wait, so a server dripping a
  byte a second is cut at the deadline).
- Size: the body is inflated here, a piece at a time, and counted as it is handed out, so a
  gzip bomb stops at the cap (httpx's own decoders inflate each network read whole).
"""

import asyncio
import functools
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.to_thread
import httpcore
import httpx

from ..protocol import policy
from ..protocol.http import Exchange, HttpError, Response
from ..protocol.policy import Clock, Policy, Route, TooLarge
from ..services import outbound

_CHUNK = 16 * 1024
# Idle connections are dropped after 4 s, before the 5 s after which common servers
# (uvicorn, gunicorn) close theirs, so a reused connection is rarely one being closed.
_KEEPALIVE_SECONDS = 4.0
_LOOKUPS = 8  # name lookups at once, each in a worker thread of its own
# The content codings inflated here (RFC 9110 §8.4.1), with zlib's window bits for each.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Sent unless the caller says otherwise, as requests sends them for the synchronous client;
# only the codings inflated here are offered.
_DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate"}


class AsyncHttp:
    """Outbound policy plus a keep-alive pool, for one event loop; share one per process.

    ``timeout`` bounds each connect (and each read unless a call says otherwise); each
    call's whole exchange must finish within its ``deadline`` (three timeouts by default).
    ``allow_addresses`` holds ``(ip, port)`` pairs exempt from the private-address rule;
    metadata addresses never are. ``observer`` is told of every finished exchange, never
    of headers or bodies. ``ssl_context`` replaces the default trust store (certifi's).
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_bytes: int = 5 * 1024 * 1024,
        allow_private: bool = False,
        allow_addresses: frozenset = frozenset(),
        observer: Callable[[Exchange], None] | None = None,
        max_connections: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.timeout = timeout
        self.policy = Policy(allow_private, frozenset(allow_addresses), max_bytes)
        self.observer = observer
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=_KEEPALIVE_SECONDS,
            network_backend=_GuardedBackend(self.policy),
        )

    async def open(
        self,
        method,
        url,
        *,
        headers=None,
        data: bytes | None = None,
        deadline: float | None = None,
        read_timeout: float | None = None,
        redirects: int = 0,
    ) -> "AsyncStream":
        """Send one request and return the answer with its body unread; close it after use
        (``async with``).

        Redirects as ``policy.Route`` says: a redirect answering a POST, PUT or PATCH is
        never followed (it raises ``Blocked``); other methods get the 3xx back when
        ``redirects`` is 0.

        :raise Blocked: policy refused the URL, an address it resolved to, a hop, or a
            redirect; :raise Timeout, Unreachable, TooLarge, HttpError: as their names say.
        """
        method, started = method.upper(), time.monotonic()
        clock = Clock.start(self.timeout, deadline, read_timeout)
        try:
            opened = await self._open(
                Route(self.policy, method, url, headers, redirects), data, clock
            )
        except HttpError as exc:
            observe = self._observer(method, url, started)
            if observe is not None:
                observe(None, type(exc).__name__, 0)
            raise
        opened._observe = self._observer(method, opened.url, started)
        return opened

    async def request(self, method, url, **options) -> Response:
        """``open`` (with the same ``options``) and read the whole body.

        :raise HttpError: as ``open`` and ``AsyncStream.chunks`` say.
        """
        async with await self.open(method, url, **options) as opened:
            return Response(opened.status, opened.headers, await opened.read(), opened.url)

    async def aclose(self):
        """Close every kept connection."""
        await self._pool.aclose()

    async def _open(self, route: Route, data, clock: Clock) -> "AsyncStream":
        timeouts = {
            "connect": clock.connect_timeout,
            "read": clock.timeout,
            "write": clock.timeout,
            "pool": clock.timeout,
        }
        while True:
            answer = await self._send(route, data, clock, timeouts)
            headers = httpx.Headers(answer.headers)
            if route.follows(answer.status, headers.get("Location")):
                await answer.aclose()
                route.advance(headers["Location"])
                continue
            try:
                self.policy.check_announced(route.url, headers)
            except TooLarge:
                await answer.aclose()
                raise
            return AsyncStream(answer, headers, route.url, self.policy, clock)

    async def _send(self, route, data, clock, timeouts) -> httpcore.Response:
        """The answer's status and headers, its body unread.

        :raise HttpError: the exchange failed, in the sentence the synchronous client uses.
        """
        url = route.url
        try:
            request = _request(route, data, timeouts)
            with anyio.fail_after(clock.left()):
                return await self._pool.handle_async_request(request)
        except (TimeoutError, httpcore.TimeoutException):
            raise policy.no_answer(url, cut_off=clock.passed()) from None
        except httpcore.ConnectError as exc:
            tls = policy.caused_by(exc, ssl.SSLError)
            raise (policy.tls_failed(url) if tls else policy.unreachable(url)) from None
        except (httpcore.NetworkError, httpcore.RemoteProtocolError):
            raise policy.unreachable(url) from None  # closed before it answered
        except (httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise policy.failed(url, exc) from None

    def _observer(self, method, url, started):
        """The callback that tells ``observer`` of this exchange when it ends, if any."""
        if self.observer is None:
            return None

        def observe(status, error, read):
            seconds = time.monotonic() - started
            self.observer(Exchange(method, url, status, error, seconds, read))

        return observe


def _request(route: Route, data: bytes | None, timeouts: dict) -> httpcore.Request:
    """The request ``route`` sends now: Host from the URL's name (the connection goes to the
    checked address), the defaults the synchronous client sends, the caller's headers over
    them, and the body's length.

    :raise httpx.InvalidURL: the URL cannot be sent as it is.
    """
    target, host = _target(route.url)
    headers = httpx.Headers(_DEFAULT_HEADERS)
    headers.update(route.headers)
    if data is not None or route.method in policy.BODY_METHODS:
        headers["Content-Length"] = str(len(data or b""))
    first = [] if "Host" in headers else [(b"Host", host)]
    return httpcore.Request(
        route.method,
        target,
        headers=[*first, *headers.raw],
        content=data or b"",
        extensions={"timeout": timeouts},
    )


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[httpcore.URL, bytes]:
    """Where httpcore sends ``url``, and its Host header (IDNA, lower case, the port when
    not the default): parsed once per URL, since an agent calls the same few again and
    again.

    :raise httpx.InvalidURL: the URL cannot be sent as it is.
    """
    url = httpx.URL(url)
    target = httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )
    return target, url.netloc


class AsyncStream:
    """An open answer whose body is read incrementally (Server-Sent Events): ``status``,
    ``headers`` (a case-insensitive mapping), ``url`` (the last hop's)."""

    def __init__(
        self,
        answer: httpcore.Response,
        headers: httpx.Headers,
        url: str,
        policy: Policy,
        clock: Clock,
    ):
        self.status = answer.status
        self.headers = headers
        self.url = url
        self._answer, self._policy, self._clock = answer, policy, clock
        self._raw: AsyncIterator[bytes] | None = None
        self._read = 0
        self._error: str | None = None
        self._observe: Callable[[int | None, str | None, int], None] | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The decoded body in pieces as they arrive; at most one piece beyond the limit is
        ever inflated (a gzip bomb is cut at the limit, not inflated).

        :raise Timeout: the deadline or a read timeout passed; :raise TooLarge: the size
            limit was reached; :raise Interrupted: the connection broke; :raise
            BadResponse: undecodable body.
        """
        codings = [c.strip().lower() for c in self.headers.get("Content-Encoding", "").split(",")]
        # Undone last-applied first; codings not inflated here pass as they are (as the
        # synchronous client's urllib3 does).
        inflaters = [_Inflater(c) for c in reversed(codings) if c in _CODINGS]
        self._raw = raw = aiter(self._answer.stream)
        while (data := await self._receive(raw)) is not None:
            for piece in self._decoded(inflaters, data):
                yield piece

    async def _receive(self, raw) -> bytes | None:
        """The next bytes off the wire, None at the end."""
        try:
            with anyio.fail_after(self._clock.left()):
                return await anext(raw, None)
        except (TimeoutError, httpcore.TimeoutException):
            raise self._failed(policy.unfinished(self.url)) from None
        except (httpcore.NetworkError, httpcore.ProtocolError):
            raise self._failed(policy.interrupted(self.url)) from None

    def _decoded(self, inflaters, data: bytes) -> Iterator[bytes]:
        """``data`` undone by ``inflaters``, piece by piece, each counted before it goes."""
        pieces: Iterator[bytes] = iter((data,))
        for inflater in inflaters:
            pieces = inflater.through(pieces)
        try:
            for piece in pieces:
                self._read = self._policy.count(self.url, self._read, piece)
                self._clock.check(self.url)
                yield piece
        except zlib.error:
            raise self._failed(policy.undecodable(self.url)) from None
        except HttpError as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: HttpError) -> HttpError:
        self._error = type(exc).__name__
        return exc

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    async def aclose(self):
        """Release the connection (back to the pool when the body was read to its end);
        the observer (if any) hears of the exchange once."""
        with anyio.CancelScope(shield=True):
            if self._raw is not None:
                await self._raw.aclose()
            await self._answer.aclose()
        observe, self._observe = self._observe, None
        if observe is not None:
            observe(self.status, self._error, self._read)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class _Inflater:
    """One content coding undone at most ``_CHUNK`` bytes at a time. ``deflate`` is the
    zlib format (RFC 9110 §8.4.1.2); raw deflate, which some servers send, is accepted too."""

    def __init__(self, coding: str):
        self._zlib = zlib.decompressobj(_CODINGS[coding])
        self._may_be_raw = coding == "deflate"

    def through(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            yield from self.feed(piece)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """:raise zlib.error: not in this coding."""
        while True:
            try:
                out = self._zlib.decompress(data, _CHUNK)
            except zlib.error:
                if not self._may_be_raw:
                    raise
                self._zlib, self._may_be_raw = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._may_be_raw = False
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            # A full piece may leave more output pending inside zlib: ask again.
            if self._zlib.eof or (not data and len(out) < _CHUNK):
                return


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connections under the address policy: the name is resolved once, every address it
    resolved to is checked (``Policy.connectable``), and the connection goes to a checked
    one, so a name cannot answer a public address to a check and a private one to the
    connect (DNS rebinding). httpcore then starts TLS with the URL's name."""

    def __init__(self, policy: Policy):
        self._policy = policy
        self._sockets = httpcore.AnyIOBackend()
        self._lookups = anyio.CapacityLimiter(_LOOKUPS)

    async def connect_tcp(
        self, host, port, timeout=None, local_address=None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        """:raise Blocked: an address is refused; :raise Unreachable: the name does not
        resolve; :raise TimeoutError: not connected within ``timeout``;
        :raise httpcore.ConnectError: no address took the connection."""
        with anyio.fail_after(timeout):
            try:
                infos = await anyio.to_thread.run_sync(
                    _lookup, host, port, abandon_on_cancel=True, limiter=self._lookups
                )
            except (OSError, UnicodeError):
                raise policy.unresolved(host) from None
            failure = None
            for _family, sockaddr in self._policy.connectable(host, port, infos):
                try:  # the checked address: connecting to a literal makes no second lookup
                    return await self._sockets.connect_tcp(
                        sockaddr[0],
                        port,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                except httpcore.ConnectError as exc:
                    failure = exc
            raise failure  # connectable() returns at least one address

    async def sleep(self, seconds: float):
        await anyio.sleep(seconds)


def _lookup(host: str, port: int):
    """``socket.getaddrinfo``, looked up when called (the tests replace it)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


# -- one client per process and event loop ------------------------------------------------

_clients: dict[tuple, AsyncHttp] = {}


def client(app) -> AsyncHttp:
    """The running event loop's client for ``app``'s settings (HTTP_TIMEOUT,
    HTTP_MAX_BYTES, ALLOW_PRIVATE_NETWORKS; each exchange logged with ``LOG_FORMAT =
    "json"``), shared by every agent and connector. Call from the loop; close with
    ``close_clients``."""
    config = app.config
    logged = config["LOG_FORMAT"] == "json"
    settings = (
        config["HTTP_TIMEOUT"],
        config["HTTP_MAX_BYTES"],
        config["ALLOW_PRIVATE_NETWORKS"],
        logged,
    )
    key = (asyncio.get_running_loop(), settings)
    if key not in _clients:
        timeout, max_bytes, allow_private, _ = settings
        _clients[key] = AsyncHttp(
            timeout=timeout,
            max_bytes=max_bytes,
            allow_private=allow_private,
            observer=outbound._log_exchange if logged else None,
        )
    return _clients[key]


async def close_clients():
    """Close the running event loop's clients (when the application shuts down)."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _clients if key[0] is loop]:
        await _clients.pop(key).aclose()
