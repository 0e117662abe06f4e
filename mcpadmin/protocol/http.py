"""The one outbound HTTP client: every call to an MCP server or an authorization server goes
through ``Http``, which applies a timeout and an overall deadline, caps the body size, follows
redirects only when asked (and re-checks each hop), and refuses private addresses unless the
operator allowed them.

Failures raise ``HttpError`` subclasses whose message is a sentence for the operator; the
caller adds what it was doing ("discovery failed: …").
"""

import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

USER_AGENT = "mcpadmin/0.1"
_CHUNK = 16 * 1024


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
    """The body is not what the caller needed (e.g. not JSON)."""


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
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadResponse(f"{self.url} answered with something that is not JSON.") from None


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

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def chunks(self) -> Iterator[bytes]:
        """The body in pieces as they arrive.

        :raise Timeout: the deadline passed; :raise TooLarge: the size limit was reached.
        """
        try:
            for chunk in self._raw.iter_content(_CHUNK):
                self._read += len(chunk)
                if self._read > self._max_bytes:
                    raise TooLarge(f"{self.url} sent more than {self._max_bytes} bytes.")
                if time.monotonic() > self._deadline:
                    raise Timeout(f"{self.url} did not finish answering in time.")
                yield chunk
        except requests.exceptions.RequestException as exc:
            raise _translate(exc, self.url) from None

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def close(self):
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Http:
    """Outbound policy plus a connection pool. Build one per operation or share one per thread.

    ``timeout`` bounds each connect and each read; the whole exchange (redirects and body
    included) must finish within ``deadline`` seconds, by default three timeouts.
    """

    timeout: float = 10.0
    max_bytes: int = 5 * 1024 * 1024
    allow_private: bool = False
    deadline: float | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method, url, *, headers=None, data=None, json=None, redirects=0):
        """Send one request and read the whole body.

        :param redirects: how many redirects to follow (each hop is checked again).
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
        """Send one request and return the response with its body unread. Close it after use."""
        deadline = time.monotonic() + (self.deadline or 3 * self.timeout)
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        for _ in range(redirects + 1):
            self.check_address(url)
            try:
                raw = self.session.request(
                    method,
                    url,
                    headers=sent,
                    data=data,
                    json=json,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.exceptions.RequestException as exc:
                raise _translate(exc, url) from None
            if raw.is_redirect and redirects:
                target = urljoin(url, raw.headers.get("Location", ""))
                raw.close()
                if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
                    raise Blocked(f"{url} redirected to a non-https address; not followed.")
                if urlsplit(target).netloc != urlsplit(url).netloc:
                    sent.pop("Authorization", None)  # never carry credentials to another host
                url, redirects = target, redirects - 1
                if raw.status_code == 303:
                    method, data, json = "GET", None, None
                continue
            length = raw.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                raw.close()
                raise TooLarge(f"{url} announced a {int(length)}-byte answer; the limit is "
                               f"{self.max_bytes} bytes.")  # fmt: skip
            return Stream(raw.status_code, raw.headers, url, raw, deadline, self.max_bytes)
        raise Blocked(f"{url} redirected too many times.")

    def check_address(self, url):
        """Refuse URLs that are not http(s), or that resolve to a private address when the
        policy forbids those (loopback, RFC 1918, link-local, cloud metadata…).

        The check resolves the name before the request; a name that changes its answer between
        the two (DNS rebinding) is not caught here.

        :raise Blocked: with the reason; :raise Unreachable: the name does not resolve.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Blocked(f"{url!r} is not an http(s) URL.")
        if self.allow_private:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError:
            raise Unreachable(f"The host name {parts.hostname} does not resolve.") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not address.is_global:
                raise Blocked(
                    f"{parts.hostname} resolves to the private address {address}; outbound "
                    "calls to private networks are off (set ALLOW_PRIVATE_NETWORKS to allow)."
                )


def _translate(exc, url) -> HttpError:
    if isinstance(exc, requests.exceptions.Timeout):
        return Timeout(f"{url} did not answer in time.")
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable(f"The TLS connection to {url} failed (certificate or protocol).")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Unreachable(f"Could not connect to {url}: the server is down or unreachable.")
    return HttpError(f"The request to {url} failed: {type(exc).__name__}.")
