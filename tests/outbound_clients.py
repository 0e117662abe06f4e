"""Both outbound clients behind the synchronous client's calls, so a test states a rule once
and holds both to it. A test that takes the ``outbound`` fixture runs twice: with
``protocol.http.Http`` (``[sync]``) and with the data plane's ``AsyncHttp`` (``[async]``).
``outbound(**settings)`` builds the client from the settings ``Http`` takes, plus
``ca_file`` (trust that CA instead of the default store). ``dns`` stands in for name
resolution.

The async client runs on an event loop in a thread of its own (an anyio blocking portal, one
per test): the main thread may hold Playwright's loop (see ``gateway_helpers.run_async``).
"""

import json as jsonlib
import socket
import ssl
from functools import partial
from urllib.parse import urlencode

import pytest
from anyio.from_thread import start_blocking_portal

from mcpadmin.gateway.outbound import AsyncHttp
from mcpadmin.protocol.http import Http

CLIENTS = ("sync", "async")


@pytest.fixture(params=CLIENTS)
def outbound(request):
    """``outbound(**settings)``: the client this run of the test is about."""
    if request.param == "sync":
        yield sync_client
        return
    with start_blocking_portal() as portal:
        built = []

        def make(**settings):
            built.append(Blocking(portal, **settings))
            return built[-1]

        yield make
        for client in built:
            client.close()


@pytest.fixture
def dns(monkeypatch):
    """``dns["name"] = [address, ...]``: each lookup of ``name`` pops the next answer (the
    last one repeats); ``dns.lookups`` counts them. Unknown names do not resolve."""

    class Dns(dict):
        lookups: list[str] = []

    answers = Dns()
    answers.lookups = []

    def getaddrinfo(host, port, *args, **kwargs):
        answers.lookups.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        queue = answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def sync_client(*, ca_file=None, **settings) -> Http:
    http = Http(**settings)
    if ca_file:
        http.session.verify = ca_file
    return http


class Blocking:
    """``AsyncHttp`` called the way ``Http`` is: ``get``, ``post``, ``request``, ``open``,
    ``check_address``. ``deadline`` and ``read_timeout`` (settings of ``Http``) go with each
    call, as ``AsyncHttp`` takes them."""

    def __init__(self, portal, *, deadline=None, read_timeout=None, ca_file=None, **settings):
        self._portal = portal
        self._per_call = {"deadline": deadline, "read_timeout": read_timeout}
        if ca_file:
            settings["ssl_context"] = ssl.create_default_context(cafile=ca_file)
        self.http: AsyncHttp = portal.call(partial(_build, settings))

    def request(self, method, url, *, headers=None, data=None, json=None, redirects=0):
        headers, body = _body(headers, data, json)
        call = partial(self.http.request, method, url, headers=headers, data=body,
                       redirects=redirects, **self._per_call)  # fmt: skip
        return self._portal.call(call)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def open(self, method, url, *, headers=None, data=None, json=None, redirects=0):
        headers, body = _body(headers, data, json)
        call = partial(self.http.open, method, url, headers=headers, data=body,
                       redirects=redirects, **self._per_call)  # fmt: skip
        return BlockingStream(self._portal, self._portal.call(call))

    def check_address(self, url):
        self.http.policy.check_url(url)

    def close(self):
        self._portal.call(self.http.aclose)


class BlockingStream:
    """An ``AsyncStream`` read the way ``Stream`` is."""

    def __init__(self, portal, stream):
        self._portal, self._stream, self._pieces = portal, stream, None
        self.status, self.headers, self.url = stream.status, stream.headers, stream.url

    @property
    def content_type(self):
        return self._stream.content_type

    def chunks(self):
        self._pieces = self._stream.chunks()
        while (piece := self._portal.call(anext, self._pieces, None)) is not None:
            yield piece

    def read(self):
        return b"".join(self.chunks())

    def close(self):
        if self._pieces is not None:
            self._portal.call(self._pieces.aclose)
        self._portal.call(self._stream.aclose)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def _build(settings) -> AsyncHttp:
    return AsyncHttp(**settings)


def _body(headers, data, json):
    """Headers and body bytes for what ``requests`` would send for ``data`` or ``json``."""
    headers = dict(headers or {})
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return headers, jsonlib.dumps(json).encode()
    if isinstance(data, dict):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return headers, urlencode(data).encode()
    return headers, data.encode() if isinstance(data, str) else data
