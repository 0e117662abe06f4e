"""The door of the ASGI application: every request body is read whole on the event loop,
within ``REQUEST_READ_SECONDS`` and a size cap, before any handler (or the admin app's
thread) sees it, so a client that drips its body holds a coroutine, never a thread.

At most ``MAX_PENDING_REQUESTS_PER_ADDRESS`` requests from one client address may be sending
their bodies at once; beyond that the answer is 429 with ``Retry-After``. A body too slow is
answered 408, one too large 413: each with a sentence naming the setting. Agent endpoint
paths get JSON-RPC errors, other paths plain text.
"""

import json
import re
from collections import Counter

import anyio

AGENT_ENDPOINT = re.compile(r"^/agents/(\d{1,18})/mcp$")
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})


class Guard:
    """ASGI middleware around the whole application (``app.create_asgi_app``)."""

    def __init__(self, app, config):
        self.app, self.config = app, config
        self.pending: Counter = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _has_body(scope):
            return await self.app(scope, receive, send)
        config = self.config
        read_seconds = config["REQUEST_READ_SECONDS"]
        per_address = config["MAX_PENDING_REQUESTS_PER_ADDRESS"]
        agent = AGENT_ENDPOINT.match(scope["path"]) is not None
        limit = config["GATEWAY_MAX_REQUEST_BYTES" if agent else "ADMIN_MAX_REQUEST_BYTES"]
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _refuse(send, agent, 413, f"Request too large: at most {limit} bytes.")
        address = client_address(scope, config["TRUSTED_PROXY_HOPS"])
        if self.pending[address] >= per_address:
            text = (f"Too many requests from this address are still sending their bodies (at "
                    f"most {per_address}, MCPADMIN_MAX_PENDING_REQUESTS_PER_ADDRESS): "
                    f"retry in {int(read_seconds)} seconds.")  # fmt: skip
            headers = [(b"retry-after", str(int(read_seconds)).encode())]
            return await _refuse(send, agent, 429, text, headers)
        self.pending[address] += 1
        body = None
        try:
            with anyio.move_on_after(read_seconds):
                body = await _read(receive, limit)
        except _TooLarge:
            return await _refuse(send, agent, 413, f"Request too large: at most {limit} bytes.")
        except _Gone:
            return None  # the client left before sending its body: nobody to answer
        finally:
            self.pending[address] -= 1
            if self.pending[address] <= 0:
                del self.pending[address]
        if body is None:
            text = (f"The request body did not arrive within {read_seconds:g} seconds "
                    "(MCPADMIN_REQUEST_READ_SECONDS).")  # fmt: skip
            return await _refuse(send, agent, 408, text)
        return await self.app(scope, _replay(body, receive), send)


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


async def _read(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands over the body read, then waits for the client to go."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _has_body(scope) -> bool:
    if scope["method"].encode() not in _BODY_METHODS:
        return False
    length = _header(scope, b"content-length")
    chunked = _header(scope, b"transfer-encoding") is not None
    return (length is not None and length != "0") or chunked


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip()
    return None


def client_address(scope, hops: int) -> str | None:
    """The client's address: the connection's peer, or behind ``hops`` trusted reverse
    proxies the entry they added to ``X-Forwarded-For`` (as the admin app's ProxyFix reads
    it), and from nowhere else."""
    if hops:
        forwarded = _header(scope, b"x-forwarded-for")
        entries = [e.strip() for e in (forwarded or "").split(",") if e.strip()]
        if len(entries) >= hops:
            return entries[-hops]
    client = scope.get("client")
    return client[0] if client else None


async def _refuse(send, agent: bool, status: int, text: str, headers=()):
    if agent:  # a JSON-RPC error for an agent [26/http: errors carry no id before parsing]
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": text}}
        body, kind = json.dumps(error).encode(), b"application/json"
    else:
        body, kind = text.encode(), b"text/plain; charset=utf-8"
    raw = [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close"), *headers]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
