"""The async data plane (``mcpadmin/gateway/``) under the loads it was built for: a token
refresh raced by calls in two gunicorn processes, cancellation, keyless clients that drip
their bodies, the stream caps, held streams ended by the watcher, and the Host check.

A modern client closing a call's stream once progress flows is covered through the new stack
by the SDK client tests (both go red when ``relay.CallResponse._disconnects`` stops
cancelling): ``test_gateway_calls.py::test_a_call_cancelled_by_the_agent_is_cancelled_upstream
[auto]`` (the upstream sees it cancelled) and ``test_call_log.py::test_a_call_the_agent_cancels_
is_recorded_cancelled[auto]`` (the row says so). Their ``[legacy]`` twins pass even with
``notifications/cancelled`` ignored (the SDK also closes the call's stream), hence the legacy
tests here; and a disconnect before anything was streamed is tested here.
"""

import asyncio
import contextlib
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import requests

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.gateway import relay
from mcpadmin.models import Agent, Connector, utcnow
from mcpadmin.services import agent_keys
from mcpadmin.services.calllog import Outcome
from tests import test_gateway_calls as shared
from tests.browser.conftest import start_live_server
from tests.gateway_helpers import agent_with_tools, serving, synced_connector
from tests.oauth_helpers import add_connector as add_oauth_connector
from tests.oauth_helpers import connect
from tests.test_call_log import rows
from tests.test_gateway_calls import TOKEN, stats_of
from tests.test_gateway_wire import legacy_headers, modern_body, modern_headers
from tests.test_upstream_calls import wait_for
from tests.token_checks import accepted, newest_refresh_token

LEGACY = "2025-11-25"
# A call of 40 steps a quarter second apart (10 s), reporting progress to token "p1".
SLOW_COUNT = {"name": "weather__count", "arguments": {"steps": 40, "delay": 0.25},
              "_meta": {"progressToken": "p1"}}  # fmt: skip
# The progress-reporting peer of the gateway's call tests, and its fresh session pool.
bearer_tools, fresh_pool = shared.bearer_tools, shared.fresh_pool


@pytest.fixture
def weather(app, bearer_tools):
    """Agent "Ada" with the shared-bearer "Weather" connector (``count`` reports progress):
    the agent's id and key."""
    with app.app_context():
        connector = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        return agent.id, key


def endpoint(server, agent_id: int) -> str:
    return f"{server.url}/agents/{agent_id}/mcp"


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def messages(response):
    """The JSON-RPC messages of an event stream, as they arrive."""
    for line in response.iter_lines():
        if line.startswith(b"data:"):
            yield json.loads(line[5:])


def legacy_session(url: str, key: str) -> str:
    """A new legacy session for ``key``: its id."""
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}}  # fmt: skip
    reply = requests.post(url, json=body, headers=legacy_headers(key), timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.headers["Mcp-Session-Id"]


# -- a token refresh raced by calls in two processes --------------------------------------------


def worker_pids(master: int) -> set[int]:
    """The gunicorn master's worker processes (its children, as /proc lists them)."""
    pids = set()
    for task in os.listdir(f"/proc/{master}/task"):
        with open(f"/proc/{master}/task/{task}/children", encoding="ascii") as f:
            pids.update(int(pid) for pid in f.read().split())
    return pids


def accepting_process(server_port: int, client_port: int, pids) -> int | None:
    """Which of ``pids`` holds the server's end of the connection from ``client_port``
    (/proc/net/tcp names the socket, each process's descriptors its owner); None while no
    process has accepted it."""
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
            if (local, remote) == (server_port, client_port):
                inode = fields[9]
    if inode in (None, "0"):  # not there yet, or still waiting in the listen queue
        return None
    for pid in pids:
        with contextlib.suppress(OSError):  # a descriptor closed while we looked
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


def connections_per_worker(server, workers: int, each: int, seconds=120) -> dict:
    """``each`` open connections accepted by each of the server's ``workers`` processes
    (pid → connections): which process accepts a connection is the kernel's choice, so
    connect until every worker holds its share, closing the extra ones."""
    held: dict[int, list] = {}
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        pids = worker_pids(server.process.pid)
        if len(pids) == workers and all(len(held.get(p, ())) >= each for p in pids):
            return held
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.connect()
        client_port, owner = connection.sock.getsockname()[1], None
        accepted_by = time.monotonic() + 10
        while owner is None and time.monotonic() < accepted_by:
            owner = accepting_process(server.port, client_port, worker_pids(server.process.pid))
            time.sleep(0.01)
        if owner is not None and len(held.setdefault(owner, [])) < each:
            held[owner].append(connection)
        else:
            connection.close()
    for connection in (c for group in held.values() for c in group):
        connection.close()
    raise AssertionError(f"could not hold {each} connections on each of {workers} workers: "
                         f"{ {pid: len(group) for pid, group in held.items()} }")  # fmt: skip


def echo_at_once(connections: list, path: str, key: str) -> list:
    """One modern ``tools/call`` of ``notes__echo`` ("call <i>") on each connection, all sent
    at the same instant; each call's result (or what went wrong)."""
    results: list = [None] * len(connections)
    start = threading.Barrier(len(connections))

    def call(i, connection):
        body = modern_body("tools/call", request_id=i, name="notes__echo",
                           arguments={"text": f"call {i}"})  # fmt: skip
        headers = {**modern_headers(key, "tools/call", **{"Mcp-Name": "notes__echo"}),
                   "Content-Type": "application/json"}  # fmt: skip
        try:
            start.wait(timeout=60)
            connection.request("POST", path, body=json.dumps(body), headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            if response.getheader("Content-Type", "").startswith("text/event-stream"):
                text = [line for line in text.splitlines() if line.startswith("data:")][-1][5:]
            results[i] = json.loads(text).get("result") or (response.status, text)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i, c)) for i, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.mark.parametrize("stale", ["expiring", "refused"])
def test_a_token_refresh_raced_by_calls_in_two_processes_happens_once(
    app, logged_in, database_uri, tmp_path, start_oauth_peer, stale
):
    """expiring: the stored token expires within the refresh margin (refreshed before the
    calls go out); refused: the peer expired it early and answers 401 (refreshed mid-call)."""
    peer = start_oauth_peer(token_delay=1.0)  # the refresh stays in flight while others ask
    connector_id = add_oauth_connector(app, peer.mcp_url, name="Notes")
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        agent, key = agent_with_tools([connector], name="Ada")
        path, old = f"/agents/{agent.id}/mcp", connector.access_token_enc.reveal()
        if stale == "expiring":
            connector.token_expires_at = utcnow() + timedelta(minutes=2)  # inside the margin
            connector.token_obtained_at = utcnow() - timedelta(hours=1)
            db.session.commit()
    if stale == "refused":
        assert peer.expire_tokens() >= 1
    peer.reset()
    env = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"],  # agent keys are HMACed with it
           "MCPADMIN_ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"])}  # fmt: skip
    server = start_live_server(database_uri, str(tmp_path / "live"), workers=2, env=env)
    connections = []
    try:
        for group in connections_per_worker(server, workers=2, each=8).values():
            connections += group
        results = echo_at_once(connections, path, key)
    finally:
        for connection in connections:
            connection.close()
        server.stop()

    answered = [r.get("content", [{}])[0].get("text") if isinstance(r, dict) else r
                for r in results]  # fmt: skip
    assert answered == [f"call {i}" for i in range(len(connections))], server.log()[-3000:]
    assert peer.stats()["token_requests"].get("refresh_token") == 1
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        stored = connector.access_token_enc.reveal()
        assert connector.refresh_token_enc.reveal() == newest_refresh_token(peer)
        assert connector.token_expires_at > utcnow() + timedelta(minutes=30)
    assert stored != old and accepted(peer, stored)


# -- legacy cancellation -------------------------------------------------------------------------


def cancel_while_it_runs(call_url: str, cancel_url: str, key: str) -> list:
    """Start a slow legacy ``tools/call`` (40 steps, 10 s) on ``call_url``; at its first
    progress send ``notifications/cancelled`` for it to ``cancel_url`` on the same session,
    keeping the call's own connection open. The messages its stream carried afterwards, to
    its end."""
    session = legacy_session(call_url, key)
    headers = {**legacy_headers(key, session), "MCP-Protocol-Version": LEGACY}
    body = {"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": SLOW_COUNT}
    with requests.post(call_url, json=body, headers=headers, stream=True, timeout=(5, 30)) as call:
        assert call.headers["Content-Type"].startswith("text/event-stream")
        stream = messages(call)
        assert next(stream)["method"] == "notifications/progress"
        assert cancel(cancel_url, headers, "slow-1") == 202
        return list(stream)


def cancel(url: str, headers: dict, request_id: str) -> int:
    """Send a legacy ``notifications/cancelled`` for ``request_id``: the status answered."""
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "no longer needed"}}  # fmt: skip
    return requests.post(url, json=note, headers=headers, timeout=10).status_code


def count_row(app):
    return next(r for r in rows(app) if r.tool == "weather__count")


def test_a_legacy_cancellation_stops_the_call_at_once_in_its_process(
    app, served, weather, bearer_tools, monkeypatch
):
    monkeypatch.setattr(relay, "CANCEL_CHECK_SECONDS", 3600)  # the database path never looks
    url = endpoint(served, weather[0])
    before = stats_of(bearer_tools)["cancelled"]
    after = cancel_while_it_runs(url, url, weather[1])
    assert not [m for m in after if "id" in m]  # no response to a cancelled request [25N/canc]
    assert wait_for(lambda: stats_of(bearer_tools)["cancelled"] > before)
    row = count_row(app)
    assert row.outcome == Outcome.CANCELLED and row.error == "Cancelled by the agent."


def test_a_legacy_cancellation_sent_to_another_process_stops_the_call(
    app, make_app, served, weather, bearer_tools
):
    other = make_app({"ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True})
    before = stats_of(bearer_tools)["cancelled"]
    with serving(other) as second:
        after = cancel_while_it_runs(endpoint(served, weather[0]), endpoint(second, weather[0]),
                                     weather[1])  # fmt: skip
    assert not [m for m in after if "id" in m]
    assert wait_for(lambda: stats_of(bearer_tools)["cancelled"] > before)
    assert count_row(app).outcome == Outcome.CANCELLED


NOTHING_STREAMED = [
    pytest.param("application/json", True, id="json-with-progress"),
    pytest.param("application/json, text/event-stream", False, id="stream-without-progress"),
]


@pytest.mark.parametrize(("accept", "progress"), NOTHING_STREAMED)
def test_a_modern_call_whose_client_disconnects_before_any_event_is_cancelled(
    app, served, weather, bearer_tools, accept, progress
):
    """Nothing was streamed yet (JSON only, or no progress to send): the disconnect alone
    cancels the call [26/http §Cancellation: the server MUST treat a client disconnect as
    cancellation of that request]."""
    agent_id, key = weather
    body = modern_body("tools/call", name=SLOW_COUNT["name"], arguments=SLOW_COUNT["arguments"])
    if progress:
        body["params"]["_meta"].update(SLOW_COUNT["_meta"])
    headers = {**modern_headers(key, "tools/call", **{"Mcp-Name": SLOW_COUNT["name"]}),
               "Accept": accept, "Content-Type": "application/json"}  # fmt: skip
    before = stats_of(bearer_tools)
    connection = http.client.HTTPConnection("127.0.0.1", port_of(served), timeout=30)
    try:
        connection.request("POST", f"/agents/{agent_id}/mcp", json.dumps(body), headers)
        assert wait_for(lambda: stats_of(bearer_tools)["started"] > before["started"])
    finally:
        connection.close()  # long before its answer
    assert wait_for(lambda: stats_of(bearer_tools)["cancelled"] > before["cancelled"])
    assert wait_for(lambda: any(r.tool == "weather__count" for r in rows(app)))
    assert count_row(app).outcome == Outcome.CANCELLED


def test_a_legacy_cancellation_of_a_call_answered_in_json_answers_no_stale_event(
    app, served, weather, bearer_tools
):
    agent_id, key = weather
    url = endpoint(served, agent_id)
    session = legacy_session(url, key)
    headers = {**legacy_headers(key, session), "MCP-Protocol-Version": LEGACY,
               "Accept": "application/json"}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": SLOW_COUNT}
    before = stats_of(bearer_tools)
    with ThreadPoolExecutor(1) as thread:
        call = thread.submit(requests.post, url, json=body, headers=headers, timeout=30)
        assert wait_for(lambda: stats_of(bearer_tools)["started"] > before["started"])
        assert cancel(url, headers, "slow-1") == 202
        answer = call.result(timeout=40)
    assert answer.status_code == 200
    assert "data:" not in answer.text  # neither the progress it held back nor a response
    assert wait_for(lambda: stats_of(bearer_tools)["cancelled"] > before["cancelled"])
    assert count_row(app).outcome == Outcome.CANCELLED


# -- clients that drip their bodies --------------------------------------------------------------

DRIP_ADDRESS = "127.0.0.2"  # the drippers' own loopback address: the per-address cap is theirs
DECLARED = 100_000  # the body size each dripper declares (under both caps)
READ_SECONDS, PER_ADDRESS, DRIPPERS = 2, 8, 48
# Seconds the server's read timer may fire before this process's clock says the time is up:
# uvloop reads its clock once per loop turn, so a timer set during a long turn (a loaded CI
# machine: 5 ms seen) starts from a time already past.
TIMER_RESOLUTION = 0.05


@dataclass
class Drip:
    """One dripped request: where, when, and the answer (status None: the server closed
    without one, or none came in time)."""

    path: str
    started: float
    ended: float = 0.0
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: str = ""


class _Answer(asyncio.Protocol):
    """Keeps every byte the server sends, however the connection ends (a reset included)."""

    def __init__(self):
        self.data = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(None)


async def drip_once(port: int, path: str) -> Drip:
    """POST ``path`` without a key (a JSON-RPC message to an agent endpoint, a form to an
    admin page), declaring ``DECLARED`` bytes and sending one every half second until the
    server answers (or 60 s)."""
    loop = asyncio.get_running_loop()
    transport, answer = await loop.create_connection(
        _Answer, "127.0.0.1", port, local_addr=(DRIP_ADDRESS, 0)
    )
    kind = "application/json" if path.endswith("/mcp") else "application/x-www-form-urlencoded"
    transport.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}"
                    f"\r\nContent-Length: {DECLARED}\r\n\r\n".encode())  # fmt: skip
    drip = Drip(path, time.monotonic())
    try:
        ends = drip.started + 60
        while not answer.data and not answer.closed.done() and time.monotonic() < ends:
            await asyncio.wait([answer.closed], timeout=0.5)
            if not answer.data and not answer.closed.done():
                transport.write(b"x")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(answer.closed), 10)  # the whole answer
    finally:
        transport.close()
    drip.ended = time.monotonic()
    head, _, body = bytes(answer.data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].startswith("HTTP/1.1 "):
        drip.status = int(lines[0].split()[1])
        drip.headers = {k.strip().lower(): v.strip()
                        for k, _, v in (line.partition(":") for line in lines[1:])}  # fmt: skip
        drip.body = body.decode("utf-8", "replace")
    return drip


class Attack:
    """``DRIPPERS`` keyless clients dripping at once, half of them at ``paths[0]`` and half at
    ``paths[1]``, in a thread with its own event loop. ``again``: each starts over when
    answered (after ``Retry-After`` when refused) until the block ends; else each drips
    once. ``drips`` lists the answered requests."""

    def __init__(self, port: int, paths, again=False):
        self.port, self.paths, self.again = port, paths, again
        self.drips: list[Drip] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(90)
        assert not self.thread.is_alive(), "the drippers did not stop"

    def wait(self, seconds=90):
        """Until every dripper was answered once (without ``again``)."""
        self.thread.join(seconds)
        assert not self.thread.is_alive(), "the drippers were not all answered"
        return self.drips

    async def _main(self):
        await asyncio.gather(*(self._slot(self.paths[i % 2]) for i in range(DRIPPERS)))

    async def _slot(self, path):
        """Drip; again while the block runs (a drip under way when it ends is finished)."""
        while True:
            drip = await drip_once(self.port, path)
            self.drips.append(drip)
            if not self.again or self.stopping.is_set():
                return
            if drip.status == 429:
                await asyncio.sleep(int(drip.headers.get("retry-after", "1")))


@pytest.fixture
def dripped(app, served, weather):
    """The guard's limits set small; the two paths keyless clients drip to (an agent's
    endpoint and the sign-in form) and the served app's port."""
    app.config.update(REQUEST_READ_SECONDS=READ_SECONDS,
                      MAX_PENDING_REQUESTS_PER_ADDRESS=PER_ADDRESS)  # fmt: skip
    return port_of(served), (f"/agents/{weather[0]}/mcp", "/login")


def test_drippers_beyond_the_per_address_cap_are_refused_429_at_once(dripped):
    port, paths = dripped
    with Attack(port, paths) as attack:
        drips = attack.wait()
    refused = [d for d in drips if d.status == 429]
    assert len(drips) == DRIPPERS
    assert len(refused) == DRIPPERS - PER_ADDRESS, sorted(str(d.status) for d in drips)
    assert {d.path for d in refused} == set(paths)
    for drip in refused:
        assert int(drip.headers["retry-after"]) > 0
        assert "(at most 8, MCPADMIN_MAX_PENDING_REQUESTS_PER_ADDRESS)" in drip.body


def test_drippers_within_the_cap_get_408_when_the_read_time_runs_out(dripped):
    port, paths = dripped
    with Attack(port, paths) as attack:
        drips = attack.wait()
    admitted = [d for d in drips if d.status != 429]
    assert len(admitted) == PER_ADDRESS
    for drip in admitted:
        assert drip.status == 408, drip
        assert "did not arrive within 2 seconds (MCPADMIN_REQUEST_READ_SECONDS)" in drip.body
        # The server's timer runs on the event loop's clock, which uvloop keeps in whole
        # milliseconds, cached per loop turn: it may fire a little before this process's
        # time.monotonic() says the time is up (``TIMER_RESOLUTION``).
        assert drip.ended - drip.started >= READ_SECONDS - TIMER_RESOLUTION


def test_the_admin_pages_and_other_agents_answer_while_keyless_clients_drip(
    app, served, dripped, weather
):
    port, paths = dripped
    agent_id, key = weather
    with Attack(port, paths, again=True) as attack:
        assert wait_for(lambda: any(d.status == 429 for d in attack.drips))  # the cap is full
        began = time.monotonic()
        health = requests.get(served.url + "/healthz", timeout=10)
        sign_in = requests.get(served.url + "/login", timeout=10)
        body = modern_body("tools/call", name="weather__weather", arguments={"city": "Oslo"})
        headers = modern_headers(key, "tools/call", **{"Mcp-Name": "weather__weather"})
        call = requests.post(endpoint(served, agent_id), json=body, headers=headers, timeout=10)
        done = time.monotonic()
    assert health.status_code == 200
    assert sign_in.status_code == 200 and "Sign in" in sign_in.text
    assert call.json()["result"]["structuredContent"] == {"city": "Oslo", "celsius": 21.5}
    # Admitted drippers were sending their bodies while the answers came.
    assert any(d.status == 408 and d.started < done and d.ended > began for d in attack.drips)


@pytest.mark.parametrize("where", ["agent", "admin"])
def test_a_body_declared_over_the_cap_is_refused_413_before_it_is_read(app, served, weather, where):
    app.config.update(GATEWAY_MAX_REQUEST_BYTES=1000, ADMIN_MAX_REQUEST_BYTES=1000)
    path = f"/agents/{weather[0]}/mcp" if where == "agent" else "/login"
    connection = http.client.HTTPConnection("127.0.0.1", port_of(served), timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "1001")
        connection.endheaders()  # and not one byte of the body: the length is enough
        reply = connection.getresponse()
        status, text = reply.status, reply.read().decode()
    finally:
        connection.close()
    assert status == 413 and "at most 1000 bytes" in text


@pytest.mark.parametrize("where", ["agent", "admin"])
def test_a_body_sent_over_the_cap_without_a_length_is_refused_413(app, served, weather, where):
    app.config.update(GATEWAY_MAX_REQUEST_BYTES=1000, ADMIN_MAX_REQUEST_BYTES=1000)
    url = endpoint(served, weather[0]) if where == "agent" else served.url + "/login"
    chunks = iter([b"x" * 600, b"x" * 600])  # chunked: no Content-Length to refuse at once
    reply = requests.post(url, data=chunks, headers={"Content-Type": "application/json"},
                          timeout=10)  # fmt: skip
    assert reply.status_code == 413 and "at most 1000 bytes" in reply.text


# -- held streams: caps, and the watcher ending them ---------------------------------------------


@pytest.fixture
def long_streams(app):
    """The app served with held streams that last ten minutes unless ended, the watcher
    looking every 0.2 s, and at most 3 streams per key and 5 in the process."""
    app.config.update(GATEWAY_MAX_STREAMS_PER_KEY=3, GATEWAY_MAX_STREAMS=5)
    with serving(app, stream_seconds=600) as server:
        yield server


@pytest.fixture
def keys(app, long_streams):
    """Three agents, each with a key: (endpoint URL, key) for each."""
    with app.app_context():
        made = [agent_with_tools([], name=f"agent-{i}") for i in range(3)]
        return [(endpoint(long_streams, agent.id), key) for agent, key in made]


def legacy_stream(url: str, key: str):
    """A new legacy session's GET stream (the response, open; close it)."""
    session = legacy_session(url, key)
    return requests.get(url, headers=legacy_headers(key, session), stream=True, timeout=(5, 10))


def held(stream) -> bool:
    kind = stream.headers.get("Content-Type", "")
    return stream.status_code == 200 and kind.startswith("text/event-stream")


def refusal(stream) -> tuple[int, str, str]:
    """A refused stream's status, Retry-After and message (the response closed)."""
    with stream:
        return stream.status_code, stream.headers["Retry-After"], stream.json()["error"]["message"]


def test_a_key_past_its_stream_cap_is_refused_429_naming_the_setting(keys):
    url, key = keys[0]
    with contextlib.ExitStack() as open_streams:
        streams = [open_streams.enter_context(legacy_stream(url, key)) for _ in range(3)]
        assert all(held(s) for s in streams)
        status, retry_after, text = refusal(legacy_stream(url, key))
    assert status == 429 and int(retry_after) > 0
    assert "already holds 3 open streams" in text
    assert "(MCPADMIN_GATEWAY_MAX_STREAMS_PER_KEY)" in text


def test_a_process_past_its_stream_cap_is_refused_503_naming_the_setting(keys):
    with contextlib.ExitStack() as open_streams:
        streams = [open_streams.enter_context(legacy_stream(*keys[i])) for i in (0, 0, 0, 1, 1)]
        assert all(held(s) for s in streams)
        status, retry_after, text = refusal(legacy_stream(*keys[2]))
    assert status == 503 and int(retry_after) > 0
    assert "holds 5 open streams" in text and "(MCPADMIN_GATEWAY_MAX_STREAMS)" in text


@pytest.mark.parametrize("cap", ["key", "process"])
def test_closing_a_held_stream_gives_its_place_back(keys, cap):
    owners = [0, 0, 0] if cap == "key" else [0, 0, 0, 1, 1]
    newcomer = keys[0] if cap == "key" else keys[2]
    with contextlib.ExitStack() as open_streams:
        streams = [open_streams.enter_context(legacy_stream(*keys[i])) for i in owners]
        assert refusal(legacy_stream(*newcomer))[0] in (429, 503)
        streams[0].close()
        admitted = []

        def another():
            stream = open_streams.enter_context(legacy_stream(*newcomer))
            admitted.append(held(stream))
            return admitted[-1]

        assert wait_for(another, seconds=15), admitted


def opened(stream):
    """The stream's chunks, once the first (its first event, or a comment) came. Read the
    rest from this iterator: dropping one closes the connection."""
    chunks = stream.iter_content(None)
    assert next(chunks)
    return chunks


def until_it_ends(chunks) -> list:
    """The messages a held stream carries until it ends.

    :raise AssertionError: it stayed open and silent for its read timeout."""
    try:
        data = b"".join(chunks)
    except requests.exceptions.ConnectionError as exc:
        raise AssertionError(f"the stream is still open: {exc}") from None
    return [json.loads(line[5:]) for line in data.splitlines() if line.startswith(b"data:")]


@pytest.mark.parametrize("kind", ["legacy GET", "subscriptions/listen"])
def test_a_revoked_key_ends_its_held_stream(app, keys, kind):
    url, key = keys[0]
    if kind == "legacy GET":
        stream = legacy_stream(url, key)
    else:
        body = modern_body(kind, request_id="listen-1", notifications={"toolsListChanged": True})
        stream = requests.post(url, json=body, headers=modern_headers(key, kind), stream=True,
                               timeout=(5, 10))  # fmt: skip
    with stream:
        chunks = opened(stream)
        with app.app_context():
            agent_keys.revoke(db.session.get(Agent, int(url.split("/")[-2])).keys[0])
            db.session.commit()
        after = until_it_ends(chunks)
    assert not [m for m in after if "result" in m]  # a revoked key gets no closing result


def test_a_deleted_legacy_session_ends_its_get_stream(keys):
    url, key = keys[0]
    session = legacy_session(url, key)
    headers = legacy_headers(key, session)
    with requests.get(url, headers=headers, stream=True, timeout=(5, 10)) as stream:
        chunks = opened(stream)
        assert requests.delete(url, headers=headers, timeout=10).status_code == 200
        until_it_ends(chunks)


# -- the Host check ------------------------------------------------------------------------------


def list_tools_as(url: str, key: str, host: str):
    body = modern_body("tools/list")
    headers = {**modern_headers(key, "tools/list"), "Host": host}
    return requests.post(url, json=body, headers=headers, timeout=10)


def test_the_agent_endpoint_answers_its_own_host_and_port(served, weather):
    reply = list_tools_as(endpoint(served, weather[0]), weather[1], f"127.0.0.1:{port_of(served)}")
    assert reply.status_code == 200, reply.text


def test_a_host_with_another_port_is_refused_on_the_agent_endpoint(served, weather):
    port = port_of(served)
    other = port + 1 if port < 65535 else port - 1
    reply = list_tools_as(endpoint(served, weather[0]), weather[1], f"127.0.0.1:{other}")
    assert reply.status_code == 400
    assert "MCPADMIN_PUBLIC_BASE_URL" in reply.json()["error"]["message"]
