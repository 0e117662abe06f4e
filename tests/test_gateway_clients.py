"""The official MCP clients use an agent's endpoint as an agent would, under gunicorn: the
TypeScript SDK client, the ``mcp`` 1.30.0 client (legacy era only) and the ``mcp`` 2.x client
in its default mode (probes ``server/discover``: the 2026-07-28 era) and forced legacy. Each
lists the agent's tools and calls them through the gateway against a real upstream, the
conformance peer behind a shared bearer token: a plain call with structured content, an
``isError`` result, a call that streams progress, a call cancelled after its first progress
notification (and a call after it, on the same connection), a tool the operator did not allow,
and (legacy era) ping; and a wrong key is refused.

The clients, their steps and what they print: ``tests/clients``.
"""

import pytest
from sqlalchemy import select

from mcpadmin import create_app
from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector
from tests import clients
from tests.conftest import empty_database
from tests.peers import start

pytestmark = pytest.mark.skipif(clients.missing() is not None, reason=str(clients.missing()))

CLIENTS = ["ts", "py1", "py2-auto", "py2-legacy"]
LEGACY_CLIENTS = ["ts", "py1", "py2-legacy"]
HIDDEN = "test_simple_text"  # served upstream, not enabled for the agent


def run(client: str, url: str, key: str, steps: list[dict]) -> list[dict]:
    if client == "ts":
        return clients.run_ts(url, key, steps)
    if client == "py1":
        return clients.run_py1(url, key, steps)
    return clients.run_py2(url, key, steps, mode=client.removeprefix("py2-"))


@pytest.fixture(scope="module")
def gateway(database_uri, tmp_path_factory):
    """``(endpoint URL, key, name of each upstream tool at the endpoint)`` for an agent with
    every tool of the bearer-protected peer but ``HIDDEN``, names prefixed."""
    peer = start("conformance_server.py", "--bearer", "peer-token")
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ALLOW_PRIVATE_NETWORKS": True,
            "ALLOW_HTTP_LOOPBACK": True,
        },
        instance_path=str(tmp_path_factory.mktemp("instance")),
    )
    try:
        with app.app_context():
            connector = Connector(
                name="Test Tools",
                url=peer.base_url + "/mcp",
                auth_type="bearer",
                status="connected",
                secret_enc=seal("peer-token"),
            )
            agent_id, key, names = clients.seed_agent([connector])
            connection = db.session.scalar(select(AgentConnection))
            connection.enabled_tools = [n for n in names if n != HIDDEN]
            db.session.commit()
            gateway_names = {n: f"{connector.slug}__{n}" for n in names}
        with clients.serve_gateway(app.instance_path, database_uri) as base:
            yield f"{base}/agents/{agent_id}/mcp", key, gateway_names
    finally:
        empty_database(app)
        peer.stop()


@pytest.fixture(scope="module")
def answers(gateway):
    """What each client answered to the same steps, run once per client: ``{client: {step
    name: answer}}``."""
    url, key, names = gateway
    steps = {
        "list": {"op": "list"},
        "echo": {"op": "call", "name": names["echo"], "arguments": {"text": "héllo"}},
        "error": {"op": "call", "name": names["test_error_handling"]},
        "progress": {"op": "call", "name": names["test_tool_with_progress"], "progress": True},
        "cancel": {
            "op": "call",
            "name": names["slow_progress"],
            "arguments": {"steps": 5, "delay": 1},
            "cancel": True,
        },
        "after cancel": {"op": "call", "name": names["echo"], "arguments": {"text": "again"}},
        "hidden": {"op": "call", "name": names[HIDDEN]},
        "ping": {"op": "ping"},
    }
    ran = {}
    for client in CLIENTS:
        wanted = [n for n in steps if n != "ping" or client in LEGACY_CLIENTS]
        try:
            answered = run(client, url, key, [steps[n] for n in wanted])
        except Exception as error:  # noqa: BLE001 - one client's failed connect fails its tests
            answered = [{"error": repr(error)}] * (len(wanted) + 1)
        answered += answered[:1] * (len(wanted) - len(answered))  # a failed connect: one error
        ran[client] = dict(zip(wanted, answered, strict=False))
        if client.startswith("py2"):
            ran[client]["negotiated"] = answered[-1].get("protocol_version")
    return ran


@pytest.mark.parametrize("client", CLIENTS)
def test_lists_the_enabled_tools_with_their_definitions(gateway, answers, client):
    _, _, names = gateway
    listed = answers[client]["list"]
    assert "error" not in listed, listed
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == {names[n] for n in names if n != HIDDEN}
    echo = tools[names["echo"]]
    assert echo["title"] == "Echo"
    assert echo["description"] == "Returns its text, as text and as structured content"
    assert echo["inputSchema"]["required"] == ["text"]
    assert echo["outputSchema"]["properties"] == {"text": {"type": "string"}}
    assert echo["annotations"]["readOnlyHint"] is True
    schema = tools[names["json_schema_2020_12_tool"]]["inputSchema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False and "$defs" in schema


@pytest.mark.parametrize("client", CLIENTS)
def test_calls_a_tool_and_gets_content_and_structured_content(answers, client):
    result = answers[client]["echo"].get("result")
    assert result, answers[client]["echo"]
    assert result["content"] == [{"type": "text", "text": "héllo"}]
    assert result["structuredContent"] == {"text": "héllo"}
    assert not result.get("isError")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_failing_tool_is_an_error_result(answers, client):
    result = answers[client]["error"].get("result")
    assert result, answers[client]["error"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == "This tool intentionally returns an error for testing"


@pytest.mark.parametrize("client", CLIENTS)
def test_progress_is_relayed_while_the_tool_runs(answers, client):
    answer = answers[client]["progress"]
    assert "result" in answer, answer
    assert [p["progress"] for p in answer["progress"]] == [0, 50, 100]
    assert all(p["total"] == 100 for p in answer["progress"])
    assert answer["result"]["content"][0]["text"] == "Tool with progress executed successfully"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_call_cancelled_after_its_first_progress_stops_and_the_next_call_works(answers, client):
    cancelled = answers[client]["cancel"]
    assert cancelled.get("cancelled") is True, cancelled
    assert cancelled["progress"][0] == {"progress": 1, "total": 5, "message": "step 1"}
    after = answers[client]["after cancel"].get("result")
    assert after and after["structuredContent"] == {"text": "again"}, answers[client]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_tool_not_enabled_for_the_agent_cannot_be_called(answers, client):
    answer = answers[client]["hidden"]
    assert "error" in answer or answer["result"].get("isError") is True, answer
    assert "simple text response" not in str(answer)


@pytest.mark.parametrize("client", LEGACY_CLIENTS)
def test_ping(answers, client):
    assert answers[client]["ping"] == {"ping": True}


def test_the_2x_client_negotiates_the_modern_era_by_default_and_legacy_when_forced(answers):
    assert answers["py2-auto"]["negotiated"] == "2026-07-28"
    assert answers["py2-legacy"]["negotiated"] in ("2025-11-25", "2025-06-18", "2025-03-26")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_wrong_key_is_refused(gateway, client):
    url, key, _ = gateway
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    try:
        answered = run(client, url, wrong, [{"op": "list"}])
    except Exception as error:  # noqa: BLE001 - the 2.x client raises on a refused connect
        answered = [{"error": repr(error)}]
    assert len(answered) >= 1 and "error" in answered[0], answered
    assert "tools" not in answered[0]
