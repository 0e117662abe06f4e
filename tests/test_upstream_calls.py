"""Tool calls upstream (``services.calls`` over ``protocol.mcp``) against real peers: both eras,
progress relayed while the tool runs, cancellation reaching the upstream, legacy sessions
reused, refreshed and dead OAuth grants, missing credentials, a server that is down, results
passed through, and no credential (nor a run of one) in anything the agent receives."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector
from mcpadmin.protocol import mcp
from mcpadmin.protocol.http import Http
from mcpadmin.services import calls
from mcpadmin.services.agents import connection_for
from mcpadmin.services.scrub import RUN
from tests.oauth_helpers import add_agent as add_oauth_agent
from tests.oauth_helpers import add_connector as add_oauth_connector
from tests.oauth_helpers import connect
from tests.peers import call_tools, free_port
from tests.peers.mcp_fixtures import LEGACY_PYTHON, _start, _stop
from tests.test_scrub import longest_piece

TOKEN = "peer-secret-token-0123456789"  # noqa: S105 (the bearer peer's test credential)


@pytest.fixture(scope="module")
def modern_tools():
    """2.x, both eras, SSE answers, the call tools listed."""
    peer = _start("mcp_server.py", "--call-tools")
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def legacy_tools():
    """1.30.0, legacy only, stateful, SSE answers."""
    peer = _start("mcp_legacy_server.py", "--call-tools", python=LEGACY_PYTHON)
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def bearer_tools():
    """2.x requiring ``Authorization: Bearer TOKEN``."""
    peer = _start("mcp_server.py", "--call-tools", "--bearer", TOKEN)
    yield peer
    _stop(peer)


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    """Each test starts without pooled sessions, as after a restart."""
    pool = mcp.SessionPool()
    monkeypatch.setattr(calls, "POOL", pool)
    return pool


def add(app, url, name="Peer", agent="Ada", secret=None, agent_secret=None, **fields) -> tuple:
    """A connector and an agent (with a connection when ``agent_secret``); their ids."""
    with app.app_context():
        connector = Connector(name=name, url=url, status="connected", **fields)
        if secret:
            connector.secret_enc = seal(secret)
        row = Agent(name=agent)
        db.session.add_all([connector, row])
        if agent_secret:
            connection = AgentConnection(agent=row, connector=connector, enabled_tools=[])
            connection.secret_enc, connection.status = seal(agent_secret), "connected"
            db.session.add(connection)
        db.session.commit()
        return connector.id, row.id


def call(app, connector_id, agent_id, tool, arguments=None, progress_token=None):
    """Run a call to the end and commit, as the gateway does; (notifications, outcome)."""
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        agent = db.session.get(Agent, agent_id)
        connection = connection_for(agent, connector) if connector.per_agent else None
        items = list(calls.call_tool(connector, connection, agent, tool, arguments or {},
                                     progress_token))  # fmt: skip
        db.session.commit()
    assert all(isinstance(item, dict) for item in items[:-1])
    assert isinstance(items[-1], calls.Outcome)
    return items[:-1], items[-1]


def stats(peer) -> dict:
    """The peer's count counters, asked directly."""
    client = mcp.Client(Http(allow_private=True), peer.url)
    *_, done = client.call_tool("count_stats", {})
    return done.result["structuredContent"]


def wait_for(predicate, seconds=15.0):
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def initializes(peer) -> int:
    return sum(1 for _http, method in peer.requests() if method == "initialize")


@pytest.mark.parametrize("peer_name", ["modern_tools", "legacy_tools"])
def test_progress_arrives_while_the_tool_runs_with_the_agents_own_token(app, request, peer_name):
    peer = request.getfixturevalue(peer_name)
    cid, aid = add(app, peer.url)
    before = stats(peer)["finished"]
    with app.app_context():
        connector, agent = db.session.get(Connector, cid), db.session.get(Agent, aid)
        items = calls.call_tool(connector, None, agent, "count", {"steps": 3, "delay": 1.0},
                                progress_token="agent-7")  # fmt: skip
        first = next(items)
        # The first step is relayed while the tool is still counting.
        assert stats(peer)["finished"] == before
        rest = list(items)
        db.session.commit()
        assert connector.protocol_era == ("modern" if peer_name == "modern_tools" else "legacy")
    progress = [m for m in [first, *rest[:-1]] if m["method"] == "notifications/progress"]
    assert [m["params"]["progress"] for m in progress] == [1, 2, 3]
    assert {m["params"]["progressToken"] for m in progress} == {"agent-7"}
    outcome = rest[-1]
    assert (outcome.kind, outcome.error) == ("ok", None)
    assert outcome.result["content"] == [{"type": "text", "text": "counted 3"}]
    assert stats(peer)["finished"] == before + 1


def test_upstream_gets_a_fresh_progress_token_per_call(app, modern_tools, monkeypatch):
    sent = []
    original = mcp.Client.call_tool

    def spy(self, name, arguments=None, **options):
        sent.append(options["meta"])
        return original(self, name, arguments, **options)

    monkeypatch.setattr(mcp.Client, "call_tool", spy)
    cid, aid = add(app, modern_tools.url)
    for _ in range(2):
        notes, _outcome = call(app, cid, aid, "count", {"steps": 1, "delay": 0}, progress_token=1)
        assert notes[0]["params"]["progressToken"] == 1
    upstream = [meta["progressToken"] for meta in sent]
    assert len(set(upstream)) == 2 and 1 not in upstream


@pytest.mark.parametrize("peer_name", ["modern_tools", "legacy_tools"])
def test_closing_the_call_cancels_it_upstream(app, request, peer_name):
    peer = request.getfixturevalue(peer_name)
    cid, aid = add(app, peer.url)
    before = stats(peer)["cancelled"]
    with app.app_context():
        connector, agent = db.session.get(Connector, cid), db.session.get(Agent, aid)
        items = calls.call_tool(connector, None, agent, "count", {"steps": 50, "delay": 0.2},
                                progress_token=1)  # fmt: skip
        assert next(items)["params"]["progress"] == 1
        items.close()
    assert wait_for(lambda: stats(peer)["cancelled"] == before + 1)
    if peer_name == "legacy_tools":
        assert ["POST", "notifications/cancelled"] in peer.requests()


def test_a_legacy_call_past_its_deadline_is_cancelled_upstream(app, legacy_tools):
    app.config["CALL_TIMEOUT"] = 1.0
    cid, aid = add(app, legacy_tools.url)
    before = stats(legacy_tools)["cancelled"]
    notes, outcome = call(app, cid, aid, "count", {"steps": 50, "delay": 0.2})
    assert outcome.kind == "upstream_timeout"
    assert outcome.error == "Peer did not answer the call to count in time."
    assert outcome.result["isError"] is True
    assert wait_for(lambda: stats(legacy_tools)["cancelled"] == before + 1)


def test_legacy_calls_share_one_session(app, legacy_tools):
    cid, aid = add(app, legacy_tools.url)
    before = initializes(legacy_tools)
    for city in ("Oslo", "Lima", "Pune"):
        _notes, outcome = call(app, cid, aid, "weather", {"city": city})
        assert outcome.result["structuredContent"]["city"] == city
    assert initializes(legacy_tools) == before + 1
    assert len(calls.POOL) == 1


def test_a_vanished_legacy_session_is_initialized_again_once(app, legacy_tools, fresh_pool):
    cid, aid = add(app, legacy_tools.url, protocol_era="legacy", protocol_version="2025-11-25")
    key = mcp.SessionPool.key(legacy_tools.url, {})
    fresh_pool.put(key, "gone-session-0123456789abcdef", "2025-11-25")
    before = initializes(legacy_tools)
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "ok"
    assert initializes(legacy_tools) == before + 1
    assert fresh_pool.get(key)[0] != "gone-session-0123456789abcdef"


@pytest.mark.parametrize("peer_name", ["modern_tools", "legacy_tools"])
def test_results_pass_through_untouched(app, request, peer_name):
    peer = request.getfixturevalue(peer_name)
    cid, aid = add(app, peer.url)
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Zürich"})
    assert outcome.kind == "ok"
    assert outcome.result["structuredContent"] == {"city": "Zürich", "celsius": 21.5}
    assert outcome.result["content"] == [{"type": "text", "text": "Zürich: 21.5 °C"}]
    assert outcome.result["_meta"]["peer/source"] == "made up"
    _notes, failed = call(app, cid, aid, "fail", {"text": "on purpose"})
    assert failed.kind == "tool_error" and failed.result["isError"] is True
    assert failed.result["content"] == [{"type": "text", "text": "it failed: on purpose"}]
    assert failed.error == "Peer's tool fail reported an error: it failed: on purpose"


def test_a_non_ascii_tool_name_travels_base64_encoded():
    assert mcp.header_value("count") == "count"
    assert mcp.header_value("météo") == "=?base64?bcOpdMOpbw==?="
    assert mcp.header_value(" padded") == "=?base64?IHBhZGRlZA==?="
    assert mcp.header_value("=?base64?eA==?=").startswith("=?base64?PT9i")


def test_an_upstream_json_rpc_error_is_an_is_error_result_without_the_credential(app, bearer_tools):
    cid, aid = add(app, bearer_tools.url, auth_type="bearer", secret=TOKEN)
    _notes, outcome = call(app, cid, aid, "refuse", {"text": "this"})
    assert outcome.kind == "protocol_error"
    assert outcome.error.startswith("Peer refused the call: refused this; you sent ")
    assert TOKEN not in json.dumps(outcome.result) and TOKEN not in outcome.error
    assert "[credential]" in outcome.error


@pytest.mark.parametrize("kept", [5, 12, 20, 27])
def test_a_credential_cut_off_at_the_end_of_a_long_error_leaves_no_run_of_it(
    app, bearer_tools, kept
):
    # The peer answers "refused <text>; you sent authorization=Bearer <TOKEN>", cut to 300
    # characters (protocol.mcp) before it reaches the scrubber: ``kept`` of the token's.
    cid, aid = add(app, bearer_tools.url, auth_type="bearer", secret=TOKEN)
    padding = "p" * (300 - len("refused ; you sent authorization=Bearer ") - kept)
    _notes, outcome = call(app, cid, aid, "refuse", {"text": padding})
    assert outcome.kind == "protocol_error" and outcome.error.endswith("[credential]")
    for shown in (outcome.error, json.dumps(outcome.result)):
        assert longest_piece(shown, f"Bearer {TOKEN}") < RUN, shown


def test_a_credential_used_as_a_key_of_structured_content_is_scrubbed(app, bearer_tools):
    cid, aid = add(app, bearer_tools.url, auth_type="bearer", secret=TOKEN)
    _notes, outcome = call(app, cid, aid, "mirror")
    assert outcome.kind == "ok", outcome.error
    # The whole header value and a cut one: two keys still, neither holding the token.
    assert outcome.result["structuredContent"] == {"[credential]": "sent",
                                                   "[credential] (2)": "sent"}  # fmt: skip
    assert outcome.result["content"] == [{"type": "text", "text": "[credential]"}]


def test_a_refused_static_credential_says_who_must_replace_it(app, bearer_tools):
    cid, aid = add(app, bearer_tools.url, auth_type="bearer", secret="wrong-token-0000000")
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "refused_needs_reconnect"
    assert outcome.error == ("Peer refused the stored token (401 Unauthorized): an operator "
                             "must replace it on the connectors page.")  # fmt: skip


def test_a_per_agent_connector_without_the_agents_credential_is_refused(app, bearer_tools):
    cid, aid = add(app, bearer_tools.url, name="Linear", agent="Ada", auth_type="bearer",
                   credential_mode="per_agent")  # fmt: skip
    before = len(bearer_tools.requests())
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "refused_no_credential"
    assert outcome.error == "Agent Ada has no credential for Linear; connect it on its page."
    assert outcome.result == {"content": [{"type": "text", "text": outcome.error}],
                              "isError": True}  # fmt: skip
    assert len(bearer_tools.requests()) == before  # nothing was sent


def test_a_per_agent_connector_uses_the_agents_own_credential(app, bearer_tools):
    cid, aid = add(app, bearer_tools.url, auth_type="bearer", credential_mode="per_agent",
                   agent_secret=TOKEN)  # fmt: skip
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "ok"


def test_an_upstream_that_is_down_is_named(app):
    cid, aid = add(app, f"http://127.0.0.1:{free_port()}/mcp", name="Gone")
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "upstream_down"
    assert outcome.error.startswith("Gone could not be reached: ")
    assert outcome.result["isError"] is True


def test_a_401_refreshes_once_and_the_call_goes_through(app, logged_in, fresh_oauth_peer):
    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    agent_id = add_oauth_agent(app)
    fresh_oauth_peer.expire_tokens()  # the peer refuses the token we still think is fresh
    _notes, outcome = call(app, connector_id, agent_id, "echo", {"text": "hi"})
    assert outcome.kind == "ok", outcome.error
    assert outcome.result["content"][0]["text"] == "hi"
    assert fresh_oauth_peer.stats()["token_requests"].get("refresh_token") == 1
    with app.app_context():
        assert db.session.get(Connector, connector_id).status == "connected"


def test_a_dead_shared_grant_needs_reconnect_and_says_where(app, logged_in, fresh_oauth_peer):
    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url, name="Linear")
    connect(logged_in, connector_id)
    agent_id = add_oauth_agent(app)
    fresh_oauth_peer.expire_tokens()
    fresh_oauth_peer.revoke_grants()
    _notes, outcome = call(app, connector_id, agent_id, "echo", {"text": "hi"})
    assert outcome.kind == "refused_needs_reconnect"
    assert outcome.error == ("Linear's authorization has expired: an operator must Reconnect "
                             "Linear on the connectors page.")  # fmt: skip
    with app.app_context():
        assert db.session.get(Connector, connector_id).status == "needs_reconnect"


def test_a_dead_per_agent_grant_names_the_agents_page(app, logged_in, fresh_oauth_peer):
    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent",
                                       name="Linear")  # fmt: skip
    agent_id = add_oauth_agent(app, "Ada")
    connect(logged_in, connector_id, agent_id)
    fresh_oauth_peer.expire_tokens()
    fresh_oauth_peer.revoke_grants()
    _notes, outcome = call(app, connector_id, agent_id, "echo", {"text": "hi"})
    assert outcome.kind == "refused_needs_reconnect"
    assert outcome.error == ("Linear's authorization has expired: an operator must Reconnect "
                             "Linear on agent Ada's page.")  # fmt: skip
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connection = connection_for(db.session.get(Agent, agent_id), connector)
        assert connection.status == "needs_reconnect"
        assert connector.status != "needs_reconnect"


def test_no_access_token_reaches_the_agent(app, logged_in, fresh_oauth_peer):
    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    agent_id = add_oauth_agent(app)
    _notes, outcome = call(app, connector_id, agent_id, "whoami")
    with app.app_context():
        token = db.session.get(Connector, connector_id).access_token_enc.reveal()
    assert outcome.kind == "ok"
    assert token not in json.dumps(outcome.result)
    assert "[credential]" in json.dumps(outcome.result)


def test_a_remembered_era_that_no_longer_works_is_probed_again(app, legacy_tools):
    cid, aid = add(app, legacy_tools.url, protocol_era="modern", protocol_version="2026-07-28")
    _notes, outcome = call(app, cid, aid, "weather", {"city": "Oslo"})
    assert outcome.kind == "ok"
    with app.app_context():
        connector = db.session.get(Connector, cid)
        assert (connector.protocol_era, connector.protocol_version) == ("legacy", "2025-11-25")
        touched = connector.updated_at
    call(app, cid, aid, "weather", {"city": "Lima"})
    with app.app_context():
        assert db.session.get(Connector, cid).updated_at == touched  # unchanged: not rewritten


def test_concurrent_legacy_calls_share_the_pooled_session(legacy_tools):
    pool = mcp.SessionPool()
    before = initializes(legacy_tools)

    def weather(city):
        client = mcp.Client(Http(allow_private=True), legacy_tools.url, era="legacy", pool=pool)
        *_, done = client.call_tool("weather", {"city": city})
        return done.result["structuredContent"]["city"]

    assert weather("first") == "first"
    cities = [f"city {i}" for i in range(16)]
    with ThreadPoolExecutor(8) as workers:
        assert list(workers.map(weather, cities)) == cities
    assert initializes(legacy_tools) == before + 1


def test_x_mcp_header_arguments_travel_as_mcp_param_headers():
    schema = next(t for t in call_tools.TOOLS if t["name"] == "locate")["inputSchema"]
    fast = {"type": "boolean", "x-mcp-header": "Fast"}
    schema = {**schema, "properties": {**schema["properties"], "fast": fast}}
    assert mcp.param_headers(schema, {"place": {"region": "eu-west"}, "fast": False}) == {
        "Mcp-Param-Region": "eu-west",
        "Mcp-Param-Fast": "false",
    }
    assert mcp.param_headers(schema, {"place": {"region": "Zürich"}}) == {
        "Mcp-Param-Region": "=?base64?WsO8cmljaA==?="
    }
    assert mcp.param_headers(schema, {"place": None}) == {}
    assert mcp.param_headers(None, {"place": {"region": "x"}}) == {}


def test_a_modern_upstream_gets_the_mcp_param_headers_it_checks(app, modern_tools):
    schema = next(t for t in call_tools.TOOLS if t["name"] == "locate")["inputSchema"]
    cid, aid = add(app, modern_tools.url)
    arguments = {"place": {"region": "eu-west"}}
    with app.app_context():
        connector, agent = db.session.get(Connector, cid), db.session.get(Agent, aid)
        *_, outcome = calls.call_tool(connector, None, agent, "locate", arguments,
                                      input_schema=schema)  # fmt: skip
        assert outcome.result["content"][0]["text"] == "Mcp-Param-Region: eu-west"
        *_, without = calls.call_tool(connector, None, agent, "locate", arguments)
        assert without.kind == "protocol_error"
        assert "Mcp-Param-Region" in without.error or "header" in without.error.lower()
