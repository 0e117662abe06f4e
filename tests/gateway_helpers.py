"""Serving the test app on a real port for MCP clients, and giving an agent tools and a key.

The ``served`` fixture runs the ``app`` fixture's app inside the ASGI application (the data
plane and the admin app, as production serves them) on uvicorn, in a thread, on 127.0.0.1, so
clients speak real HTTP to it while the test reads and writes the same database.
"""

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
import pytest
import uvicorn

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector
from mcpadmin.services import agent_keys, fanout


@dataclass
class Served:
    url: str

    def endpoint(self, agent: Agent) -> str:
        return f"{self.url}/agents/{agent.id}/mcp"


@contextlib.contextmanager
def serving(app, stream_seconds: int = 2):
    """``app`` on a free port of 127.0.0.1 until the block ends, in the ASGI application on
    uvicorn (lifespan on: the data plane's watcher and clients start and stop with it).

    Held streams last at most ``stream_seconds`` (a legacy SDK client leaves its GET open; a
    test that watches a stream end for another reason gives it longer). The stream caps and
    intervals are read when the application is built: set them on ``app`` before."""
    from mcpadmin.gateway.app import create_asgi_app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    app.config["GATEWAY_STREAM_SECONDS"] = min(app.config["GATEWAY_STREAM_SECONDS"], stream_seconds)
    app.config["GATEWAY_WATCH_SECONDS"] = min(app.config["GATEWAY_WATCH_SECONDS"], 0.2)
    config = uvicorn.Config(create_asgi_app(app), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=3)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def served(app):
    with serving(app) as server:
        yield server


def agent_with_tools(connectors: list[Connector], name="agent-1", enabled=None, keep_names=False):
    """An agent with every synced tool of ``connectors`` enabled (or those in ``enabled``, a
    {connector name: [tool names]} map) and a key; returns (agent, key). Commits."""
    agent = Agent(name=name, keep_tool_names=keep_names)
    db.session.add(agent)
    for connector in connectors:
        names = [t.name for t in connector.tools]
        if enabled is not None:
            names = enabled.get(connector.name, [])
        db.session.add(AgentConnection(agent=agent, connector=connector, enabled_tools=names))
    _, key = agent_keys.create(agent, "test key")
    db.session.commit()
    return agent, key


def synced_connector(url: str, name: str, **settings) -> Connector:
    """A connector for ``url`` whose tools were synced. Commits."""
    connector = Connector(name=name, url=url, **settings)
    db.session.add(connector)
    db.session.commit()
    outcomes = fanout.sync_connector(connector)
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    return connector


def run_async(function, *args):
    """``anyio.run(function, *args)`` in a thread of its own: a session that ran the browser
    tests leaves Playwright's event loop running in the main thread, where a second loop
    cannot start."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(anyio.run, function, *args).result()


class AgentClient:
    """The ASGI application in process (Starlette's test client over httpx), with the calls
    the wire tests make: ``post``/``get``/``delete`` answering a ``Reply``. Use as a context
    manager (one event loop for all its requests; the lifespan runs)."""

    def __init__(self, app):
        from starlette.testclient import TestClient

        from mcpadmin.gateway.app import create_asgi_app

        self.http = TestClient(create_asgi_app(app), base_url=app.config["PUBLIC_BASE_URL"])

    def __enter__(self):
        self.http.__enter__()
        return self

    def __exit__(self, *exc):
        self.http.__exit__(*exc)

    def post(self, url, json=None, data=None, headers=None):
        return Reply(self.http.post(url, json=json, content=data, headers=headers))

    def get(self, url, headers=None):
        return Reply(self.http.get(url, headers=headers))

    def delete(self, url, headers=None):
        return Reply(self.http.delete(url, headers=headers))


class Reply:
    """An answer as the wire tests read it."""

    def __init__(self, response):
        self.status_code, self.headers = response.status_code, response.headers
        self.text = response.text
        self._response = response

    def get_json(self):
        return self._response.json() if self.text else None

    @property
    def json(self):
        return self.get_json()
