"""The synchronous outbound HTTP client (the admin side): every call to an MCP server or an
authorization server made outside the data plane goes through ``Http``, which applies the
outbound policy (``policy.py``, the rules the data plane's async client applies too): a
timeout and an overall deadline, a cap on the (decoded) body size, redirects followed only
for GET and HEAD and only when asked (re-checking each hop), private addresses refused
unless the operator allowed them, and no cookie kept.

The address policy is enforced where the socket is made: the connection resolves the name
once, checks every address it got, and connects to a checked one, so a name cannot answer
a public address to a check and a private one to the connect (DNS rebinding). The Host
header and TLS (SNI and certificate verification) keep the name from the URL.

The deadline is enforced on every socket operation (connect, TLS handshake, send, each
read, waiting for headers included): each one gets the read timeout or what is left of the
deadline, whichever is shorter, so a server dripping one byte a second is cut off too.

Failures raise ``HttpError`` subclasses whose message is a sentence for the operator; the
caller adds what it was doing ("discovery failed: …").
"""

import contextvars
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.ssl_ import create_urllib3_context

from . import policy
from .jsonbody import NotJson, parse_json
from .policy import (
    USER_AGENT,
    BadResponse,
    Blocked,
    Clock,
    HttpError,
    Interrupted,
    Policy,
    Route,
    Timeout,
    TooLarge,
    Unreachable,
)

__all__ = [
    "USER_AGENT", "BadResponse", "Blocked", "Exchange", "Http", "HttpError", "Interrupted",
    "Response", "Stream", "Timeout", "TooLarge", "Unreachable",
]  # fmt: skip
_CHUNK = 16 * 1024


@dataclass
class Response:
    """A whole answer, from either client (``headers``: case-insensitive; requests' or
    aiohttp's)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON.

        :raise BadResponse: the body is not valid UTF-8 JSON.
        """
        try:
            return parse_json(self.body)
        except NotJson as exc:
            raise BadResponse(f"{self.url} answered with {exc}.") from None


@dataclass(frozen=True)
class _Call:
    """The policy and clock of one exchange, seen by the sockets it opens (``_CALL``)."""

    policy: Policy
    clock: Clock


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("mcpadmin_http_call")


@dataclass(frozen=True)
class Exchange:
    """One finished outbound request, as ``Http.observer`` is told of it: ``status`` when an
    answer came (else None), ``error`` the ``HttpError`` class name when it failed (before or
    while its body was read), ``response_bytes`` the body bytes read."""

    method: str
    url: str
    status: int | None
    error: str | None
    seconds: float
    response_bytes: int


@dataclass
class Stream:
    """An open response whose body is read incrementally (Server-Sent Events)."""

    status: int
    headers: CaseInsensitiveDict
    url: str
    _raw: requests.Response
    _call: _Call
    _read: int = field(default=0)
    _observe: Callable[[int | None, str | None, int], None] | None = None
    _error: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def chunks(self) -> Iterator[bytes]:
        """The decoded body in pieces as they arrive; at most one piece beyond the limit is
        ever decompressed (a gzip bomb is cut at the limit, not inflated).

        :raise Timeout: the deadline passed; :raise TooLarge: the size limit was reached;
            :raise Interrupted: the connection broke; :raise BadResponse: undecodable body.
        """
        try:
            yield from self._chunks()
        except HttpError as exc:
            self._error = type(exc).__name__
            raise

    def _chunks(self) -> Iterator[bytes]:
        pieces = self._raw.iter_content(_CHUNK)
        while True:
            token = _CALL.set(self._call)
            try:
                chunk = next(pieces, None)
            except requests.exceptions.RequestException as exc:
                raise self._failure(exc) from None
            finally:
                _CALL.reset(token)
            if chunk is None:
                return
            self._read = self._call.policy.count(self.url, self._read, chunk)
            self._call.clock.check(self.url)
            yield chunk

    def _failure(self, exc) -> HttpError:
        if self._call.clock.passed() or policy.caused_by(exc, ReadTimeoutError):
            return policy.unfinished(self.url)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return policy.undecodable(self.url)
        return policy.interrupted(self.url)

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def close(self):
        """Release the connection; the observer (if any) hears of the exchange once."""
        self._raw.close()
        observe, self._observe = self._observe, None
        if observe is not None:
            observe(self.status, self._error, self._read)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Http:
    """Outbound policy (``policy.py``) plus a connection pool. Build one per operation or
    share one per thread.

    ``timeout`` bounds each connect and each read; the whole exchange (redirects and body
    included) must finish within ``deadline`` seconds, by default three timeouts.
    ``read_timeout``, when set, bounds each read instead (connects keep ``timeout``): for an
    answer that may legitimately take long, such as a tool call.
    ``allow_addresses`` holds ``(ip, port)`` pairs exempt from the private-address rule (one
    internal server an operator trusts, or a test peer); ``allow_loopback`` exempts loopback
    addresses; metadata addresses never are.
    The session is configured for this client (its own adapters, no proxies or .netrc from
    the environment, a cookie jar that keeps no cookie), a session passed in included.
    """

    timeout: float = 10.0
    max_bytes: int = 5 * 1024 * 1024
    allow_private: bool = False
    deadline: float | None = None
    session: requests.Session = field(default_factory=requests.Session)
    allow_addresses: frozenset = frozenset()
    read_timeout: float | None = None
    # Told of every finished exchange (the structured log); never of headers or bodies.
    observer: Callable[[Exchange], None] | None = None
    allow_loopback: bool = False

    def __post_init__(self):
        # A kept session serves every agent and connector of its thread: an upstream's
        # Set-Cookie on one call must not ride along on the next one.
        policy.keep_no_cookies(self.session.cookies)
        if not isinstance(self.session.get_adapter("https://x/"), _GuardedAdapter):
            self.session.trust_env = False  # env proxies would bypass the address policy
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, _GuardedAdapter(max_retries=0))

    @property
    def policy(self) -> Policy:
        return Policy(self.allow_private, frozenset(self.allow_addresses), self.max_bytes,
                      self.allow_loopback)  # fmt: skip

    def request(self, method, url, *, headers=None, data=None, json=None, redirects=0):
        """Send one request and read the whole body.

        :param redirects: how many redirects to follow (GET and HEAD only; each hop is
            checked again).
        :raise HttpError: unreachable, timed out, too large, or blocked by policy.
        """
        opened = self.open(method, url, headers=headers, data=data, json=json, redirects=redirects)
        with opened as s:
            return Response(s.status, s.headers, s.read(), s.url)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def open(self, method, url, *, headers=None, data=None, json=None, redirects=0) -> Stream:
        """Send one request and return the response with its body unread. Close it after use.

        Redirects as ``policy.Route`` says: a redirect answering a POST, PUT or PATCH is
        never followed (it raises ``Blocked``); other methods get the 3xx back when
        ``redirects`` is 0.

        :raise Blocked: policy refused the URL, a hop, or a redirect; :raise Timeout,
            Unreachable, TooLarge, HttpError: as their names say.
        """
        method, started = method.upper(), time.monotonic()
        try:
            opened = self._open(method, url, headers, data, json, redirects)
        except HttpError as exc:
            self._observed(method, url, started)(None, type(exc).__name__, 0)
            raise
        if self.observer is not None:
            opened._observe = self._observed(method, opened.url, started)
        return opened

    def _observed(self, method, url, started):
        """The callback that tells ``observer`` of this exchange when it ends."""

        def observe(status, error, read):
            if self.observer is not None:
                seconds = time.monotonic() - started
                self.observer(Exchange(method, url, status, error, seconds, read))

        return observe

    def _open(self, method, url, headers, data, json, redirects) -> Stream:
        call = _Call(self.policy, Clock.start(self.timeout, self.deadline, self.read_timeout))
        route = Route(call.policy, method, url, headers, redirects)
        while True:
            raw = self._send(call, method, route.url, route.headers, data, json)
            if not route.follows(raw.status_code, raw.headers.get("Location")):
                try:
                    call.policy.check_announced(route.url, raw.headers)
                except TooLarge:
                    raw.close()
                    raise
                return Stream(raw.status_code, raw.headers, route.url, raw, call)
            raw.close()
            route.advance(raw.headers["Location"])

    def _send(self, call, method, url, headers, data, json) -> requests.Response:
        token = _CALL.set(call)
        try:
            return self.session.request(
                method, url, headers=headers, data=data, json=json,
                timeout=(call.clock.remaining(connect=True), call.clock.timeout),
                allow_redirects=False, stream=True,
            )  # fmt: skip
        except TimeoutError:
            raise policy.no_answer(url) from None
        except requests.exceptions.RequestException as exc:
            if call.clock.passed():
                raise policy.no_answer(url, cut_off=True) from None
            raise _translate(exc, url) from None
        finally:
            _CALL.reset(token)

    def check_address(self, url):
        """Refuse, before anything is sent, a URL this client's policy refuses
        (``Policy.check_url``).

        :raise Blocked: with the reason.
        """
        self.policy.check_url(url)


def _translate(exc, url) -> HttpError:
    if isinstance(exc, requests.exceptions.Timeout):
        return policy.no_answer(url)
    if isinstance(exc, requests.exceptions.SSLError):
        return policy.tls_failed(url)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return policy.unreachable(url)
    return policy.failed(url, exc)


# -- the guarded transport -----------------------------------------------------------------


class _Armed:
    """Socket methods bounded by the current call's clock: each one first sets the socket's
    timeout to what is left of the deadline."""

    def _arm(self):
        call = _CALL.get(None)
        if call is not None:
            self.settimeout(call.clock.remaining())

    def recv(self, *args):
        self._arm()
        return super().recv(*args)

    def recv_into(self, *args):
        self._arm()
        return super().recv_into(*args)

    def send(self, *args):
        self._arm()
        return super().send(*args)

    def sendall(self, *args):
        self._arm()
        return super().sendall(*args)


class _DeadlineSocket(_Armed, socket.socket):
    """A TCP socket whose every operation is bounded by the current call's clock."""


class _DeadlineSSLSocket(_Armed, ssl.SSLSocket):
    """The TLS twin of ``_DeadlineSocket`` (installed as the context's socket class)."""

    def do_handshake(self, *args):
        self._arm()
        return super().do_handshake(*args)

    def read(self, *args):
        self._arm()
        return super().read(*args)


def _connect(conn) -> socket.socket:
    """Resolve ``conn.host`` once, refuse if any address is not allowed, and connect to the
    first allowed one that answers.

    :raise Blocked, Unreachable: policy or DNS (outside urllib3's retry machinery).
    """
    call = _CALL.get(None)
    if call is None:
        raise Blocked("Outbound connections are made only through mcpadmin's Http client.")
    host, port = conn.host, conn.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise policy.unresolved(host) from None
    targets = call.policy.connectable(host, port, infos)
    failure = None
    for family, sockaddr in targets:
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(call.clock.remaining(connect=True))
            sock.connect(sockaddr)  # the checked address, not a second lookup
            return sock
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(conn, f"Connection to {host} timed out.") from exc
        except OSError as exc:
            sock.close()
            failure = exc
    raise NewConnectionError(conn, f"Failed to establish a new connection: {failure}")


class _GuardedConnection(HTTPConnection):
    def _new_conn(self):
        return _connect(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def __init__(self, *args, ssl_context=None, **kwargs):
        if ssl_context is None:
            # urllib3's own defaults (verification on, hostname checked against the URL's
            # name), with sockets that honour the deadline during the handshake and reads.
            ssl_context = create_urllib3_context()
            ssl_context.sslsocket_class = _DeadlineSSLSocket
            ssl_context.load_default_certs()
        super().__init__(*args, ssl_context=ssl_context, **kwargs)

    def _new_conn(self):
        return _connect(self)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _GuardedConnection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    """Connections whose socket creation applies the address policy and the deadline."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
