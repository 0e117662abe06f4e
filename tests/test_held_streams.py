"""Held streams cost no thread: 200 legacy clients hold their GET streams through the
production recipe (``gunicorn -c gunicorn.conf.py asgi:app``, 2 workers), and meanwhile the
admin pages, a signed-in page and another agent's ``tools/call`` answer, and an operator's
change reaches every held stream. Under the old threaded server, about sixteen streams took
the whole app down."""

import asyncio
import json
import time

import pytest
import requests

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection
from tests.browser.conftest import start_live_server
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector
from tests.peers.mcp_fixtures import _start, _stop
from tests.test_gateway_wire import legacy_headers, modern_body, modern_headers
from tests.test_load import signed_in

STREAMS = 200
AGENTS = 20  # ten streams per agent key
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}}}  # fmt: skip


@pytest.fixture(scope="module")
def weather_peer():
    peer = _start("mcp_server.py", "--call-tools", "--tools", "0", "--json", "--stateless")
    yield peer
    _stop(peer)


async def _hold(host, port, path, key, session, opened, stop):
    """One legacy client's GET stream, on a raw connection: returns every ``data:`` line it
    saw once ``stop`` is set."""
    reader, writer = await asyncio.open_connection(host, port)
    headers = {**legacy_headers(key, session), "Accept": "text/event-stream"}
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 30)
    assert b" 200 " in status, status
    opened.append(1)
    seen = []
    try:
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(reader.readline(), 0.5)
            except TimeoutError:
                continue
            if not line:
                break
            if line.startswith(b"data:"):
                seen.append(json.loads(line[5:]))
    finally:
        writer.close()
    return seen


def test_200_held_legacy_streams_leave_pages_and_calls_answering(
    app, admin, database_uri, tmp_path, weather_peer
):
    with app.app_context():
        weather = synced_connector(weather_peer.url, "Weather")
        agents = [agent_with_tools([weather], name=f"held-{n}") for n in range(AGENTS)]
        other, other_key = agent_with_tools([weather], name="busy")
        held = [(agent.id, key) for agent, key in agents]
        other_id = other.id
    env = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"],  # agent keys are HMACed with it
           "MCPADMIN_ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"]),
           "MCPADMIN_GATEWAY_WATCH_SECONDS": "0.5"}  # fmt: skip
    server = start_live_server(database_uri, str(tmp_path / "live"), workers=2, env=env)
    try:
        sessions = []
        for n in range(STREAMS):
            agent_id, key = held[n % AGENTS]
            path = f"/agents/{agent_id}/mcp"
            reply = requests.post(server.url + path, json=INITIALIZE,
                                  headers=legacy_headers(key), timeout=30)  # fmt: skip
            sessions.append((path, key, reply.headers["Mcp-Session-Id"]))

        async def scenario():
            opened, stop = [], asyncio.Event()
            holders = [asyncio.create_task(_hold("127.0.0.1", server.port, path, key, session,
                                                 opened, stop))
                       for path, key, session in sessions]  # fmt: skip
            deadline = time.monotonic() + 60
            while len(opened) < STREAMS and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            answered = await asyncio.to_thread(_while_held, server, admin, other_id, other_key)
            with app.app_context():  # an operator unticks the tool of every held agent
                for connection in db.session.query(AgentConnection).filter(
                    AgentConnection.agent_id.in_([agent_id for agent_id, _ in held])
                ):
                    connection.enabled_tools = []
                db.session.commit()
            await asyncio.sleep(3)  # a few watch intervals
            stop.set()
            return len(opened), answered, await asyncio.gather(*holders)

        opened, answered, seen = run_async(scenario)
    finally:
        server.stop()
    assert opened == STREAMS
    assert answered == {"healthz": 200, "login": 200, "connectors": 200, "call": False}
    told = [s for s in seen if any(m["method"] == "notifications/tools/list_changed" for m in s)]
    assert len(told) == STREAMS


def _while_held(server, admin, agent_id, key) -> dict:
    """What the app answers while the streams are held: each page's status, and whether
    another agent's call reported an error."""
    answered = {}
    answered["healthz"] = requests.get(server.url + "/healthz", timeout=10).status_code
    answered["login"] = requests.get(server.url + "/login", timeout=10).status_code
    browser = signed_in(server.url, admin)
    answered["connectors"] = browser.get(server.url + "/connectors/", timeout=10).status_code
    body = modern_body("tools/call", name="weather__weather", arguments={"city": "Oslo"})
    headers = modern_headers(key, "tools/call", **{"Mcp-Name": "weather__weather"})
    reply = requests.post(f"{server.url}/agents/{agent_id}/mcp", json=body, headers=headers,
                          timeout=10)  # fmt: skip
    answered["call"] = reply.json()["result"].get("isError", False)
    return answered


def test_a_graceful_stop_ends_held_streams_at_once(app, database_uri, tmp_path):
    """SIGTERM to gunicorn ends every held stream at once (their clients reconnect to a worker
    that stays) instead of holding the worker until ``graceful_timeout`` (30 s)."""
    with app.app_context():
        agent, key = agent_with_tools([], name="held")
        path = f"/agents/{agent.id}/mcp"
    env = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"]}  # agent keys are HMACed with it
    server = start_live_server(database_uri, str(tmp_path / "live"), workers=1, env=env)
    try:
        reply = requests.post(server.url + path, json=INITIALIZE, headers=legacy_headers(key),
                              timeout=30)  # fmt: skip
        headers = legacy_headers(key, reply.headers["Mcp-Session-Id"])
        with requests.get(server.url + path, headers=headers, stream=True, timeout=30) as held:
            assert held.status_code == 200
            lines = held.iter_lines()
            assert next(lines).startswith(b": stream open")
            began = time.monotonic()
            server.process.terminate()
            for _ in lines:  # the stream ends; a read timeout (30 s) would fail the test
                pass
            ended = time.monotonic() - began
        server.process.wait(30)
        stopped = time.monotonic() - began
    finally:
        server.stop()
    assert ended < 10, f"the held stream lasted {ended:.1f} s after SIGTERM"
    assert stopped < 20, f"gunicorn took {stopped:.1f} s to stop"
