"""The agent endpoint at the wire: the era rules of PROTOCOL.md §6.1–6.2, keys and sessions."""

import json
from datetime import timedelta

import pytest
import requests

from mcpadmin.extensions import db
from mcpadmin.models import Agent, Connector, GatewaySession, Tool, utcnow
from mcpadmin.services import agent_keys, toolnames
from tests.conftest import PASSWORD, Browser
from tests.gateway_helpers import AgentClient, agent_with_tools

MODERN = "2026-07-28"
META = "io.modelcontextprotocol/"


def modern_body(method, request_id=1, **params):
    meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**params, "_meta": meta},
    }


def modern_headers(key, method, **extra):
    return {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Accept": "application/json, text/event-stream",
        **extra,
    }


def legacy_headers(key, session=None):
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


@pytest.fixture
def client(app):
    """The ASGI application in process: agents send no cookie and no CSRF token."""
    with AgentClient(app) as client:
        yield client


@pytest.fixture
def agent(app):
    """An agent with two stored tools on connector "Peer" (no sync needed) and a key."""
    with app.app_context():
        connector = Connector(name="Peer", url="http://127.0.0.1:9/mcp")
        connector.tools = [
            Tool(name="add", input_schema={"type": "object"}, definition_hash="a"),
            Tool(name="echo", description="Echo it", definition_hash="e"),
        ]
        db.session.add(connector)
        agent, key = agent_with_tools([connector])
        return agent.id, key


def url(agent_id):
    return f"/agents/{agent_id}/mcp"


def initialize(client, agent_id, key, version="2025-11-25"):
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    reply = client.post(url(agent_id), json=body, headers=legacy_headers(key))
    assert reply.status_code == 200, reply.json
    return reply


def test_modern_discover_names_the_modern_version_and_only_tools(client, agent):
    agent_id, key = agent
    reply = client.post(
        url(agent_id),
        json=modern_body("server/discover"),
        headers=modern_headers(key, "server/discover"),
    )
    result = reply.get_json()["result"]
    assert reply.status_code == 200
    assert result["supportedVersions"] == [MODERN]
    capabilities = {"tools", "resources", "prompts", "completions", "logging"}
    assert set(result["capabilities"]) == capabilities
    assert result["resultType"] == "complete"
    assert result["_meta"][META + "serverInfo"]["name"] == "mcpadmin"


def test_modern_tools_list_is_private_and_uncached(client, agent):
    agent_id, key = agent
    reply = client.post(
        url(agent_id), json=modern_body("tools/list"), headers=modern_headers(key, "tools/list")
    )
    result = reply.get_json()["result"]
    assert [t["name"] for t in result["tools"]] == ["peer__add", "peer__echo"]
    assert result["tools"][1]["description"] == "Echo it"
    assert (result["ttlMs"], result["cacheScope"]) == (0, "private")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"MCP-Protocol-Version": "2025-11-25"}, -32020),
        ({"Mcp-Method": "tools/call"}, -32020),
    ],
)
def test_modern_headers_that_disagree_with_the_body_get_400(client, agent, headers, code):
    agent_id, key = agent
    sent = {**modern_headers(key, "tools/list"), **headers}
    reply = client.post(url(agent_id), json=modern_body("tools/list"), headers=sent)
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == code


def test_a_modern_header_without_meta_gets_invalid_params(client, agent):
    agent_id, key = agent
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    reply = client.post(url(agent_id), json=body, headers=modern_headers(key, "tools/list"))
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == -32602


def test_an_unknown_modern_version_gets_32022_naming_the_supported_ones(client, agent):
    agent_id, key = agent
    body = modern_body("tools/list")
    body["params"]["_meta"][META + "protocolVersion"] = "2099-01-01"
    headers = {**modern_headers(key, "tools/list"), "MCP-Protocol-Version": "2099-01-01"}
    reply = client.post(url(agent_id), json=body, headers=headers)
    error = reply.get_json()["error"]
    assert reply.status_code == 400
    assert error["code"] == -32022
    assert error["data"] == {"supported": [MODERN], "requested": "2099-01-01"}


def test_a_modern_tools_call_needs_a_matching_mcp_name(client, agent):
    agent_id, key = agent
    body = modern_body("tools/call", name="peer__add", arguments={})
    reply = client.post(url(agent_id), json=body, headers=modern_headers(key, "tools/call"))
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == -32020


REGION_SCHEMA = {
    "type": "object",
    "properties": {
        "place": {
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
        },
        "count": {"type": "integer", "x-mcp-header": "Count"},
    },
}


@pytest.fixture
def region_agent(app):
    """An agent with one stored tool whose parameters ride in Mcp-Param-Region and
    Mcp-Param-Count too, on a connector nobody answers at."""
    with app.app_context():
        connector = Connector(name="Peer", url="http://127.0.0.1:9/mcp")
        connector.tools = [Tool(name="locate", input_schema=REGION_SCHEMA, definition_hash="l")]
        db.session.add(connector)
        agent, key = agent_with_tools([connector])
        return agent.id, key


def call_locate(client, agent_id, key, arguments, **headers):
    body = modern_body("tools/call", name="peer__locate", arguments=arguments)
    sent = {**modern_headers(key, "tools/call", **{"Mcp-Name": "peer__locate"}), **headers}
    return client.post(url(agent_id), json=body, headers=sent)


def test_a_tools_x_mcp_header_is_listed_as_the_upstream_declared_it(client, region_agent):
    """The agent's client must mirror the parameters, so the listed schema keeps them."""
    agent_id, key = region_agent
    reply = client.post(
        url(agent_id), json=modern_body("tools/list"), headers=modern_headers(key, "tools/list")
    )
    assert reply.get_json()["result"]["tools"][0]["inputSchema"] == REGION_SCHEMA


@pytest.mark.parametrize(
    ("arguments", "headers", "said"),
    [
        ({"place": {"region": "Hello"}}, {}, "Mcp-Param-Region is missing"),
        ({"place": {"region": "Hello"}}, {"Mcp-Param-Region": "Bye"}, "must equal"),
        ({"place": {"region": "Hello"}}, {"Mcp-Param-Region": "=?base64?SGVsbG8?="}, "valid"),
        ({"place": {"region": "Hello"}}, {"Mcp-Param-Region": "=?base64?SGVs!!!bG8=?="}, "valid"),
        ({}, {"Mcp-Param-Region": "Hello"}, "is sent but params.arguments.place.region"),
        ({"count": 42}, {"Mcp-Param-Count": "43"}, "Mcp-Param-Count must equal"),
        ({"count": True}, {"Mcp-Param-Count": "1"}, "Mcp-Param-Count must equal"),
    ],
)
def test_mcp_param_headers_that_disagree_with_the_body_get_400(
    client, region_agent, arguments, headers, said
):
    """[26/http §Server Behavior for Custom Headers]: 400 and -32020, before anything goes
    upstream."""
    agent_id, key = region_agent
    reply = call_locate(client, agent_id, key, arguments, **headers)
    assert reply.status_code == 400
    error = reply.get_json()["error"]
    assert error["code"] == -32020 and said in error["message"]


@pytest.mark.parametrize(
    ("arguments", "headers"),
    [
        ({"place": {"region": "Hello"}}, {"Mcp-Param-Region": "=?base64?SGVsbG8=?="}),
        ({"place": {"region": "SGVsbG8="}}, {"Mcp-Param-Region": "SGVsbG8="}),  # literal
        ({"place": {"region": "=?base64?SGVsbG8="}}, {"Mcp-Param-Region": "=?base64?SGVsbG8="}),
        ({"place": {"region": None}, "count": 42.0}, {"Mcp-Param-Count": "42"}),
        ({"count": 42}, {"mcp-param-count": "42.0"}),
        ({"place": "not an object"}, {}),
    ],
)
def test_mcp_param_headers_that_carry_the_body_pass(client, region_agent, arguments, headers):
    """The call goes on (to a connector nobody answers at: an isError result, not -32020)."""
    agent_id, key = region_agent
    reply = call_locate(client, agent_id, key, arguments, **headers)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["result"]["isError"] is True


def test_an_unknown_modern_method_gets_404_method_not_found(client, agent):
    agent_id, key = agent
    reply = client.post(
        url(agent_id),
        json=modern_body("sampling/createMessage"),
        headers=modern_headers(key, "sampling/createMessage"),
    )
    assert reply.status_code == 404
    assert reply.get_json()["error"]["code"] == -32601


def test_modern_get_and_delete_get_405_and_a_sessionless_get_400(client, agent):
    agent_id, key = agent
    assert client.get(url(agent_id), headers=legacy_headers(key)).status_code == 400
    modern = modern_headers(key, "x")
    assert client.delete(url(agent_id), headers=modern).status_code == 405
    assert client.get(url(agent_id), headers=modern).status_code == 405


def test_a_legacy_session_lives_until_deleted(client, agent):
    agent_id, key = agent
    reply = initialize(client, agent_id, key)
    session = reply.headers["Mcp-Session-Id"]
    assert reply.get_json()["result"]["protocolVersion"] == "2025-11-25"
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (
        client.post(url(agent_id), json=note, headers=legacy_headers(key, session)).status_code
        == 202
    )
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    reply = client.post(url(agent_id), json=ping, headers=legacy_headers(key, session))
    assert reply.get_json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert client.delete(url(agent_id), headers=legacy_headers(key, session)).status_code == 200
    reply = client.post(url(agent_id), json=ping, headers=legacy_headers(key, session))
    assert reply.status_code == 404


def test_initialize_counters_an_unknown_version_with_the_latest_legacy_one(client, agent):
    agent_id, key = agent
    reply = initialize(client, agent_id, key, version="2026-07-28")
    assert reply.get_json()["result"]["protocolVersion"] == "2025-11-25"


def test_legacy_requests_need_a_session(client, agent):
    agent_id, key = agent
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    reply = client.post(url(agent_id), json=ping, headers=legacy_headers(key))
    assert reply.status_code == 400
    reply = client.post(url(agent_id), json=ping, headers=legacy_headers(key, "made-up"))
    assert reply.status_code == 404


def test_a_session_belongs_to_the_key_that_opened_it(app, client, agent):
    agent_id, key = agent
    session = initialize(client, agent_id, key).headers["Mcp-Session-Id"]
    with app.app_context():
        _, other_key = agent_keys.create(db.session.get(Agent, agent_id), "second")
        db.session.commit()
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    reply = client.post(url(agent_id), json=ping, headers=legacy_headers(other_key, session))
    assert reply.status_code == 404


def test_another_agents_key_is_refused_here(app, client, agent):
    agent_id, _ = agent
    with app.app_context():
        _, other_key = agent_with_tools([], name="other")
    reply = initialize_raw(client, agent_id, other_key)
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_revoked_and_expired_keys_are_refused(app, client, agent, change):
    agent_id, key = agent
    with app.app_context():
        row = db.session.get(Agent, agent_id).keys[0]
        if change == "revoked":
            agent_keys.revoke(row)
        else:
            row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert initialize_raw(client, agent_id, key).status_code == 401


def initialize_raw(client, agent_id, key):
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}
    return client.post(url(agent_id), json=body, headers=legacy_headers(key))


def test_a_foreign_origin_gets_403(client, agent):
    agent_id, key = agent
    headers = {**legacy_headers(key), "Origin": "http://evil.example"}
    reply = client.post(
        url(agent_id), json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
    )
    assert reply.status_code == 403


def test_transport_refusals(app, client, agent):
    agent_id, key = agent
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    html = {**legacy_headers(key), "Accept": "text/html"}
    assert client.post(url(agent_id), json=ping, headers=html).status_code == 406
    reply = client.post(
        url(agent_id), data="x", headers={**legacy_headers(key), "Content-Type": "text/plain"}
    )
    assert reply.status_code == 415
    app.config["GATEWAY_MAX_REQUEST_BYTES"] = 100
    big = {**ping, "params": {"pad": "x" * 200}}
    assert client.post(url(agent_id), json=big, headers=legacy_headers(key)).status_code == 413
    reply = client.post(
        url(agent_id), data="{", headers={**legacy_headers(key), "Content-Type": "application/json"}
    )
    assert reply.get_json()["error"]["code"] == -32700


def test_an_unknown_cursor_gets_invalid_params(client, agent):
    agent_id, key = agent
    body = modern_body("tools/list", cursor="not-ours!")
    reply = client.post(url(agent_id), json=body, headers=modern_headers(key, "tools/list"))
    assert reply.get_json()["error"]["code"] == -32602


def test_names_are_prefixed_unless_kept_and_unique():
    tools = [("a", "search"), ("b", "search"), ("b", "fetch")]
    assert toolnames.exposed_names(tools, False) == {
        ("a", "search"): "a__search",
        ("b", "search"): "b__search",
        ("b", "fetch"): "b__fetch",
    }
    kept = toolnames.exposed_names(tools, True)
    assert kept[("b", "fetch")] == "fetch"
    assert (kept[("a", "search")], kept[("b", "search")]) == ("a__search", "b__search")


def test_long_or_odd_names_fit_64_characters_and_stay_distinct():
    tools = [("slug", "x" * 100), ("slug", "x" * 99 + "y"), ("slug", "naïve tool")]
    names = toolnames.exposed_names(tools, False)
    assert all(len(n) <= 64 and toolnames._SAFE.fullmatch(n) for n in names.values())
    assert len(set(names.values())) == 3
    assert names == toolnames.exposed_names(list(reversed(tools)), False)


def test_a_legacy_stream_says_when_the_agents_tools_change(app, served, agent):
    agent_id, key = agent
    app.config["GATEWAY_WATCH_SECONDS"] = 0.1
    endpoint = f"{served.url}{url(agent_id)}"
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}}}  # fmt: skip
    reply = requests.post(endpoint, json=body, headers=legacy_headers(key), timeout=5)
    assert reply.json()["result"]["capabilities"]["tools"] == {"listChanged": True}
    session = reply.headers["Mcp-Session-Id"]
    with requests.get(endpoint, headers=legacy_headers(key, session), stream=True, timeout=5) as s:
        assert s.headers["Content-Type"].startswith("text/event-stream")
        with app.app_context():
            connection = db.session.get(Agent, agent_id).connections[0]
            connection.enabled_tools = ["add"]
            db.session.commit()
        line = next(line for line in s.iter_lines() if line.startswith(b"data:"))
    assert json.loads(line[5:])["method"] == "notifications/tools/list_changed"


def test_a_modern_listen_stream_is_acknowledged_then_notified(app, served, agent):
    agent_id, key = agent
    app.config["GATEWAY_WATCH_SECONDS"] = 0.1
    endpoint = f"{served.url}{url(agent_id)}"
    body = modern_body("subscriptions/listen", request_id="listen-1",
                       notifications={"toolsListChanged": True})  # fmt: skip
    headers = modern_headers(key, "subscriptions/listen")
    with requests.post(endpoint, json=body, headers=headers, stream=True, timeout=5) as s:
        lines = (json.loads(line[5:]) for line in s.iter_lines() if line.startswith(b"data:"))
        ack = next(lines)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {"toolsListChanged": True}
        with app.app_context():
            db.session.get(Agent, agent_id).keep_tool_names = True
            db.session.commit()
        changed = next(lines)
    assert changed["method"] == "notifications/tools/list_changed"
    assert changed["params"]["_meta"][META + "subscriptionId"] == "listen-1"


def test_an_address_that_keeps_sending_wrong_keys_is_slowed_down(app, client, agent):
    agent_id, key = agent
    app.config["AGENT_KEY_MAX_FAILURES"] = 3
    wrong = key[:-4] + "AAAA"
    statuses = [initialize_raw(client, agent_id, wrong).status_code for _ in range(4)]
    assert statuses[:2] == [401, 401]
    assert statuses[-1] == 429
    assert initialize_raw(client, agent_id, key).status_code == 200  # the right key still works


def listed_names(client, agent_id, key):
    reply = client.post(url(agent_id), json=modern_body("tools/list"),
                        headers=modern_headers(key, "tools/list"))  # fmt: skip
    return [t["name"] for t in reply.json["result"]["tools"]]


def test_a_tool_unticked_on_the_page_is_gone_and_refused_at_once(app, client, agent, admin):
    """The endpoint keeps each agent's rendered catalog; a change of choices committed by any
    process raises the catalog version read with the key, so the next request sees it."""
    agent_id, key = agent
    assert listed_names(client, agent_id, key) == ["peer__add", "peer__echo"]
    with app.app_context():
        connector = db.session.scalar(db.select(Connector).filter_by(name="Peer"))
        add = next(t.id for t in connector.tools if t.name == "add")
        choices = f"/agents/{agent_id}/connectors/{connector.id}/tools"
    operator = Browser(app.test_client())
    operator.post("/login", data={"username": admin, "password": PASSWORD})
    operator.get("/connectors/")
    assert "1 of 2 tools enabled" in operator.hx_post(choices, data={"tools": [str(add)]}).text
    assert listed_names(client, agent_id, key) == ["peer__add"]
    body = modern_body("tools/call", name="peer__echo", arguments={})
    headers = modern_headers(key, "tools/call", **{"Mcp-Name": "peer__echo"})
    reply = client.post(url(agent_id), json=body, headers=headers)
    assert reply.json["error"]["code"] == -32602
    assert "not one of agent" in reply.json["error"]["message"]


def test_a_changed_definition_is_held_back_at_once(app, client, agent):
    agent_id, key = agent
    assert listed_names(client, agent_id, key) == ["peer__add", "peer__echo"]
    with app.app_context():
        connection = db.session.get(Agent, agent_id).connections[0]
        connection.changed_tools = ["echo"]
        db.session.commit()
    assert listed_names(client, agent_id, key) == ["peer__add"]
    with app.app_context():
        connection = db.session.get(Agent, agent_id).connections[0]
        connection.changed_tools = []
        connection.connector.tools[0].description = "Adds"
        db.session.commit()
    reply = client.post(url(agent_id), json=modern_body("tools/list"),
                        headers=modern_headers(key, "tools/list"))  # fmt: skip
    assert reply.json["result"]["tools"][0]["description"] == "Adds"


def test_a_legacy_sessions_use_is_written_at_most_hourly(app, client, agent):
    """Idle sessions are pruned after 30 days, so use must reach the row; not on every
    request."""
    agent_id, key = agent
    session = initialize(client, agent_id, key).headers["Mcp-Session-Id"]

    def last_seen():
        with app.app_context():
            return db.session.scalar(db.select(GatewaySession.last_seen_at))

    opened = last_seen()
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {**legacy_headers(key, session), "MCP-Protocol-Version": "2025-11-25"}
    assert client.post(url(agent_id), json=ping, headers=headers).status_code == 200
    assert last_seen() == opened
    with app.app_context():
        db.session.execute(
            db.update(GatewaySession).values(last_seen_at=opened - timedelta(hours=2))
        )
        db.session.commit()
    assert client.post(url(agent_id), json=ping, headers=headers).status_code == 200
    assert last_seen() > opened
