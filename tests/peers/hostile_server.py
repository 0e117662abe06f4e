"""A hostile HTTP server on 127.0.0.1, run in a thread of the test process: each path is one
misbehaviour (slowloris headers, slow-drip or endless bodies, a gzip bomb, broken event
streams, redirect tricks, JSON nested thousands deep, a cookie for whoever comes next). It
records every request and whether the client hung up, so a test can check that nothing was
sent where it must not be and that the worker was freed.

Every mode gives up after ``MAX_SECONDS`` so a client that never hangs up cannot keep a
thread alive past the test.
"""

import gzip
import io
import json
import socket
import socketserver
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

MAX_SECONDS = 60
DRIP = 0.2  # seconds between dripped bytes
BOMB_BYTES = 64 * 1024 * 1024  # what the gzip bomb inflates to


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict
    body: bytes
    sent: int = 0  # body bytes written
    hung_up: threading.Event = field(default_factory=threading.Event)  # the client closed


def _bomb() -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as z:
        block = bytes(1024 * 1024)
        for _ in range(BOMB_BYTES // len(block)):
            z.write(block)
    return out.getvalue()


class _Handler(socketserver.BaseRequestHandler):
    server: "HostileServer"

    def handle(self):
        self.request.settimeout(MAX_SECONDS)
        seen = self._read_request()
        if seen is None:
            return
        self.server.seen.append(seen)
        mode = urlsplit(seen.path).path.strip("/").split("/")[0] or "ok"
        query = {k: v[0] for k, v in parse_qs(urlsplit(seen.path).query).items()}
        try:
            getattr(self, "mode_" + mode.replace("-", "_"), self.mode_ok)(seen, query)
        except OSError:
            seen.hung_up.set()  # the client closed while we were writing
            return
        self._wait_for_hangup(seen)

    def _read_request(self) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = self.request.recv(65536)
            if not piece:
                return None
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            piece = self.request.recv(65536)
            if not piece:
                break
            body += piece
        return Seen(method, path, headers, body)

    def _wait_for_hangup(self, seen):
        """After a complete answer, wait (bounded) for the client to close."""
        try:
            self.request.settimeout(MAX_SECONDS)
            while self.request.recv(65536):
                pass
        except OSError:
            pass
        seen.hung_up.set()

    def _send(self, seen, data: bytes):
        self.request.sendall(data)
        seen.sent += len(data)

    def _head(self, status="200 OK", headers=()):
        """Status and headers; never keep-alive (one request per connection, so a hang-up
        is about that request)."""
        lines = [f"HTTP/1.1 {status}", *headers]
        if not any(h.lower().startswith("connection:") for h in headers):
            lines.append("Connection: close")
        self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _forever(self, seen, piece: bytes, pause: float):
        ends = time.monotonic() + MAX_SECONDS
        while time.monotonic() < ends:
            self._send(seen, piece)
            if pause:
                time.sleep(pause)

    # -- modes -------------------------------------------------------------------------------

    def mode_ok(self, seen, query):
        self._head(headers=["Content-Type: application/json", "Content-Length: 2"])
        self._send(seen, b"{}")

    def mode_slow_headers(self, seen, query):
        """A status line, then header bytes one at a time, never finishing the headers."""
        self.request.sendall(b"HTTP/1.1 200 OK\r\n")
        ends = time.monotonic() + MAX_SECONDS
        while time.monotonic() < ends:
            self.request.sendall(b"X")
            time.sleep(DRIP)

    def mode_slow_body(self, seen, query):
        """Headers promising a small body, then one byte per ``DRIP``."""
        self._head(headers=["Content-Type: application/json", "Content-Length: 100000"])
        self._forever(seen, b" ", DRIP)

    def mode_endless(self, seen, query):
        """A body with no length that never ends, as fast as the client reads."""
        self._head(headers=["Content-Type: application/json", "Connection: close"])
        self._forever(seen, b" " * 65536, 0)

    def mode_big_json(self, seen, query):
        """A 50 MB JSON array, length announced only when ``?announce=1``."""
        size = 50 * 1024 * 1024
        headers = ["Content-Type: application/json", "Connection: close"]
        if query.get("announce"):
            headers.append(f"Content-Length: {size}")
        self._head(headers=headers)
        self._send(seen, b"[")
        piece = b"0," * 32768
        while seen.sent + len(piece) < size:
            self._send(seen, piece)
        self._send(seen, b"0]")

    def mode_gzip_bomb(self, seen, query):
        body = self.server.bomb()
        self._head(headers=["Content-Type: application/json", "Content-Encoding: gzip",
                            f"Content-Length: {len(body)}"])  # fmt: skip
        self._send(seen, body)

    def mode_sse_no_newline(self, seen, query):
        """An event stream that never sends a line end."""
        self._head(headers=["Content-Type: text/event-stream", "Connection: close"])
        self._forever(seen, b"x" * 65536, 0)

    def mode_sse_endless_data(self, seen, query):
        """One ``data:`` line that never ends."""
        self._head(headers=["Content-Type: text/event-stream", "Connection: close"])
        self._send(seen, b"data: ")
        self._forever(seen, b"a" * 65536, 0)

    def mode_sse_drip(self, seen, query):
        """An event stream of keep-alive comments, one byte per ``DRIP``, never an answer."""
        self._head(headers=["Content-Type: text/event-stream", "Connection: close"])
        self._forever(seen, b":", DRIP)

    def mode_redirect(self, seen, query):
        """``?to=URL&status=307``: redirect there."""
        status = query.get("status", "302")
        self._head(f"{status} Moved", [f"Location: {query.get('to', '/')}", "Content-Length: 0"])

    def mode_set_cookie(self, seen, query):
        """``?value=V``: a cookie for every path of this host, as a session cookie would be."""
        value = query.get("value", "upstream-session")
        cookie = f"Set-Cookie: session={value}; Path=/"
        self._head(headers=[cookie, "Content-Type: application/json", "Content-Length: 2"])
        self._send(seen, b"{}")

    def mode_loop(self, seen, query):
        self._head("302 Found", ["Location: /loop", "Content-Length: 0"])

    def mode_challenge(self, seen, query):
        """A 401 whose challenge names ``/<rm>`` on this server as the resource metadata."""
        where = f"http://{seen.headers.get('host')}/{query.get('rm', '')}"
        self._head("401 Unauthorized", [f'WWW-Authenticate: Bearer resource_metadata="{where}"',
                                        "Content-Length: 0"])  # fmt: skip

    def mode_compressed(self, seen, query):
        """A JSON body in ``?coding=`` gzip, deflate (the zlib format) or raw-deflate (what
        some servers send as deflate), spread over several reads."""
        coding = query.get("coding", "gzip")
        body = json.dumps({"items": list(range(20000))}).encode()
        if coding == "gzip":
            body = gzip.compress(body)
        else:
            deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS if coding == "raw-deflate" else 15)
            body = deflate.compress(body) + deflate.flush()
        encoding = "Content-Encoding: " + coding.removeprefix("raw-")
        self._head(headers=["Content-Type: application/json", encoding,
                            f"Content-Length: {len(body)}"])  # fmt: skip
        for start in range(0, len(body), 1000):
            self._send(seen, body[start : start + 1000])

    def mode_bad_gzip(self, seen, query):
        body = b"this is not gzip at all"
        self._head(headers=["Content-Type: application/json", "Content-Encoding: gzip",
                            f"Content-Length: {len(body)}"])  # fmt: skip
        self._send(seen, body)

    def mode_deep_json(self, seen, query):
        """A JSON-RPC answer to the request whose one tool's input schema nests ``?depth=``
        arrays deep (default 5000); as an event stream with ``?sse=1``."""
        try:
            request_id = json.loads(seen.body).get("id", 1)
        except ValueError:
            request_id = 1
        depth = int(query.get("depth", "5000"))
        schema = '{"type": "object", "default": ' + "[" * depth + "]" * depth + "}"
        tool = '{"name": "deep", "inputSchema": ' + schema + "}"
        message = ('{"jsonrpc": "2.0", "id": ' + json.dumps(request_id)
                   + ', "result": {"tools": [' + tool + "]}}").encode()  # fmt: skip
        if query.get("sse"):
            body, kind = b"event: message\ndata: " + message + b"\n\n", "text/event-stream"
        else:
            body, kind = message, "application/json"
        self._head(headers=[f"Content-Type: {kind}", f"Content-Length: {len(body)}"])
        self._send(seen, body)

    def mode_drop(self, seen, query):
        """Half a JSON body, then the connection closes."""
        self._head(headers=["Content-Type: application/json", "Content-Length: 1000"])
        self._send(seen, b'{"jsonrpc": "2.0", "id": 1, "res')
        self.request.shutdown(socket.SHUT_RDWR)


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self._bomb: bytes | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bomb(self) -> bytes:
        with self._lock:
            if self._bomb is None:
                self._bomb = _bomb()
            return self._bomb

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    def last(self, prefix: str) -> Seen:
        return self.requests_to(prefix)[-1]


def start() -> HostileServer:
    """A running server; call ``stop(server)`` when done."""
    server = HostileServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: HostileServer):
    server.shutdown()
    server.server_close()
