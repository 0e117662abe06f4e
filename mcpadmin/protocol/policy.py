"""The outbound policy, as rules both HTTP clients apply: ``http.Http`` (requests, the admin
side) and the data plane's ``AsyncHttp`` (aiohttp). Pure: the clients do the I/O and ask these
rules what they may do next.

- Which URL may be asked for (``Policy.check_url``), and which addresses a name may resolve
  to before the connection is made to one of them (``Policy.connectable``).
- Which redirects are followed, and what a request carries to the next hop (``Route``).
- How long an exchange may take (``Clock``) and how large its answer may be
  (``Policy.check_announced``, ``Policy.count``).
- That no cookie is ever kept (``keep_no_cookies``): one client serves every agent and
  connector, so an upstream's ``Set-Cookie`` for one must never reach another.

Failures are ``HttpError`` subclasses whose message is a sentence for the operator; the
caller adds what it was doing ("discovery failed: …"). Both clients build them here.
"""

import time
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin, urlsplit

from ..config import setting
from . import addresses

USER_AGENT = "mcpadmin/0.1"
# Methods whose request carries a body (and often a credential or an authorization code):
# a redirect answering them is never followed (RFC 9110 §15.4.8 lets a 307/308 re-send the
# body to the new target; mcpadmin refuses to).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FOLLOWED_METHODS = frozenset({"GET", "HEAD"})
# RFC 9110 §15.4: the redirections that carry a Location to follow.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers kept when a redirect leaves the origin; everything else may be a credential.
CROSS_ORIGIN_HEADERS = frozenset({"user-agent", "accept"})


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


# -- what may be reached -------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What a client may reach and read. ``allow_addresses`` holds ``(ip, port)`` pairs
    exempt from the private-address rule (one internal server an operator trusts, or a test
    peer); ``allow_loopback`` exempts loopback addresses only (``allow_private`` exempts
    them with every other private one); metadata addresses never are."""

    allow_private: bool = False
    allow_addresses: frozenset = frozenset()
    max_bytes: int = 5 * 1024 * 1024
    allow_loopback: bool = False

    def check_url(self, url: str):
        """Refuse, before anything is sent, a URL that is not http(s) with a host, carries
        credentials, names a cloud metadata host, or (unless private networks are allowed)
        names ``localhost`` or a literal private address in any spelling (``127.1``,
        ``2130706433``, ``[::ffff:127.0.0.1]``…). Names are checked again on the addresses
        they resolve to (``connectable``).

        :raise Blocked: with the reason.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Blocked(f"{url[:200]!r} is not a valid URL.") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise Blocked(f"{url[:200]!r} is not an http(s) URL.")
        if "@" in parts.netloc:
            raise Blocked(f"{url[:200]!r} carries credentials in the URL; refused.")
        host = parts.hostname
        if addresses.is_metadata_name(host):
            raise Blocked(f"{host} is a cloud metadata service; outbound calls never go there.")
        ip = addresses.parse_ip(host)
        if ip is not None:
            reason = self.refusal(ip, port or (443 if scheme == "https" else 80))
            if reason:
                raise Blocked(blocked(host, ip, reason))
        elif addresses.is_loopback_name(host) and not (self.allow_private or self.allow_loopback):
            raise Blocked(blocked(host, None, addresses.LOOPBACK_REFUSAL))

    def refusal(self, ip: addresses.IP, port: int) -> str | None:
        """Why ``ip:port`` may not be reached under this policy, or None."""
        if addresses.is_metadata(ip):
            return addresses.METADATA_REFUSAL
        if self.allow_private or (str(ip), port) in self.allow_addresses:
            return None
        if self.allow_loopback and addresses.is_loopback(ip):
            return None
        return addresses.refusal(ip)

    def connectable(self, host: str, port: int, infos) -> list[tuple[int, tuple]]:
        """The ``(family, sockaddr)`` of each address ``host`` resolved to (``infos`` as
        ``socket.getaddrinfo`` returns them), in order, when every one is allowed. The
        connection goes to one of these, never to the result of a second lookup.

        :raise Blocked: any address is refused (a name that answers one private address
            among public ones is refused whole); :raise Unreachable: there is none.
        """
        targets = []
        for family, _type, _proto, _name, sockaddr in infos:
            ip = addresses.parse_ip(sockaddr[0])
            reason = "an address that is not IP" if ip is None else self.refusal(ip, port)
            if reason:
                raise Blocked(blocked(host, ip, reason))
            targets.append((family, sockaddr))
        if not targets:
            raise unresolved(host)
        return targets

    def check_announced(self, url: str, headers):
        """:raise TooLarge: the answer's ``Content-Length`` is over the limit (refused before
        its body is read)."""
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise TooLarge(f"{url} announced a {int(length)}-byte answer; the limit is "
                           f"{self.max_bytes} bytes.")  # fmt: skip

    def count(self, url: str, read: int, piece: bytes) -> int:
        """The body bytes read once ``piece`` (decoded) is handed out.

        :raise TooLarge: that is more than the limit; the piece is not handed out.
        """
        read += len(piece)
        if read > self.max_bytes:
            raise TooLarge(f"{url} sent more than {self.max_bytes} bytes; cut off.")
        return read


# The setting that allows what each refusal names, and what the sentence calls it.
ALLOWED_BY = {
    addresses.LOOPBACK_REFUSAL: ("loopback addresses", "ALLOW_LOOPBACK"),
    addresses.PRIVATE_REFUSAL: ("private networks", "ALLOW_PRIVATE_NETWORKS"),
}


def blocked(host, ip, reason) -> str:
    """The sentence for a refused host (``ip`` what it is or resolved to, if known), naming
    the setting that would allow it as the operator types it."""
    where = f"{host} is {reason}" if ip is None or str(ip) == host else f"{host} is {ip}, {reason}"
    if reason not in ALLOWED_BY:
        return f"{where}; outbound calls never go there."
    what, key = ALLOWED_BY[reason]
    return f"{where}; outbound calls to {what} are off: set {setting(key, '1')} to allow them."


# -- redirects -----------------------------------------------------------------------------


@dataclass
class Route:
    """The hops of one request: where it goes now (``url``, checked against ``policy``)
    and with which ``headers`` (the caller's, with mcpadmin's User-Agent).

    After each answer the client asks ``follows``; when it does, the client closes that
    answer and calls ``advance`` with its Location. Only GET and HEAD follow, at most
    ``redirects`` times; a redirect answering POST, PUT or PATCH is refused whatever
    ``redirects`` says (the body, with its code, verifier or secret, is not sent again).
    Other methods get the 3xx back when ``redirects`` is 0.
    """

    policy: Policy
    method: str
    url: str
    headers: dict | None = None
    redirects: int = 0
    hops: int = field(default=0, init=False)

    def __post_init__(self):
        self.method = self.method.upper()
        self.headers = {"User-Agent": USER_AGENT, **(self.headers or {})}
        self.policy.check_url(self.url)

    def follows(self, status: int, location: str | None) -> bool:
        """Whether this answer is a redirect the client must act on (follow or refuse)
        rather than hand back to its caller."""
        if status not in REDIRECT_STATUSES or location is None:
            return False
        return bool(self.redirects) or self.method in BODY_METHODS

    def advance(self, location: str):
        """Move to the hop ``location`` names; across origins only ``CROSS_ORIGIN_HEADERS``
        go along (never credentials).

        :raise Blocked: the method does not follow, the hop limit is reached, the hop leaves
            http(s), downgrades https to http, or is refused by the policy.
        """
        url, target = self.url, urljoin(self.url, location)
        if self.method not in FOLLOWED_METHODS:
            raise Blocked(
                f"{url} redirected to {target[:200]}; mcpadmin does not follow redirects "
                f"for {self.method}, so the request was not sent there. Use the final address."
            )
        if self.hops >= self.redirects:
            raise Blocked(f"{url} redirected more than {self.redirects} time(s); not followed.")
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise Blocked(f"{url} redirected to {target[:200]!r}, which is not an http(s) URL.")
        if urlsplit(url).scheme.lower() == "https" and scheme != "https":
            raise Blocked(f"{url} redirected to a non-https address; not followed.")
        self.policy.check_url(target)
        if _origin(target) != _origin(url):
            kept = CROSS_ORIGIN_HEADERS
            self.headers = {k: v for k, v in self.headers.items() if k.lower() in kept}
        self.url, self.hops = target, self.hops + 1


def _origin(url):
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


# -- time ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """The time one exchange may take: every connect within ``connect_timeout``, every
    read, send and TLS handshake within ``timeout``, and all of it (redirects and body
    included) by ``deadline`` (``time.monotonic()``), whichever comes first. A server that
    drips one byte a second is cut at the deadline."""

    deadline: float
    timeout: float
    connect_timeout: float

    @classmethod
    def start(cls, timeout: float, deadline: float | None = None,
              read_timeout: float | None = None) -> "Clock":  # fmt: skip
        """A clock starting now: the whole exchange gets ``deadline`` seconds (three
        ``timeout`` by default); reads get ``read_timeout`` (for an answer that may take
        long, such as a tool call) or ``timeout``; connects get ``timeout``."""
        ends = time.monotonic() + (deadline or 3 * timeout)
        return cls(ends, read_timeout or timeout, timeout)

    def left(self) -> float:
        """Seconds until the deadline.

        :raise TimeoutError: it has passed.
        """
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        return left

    def remaining(self, connect: bool = False) -> float:
        """Seconds for the next socket operation (``connect``: for making the connection).

        :raise TimeoutError: the deadline has passed.
        """
        return min(self.connect_timeout if connect else self.timeout, self.left())

    def passed(self) -> bool:
        return time.monotonic() >= self.deadline

    def check(self, url: str):
        """:raise Timeout: the deadline passed while the body was being read."""
        if time.monotonic() > self.deadline:
            raise unfinished(url)


# -- cookies -------------------------------------------------------------------------------


def keep_no_cookies(jar: CookieJar) -> CookieJar:
    """``jar``, emptied and set to accept no cookie and send none: a client shared by
    several agents and connectors must not carry one's cookie to another."""
    jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    jar.clear()
    return jar


# -- the sentences of failures -------------------------------------------------------------


def caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is behind ``exc``: itself, an argument it wraps, or anywhere on its
    chain of causes (the libraries under both clients wrap the error that tells what
    happened, a read timeout or a TLS failure, in their own)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind) or any(isinstance(a, kind) for a in getattr(exc, "args", ())):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def no_answer(url: str, cut_off: bool = False) -> Timeout:
    """No (complete) status and headers in time; ``cut_off``: the deadline ended it."""
    return Timeout(f"{url} did not answer in time{'; cut off' if cut_off else ''}.")


def unfinished(url: str) -> Timeout:
    return Timeout(f"{url} did not finish answering in time; cut off.")


def interrupted(url: str) -> Interrupted:
    return Interrupted(f"The server closed the connection before its answer was complete ({url}).")


def undecodable(url: str) -> BadResponse:
    return BadResponse(f"{url} sent a body that could not be decompressed.")


def unresolved(host: str) -> Unreachable:
    return Unreachable(f"The host name {host} does not resolve.")


def tls_failed(url: str) -> Unreachable:
    return Unreachable(f"The TLS connection to {url} failed (certificate or protocol).")


def unreachable(url: str) -> Unreachable:
    return Unreachable(f"Could not connect to {url}: the server is down or unreachable.")


def failed(url: str, exc: BaseException) -> HttpError:
    return HttpError(f"The request to {url} failed: {type(exc).__name__}.")
