"""The one outbound HTTP client: every call to an MCP server or an authorization server goes
through ``Http``, which applies a timeout and an overall deadline, caps the (decoded) body
size, follows redirects only for GET and only when asked (re-checking each hop), and refuses
private addresses unless the operator allowed them.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.ssl_ import create_urllib3_context

from . import addresses
from .jsonbody import NotJson, parse_json

USER_AGENT = "mcpadmin/0.1"
_CHUNK = 16 * 1024
# Methods whose request carries a body (and often a credential or an authorization code):
# a redirect answering them is never followed (RFC 9110 §15.4.8 lets a 307/308 re-send the
# body to the new target; mcpadmin refuses to).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Headers kept when a redirect leaves the origin; everything else may be a credential.
_CROSS_ORIGIN_HEADERS = frozenset({"user-agent", "accept"})


class HttpError(Exception):
    """An outbound call did not produce a usable response; ``str()`` says why."""


class Unreachable(HttpError):
    """Connection refused, DNS failure, TLS failure."""


class Timeout(HttpError):
    """No answer, or no complete answer, within the time allowed."""


class TooLarge(HttpError):
    """The body is larger than the configured limit."""


class Blocked(HttpError):
    """The address or redirect is not allowed by the outbound policy."""


class BadResponse(HttpError):
    """The body is not what the caller needed (e.g. not JSON, or undecodable)."""


class Interrupted(HttpError):
    """The server closed the connection before the body was complete."""


@dataclass
class Response:
    status: int
    headers: CaseInsensitiveDict
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

    deadline: float
    timeout: float  # each read, send and TLS handshake
    allow_private: bool
    allow_addresses: frozenset
    connect_timeout: float | None = None  # the TCP connect (default: ``timeout``)

    def remaining(self, connect: bool = False) -> float:
        """Seconds left for the next socket operation (``connect``: for making the connection).

        :raise TimeoutError: the deadline has passed (urllib3 reports it as a timeout).
        """
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        limit = self.connect_timeout if connect and self.connect_timeout else self.timeout
        return min(limit, left)

    def refusal(self, ip, port) -> str | None:
        return _refusal(ip, port, self.allow_private, self.allow_addresses)


def _refusal(ip, port, allow_private, allow_addresses) -> str | None:
    """Why ``ip:port`` may not be reached under this policy, or None."""
    if addresses.is_metadata(ip):
        return addresses.METADATA_REFUSAL
    if allow_private or (str(ip), port) in allow_addresses:
        return None
    return addresses.refusal(ip)


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
    _deadline: float
    _max_bytes: int
    _read: int = field(default=0)
    _call: _Call | None = None
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
            token = _CALL.set(self._call) if self._call else None
            try:
                chunk = next(pieces, None)
            except requests.exceptions.RequestException as exc:
                raise self._failure(exc) from None
            finally:
                if token is not None:
                    _CALL.reset(token)
            if chunk is None:
                return
            self._read += len(chunk)
            if self._read > self._max_bytes:
                raise TooLarge(f"{self.url} sent more than {self._max_bytes} bytes; cut off.")
            if time.monotonic() > self._deadline:
                raise Timeout(f"{self.url} did not finish answering in time; cut off.")
            yield chunk

    def _failure(self, exc) -> HttpError:
        if time.monotonic() >= self._deadline or _caused_by(exc, ReadTimeoutError):
            return Timeout(f"{self.url} did not finish answering in time; cut off.")
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return BadResponse(f"{self.url} sent a body that could not be decompressed.")
        return Interrupted(
            f"The server closed the connection before its answer was complete ({self.url})."
        )

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
    """Outbound policy plus a connection pool. Build one per operation or share one per thread.

    ``timeout`` bounds each connect and each read; the whole exchange (redirects and body
    included) must finish within ``deadline`` seconds, by default three timeouts.
    ``read_timeout``, when set, bounds each read instead (connects keep ``timeout``): for an
    answer that may legitimately take long, such as a tool call.
    ``allow_addresses`` holds ``(ip, port)`` pairs exempt from the private-address rule (one
    internal server an operator trusts, or a test peer); metadata addresses never are.
    The session is configured for this client (its own adapters, no proxies or .netrc from
    the environment).
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

    def __post_init__(self):
        if not isinstance(self.session.get_adapter("https://x/"), _GuardedAdapter):
            self.session.trust_env = False  # env proxies would bypass the address policy
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, _GuardedAdapter(max_retries=0))

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

        A redirect answering a POST, PUT or PATCH is never followed: it raises ``Blocked``
        (the body, with its code, verifier or secret, is not sent again). Other methods get
        the 3xx back when ``redirects`` is 0.

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
        call = _Call(time.monotonic() + (self.deadline or 3 * self.timeout),
                     self.read_timeout or self.timeout, self.allow_private,
                     frozenset(self.allow_addresses), connect_timeout=self.timeout)  # fmt: skip
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        hops = 0
        while True:
            self.check_address(url)
            raw = self._send(call, method, url, sent, data, json)
            if not raw.is_redirect or (not redirects and method not in _BODY_METHODS):
                return self._stream(raw, url, call)
            target = urljoin(url, raw.headers.get("Location", ""))
            raw.close()
            if method not in ("GET", "HEAD"):
                raise Blocked(
                    f"{url} redirected to {target[:200]}; mcpadmin does not follow redirects "
                    f"for {method}, so the request was not sent there. Use the final address."
                )
            if hops >= redirects:
                raise Blocked(f"{url} redirected more than {redirects} time(s); not followed.")
            _check_redirect(url, target)
            if _origin(target) != _origin(url):  # never carry credentials to another origin
                sent = {k: v for k, v in sent.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
            url, hops = target, hops + 1

    def _send(self, call, method, url, headers, data, json) -> requests.Response:
        token = _CALL.set(call)
        try:
            return self.session.request(
                method, url, headers=headers, data=data, json=json,
                timeout=(call.remaining(connect=True), call.timeout), allow_redirects=False,
                stream=True,
            )  # fmt: skip
        except TimeoutError:
            raise Timeout(f"{url} did not answer in time.") from None
        except requests.exceptions.RequestException as exc:
            if time.monotonic() >= call.deadline:
                raise Timeout(f"{url} did not answer in time; cut off.") from None
            raise _translate(exc, url) from None
        finally:
            _CALL.reset(token)

    def _stream(self, raw, url, call) -> Stream:
        length = raw.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raw.close()
            raise TooLarge(f"{url} announced a {int(length)}-byte answer; the limit is "
                           f"{self.max_bytes} bytes.")  # fmt: skip
        return Stream(raw.status_code, raw.headers, url, raw, call.deadline, self.max_bytes,
                      _call=call)  # fmt: skip

    def check_address(self, url):
        """Refuse, before anything is sent, a URL that is not http(s) with a host, carries
        credentials, names a cloud metadata host, or (unless private networks are allowed)
        names ``localhost`` or a literal private address in any spelling (``127.1``,
        ``2130706433``, ``[::ffff:127.0.0.1]``…).

        Names are resolved and their addresses checked when the connection is made, once,
        and the connection goes to the address that was checked.

        :raise Blocked: with the reason.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Blocked(f"{url[:200]!r} is not a valid URL.") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise Blocked(f"{url[:200]!r} is not an http(s) URL.")
        if "@" in parts.netloc:
            raise Blocked(f"{url[:200]!r} carries credentials in the URL; refused.")
        host = parts.hostname
        if addresses.is_metadata_name(host):
            raise Blocked(f"{host} is a cloud metadata service; outbound calls never go there.")
        ip = addresses.parse_ip(host)
        port = port or (443 if parts.scheme.lower() == "https" else 80)
        if ip is not None:
            reason = _refusal(ip, port, self.allow_private, self.allow_addresses)
            if reason:
                raise Blocked(_blocked_message(host, ip, reason))
        elif addresses.is_loopback_name(host) and not self.allow_private:
            raise Blocked(_blocked_message(host, None, "a loopback address"))


def _blocked_message(host, ip, reason) -> str:
    where = f"{host} is {reason}" if ip is None or str(ip) == host else f"{host} is {ip}, {reason}"
    if reason == addresses.METADATA_REFUSAL:
        return f"{where}; outbound calls never go there."
    return (f"{where}; outbound calls to private networks are off "
            "(set ALLOW_PRIVATE_NETWORKS to allow).")  # fmt: skip


def _origin(url):
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


def _check_redirect(url, target):
    """:raise Blocked: the hop leaves http(s) or downgrades https to http."""
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise Blocked(f"{url} redirected to {target[:200]!r}, which is not an http(s) URL.")
    if urlsplit(url).scheme.lower() == "https" and scheme != "https":
        raise Blocked(f"{url} redirected to a non-https address; not followed.")


def _caused_by(exc, kind) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind) or any(isinstance(a, kind) for a in getattr(exc, "args", ())):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _translate(exc, url) -> HttpError:
    if isinstance(exc, requests.exceptions.Timeout):
        return Timeout(f"{url} did not answer in time.")
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable(f"The TLS connection to {url} failed (certificate or protocol).")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Unreachable(f"Could not connect to {url}: the server is down or unreachable.")
    return HttpError(f"The request to {url} failed: {type(exc).__name__}.")


# -- the guarded transport -----------------------------------------------------------------


class _Armed:
    """Socket methods bounded by the current call's clock: each one first sets the socket's
    timeout to what is left of the deadline."""

    def _arm(self):
        call = _CALL.get(None)
        if call is not None:
            self.settimeout(call.remaining())

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
        raise Unreachable(f"The host name {host} does not resolve.") from None
    targets = []
    for family, _type, _proto, _name, sockaddr in infos:
        ip = addresses.parse_ip(sockaddr[0])
        reason = "an address that is not IP" if ip is None else call.refusal(ip, port)
        if reason:
            raise Blocked(_blocked_message(host, ip, reason))
        targets.append((family, sockaddr))
    failure = None
    for family, sockaddr in targets:
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(call.remaining(connect=True))
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
