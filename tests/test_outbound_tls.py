"""TLS through the pinned connection: each client (``outbound``: ``Http`` and ``AsyncHttp``)
connects to the address it checked, yet the certificate is still verified against the URL's
host name (sent as SNI), and a handshake that stalls ends at the deadline. trustme makes a
throwaway CA and certificates for the test."""

import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from mcpadmin.protocol.http import Timeout, Unreachable

NAME = "mcp.test"


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f'{{"sni": "{self.server.sni}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def resolve_to_loopback(monkeypatch):
    """``NAME`` resolves to 127.0.0.1 (no DNS involved)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        return real("127.0.0.1" if host == NAME else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def tls_server(ca):
    """``start(cert_name)`` serves https on 127.0.0.1 with a certificate for ``cert_name``;
    the answer names the SNI the client sent."""
    started = []

    def start(cert_name):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        server.sni = None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(cert_name).configure_cert(context)

        def remember(sock, name, ctx):
            server.sni = name

        context.sni_callback = remember
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server.server_address[1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def trusting(outbound, ca, tmp_path, **kwargs):
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return outbound(allow_private=True, ca_file=str(pem), **kwargs)


def test_certificate_is_checked_against_the_url_name_not_the_pinned_address(
    outbound, ca, tmp_path, tls_server, resolve_to_loopback
):
    port = tls_server(NAME)
    answer = trusting(outbound, ca, tmp_path, timeout=5).get(f"https://{NAME}:{port}/")
    assert answer.status == 200
    assert answer.json() == {"sni": NAME}


def test_certificate_for_another_name_is_refused(
    outbound, ca, tmp_path, tls_server, resolve_to_loopback
):
    port = tls_server("other.test")
    with pytest.raises(Unreachable, match="TLS"):
        trusting(outbound, ca, tmp_path, timeout=5).get(f"https://{NAME}:{port}/")


def test_certificate_from_an_unknown_authority_is_refused(
    outbound, tls_server, resolve_to_loopback
):
    port = tls_server(NAME)
    with pytest.raises(Unreachable, match="TLS"):
        outbound(timeout=5, allow_private=True).get(f"https://{NAME}:{port}/")


def test_a_handshake_that_never_starts_ends_at_the_deadline(
    outbound, ca, tmp_path, resolve_to_loopback
):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, then says nothing
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    began = time.monotonic()
    try:
        with pytest.raises(Timeout):
            trusting(outbound, ca, tmp_path, timeout=1, deadline=2).get(
                f"https://{NAME}:{listener.getsockname()[1]}/"
            )
        assert time.monotonic() - began < 2 + 5
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()
