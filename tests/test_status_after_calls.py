"""What the pages say after an agent's calls, against real peers whose credentials change under
them: a refused token or API key (shared and per agent), a dead OAuth grant and a server that
went down turn the connectors index, the connector page and the agent's card red with the
call's sentence; one call that works again turns them green without a Sync. Calls that keep
working write nothing; a per-agent connector synced before any agent connected is not an
error."""

import contextlib
import html
import json
import re
import threading

import pytest
import requests
from sqlalchemy import event as sa_event

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector
from mcpadmin.services import agent_keys, calllog, calls, fanout
from mcpadmin.services.calllog import Outcome
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector
from tests.oauth_helpers import add_connector as add_oauth_connector
from tests.oauth_helpers import connect
from tests.peers import start
from tests.peers.mcp_fixtures import McpPeer, _start, _stop
from tests.test_gateway import sdk_client

TOKEN = "status-peer-token-0123456789"  # noqa: S105 (the peers' test credential)
KEY = "status-peer-key-0123456789"


@pytest.fixture(scope="module")
def bearer_tools():
    peer = _start("mcp_server.py", "--call-tools", "--bearer", TOKEN)
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def key_tools():
    peer = _start("mcp_server.py", "--call-tools", "--api-key", f"X-Api-Key={KEY}",
                  "--key-refusal", "401")  # fmt: skip
    yield peer
    _stop(peer)


def accept(peer, **credentials):
    """Change the credential ``peer`` accepts from now on (``bearer=`` or ``api_key=``)."""
    requests.post(peer.peer.base_url + "/_accept", json=credentials, timeout=5).raise_for_status()


@pytest.fixture
def bearer_peer(bearer_tools):
    yield bearer_tools
    accept(bearer_tools, bearer=TOKEN)


@pytest.fixture
def key_peer(key_tools):
    yield key_tools
    accept(key_tools, api_key=f"X-Api-Key={KEY}")


def call(url, key, tool, arguments=None, times=1):
    """``tools/call`` ``times`` over with the official SDK client; the last result."""

    async def main():
        async with sdk_client(url, key) as client:
            for _ in range(times):
                result = await client.call_tool(tool, arguments or {"city": "Oslo"})
            return result

    return run_async(main)


def text_of(response) -> str:
    """A page's text as the operator reads it (entities decoded, blanks collapsed)."""
    assert response.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(response.get_data(as_text=True)))


def pages(client, connector_id, agent_id) -> dict:
    return {
        "index": text_of(client.get("/connectors/")),
        "connector": text_of(client.get(f"/connectors/{connector_id}")),
        "agent": text_of(client.get(f"/agents/{agent_id}")),
    }


def badge(text, kind) -> bool:
    return f'class="badge badge-{kind}"' in text


def assert_red(client, connector_id, agent_id, sentence, per_agent=False):
    shown = pages(client, connector_id, agent_id)
    where = ["agent"] if per_agent else ["index", "connector", "agent"]
    for page in where:
        assert badge(shown[page], "error"), page
        assert sentence in shown[page], page
    for page, text in shown.items():
        assert TOKEN not in text and KEY not in text, page
    if per_agent:
        assert "0 agents connected" in shown["index"]


def assert_green(client, connector_id, agent_id, per_agent=False):
    shown = pages(client, connector_id, agent_id)
    for page, text in shown.items():
        assert not badge(text, "error"), page
    if per_agent:
        assert "Token configured" in shown["agent"] and "1 agent connected" in shown["index"]
    else:
        assert badge(shown["index"], "connected") and badge(shown["connector"], "connected")


def holder_of(app, connector_id):
    """The (status, last_error) of the connector, and of each agent connection."""
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        return (connector.status, connector.last_error), [
            (c.status, c.last_error) for c in connector.connections
        ]


def shared(app, served, url, name, secret=None, **settings):
    """Agent Ada with a shared connector for ``url`` (``secret``: its token or key), synced;
    (connector id, agent id, endpoint, agent key)."""
    with app.app_context():
        if secret:
            settings["secret_enc"] = seal(secret)
        connector = synced_connector(url, name, **settings)
        agent, key = agent_with_tools([connector], name="Ada")
        return connector.id, agent.id, served.endpoint(agent), key


def weather(app, served, peer):
    """Agent Ada with the shared-bearer connector "Weather" on ``peer``."""
    return shared(app, served, peer.url, "Weather", auth_type="bearer", secret=TOKEN)


def per_agent(app, served, url, secret, **settings):
    """Agent Ada with her own credential for the per-agent connector "Ledger", its tools
    synced with it and enabled; (connector id, agent id, endpoint, agent key)."""
    with app.app_context():
        connector = Connector(name="Ledger", url=url, credential_mode="per_agent", **settings)
        agent = Agent(name="Ada")
        connection = AgentConnection(agent=agent, connector=connector, secret_enc=seal(secret),
                                     status="connected")  # fmt: skip
        db.session.add(connection)
        db.session.commit()
        assert all(o.ok for o in fanout.sync_connector(connector))
        connection.enabled_tools = [t.name for t in connector.tools]
        _, key = agent_keys.create(agent, "test key")
        db.session.commit()
        return connector.id, agent.id, served.endpoint(agent), key


# -- a refused credential ----------------------------------------------------------------------


def test_a_refused_shared_token_turns_every_page_red_and_one_good_call_green(
    app, served, logged_in, bearer_peer
):
    connector_id, agent_id, url, key = weather(app, served, bearer_peer)
    assert not call(url, key, "weather__weather").is_error
    assert_green(logged_in, connector_id, agent_id)

    accept(bearer_peer, bearer="a-new-token-the-operator-was-not-told-of")
    result = call(url, key, "weather__weather", times=3)
    sentence = ("Weather refused the stored token (401 Unauthorized): an operator must replace "
                "it on the connectors page.")  # fmt: skip
    assert result.is_error and result.content[0].text.startswith(sentence)
    assert holder_of(app, connector_id)[0] == ("error", sentence)
    assert_red(logged_in, connector_id, agent_id, sentence)

    accept(bearer_peer, bearer=TOKEN)  # the upstream takes the token again: no Sync pressed
    assert not call(url, key, "weather__weather").is_error
    assert holder_of(app, connector_id)[0] == ("connected", None)
    assert_green(logged_in, connector_id, agent_id)


def test_a_refused_per_agent_token_turns_the_agents_card_red(app, served, logged_in, bearer_peer):
    connector_id, agent_id, url, key = per_agent(app, served, bearer_peer.url, TOKEN,
                                                 auth_type="bearer")  # fmt: skip
    assert not call(url, key, "ledger__weather").is_error
    assert_green(logged_in, connector_id, agent_id, per_agent=True)

    accept(bearer_peer, bearer="rotated")
    assert call(url, key, "ledger__weather").is_error
    sentence = ("Ledger refused the stored token (401 Unauthorized): an operator must replace it "
                "on agent Ada's page.")  # fmt: skip
    connector, connections = holder_of(app, connector_id)
    assert connections == [("error", sentence)] and connector[0] != "error"
    assert_red(logged_in, connector_id, agent_id, sentence, per_agent=True)

    accept(bearer_peer, bearer=TOKEN)
    assert not call(url, key, "ledger__weather").is_error
    assert holder_of(app, connector_id)[1] == [("connected", None)]
    assert_green(logged_in, connector_id, agent_id, per_agent=True)


def test_a_refused_api_key_turns_every_page_red_until_it_is_taken_again(
    app, served, logged_in, key_peer
):
    connector_id, agent_id, url, key = shared(
        app, served, key_peer.url, "Keyed", auth_type="api_key_header",
        api_key_header_name="X-Api-Key", secret=KEY,
    )  # fmt: skip
    accept(key_peer, api_key="X-Api-Key=another")
    assert call(url, key, "keyed__weather").is_error
    sentence = ("Keyed refused the stored API key (401 Unauthorized): an operator must replace "
                "it on the connectors page.")  # fmt: skip
    assert_red(logged_in, connector_id, agent_id, sentence)

    accept(key_peer, api_key=f"X-Api-Key={KEY}")
    assert not call(url, key, "keyed__weather").is_error
    assert_green(logged_in, connector_id, agent_id)


def test_the_synchronous_client_moves_the_state_too(app, bearer_peer):
    """``calls.call_tool``, the data plane's fallback when the upstream's era is unknown."""
    with app.app_context():
        connector = synced_connector(bearer_peer.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, _ = agent_with_tools([connector], name="Ada")

        def outcome():
            updates = calls.call_tool(connector, None, agent, "weather", {"city": "Oslo"})
            ending = [u for u in updates if isinstance(u, calls.Outcome)][0]
            db.session.commit()
            return ending

        accept(bearer_peer, bearer="rotated")
        assert outcome().kind == Outcome.NEEDS_RECONNECT
        assert connector.status == "error" and "refused the stored token" in connector.last_error
        accept(bearer_peer, bearer=TOKEN)
        assert outcome().kind == Outcome.OK
        assert (connector.status, connector.last_error) == ("connected", None)


# -- a dead OAuth grant ------------------------------------------------------------------------


def test_a_dead_grant_asks_for_reconnect_and_a_later_call_does_not_hide_it(
    app, served, logged_in, start_oauth_peer
):
    peer = start_oauth_peer()
    connector_id = add_oauth_connector(app, peer.mcp_url, name="Notes")
    connect(logged_in, connector_id)
    with app.app_context():
        agent, key = agent_with_tools([db.session.get(Connector, connector_id)], name="Ada")
        agent_id, url = agent.id, served.endpoint(agent)
    assert not call(url, key, "notes__echo", {"text": "hi"}).is_error
    assert_green(logged_in, connector_id, agent_id)

    peer.revoke_grants()
    peer.expire_tokens()
    result = call(url, key, "notes__echo", {"text": "hi"})
    assert result.is_error and "authorization has expired" in result.content[0].text
    shown = pages(logged_in, connector_id, agent_id)
    for page in ("index", "connector"):
        assert badge(shown[page], "needs_reconnect"), page
    assert "Reconnect" in shown["agent"]
    assert holder_of(app, connector_id)[0][0] == "needs_reconnect"

    assert call(url, key, "notes__echo", {"text": "hi"}).is_error  # still refused: still asked
    assert holder_of(app, connector_id)[0][0] == "needs_reconnect"


# -- a server that goes down and comes back ----------------------------------------------------


@contextlib.contextmanager
def restartable_peer():
    """A peer (no credential) that the test stops and starts again on the same port."""
    peer = McpPeer(start("mcp_server.py", "--call-tools"))
    try:
        yield peer
    finally:
        peer.peer.stop()


def test_a_server_down_turns_the_pages_red_and_back_up_green_without_a_sync(app, served, logged_in):
    with restartable_peer() as peer:
        connector_id, agent_id, url, key = shared(app, served, peer.url, "Weather")
        assert not call(url, key, "weather__weather").is_error

        peer.peer.stop()
        result = call(url, key, "weather__weather")
        assert result.is_error and "Weather could not be reached" in result.content[0].text
        status, error = holder_of(app, connector_id)[0]
        assert status == "error" and error.startswith("Weather could not be reached")
        assert_red(logged_in, connector_id, agent_id, "Weather could not be reached")

        peer.peer = start("mcp_server.py", "--call-tools", port=peer.peer.port)
        assert not call(url, key, "weather__weather").is_error
        assert holder_of(app, connector_id)[0] == ("connected", None)
        assert_green(logged_in, connector_id, agent_id)


def test_a_server_too_slow_is_an_error_until_a_call_is_answered(
    app, served, logged_in, bearer_peer
):
    connector_id, agent_id, url, key = weather(app, served, bearer_peer)
    app.config["CALL_TIMEOUT"] = 1.0
    result = call(url, key, "weather__count", {"steps": 3, "delay": 1.0})
    sentence = "Weather did not answer the call to count in time."
    assert result.is_error and result.content[0].text.startswith(sentence)
    assert_red(logged_in, connector_id, agent_id, sentence)
    assert not call(url, key, "weather__count", {"steps": 1, "delay": 0}).is_error
    assert_green(logged_in, connector_id, agent_id)


def test_a_tool_error_or_a_refused_call_is_not_the_connectors_error(app, served, bearer_peer):
    """The server answered: its tool's own error, or a JSON-RPC refusal, says nothing about
    the credential or the server being up."""
    connector_id, _, url, key = weather(app, served, bearer_peer)
    assert call(url, key, "weather__fail", {}).is_error
    assert call(url, key, "weather__refuse", {}).is_error
    assert holder_of(app, connector_id)[0] == ("connected", None)


# -- no write for calls that keep working ------------------------------------------------------


@contextlib.contextmanager
def statements(app):
    """The statements the app's engine runs meanwhile on the calls' path (a list filled as
    they run; the call log writer's batched inserts, off that path, left out)."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name != calllog.Writer.THREAD_NAME:
            seen.append(statement.strip())

    with app.app_context():
        engine = db.engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)


def updated(seen) -> list[str]:
    """The tables the UPDATE statements among ``seen`` name."""
    return [s.split()[1].strip('"').lower() for s in seen if s.upper().startswith("UPDATE")]


def test_calls_that_keep_working_write_nothing_and_a_recovery_writes_once(app, served, bearer_peer):
    connector_id, _, url, key = weather(app, served, bearer_peer)
    call(url, key, "weather__weather")  # the connection's first call and the key's first use
    with statements(app) as seen:
        assert not call(url, key, "weather__weather", times=20).is_error
    assert "connector" not in updated(seen) and "agent_connection" not in updated(seen), seen

    accept(bearer_peer, bearer="rotated")
    call(url, key, "weather__weather", times=3)
    accept(bearer_peer, bearer=TOKEN)
    with statements(app) as seen:
        assert not call(url, key, "weather__weather", times=10).is_error
    assert updated(seen).count("connector") == 1, seen  # Error → Connected, once
    assert holder_of(app, connector_id)[0] == ("connected", None)


def test_a_call_costs_two_statements_whatever_state_it_found(app, bearer_peer):
    """In process, as ``bench/gateway.py`` counts them: the key (with the catalog version)
    and the call's connection and connector, which carry the state a call may change."""
    from tests.gateway_helpers import AgentClient
    from tests.test_gateway_wire import modern_body, modern_headers

    with app.app_context():
        connector = synced_connector(bearer_peer.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        connector_id, path = connector.id, f"/agents/{agent.id}/mcp"
    body = modern_body("tools/call", name="weather__weather", arguments={"city": "Oslo"})
    headers = modern_headers(key, "tools/call", **{"Mcp-Name": "weather__weather"})

    with AgentClient(app) as client:

        def calls_made(times) -> list:
            with statements(app) as seen:
                for _ in range(times):
                    answer = client.post(path, json=body, headers=headers).json["result"]
            return answer, seen

        assert not calls_made(1)[0]["isError"]  # the first call and use are written
        answer, seen = calls_made(20)
        assert not answer["isError"] and len(seen) == 2 * 20, seen
        accept(bearer_peer, bearer="rotated")
        assert calls_made(1)[0]["isError"]
        accept(bearer_peer, bearer=TOKEN)
        answer, seen = calls_made(1)
        # The state (Error → Connected), and the connection's last call (its error cleared).
        assert not answer["isError"] and updated(seen) == ["connector", "agent_connection"], seen
        answer, seen = calls_made(20)
        assert not answer["isError"] and len(seen) == 2 * 20, seen
    assert holder_of(app, connector_id)[0] == ("connected", None)


# -- a per-agent connector before any agent has connected --------------------------------------


def test_syncing_a_per_agent_connector_before_any_agent_connected_is_not_an_error(
    app, logged_in, bearer_peer
):
    with app.app_context():
        connector = Connector(name="Ledger", url=bearer_peer.url, auth_type="bearer",
                              credential_mode="per_agent")  # fmt: skip
        db.session.add(connector)
        db.session.commit()
        connector_id = connector.id

    row = text_of(logged_in.hx_post(f"/connectors/{connector_id}/sync"))
    assert "No agent has connected yet" in row
    assert 'class="small muted" role="status"' in row
    assert 'class="small error"' not in row and "flash-error" not in row
    index = text_of(logged_in.get("/connectors/"))
    assert 'class="error' not in index and "flash-error" not in index
    assert holder_of(app, connector_id)[0] == ("not_connected", None)

    logged_in.post(f"/connectors/{connector_id}/sync")
    index = text_of(logged_in.get("/connectors/"))
    assert "flash-info" in index and "No agent has connected yet" in index
    assert "flash-error" not in index and 'class="error' not in index


# -- two worker processes ----------------------------------------------------------------------


def test_each_worker_sees_the_state_another_one_wrote(app, database_uri, tmp_path, bearer_peer):
    """The state lives in the database, read with each call: a worker that did not see the
    failure still turns it green, and one that did not see the recovery does not undo it."""
    from tests.browser.conftest import start_live_server
    from tests.test_data_plane import connections_per_worker
    from tests.test_gateway_wire import modern_body, modern_headers

    with app.app_context():
        connector = synced_connector(bearer_peer.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        connector_id, path = connector.id, f"/agents/{agent.id}/mcp"
    env = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"],  # agent keys are HMACed with it
           "MCPADMIN_ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"])}  # fmt: skip
    server = start_live_server(database_uri, str(tmp_path / "live"), timeout=120, workers=2,
                               env=env)  # fmt: skip
    held = []
    try:
        first, second = (group[0] for group in connections_per_worker(server, 2, 1).values())
        held = [first, second]

        def works(connection) -> bool:
            body = modern_body("tools/call", name="weather__weather", arguments={"city": "Oslo"})
            headers = modern_headers(key, "tools/call", **{"Mcp-Name": "weather__weather"})
            headers.update({"Accept": "application/json", "Content-Type": "application/json"})
            connection.request("POST", path, body=json.dumps(body), headers=headers)
            answer = json.loads(connection.getresponse().read())
            return not answer["result"].get("isError")

        for refused_on, recovered_on in ((first, second), (second, first)):
            assert works(refused_on) and works(recovered_on)
            accept(bearer_peer, bearer="rotated")
            assert not works(refused_on)
            assert holder_of(app, connector_id)[0][0] == "error"
            accept(bearer_peer, bearer=TOKEN)
            assert works(recovered_on)
            assert holder_of(app, connector_id)[0] == ("connected", None)
            assert works(refused_on)  # saw Error last, reads Connected: nothing to undo
            assert holder_of(app, connector_id)[0] == ("connected", None)
    finally:
        for connection in held:
            connection.close()
        server.stop()
