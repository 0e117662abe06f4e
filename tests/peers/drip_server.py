"""A hostile token endpoint, run in the test process: it reads the request, answers ``200``
with a JSON content type and a large ``Content-Length`` at once, then sends one space every
``interval`` seconds and never finishes, so a per-read timeout never fires and only an
overall deadline stops the client. It counts requests and the most it had in flight at once.
"""

import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DripServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, interval: float = 0.5):
        super().__init__(("127.0.0.1", 0), DripHandler)
        self.interval = interval
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = self.in_flight = self.most_in_flight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class DripHandler(BaseHTTPRequestHandler):
    server: DripServer

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.requests += 1
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            while not server.stopping.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                readable, _, _ = select.select([self.connection], [], [], server.interval)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    break  # the client closed the connection
        except OSError:
            pass  # the client gave up: what the test wants
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass
