"""What the data plane's client (``AsyncHttp``) adds to the policy both clients share (the
rules themselves are tested on both in test_outbound_*.py and test_hostile_servers.py): one
connection per upstream origin kept and reused, each new one resolved and checked again and
made to the checked address, a server that drips its answer cut at the deadline, a cancelled
call's connection closed, and one client per process and event loop."""

import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import anyio
import anyio.to_thread
import pytest

from mcpadmin.gateway.outbound import AsyncHttp, client, close_clients
from mcpadmin.protocol.http import Blocked, Timeout
from mcpadmin.services import outbound as outbound_service
from tests.gateway_helpers import run_async
from tests.peers import hostile_server
from tests.peers.drip_server import DripServer

SLACK = 5.0  # generous: two shared cores, other suites running


class KeepAliveServer(ThreadingHTTPServer):
    """Answers ``{}`` over HTTP/1.1 keep-alive; ``connections`` counts those accepted."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Answer)
        self.connections = 0

    def process_request(self, request, client_address):
        self.connections += 1  # called by the one thread that accepts
        super().process_request(request, client_address)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the connection stays open between requests
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)  # accepted, no body: nothing to read before reuse
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def keep_alive():
    server = KeepAliveServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hostile():
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


def calls(urls, **settings) -> list:
    """GET each of ``urls`` in turn through one ``AsyncHttp``; the answer or the error each
    got."""

    async def run():
        http = AsyncHttp(**{"timeout": 2, **settings})
        outcomes = []
        try:
            for url in urls:
                try:
                    outcomes.append(await http.request("GET", url))
                except Exception as exc:
                    outcomes.append(exc)
        finally:
            await http.aclose()
        return outcomes

    return run_async(run)


def test_calls_to_one_origin_share_one_kept_connection(keep_alive):
    url = f"http://127.0.0.1:{keep_alive.port}/"
    assert [a.status for a in calls([url, url, url], allow_private=True)] == [200, 200, 200]
    assert keep_alive.connections == 1


def test_an_answer_closed_unread_keeps_its_connection_when_it_has_no_body(keep_alive):
    url = f"http://127.0.0.1:{keep_alive.port}/"

    async def run():
        http = AsyncHttp(timeout=2, allow_private=True)
        try:
            async with await http.open("POST", url, data=b"{}") as accepted:
                status = accepted.status  # its (empty) body never read
            return status, (await http.request("GET", url)).status
        finally:
            await http.aclose()

    assert run_async(run) == (202, 200)
    assert keep_alive.connections == 1


def test_a_kept_connection_is_not_looked_up_again(keep_alive, dns):
    dns["kept.example.com"] = ["127.0.0.1", "10.0.0.1"]  # rebinds after the first lookup
    url = f"http://kept.example.com:{keep_alive.port}/"
    exempt = frozenset({("127.0.0.1", keep_alive.port)})
    assert [a.status for a in calls([url, url], allow_addresses=exempt)] == [200, 200]
    assert dns.lookups == ["kept.example.com"]


def test_each_new_connection_is_resolved_and_checked_again(hostile, dns):
    # The hostile server closes every connection, so the second call connects anew.
    dns["rebind.example.com"] = ["127.0.0.1", "10.0.0.1"]
    url = f"http://rebind.example.com:{hostile.port}/ok"
    before = len(hostile.requests_to("/ok"))
    first, second = calls([url, url], allow_addresses=frozenset({("127.0.0.1", hostile.port)}))
    assert first.status == 200
    assert isinstance(second, Blocked) and "10.0.0.1" in str(second)
    assert dns.lookups == ["rebind.example.com", "rebind.example.com"]
    assert len(hostile.requests_to("/ok")) == before + 1


def test_a_server_dripping_its_answer_is_cut_at_the_deadline():
    # One byte every 0.2 s: no read ever waits a whole timeout, only the deadline ends it.
    with DripServer(interval=0.2) as drip:

        async def token_request():
            http = AsyncHttp(timeout=1, allow_private=True)
            try:
                await http.request("POST", drip.url, data=b"grant_type=x", deadline=2)
            finally:
                await http.aclose()

        started = time.monotonic()
        with pytest.raises(Timeout, match="did not finish answering in time"):
            run_async(token_request)
        assert time.monotonic() - started < 2 + SLACK
        ends = time.monotonic() + 10
        while drip.in_flight and time.monotonic() < ends:
            time.sleep(0.05)
        assert drip.in_flight == 0  # the server saw the connection closed


def test_a_cancelled_call_closes_its_connection(hostile):
    async def cancel_midway():
        http = AsyncHttp(timeout=5, allow_private=True)
        before = len(hostile.requests_to("/slow-body"))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(
                    partial(http.request, "GET", hostile.base_url + "/slow-body", deadline=60)
                )
                ends = time.monotonic() + 10  # the body is being sent: cancel the call then
                while len(hostile.requests_to("/slow-body")) == before and time.monotonic() < ends:
                    await anyio.sleep(0.05)
                await anyio.sleep(0.2)
                group.cancel_scope.cancel()
            seen = hostile.last("/slow-body")
            return await anyio.to_thread.run_sync(seen.hung_up.wait, 10)  # before aclose
        finally:
            await http.aclose()

    assert run_async(cancel_midway)


def test_one_client_per_event_loop_and_settings_until_closed():
    settings = {"HTTP_TIMEOUT": 3.0, "HTTP_MAX_BYTES": 1000, "ALLOW_PRIVATE_NETWORKS": True,
                "ALLOW_LOOPBACK": False, "LOG_FORMAT": "json"}  # fmt: skip
    app = SimpleNamespace(config=settings)
    other = SimpleNamespace(config={**settings, "LOG_FORMAT": "text"})

    async def in_one_loop():
        first, again, apart = client(app), client(app), client(other)
        await close_clients()
        after_close = client(app)
        await close_clients()
        return first, again, apart, after_close

    async def in_another_loop():
        try:
            return client(app)
        finally:
            await close_clients()

    first, again, apart, after_close = run_async(in_one_loop)
    run_async(close_clients)  # nothing of another loop's to close
    assert first is again and first is not apart
    assert first.timeout == 3.0 and first.policy.max_bytes == 1000 and first.policy.allow_private
    assert first.observer is outbound_service._log_exchange and apart.observer is None
    assert after_close is not first  # a closed client is never handed out again
    assert run_async(in_another_loop) is not first
