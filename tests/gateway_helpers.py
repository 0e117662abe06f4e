"""Serving the test app on a real port for MCP clients, and giving an agent tools and a key.

The ``served`` fixture runs the ``app`` fixture's app in a thread (werkzeug, threaded) on
127.0.0.1, so clients speak real HTTP to it while the test reads and writes the same database.
"""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
import pytest
from werkzeug.serving import make_server

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector
from mcpadmin.services import agent_keys, calllog, fanout


@dataclass
class Served:
    url: str

    def endpoint(self, agent: Agent) -> str:
        return f"{self.url}/agents/{agent.id}/mcp"


@contextlib.contextmanager
def serving(app):
    """``app`` on a free port of 127.0.0.1 until the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    # Streams a client leaves open (a legacy SDK client's GET) end soon, so no request thread
    # outlives the test and its database.
    app.config["GATEWAY_STREAM_SECONDS"] = min(app.config["GATEWAY_STREAM_SECONDS"], 2)
    app.config["GATEWAY_WATCH_SECONDS"] = min(app.config["GATEWAY_WATCH_SECONDS"], 0.2)
    before = set(threading.enumerate())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        for request_thread in set(threading.enumerate()) - before:
            if request_thread.name != calllog.Writer.THREAD_NAME:  # it ends on its own
                request_thread.join(5)


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
