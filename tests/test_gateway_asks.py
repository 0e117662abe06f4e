"""An upstream's requests back to the agent during a tool call (``gateway/asks.py``): the
official Python SDK client (2.x, legacy mode and auto mode) through the gateway, in front of a
real upstream that elicits, samples and lists roots (``tests/peers/asking_server.py``, 2.x,
both eras), with the upstream's era pinned on the connector.

- 2025 agent, 2025 upstream: the request reaches the agent's callback and its answer the tool;
  one call-log row per request; an agent that did not declare the capability, or never
  answers, ends the call with a sentence, in bounded time; the answer POSTed to another
  gunicorn worker still reaches the upstream.
- 2026 agent, 2026 upstream: ``input_required`` passes through, the client retries with its
  answers.
- 2025 agent, 2026 upstream: the gateway turns ``inputRequests`` into requests to the agent.
- 2026 agent, 2025 upstream: the upstream gets an error with a sentence.

Also the SDK's 1.x line on either side (a 1.30.0 upstream, the 1.30.0 client) and the
TypeScript SDK's client answering an elicitation.
"""

import http.client
import json
import time

import anyio
import mcp_types as types
import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import CallRecord, PendingAsk
from mcpadmin.services import calllog
from tests.gateway_helpers import agent_with_tools, run_async, serving, synced_connector
from tests.peers import start
from tests.peers.mcp_fixtures import LEGACY_PYTHON

LEGACY = ("legacy", "2025-11-25")
MODERN = ("modern", "2026-07-28")
ROOT = "file:///work/project"


@pytest.fixture(scope="module")
def asking_peer():
    peer = start("asking_server.py")
    yield peer
    peer.stop()


def agent_for(app, peer, era) -> tuple[int, str]:
    """An agent with every tool of the asking peer, whose era is pinned to ``era``; its id
    and key."""
    with app.app_context():
        connector = synced_connector(peer.base_url + "/mcp", "Asker")
        connector.protocol_era, connector.protocol_version = era
        agent, key = agent_with_tools([connector], name="Ada")
        db.session.commit()
        return agent.id, key


async def elicited(_context, params):
    return types.ElicitResult(action="accept", content={"ok": True})


async def sampled(_context, params):
    text = types.TextContent(type="text", text="short")
    return types.CreateMessageResult(role="assistant", content=text, model="test-model")


async def rooted(_context):
    return types.ListRootsResult(roots=[types.Root(uri=ROOT)])


async def never(_context, params):
    await anyio.sleep(30)


ANSWERING = {"elicitation_callback": elicited, "sampling_callback": sampled,
             "list_roots_callback": rooted}  # fmt: skip


def call(url: str, key: str, names: list[tuple], mode: str, callbacks=None) -> list[dict]:
    """Each tool call's result (``text``, ``isError``, seconds taken) through the 2.x client."""

    async def calls():
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        answers = []
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode=mode, **(callbacks or {})) as client:
            for name, arguments in names:
                started = time.monotonic()
                result = await client.call_tool(f"asker__{name}", arguments)
                texts = [c.text for c in result.content if getattr(c, "text", None)]
                answers.append({"text": " ".join(texts), "isError": bool(result.is_error),
                                "seconds": time.monotonic() - started})  # fmt: skip
        return answers

    return run_async(calls)


def rows(app, kind=None) -> list[CallRecord]:
    calllog.flush(app)
    with app.app_context():
        query = select(CallRecord).order_by(CallRecord.id)
        if kind is not None:
            query = query.where(CallRecord.kind == kind)
        found = db.session.scalars(query).all()
        db.session.expunge_all()
        return found


def test_legacy_agent_answers_each_request_of_a_legacy_upstream(app, asking_peer):
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        names = [("confirm", {"action": "deploy"}), ("summarize", {"text": "long"}),
                 ("where", {})]  # fmt: skip
        answers = call(url, key, names, "legacy", ANSWERING)
    assert [a["text"] for a in answers] == ["accepted deploy: ok=True", "summary: short",
                                            f"roots: {ROOT}"]  # fmt: skip
    asked = [(r.kind, r.tool, r.upstream_tool, r.outcome, r.connector_name)
             for r in rows(app) if r.kind != "tool"]  # fmt: skip
    assert asked == [
        ("elicitation", "elicitation/create", "elicitation/create", "ok", "Asker"),
        ("sampling", "sampling/createMessage", "sampling/createMessage", "ok", "Asker"),
        ("roots", "roots/list", "roots/list", "ok", "Asker"),
    ]
    assert [r.outcome for r in rows(app, "tool")] == ["ok"] * 3
    with app.app_context():
        assert db.session.scalars(select(PendingAsk)).all() == []  # nothing left behind


def test_upstream_gets_an_error_when_the_agent_did_not_declare_the_capability(app, asking_peer):
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        (answer,) = call(url, key, [("ask_plainly", {})], "legacy")
    assert answer["text"] == ("refused -32601: Agent Ada's client did not declare the "
                              "elicitation capability, so mcpadmin cannot relay "
                              "elicitation/create to it.")  # fmt: skip
    assert answer["seconds"] < 30
    (row,) = rows(app, "elicitation")
    assert (row.outcome, row.error) == ("refused_not_allowed", answer["text"].split(": ", 1)[1])


def test_an_unanswered_request_ends_the_call_by_its_deadline(app, asking_peer):
    app.config["CALL_TIMEOUT"] = 3.0
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        callbacks = {"elicitation_callback": never}
        (answer,) = call(url, key, [("ask_plainly", {})], "legacy", callbacks)
    assert answer["isError"]
    assert ("Agent Ada did not answer the server's elicitation/create request before the "
            "call's deadline.") in answer["text"]  # fmt: skip
    assert answer["seconds"] < 20
    (row,) = rows(app, "elicitation")
    assert row.outcome == "upstream_timeout"
    assert [r.outcome for r in rows(app, "tool")] == ["upstream_timeout"]


def test_modern_agent_retries_a_modern_upstreams_input_required(app, asking_peer):
    agent_id, key = agent_for(app, asking_peer, MODERN)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        names = [("confirm", {"action": "deploy"}), ("summarize", {"text": "long"}),
                 ("where", {})]  # fmt: skip
        answers = call(url, key, names, "auto", ANSWERING)
    assert [a["text"] for a in answers] == ["accepted deploy: ok=True", "summary: short",
                                            f"roots: {ROOT}"]  # fmt: skip
    # Each tool answered input_required once, then its result: two tool rows each.
    assert [r.outcome for r in rows(app, "tool")] == ["ok"] * 6


def test_legacy_agent_answers_a_modern_upstreams_input_requests(app, asking_peer):
    agent_id, key = agent_for(app, asking_peer, MODERN)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        names = [("confirm", {"action": "deploy"}), ("summarize", {"text": "long"}),
                 ("where", {})]  # fmt: skip
        answers = call(url, key, names, "legacy", ANSWERING)
    assert [a["text"] for a in answers] == ["accepted deploy: ok=True", "summary: short",
                                            f"roots: {ROOT}"]  # fmt: skip
    assert [r.kind for r in rows(app) if r.kind != "tool"] == ["elicitation", "sampling", "roots"]


def test_modern_agent_cannot_answer_a_legacy_upstream_mid_call(app, asking_peer):
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        (answer,) = call(url, key, [("ask_plainly", {})], "auto", ANSWERING)
    said = ("Agent Ada's client speaks 2026-07-28 and cannot answer elicitation/create "
            "mid-call through mcpadmin.")  # fmt: skip
    assert answer["text"] == f"refused -32601: {said}"
    (row,) = rows(app, "elicitation")
    assert row.outcome == "refused_not_allowed"


def test_legacy_agent_without_a_stream_is_not_asked(app, asking_peer):
    """A client that takes only JSON cannot get a request mid-call: the upstream hears why."""
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        connection = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]),
                                                timeout=30)  # fmt: skip
        path = f"/agents/{agent_id}/mcp"
        session = _initialize(connection, path, key, {"elicitation": {}})
        headers = _legacy_headers(key, session, accept="application/json")
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "asker__ask_plainly", "arguments": {}}}  # fmt: skip
        connection.request("POST", path, body=json.dumps(body), headers=headers)
        answer = json.loads(connection.getresponse().read())
        connection.close()
    text = answer["result"]["content"][0]["text"]
    assert text.startswith("refused -32601: Agent Ada's call does not accept an event stream")


def _legacy_headers(key, session=None, accept="application/json, text/event-stream"):
    headers = {"Authorization": f"Bearer {key}", "Accept": accept,
               "Content-Type": "application/json"}  # fmt: skip
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    return headers


def _initialize(connection, path, key, capabilities) -> str:
    params = {"protocolVersion": "2025-11-25", "capabilities": capabilities,
              "clientInfo": {"name": "test", "version": "1"}}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    connection.request("POST", path, body=json.dumps(body), headers=_legacy_headers(key))
    response = connection.getresponse()
    response.read()
    session = response.getheader("Mcp-Session-Id")
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    connection.request("POST", path, body=json.dumps(note), headers=_legacy_headers(key, session))
    connection.getresponse().read()
    return session


def _events(response):
    """The JSON-RPC messages of an event stream, as they arrive."""
    data = []
    while True:
        line = response.fp.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def test_an_answer_posted_to_another_worker_reaches_the_upstream(app, database_uri, tmp_path,
                                                                  asking_peer):  # fmt: skip
    from tests.browser.conftest import start_live_server
    from tests.test_data_plane import connections_per_worker

    agent_id, key = agent_for(app, asking_peer, LEGACY)
    path = f"/agents/{agent_id}/mcp"
    env = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"],  # agent keys are HMACed with it
           "MCPADMIN_ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"])}  # fmt: skip
    server = start_live_server(database_uri, str(tmp_path / "live"), timeout=120, workers=2,
                               env=env)  # fmt: skip
    held = []
    try:
        first, second = (group[0] for group in connections_per_worker(server, 2, 1).values())
        held = [first, second]
        session = _initialize(first, path, key, {"elicitation": {}})
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "asker__ask_plainly", "arguments": {}}}  # fmt: skip
        first.request("POST", path, body=json.dumps(body), headers=_legacy_headers(key, session))
        response = first.getresponse()
        assert response.getheader("Content-Type").startswith("text/event-stream")
        events = _events(response)
        asked = next(events)
        assert asked["method"] == "elicitation/create"
        assert asked["params"]["message"] == "Proceed?"
        answer = {"jsonrpc": "2.0", "id": asked["id"],
                  "result": {"action": "accept", "content": {"ok": True}}}  # fmt: skip
        second.request("POST", path, body=json.dumps(answer),
                       headers=_legacy_headers(key, session))  # fmt: skip
        accepted = second.getresponse()
        accepted.read()
        assert accepted.status == 202
        final = next(e for e in events if e.get("id") == 2)
        assert final["result"]["content"][0]["text"] == "answered accept"
    finally:
        for connection in held:
            connection.close()
        server.stop()


def test_an_answer_from_another_session_is_not_taken(app, asking_peer):
    """Only the session the request went to may answer it."""
    app.config["CALL_TIMEOUT"] = 3.0
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        port = int(served.url.rsplit(":", 1)[1])
        path = f"/agents/{agent_id}/mcp"
        mine, other = (http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in "12")
        session = _initialize(mine, path, key, {"elicitation": {}})
        stranger = _initialize(other, path, key, {"elicitation": {}})
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "asker__ask_plainly", "arguments": {}}}  # fmt: skip
        mine.request("POST", path, body=json.dumps(body), headers=_legacy_headers(key, session))
        events = _events(mine.getresponse())
        asked = next(events)
        answer = {"jsonrpc": "2.0", "id": asked["id"],
                  "result": {"action": "accept", "content": {"ok": True}}}  # fmt: skip
        other.request("POST", path, body=json.dumps(answer),
                      headers=_legacy_headers(key, stranger))  # fmt: skip
        other.getresponse().read()
        final = next(e for e in events if e.get("id") == 2)
        mine.close()
        other.close()
    assert final["result"]["isError"]
    assert "did not answer the server's elicitation/create request" in (
        final["result"]["content"][0]["text"])  # fmt: skip


def test_the_upstream_session_declares_what_mcpadmin_relays():
    """Every legacy upstream session declares elicitation, sampling and roots."""
    from mcpadmin.protocol import mcp

    steps = mcp.handshake("http://peer", iter(range(1, 9)).__next__)
    assert next(steps).message["params"]["capabilities"] == mcp.ASK_CAPABILITIES


def test_the_agent_cancelling_ends_the_wait(app, asking_peer):
    """A legacy notifications/cancelled while the agent is being asked cancels the call and
    the wait: both rows say so, and the request's row is gone."""
    agent_id, key = agent_for(app, asking_peer, LEGACY)

    async def cancelled_while_asked(url):
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        asked = anyio.Event()

        async def waits(_context, params):
            asked.set()
            await anyio.sleep(30)

        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode="legacy", elicitation_callback=waits) as client:
            async with anyio.create_task_group() as group:  # cancelling sends the notification
                group.start_soon(client.call_tool, "asker__ask_plainly", {})
                await asked.wait()
                group.cancel_scope.cancel()
            await anyio.sleep(1)  # the gateway hears of it

    with serving(app) as served:
        run_async(cancelled_while_asked, f"{served.url}/agents/{agent_id}/mcp")
    (row,) = rows(app, "elicitation")
    assert row.outcome == "cancelled"
    assert [r.outcome for r in rows(app, "tool")] == ["cancelled"]
    with app.app_context():
        assert db.session.scalars(select(PendingAsk)).all() == []


def test_legacy_agent_answers_a_1x_server(app):
    """The SDK's 1.x line (2025 only): found legacy by the sync's probe, its elicitation
    relayed."""
    peer = start("asking_legacy_server.py", python=LEGACY_PYTHON)
    try:
        with app.app_context():
            connector = synced_connector(peer.base_url + "/mcp", "Asker")
            assert connector.protocol_era == "legacy"
            agent, key = agent_with_tools([connector], name="Ada")
            agent_id = agent.id
        with serving(app) as served:
            url = f"{served.url}/agents/{agent_id}/mcp"
            (answer,) = call(url, key, [("confirm", {"action": "ship"})], "legacy", ANSWERING)
    finally:
        peer.stop()
    assert answer["text"] == "accepted ship: ok=True"
    assert [(r.kind, r.outcome) for r in rows(app, "elicitation")] == [("elicitation", "ok")]


PY1_ELICITING = """
import json, sys, anyio
from mcp import ClientSession, types
from mcp.client.streamable_http import streamablehttp_client

async def elicited(context, params):
    return types.ElicitResult(action="accept", content={"ok": True})

async def main(url, key):
    headers = {"Authorization": f"Bearer {key}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write, elicitation_callback=elicited) as session:
            await session.initialize()
            result = await session.call_tool("asker__confirm", {"action": "ship"})
            print(json.dumps(result.content[0].text))

anyio.run(main, *sys.argv[1:])
"""


def test_a_1x_client_answers_through_the_gateway(app, asking_peer):
    """The SDK's 1.x client (1.30.0) answers the elicitation of a tool it called."""
    import subprocess

    agent_id, key = agent_for(app, asking_peer, LEGACY)
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        done = subprocess.run([LEGACY_PYTHON, "-c", PY1_ELICITING, url, key], timeout=120,
                              capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == "accepted ship: ok=True"


TS_ELICITING = """
const { createRequire } = await import("node:module");
const require = createRequire(process.env.NODE_PACKAGE);
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const sdk = "@modelcontextprotocol/sdk";
const { StreamableHTTPClientTransport } = require(`${sdk}/client/streamableHttp.js`);
const { ElicitRequestSchema } = require("@modelcontextprotocol/sdk/types.js");
const [url, key] = process.argv.slice(1);
const client = new Client({ name: "test", version: "1" }, { capabilities: { elicitation: {} } });
const accepted = { action: "accept", content: { ok: true } };
client.setRequestHandler(ElicitRequestSchema, async () => accepted);
const headers = { Authorization: `Bearer ${key}` };
await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
const result = await client.callTool({ name: "asker__confirm", arguments: { action: "ship" } });
console.log(JSON.stringify(result.content[0].text));
await client.close();
"""


def test_the_typescript_client_answers_through_the_gateway(app, asking_peer):
    """The TypeScript SDK's client answers the elicitation of a tool it called."""
    import os
    import subprocess

    from tests import clients

    if clients.missing() is not None:
        pytest.skip(str(clients.missing()))
    agent_id, key = agent_for(app, asking_peer, LEGACY)
    env = {**os.environ, "NODE_PACKAGE": os.path.join(clients.NODE_PREFIX, "package.json")}
    with serving(app) as served:
        url = f"{served.url}/agents/{agent_id}/mcp"
        command = [clients.NODE, "--input-type=module", "-e", TS_ELICITING, url, key]
        done = subprocess.run(command, timeout=120, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == "accepted ship: ok=True"


def test_an_agents_answer_is_read_with_its_result_or_error():
    from mcpadmin.protocol import server

    answered = server.parse(b'{"jsonrpc":"2.0","id":"mcpadmin-ask-x","result":{"action":"accept"}}')
    refused = server.parse(b'{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}')
    assert (answered.kind, answered.answer) == ("response", {"result": {"action": "accept"}})
    assert refused.answer == {"error": {"code": -1, "message": "no"}}


def test_a_too_large_answer_is_relayed_as_an_error():
    from mcpadmin.gateway import asks

    small = {"result": {"action": "accept", "content": {"note": "x"}}}
    large = {"result": {"action": "accept", "content": {"note": "x" * asks.MAX_ANSWER_BYTES}}}
    assert asks._capped(small) == small
    assert "larger than mcpadmin relays" in asks._capped(large)["error"]["message"]


def test_only_the_capabilities_naming_requests_go_upstream():
    from mcpadmin.gateway import asks

    tasks = {"io.modelcontextprotocol/tasks": {}}
    declared = {"elicitation": {"form": {}}, "sampling": {}, "roots": {"listChanged": True},
                "extensions": tasks, "experimental": {}}  # fmt: skip
    assert asks._requesting(declared) == {"elicitation": {"form": {}}, "sampling": {},
                                          "roots": {"listChanged": True}}  # fmt: skip
    assert asks._requesting(None) == {}


def test_a_declined_elicitation_is_recorded_as_declined():
    from mcpadmin.gateway import asks

    assert asks._judged("Ada", "elicitation/create", {"result": {"action": "accept"}})[0] == "ok"
    outcome, error = asks._judged("Ada", "elicitation/create", {"result": {"action": "decline"}})
    assert (outcome, error) == (
        "tool_error",
        "Agent Ada answered elicitation/create with 'decline'.",
    )
    outcome, error = asks._judged("Ada", "roots/list", {"error": {"code": -32601, "message": "no"}})
    assert (outcome, error) == ("tool_error", "Agent Ada's client refused roots/list: no")
