"""Tools called through the agent endpoint with the official Python SDK (2.x) client, in its
default mode (which probes the modern era) and forced legacy, against real upstream peers:
shared bearer, per-agent API key, shared and per-agent OAuth with tokens that expire during
the run, a modern and a legacy upstream, progress, cancellation, refusals and a dead upstream.
"""

import time

import anyio
import pytest
import requests
from mcp.shared.exceptions import MCPError
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, Agent, AgentConnection, Connector, Role, Tool
from mcpadmin.protocol import mcp
from mcpadmin.services import calls, people
from tests.gateway_helpers import agent_with_tools, run_async, serving, synced_connector
from tests.oauth_helpers import add_connector as add_oauth_connector
from tests.oauth_helpers import connect
from tests.peers import start
from tests.peers.mcp_fixtures import LEGACY_PYTHON, _start, _stop
from tests.test_gateway import sdk_client
from tests.test_gateway_wire import legacy_headers, modern_body, modern_headers
from tests.test_upstream_calls import wait_for

TOKEN = "gateway-peer-token-0123456789"  # noqa: S105 (the bearer peer's test credential)
MODES = ["auto", "legacy"]
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "test", "version": "1"}}}  # fmt: skip


@pytest.fixture(scope="module")
def bearer_tools():
    peer = _start("mcp_server.py", "--call-tools", "--bearer", TOKEN)
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def legacy_key_tools():
    peer = _start("mcp_legacy_server.py", "--call-tools", "--api-key", "X-Api-Key=agent-key-1",
                  python=LEGACY_PYTHON)  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.setattr(calls, "POOL", mcp.SessionPool())


def ledger(url) -> Connector:
    """A per-agent API-key connector for the legacy peer."""
    return Connector(name="Ledger", url=url, auth_type="api_key_header",
                     api_key_header_name="X-Api-Key", credential_mode="per_agent")  # fmt: skip


def run(main):
    return run_async(main)


@pytest.fixture
def two_upstreams(app, served, bearer_tools, legacy_key_tools):
    """Agent "Ada" with a shared-bearer modern upstream ("Weather") and a per-agent API-key
    legacy upstream ("Ledger", the agent's own key); its endpoint URL and agent key."""
    with app.app_context():
        shared = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                  secret_enc=seal(TOKEN))  # fmt: skip
        per_agent = ledger(legacy_key_tools.url)
        per_agent.tools = [Tool(name=n, definition_hash=n) for n in ("count", "weather", "fail")]
        db.session.add(per_agent)
        agent, key = agent_with_tools([shared, per_agent], name="Ada")
        connection = next(c for c in agent.connections if c.connector is per_agent)
        connection.secret_enc, connection.status = seal("agent-key-1"), "connected"
        db.session.commit()
        return served.endpoint(agent), key


@pytest.mark.parametrize("mode", MODES)
def test_the_agent_lists_and_calls_tools_on_both_upstreams(two_upstreams, mode):
    url, key = two_upstreams

    async def main():
        async with sdk_client(url, key, mode) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            weather = await client.call_tool("weather__weather", {"city": "Oslo"})
            ledger = await client.call_tool("ledger__weather", {"city": "Rome"})
            return names, weather, ledger

    names, weather, ledger = run(main)
    assert "weather__weather" in names and "ledger__count" in names
    assert weather.structured_content == {"city": "Oslo", "celsius": 21.5} or (
        weather.structured_content["city"] == "Oslo"
    )
    assert not weather.is_error and not ledger.is_error
    assert ledger.structured_content["city"] == "Rome"


@pytest.mark.parametrize("mode", MODES)
def test_progress_is_relayed_while_the_tool_runs(two_upstreams, mode):
    url, key = two_upstreams
    seen = []

    async def progress(value, total, message):
        seen.append(value)

    async def main():
        async with sdk_client(url, key, mode) as client:
            return await client.call_tool("weather__count", {"steps": 3, "delay": 0.1},
                                          progress_callback=progress)  # fmt: skip

    result = run(main)
    assert not result.is_error
    assert seen == sorted(seen) and len(seen) == 3


@pytest.mark.parametrize("mode", MODES)
def test_a_call_cancelled_by_the_agent_is_cancelled_upstream(two_upstreams, bearer_tools, mode):
    url, key = two_upstreams
    before = stats_of(bearer_tools)["cancelled"]
    cancel_a_slow_call(url, key, mode)
    assert wait_for(lambda: stats_of(bearer_tools)["cancelled"] > before)


def cancel_a_slow_call(url, key, mode, tool="weather__count"):
    """Start a slow counting call with the SDK client and cancel it at its first progress
    (auto: the modern client closes the stream; legacy: notifications/cancelled)."""

    async def main():
        async with sdk_client(url, key, mode) as client:
            first = anyio.Event()

            async def progress(value, total, message):
                first.set()

            async with anyio.create_task_group() as group:

                async def slow():
                    await client.call_tool(tool, {"steps": 40, "delay": 0.25},
                                           progress_callback=progress)  # fmt: skip

                group.start_soon(slow)
                await first.wait()
                group.cancel_scope.cancel()

    run(main)


def stats_of(peer):
    client = mcp.Client(mcp_http(), peer.url, {"Authorization": f"Bearer {TOKEN}"})
    *_, done = client.call_tool("count_stats", {})
    return done.result["structuredContent"]


def weather_connection() -> AgentConnection:
    """Agent Ada's connection to the shared "Weather" connector."""
    return db.session.query(AgentConnection).join(Connector).filter(
        Connector.name == "Weather").one()  # fmt: skip


def mcp_http():
    from mcpadmin.protocol.http import Http

    return Http(allow_private=True)


def test_a_tool_not_enabled_for_the_agent_cannot_be_called(app, two_upstreams):
    url, key = two_upstreams
    with app.app_context():
        connection = weather_connection()
        connection.enabled_tools = [n for n in connection.enabled_tools if n != "fail"]
        db.session.commit()

    async def main():
        async with sdk_client(url, key) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool("weather__fail", {"text": "x"})
            return names

    assert "weather__fail" not in run(main)


def test_a_tool_whose_definition_changed_is_held_until_reviewed(app, two_upstreams):
    url, key = two_upstreams
    with app.app_context():
        connection = weather_connection()
        connection.changed_tools = ["weather"]
        db.session.commit()

    async def main():
        async with sdk_client(url, key) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            return names, await client.call_tool("weather__weather", {"city": "Oslo"})

    names, result = run(main)
    assert "weather__weather" not in names
    assert result.is_error
    assert "must review it on the agent's page" in result.content[0].text
    with app.app_context():
        connection = weather_connection()
        assert "changed since it was enabled" in connection.last_call_error


def test_an_upstream_that_is_down_gives_a_readable_error_and_is_recorded(app, served):
    with app.app_context():
        connector = Connector(name="Gone", url="http://127.0.0.1:9/mcp")
        connector.tools = [Tool(name="ping", definition_hash="p")]
        db.session.add(connector)
        agent, key = agent_with_tools([connector])
        url = served.endpoint(agent)

    async def main():
        async with sdk_client(url, key) as client:
            return await client.call_tool("gone__ping", {})

    result = run(main)
    assert result.is_error and "Gone" in result.content[0].text
    with app.app_context():
        assert db.session.query(AgentConnection).one().last_call_error


def test_an_agent_without_its_own_credential_is_told_to_connect(app, served, legacy_key_tools):
    with app.app_context():
        connector = ledger(legacy_key_tools.url)
        connector.tools = [Tool(name="weather", definition_hash="w")]
        db.session.add(connector)
        agent, key = agent_with_tools([connector], name="Bo")
        url = served.endpoint(agent)

    async def main():
        async with sdk_client(url, key) as client:
            return await client.call_tool("ledger__weather", {"city": "x"})

    result = run(main)
    assert result.is_error
    assert result.content[0].text.startswith(
        "Agent Bo has no credential for Ledger; connect it on its page. (request "
    )


@pytest.mark.parametrize("mode", ["shared", "per_agent"])
def test_oauth_tokens_that_expire_mid_run_are_refreshed(
    app, served, logged_in, start_oauth_peer, mode
):
    peer = start_oauth_peer(access_ttl=2)
    connector_id = add_oauth_connector(app, peer.mcp_url, mode=mode, name="Notes")
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        agent, key = agent_with_tools([connector], name="Ada", enabled={})
        agent_id, url = agent.id, served.endpoint(agent)
    connect(logged_in, connector_id, agent_id if mode == "per_agent" else None)
    with app.app_context():  # Connect synced the tools; enable them all
        connection = db.session.get(Agent, agent_id).connections[0]
        connection.enabled_tools = [t.name for t in connection.connector.tools]
        db.session.commit()

    async def main():
        results = []
        async with sdk_client(url, key) as client:
            ends = time.monotonic() + 5
            while time.monotonic() < ends:
                results.append(await client.call_tool("notes__echo", {"text": "hi"}))
                await anyio.sleep(0.3)
        return results

    results = run(main)
    assert results and not any(r.is_error for r in results)
    assert peer.stats()["token_requests"].get("refresh_token", 0) >= 2
    with app.app_context():
        assert db.session.get(Agent, agent_id).connections[0].last_call_error is None


def test_no_upstream_credential_reaches_the_agent(app, served, logged_in, fresh_oauth_peer):
    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url, name="Notes")
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        token = connector.access_token_enc.reveal()
        agent, key = agent_with_tools([connector])
        url = served.endpoint(agent)

    async def main():
        async with sdk_client(url, key) as client:
            return await client.call_tool("notes__whoami", {})

    result = run(main)
    assert token not in result.model_dump_json()


@pytest.mark.parametrize("mode", MODES)
def test_an_x_mcp_header_parameter_reaches_the_upstream_as_its_header(two_upstreams, mode):
    """The modern agent's client mirrors ``place.region`` (the listed schema keeps its
    x-mcp-header), the gateway checks it and the upstream gets its own Mcp-Param-Region; a
    legacy agent sends none, and the upstream gets it all the same."""
    url, key = two_upstreams

    async def main():
        async with sdk_client(url, key, mode) as client:
            return await client.call_tool("weather__locate", {"place": {"region": "eu-west 1"}})

    result = run(main)
    assert not result.is_error
    assert result.content[0].text == "Mcp-Param-Region: eu-west 1"


@pytest.fixture(scope="module")
def conformance_peer():
    peer = start("conformance_server.py")
    yield peer
    peer.stop()


def test_a_capability_the_agent_did_not_declare_is_its_own_32021(app, served, conformance_peer):
    """The upstream refuses a modern call that needs sampling the agent did not declare with
    -32021: the agent gets that error (HTTP 400, the capability named), not an isError result
    [26/base §Error Codes]; a legacy agent gets an isError result (2025 has no -32021)."""
    with app.app_context():
        connector = synced_connector(conformance_peer.base_url + "/mcp", "Conformance")
        agent, key = agent_with_tools([connector], name="Ada")
        url = served.endpoint(agent)

    async def main(mode):
        async with sdk_client(url, key, mode) as client:
            try:
                return await client.call_tool("conformance__test_missing_capability", {})
            except MCPError as exc:
                return exc

    refused = run(lambda: main("auto"))
    assert isinstance(refused, MCPError) and refused.error.code == -32021
    assert refused.error.data == {"requiredCapabilities": {"sampling": {}}}
    assert "Conformance needs client capabilities" in refused.error.message
    legacy = run(lambda: main("legacy"))
    assert legacy.is_error and "Conformance refused the call" in legacy.content[0].text
    name = "conformance__test_missing_capability"
    body = modern_body("tools/call", 7, name=name, arguments={})
    headers = modern_headers(key, "tools/call", **{"Mcp-Name": name})
    reply = requests.post(url, json=body, headers=headers, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == -32021


def test_a_deactivated_members_key_stops_working_at_once(app, bearer_tools, password_hash):
    """Deactivating an agent's owner refuses its key at the very next request (a call on an
    open SDK client, a new client's initialize: 401) and cuts a stream held with it;
    reactivating the owner makes the same key work again."""
    with app.app_context():
        mia = AdminUser(username="mia", password_hash=password_hash, role=Role.MEMBER)
        db.session.add(mia)
        connector = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN), members_may_use=True)  # fmt: skip
        agent, key = agent_with_tools([connector], name="Mia's agent")
        agent.owner_id = mia.id
        db.session.commit()
        agent_id = agent.id

    def owner_active(on: bool):
        with app.app_context():
            person = db.session.scalar(select(AdminUser).where(AdminUser.username == "mia"))
            people.reactivate(person) if on else people.deactivate(person, None)
            db.session.commit()

    async def calls_then_deactivates(url):
        async with sdk_client(url, key) as client:
            before = await client.call_tool("weather__weather", {"city": "Oslo"})
            await anyio.to_thread.run_sync(owner_active, False)
            with pytest.raises(MCPError, match="Unauthorized") as refused:
                await client.call_tool("weather__weather", {"city": "Oslo"})
            return before, refused.value

    async def calls(url):
        async with sdk_client(url, key) as client:
            return await client.call_tool("weather__weather", {"city": "Rome"})

    with serving(app, stream_seconds=600) as server:
        url = f"{server.url}/agents/{agent_id}/mcp"
        headers = legacy_headers(key)
        session = requests.post(url, json=INITIALIZE, headers=headers, timeout=10)
        headers["Mcp-Session-Id"] = session.headers["Mcp-Session-Id"]
        with requests.get(url, headers=headers, stream=True, timeout=(5, 10)) as held:
            chunks = held.iter_content(None)
            assert held.status_code == 200 and next(chunks)
            before, refused = run(lambda: calls_then_deactivates(url))
            b"".join(chunks)  # the stream ends; its 10 s read timeout would fail the test
        assert not before.is_error and "owner is deactivated" in str(refused)
        assert requests.post(url, json=INITIALIZE, headers=legacy_headers(key),
                             timeout=10).status_code == 401  # fmt: skip
        owner_active(True)
        assert run(lambda: calls(url)).structured_content["city"] == "Rome"


def test_a_members_agent_loses_a_connector_no_longer_available_to_members(
    app, bearer_tools, password_hash
):
    """An operator unticking "Available to members" takes the connector's tools out of every
    member's agent at once (listed and called), keeping the member's choices: ticking it again,
    or handing the agent to an operator, brings them back. Another agent is not touched."""
    with app.app_context():
        mia = AdminUser(username="mia", password_hash=password_hash, role=Role.MEMBER)
        db.session.add(mia)
        connector = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN), members_may_use=True)  # fmt: skip
        agent, key = agent_with_tools(
            [connector], name="Mia's agent", enabled={"Weather": ["weather"]}
        )
        agent.owner_id = mia.id
        db.session.commit()
        agent_id, connector_id, mia_id = agent.id, connector.id, mia.id

    def change(model, row_id, **values):
        with app.app_context():
            row = db.session.get(model, row_id)
            for name, value in values.items():
                setattr(row, name, value)
            db.session.commit()

    async def names_and_call(url):
        async with sdk_client(url, key) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            try:
                result = await client.call_tool("weather__weather", {"city": "Oslo"})
            except MCPError as refused:
                return names, str(refused)
            return names, "error" if result.is_error else "ok"

    with serving(app) as server:
        url = f"{server.url}/agents/{agent_id}/mcp"
        names, result = run(lambda: names_and_call(url))
        assert (names, result) == (["weather__weather"], "ok")
        change(Connector, connector_id, members_may_use=False)
        names, result = run(lambda: names_and_call(url))
        assert names == [] and "is not one of agent Mia's agent's tools" in result
        change(AdminUser, mia_id, role=Role.OPERATOR)
        names, result = run(lambda: names_and_call(url))
        assert (names, result) == (["weather__weather"], "ok")
        change(AdminUser, mia_id, role=Role.MEMBER)
        change(Connector, connector_id, members_may_use=True)
        names, result = run(lambda: names_and_call(url))
        assert (names, result) == (["weather__weather"], "ok")
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection))
        assert connection.enabled_tools == ["weather"]
