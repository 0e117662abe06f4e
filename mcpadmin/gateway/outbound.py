"""PROVISIONAL: a minimal stand-in for the data plane's async outbound client, written only so
``gateway.upstream`` can be built and tested before the real one lands (issue 20). It has the
agreed interface and nothing more: no address policy, no observer, no redirects followed.
It is replaced by the real ``gateway/outbound.py`` at merge; put nothing else here.

Interface: ``AsyncHttp.open`` sends one request and returns an ``AsyncStream`` whose body is
unread (the caller closes it); ``request`` reads the whole body into a ``protocol.http.Response``.
``deadline`` is seconds from now for the whole exchange, body included (default: three
timeouts); ``read_timeout`` bounds each read (default: ``timeout``). Failures raise the
``protocol.http`` exception classes. Cookies are never kept.
"""

import time
from http.cookiejar import CookieJar, DefaultCookiePolicy

import anyio
import httpx

from ..protocol.http import (
    BadResponse,
    HttpError,
    Interrupted,
    Response,
    Timeout,
    TooLarge,
    Unreachable,
)


class AsyncStream:
    """An open response whose body is read as it arrives."""

    def __init__(self, response: httpx.Response, url: str, ends: float, max_bytes: int):
        self._response, self._ends, self._max = response, ends, max_bytes
        self.status, self.headers, self.url = response.status_code, response.headers, url
        self._read = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    async def chunks(self):
        """The body in pieces as they arrive.

        :raise Timeout, TooLarge, Interrupted, BadResponse: as their names say.
        """
        pieces = self._response.aiter_bytes()
        try:
            while (chunk := await self._next(pieces)) is not None:
                self._read += len(chunk)
                if self._read > self._max:
                    raise TooLarge(f"{self.url} sent more than {self._max} bytes; cut off.")
                yield chunk
        finally:
            await pieces.aclose()

    async def _next(self, pieces) -> bytes | None:
        try:
            with anyio.fail_after(max(self._ends - time.monotonic(), 0)):
                return await anext(pieces)
        except StopAsyncIteration:
            return None
        except (TimeoutError, httpx.TimeoutException):
            raise Timeout(f"{self.url} did not finish answering in time; cut off.") from None
        except httpx.DecodingError:
            raise BadResponse(f"{self.url} sent a body that could not be decoded.") from None
        except httpx.HTTPError:
            raise Interrupted("The server closed the connection before its answer was "
                              f"complete ({self.url}).") from None  # fmt: skip

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self):
        await self._response.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class AsyncHttp:
    """One pool of keep-alive connections for many calls; close it with ``aclose``."""

    def __init__(self, *, timeout=10.0, max_bytes=5 * 1024 * 1024, allow_private=False,
                 allow_addresses=frozenset(), observer=None, max_connections=1000):  # fmt: skip
        self.timeout, self.max_bytes = timeout, max_bytes
        self._client = httpx.AsyncClient(
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=())),  # no domain may set one
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def open(self, method, url, *, headers=None, data: bytes | None = None,
                   deadline: float | None = None, read_timeout: float | None = None,
                   redirects=0) -> AsyncStream:  # fmt: skip
        """:raise Timeout, Unreachable, TooLarge, HttpError: as their names say."""
        ends = time.monotonic() + (deadline or 3 * self.timeout)
        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)
        request = self._client.build_request(method, url, headers=headers, content=data,
                                             timeout=timeout)  # fmt: skip
        try:
            with anyio.fail_after(max(ends - time.monotonic(), 0)):
                response = await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            raise Timeout(f"{url} did not answer in time.") from None
        except httpx.TransportError:
            raise Unreachable(
                f"Could not connect to {url}: the server is down or unreachable."
            ) from None
        except httpx.HTTPError as exc:
            raise HttpError(f"The request to {url} failed: {type(exc).__name__}.") from None
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await response.aclose()
            raise TooLarge(f"{url} announced a {int(length)}-byte answer; the limit is "
                           f"{self.max_bytes} bytes.")  # fmt: skip
        return AsyncStream(response, url, ends, self.max_bytes)

    async def request(self, method, url, **options) -> Response:
        async with await self.open(method, url, **options) as stream:
            return Response(stream.status, stream.headers, await stream.read(), stream.url)

    async def aclose(self):
        await self._client.aclose()
