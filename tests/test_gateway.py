"""The agent endpoint as the official Python SDK (2.x) client meets it, and at the wire."""

import contextlib

import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.gateway_helpers import agent_with_tools, run_async, synced_connector


@contextlib.asynccontextmanager
async def sdk_client(url, key, mode="auto"):
    """The SDK client with the agent's key (its HTTP client closed afterwards: the SDK leaves
    one it was given open)."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


def run(coro):
    return run_async(coro)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_client_lists_the_agents_tools_under_prefixed_names(app, served, json_peer, mode):
    with app.app_context():
        connector = synced_connector(json_peer.url, "Peer One")
        agent, key = agent_with_tools([connector])
        url = served.endpoint(agent)

    async def main():
        async with sdk_client(url, key, mode) as client:
            listed = await client.list_tools()
            return [t.name for t in listed.tools]

    names = run(main)
    assert names and all(n.startswith("peer_one__") for n in names)


def test_a_missing_key_gets_401_with_a_bearer_challenge(app, served):
    with app.app_context():
        agent, _ = agent_with_tools([])
        url = served.endpoint(agent)
    reply = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=5)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert "error=" not in reply.headers["WWW-Authenticate"]
