"""Prompts, resources, resource templates and completion through the agent endpoint, with the
official Python SDK (2.x) client in its default mode (which probes the modern era) and forced
legacy, against real upstream peers in both eras (``tests/peers/surface.py`` serves the same
fixtures on each): lists under agent-side names, reads of text, blob and template URIs, a
prompt with arguments, an argument completed, a subscription, what is not ticked neither
listed nor served, two connectors exposing the same URI, the call log's rows and kinds, and
the statements a read or a get costs.
"""

import contextlib
import hashlib
import json
import warnings

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import (
    Agent,
    AgentConnection,
    CallRecord,
    CatalogItem,
    Connector,
    ItemKind,
    ResourceSubscription,
)
from mcpadmin.protocol import mcp
from mcpadmin.services import calllog, calls
from mcpadmin.services import gateway as service
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector
from tests.peers.mcp_fixtures import surface_fixtures
from tests.peers.surface import ITEMS, LOGO, README
from tests.test_gateway import sdk_client
from tests.test_status_after_calls import statements

MODES = ["auto", "legacy"]


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.setattr(calls, "POOL", mcp.SessionPool())


def tick(agent, connector_name, prompts=("greeting", "summary"), resources=("*",)):
    connection = next(c for c in agent.connections if c.connector.name == connector_name)
    connection.enabled_prompts, connection.enabled_resources = list(prompts), list(resources)
    return connection


@pytest.fixture
def peers(surface_peer, legacy_surface_peer):
    """The 2.x and the 1.30.0 peers serving the default fixtures (other tests rewrite them)."""
    for peer in (surface_peer, legacy_surface_peer):
        peer.set_surface(surface_fixtures())
    return surface_peer, legacy_surface_peer


@pytest.fixture
def surface(app, served, peers):
    """Agent "Ada" with "Alpha" (the 2.x peer: both eras) and "Beta" (the 1.30.0 peer: legacy
    only), both serving the same fixtures, everything ticked; its endpoint and key."""
    with app.app_context():
        alpha = synced_connector(peers[0].url, "Alpha")
        beta = synced_connector(peers[1].url, "Beta")
        agent, key = agent_with_tools([alpha, beta], name="Ada")
        tick(agent, "Alpha")
        tick(agent, "Beta")
        db.session.commit()
        return served.endpoint(agent), key


def run(main):
    with warnings.catch_warnings():  # resources/subscribe is deprecated for 2026-07-28
        warnings.simplefilter("ignore")
        return run_async(main)


def rows(app) -> list[CallRecord]:
    calllog.flush(app)
    with app.app_context():
        return db.session.scalars(select(CallRecord).order_by(CallRecord.id)).all()


@pytest.mark.parametrize("mode", MODES)
def test_resources_and_templates_are_listed_under_agent_side_uris(surface, mode):
    url, key = surface

    async def main():
        async with sdk_client(url, key, mode) as client:
            resources = (await client.list_resources()).resources
            templates = (await client.list_resource_templates()).resource_templates
            return [str(r.uri) for r in resources], [t.uri_template for t in templates]

    uris, templates = run(main)
    # Alpha comes first in slug order: it keeps the upstream's URIs; Beta's are namespaced.
    assert sorted(uris) == sorted([README, LOGO, f"mcpadmin://beta/{README}",
                                   f"mcpadmin://beta/{LOGO}"])  # fmt: skip
    assert sorted(templates) == sorted([ITEMS, f"mcpadmin://beta/{ITEMS}"])


@pytest.mark.parametrize("mode", MODES)
def test_text_blob_and_template_resources_are_read_from_the_right_upstream(surface, mode):
    url, key = surface

    async def main():
        async with sdk_client(url, key, mode) as client:
            readme = await client.read_resource(README)
            logo = await client.read_resource(LOGO)
            item = await client.read_resource("peer://items/7")
            beta = await client.read_resource(f"mcpadmin://beta/{ITEMS[:-4]}9")
            return readme, logo, item, beta

    readme, logo, item, beta = run(main)
    assert readme.contents[0].text == "Read me."
    assert logo.contents[0].blob and logo.contents[0].mime_type == "image/png"
    assert item.contents[0].text == "Item 7"
    assert beta.contents[0].text == "Item 9"


@pytest.mark.parametrize("mode", MODES)
def test_prompts_are_listed_and_got_with_arguments(surface, mode):
    url, key = surface

    async def main():
        async with sdk_client(url, key, mode) as client:
            prompts = (await client.list_prompts()).prompts
            got = await client.get_prompt("beta__greeting", {"name": "Ada"})
            return prompts, got

    prompts, got = run(main)
    assert sorted(p.name for p in prompts) == ["alpha__greeting", "alpha__summary",
                                               "beta__greeting", "beta__summary"]  # fmt: skip
    greeting = next(p for p in prompts if p.name == "alpha__greeting")
    assert greeting.arguments[0].name == "name" and greeting.arguments[0].required
    assert got.messages[0].content.text == "Hello, Ada!"


@pytest.mark.parametrize("mode", MODES)
def test_an_argument_is_completed_for_a_prompt_and_a_template(surface, mode):
    url, key = surface

    async def main():
        async with sdk_client(url, key, mode) as client:
            prompt = PromptReference(type="ref/prompt", name="alpha__greeting")
            names = await client.complete(prompt, {"name": "name", "value": "A"})
            template = ResourceTemplateReference(type="ref/resource",
                                                 uri=f"mcpadmin://beta/{ITEMS}")  # fmt: skip
            ids = await client.complete(template, {"name": "id", "value": ""})
            return names.completion.values, ids.completion.values

    assert run(main) == (["Ada", "Alan"], ["1", "2", "3"])


def test_a_legacy_subscription_is_forwarded_and_recorded(app, surface):
    url, key = surface

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            await client.subscribe_resource(f"mcpadmin://beta/{README}")

    run(main)
    with app.app_context():
        found = db.session.scalars(select(ResourceSubscription)).all()
    assert [s.uri for s in found] == [README]


def test_a_legacy_subscription_to_a_modern_upstream_is_kept_by_the_gateway(app, surface):
    """Alpha speaks 2026-07-28, which has no resources/subscribe: the gateway answers the
    legacy agent's subscribe and unsubscribe itself ({}) and keeps the subscription (its GET
    stream listens upstream for it)."""
    url, key = surface

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            await client.subscribe_resource(README)  # Alpha's
            with app.app_context():
                kept = [(s.connector_id, s.uri) for s in
                        db.session.scalars(select(ResourceSubscription))]  # fmt: skip
            await client.unsubscribe_resource(README)
            return kept

    kept = run(main)
    with app.app_context():
        alpha = db.session.scalar(select(Connector).where(Connector.name == "Alpha"))
        assert kept == [(alpha.id, README)]
        assert db.session.scalars(select(ResourceSubscription)).all() == []
    found = [(r.kind, r.tool, r.connector_name, r.outcome) for r in rows(app)]
    assert found == [("subscription", README, "Alpha", "ok")] * 2


@pytest.fixture
def listening_peer():
    """The 2.x peer serving subscriptions/listen, which publishes one update per URI a
    listen stream asks for."""
    from tests.peers.mcp_fixtures import _start, _stop
    from tests.peers.mcp_wrap import generated_tools

    peer = _start("mcp_server.py", "--listen", tools=generated_tools(3), surface=surface_fixtures())
    yield peer
    _stop(peer)


def test_a_legacy_subscription_hears_a_modern_upstreams_update_on_its_stream(app, listening_peer):
    """The session's GET stream listens upstream (subscriptions/listen with the URI in
    resourceSubscriptions) and relays the update the 2026-07-28 peer publishes."""
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.gateway_helpers import serving

    with app.app_context():
        alpha = synced_connector(listening_peer.url, "Alpha")
        assert alpha.protocol_era == "modern"
        agent, key = agent_with_tools([alpha], name="Ada")
        tick(agent, "Alpha")
        db.session.commit()
        agent_id = agent.id
    heard = []

    async def handler(message):
        if getattr(message, "method", None) == "notifications/resources/updated":
            heard.append(str(message.params.uri))

    async def main(url):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy",
                                message_handler=handler) as client:  # fmt: skip
            await client.subscribe_resource(README)
            with anyio.fail_after(8):
                while not heard:
                    await anyio.sleep(0.1)

    with serving(app, stream_seconds=10) as served, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_async(main, f"{served.url}/agents/{agent_id}/mcp")
    assert heard == [README]


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_uri_is_invalid_params_with_the_uri_in_data(surface, mode):
    """[26/resources §Error Handling, SEP-2164]: -32602 and ``data.uri``; the sentence says
    what to tick."""
    url, key = surface

    async def main():
        async with sdk_client(url, key, mode) as client:
            try:
                await client.read_resource("peer://nowhere")
            except MCPError as exc:
                return exc.error

    error = run(main)
    assert error.code == -32602 and error.data == {"uri": "peer://nowhere"}
    assert (
        "No connector of agent 'Ada' serves the resource 'peer://nowhere': tick it (or "
        "'All resources') on the connector's card of the agent's page."
    ) in error.message


@pytest.mark.parametrize("mode", MODES)
def test_what_is_not_ticked_is_neither_listed_nor_served(app, surface, mode):
    url, key = surface
    with app.app_context():
        connection = db.session.scalars(
            select(AgentConnection).where(AgentConnection.enabled_prompts != None)  # noqa: E711
        ).all()
        for c in connection:
            if c.connector.name == "Beta":
                c.enabled_prompts, c.enabled_resources = [], [ITEMS]
        db.session.commit()

    async def main():
        async with sdk_client(url, key, mode) as client:
            names = [p.name for p in (await client.list_prompts()).prompts]
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            errors = []
            for attempt in (client.get_prompt("beta__greeting", {"name": "x"}),
                            client.read_resource(f"mcpadmin://beta/{README}")):  # fmt: skip
                try:
                    await attempt
                except MCPError as exc:
                    errors.append((exc.error.code, exc.error.message))
            item = await client.read_resource(f"mcpadmin://beta/{ITEMS[:-4]}3")
            return names, uris, errors, item

    names, uris, errors, item = run(main)
    assert names == ["alpha__greeting", "alpha__summary"]
    assert not any(u.startswith("mcpadmin://beta/") for u in uris)
    assert errors[0][0] == errors[1][0] == -32602
    assert ("The prompt 'beta__greeting' is not one of agent 'Ada''s prompts: tick it on the "
            "Beta card of the agent's page.") in errors[0][1]  # fmt: skip
    assert (f"No connector of agent 'Ada' serves the resource 'mcpadmin://beta/{README}': "
            "tick it (or 'All resources') on the Beta card of the agent's page."
            ) in errors[1][1]  # fmt: skip
    assert item.contents[0].text == "Item 3"  # the ticked template admits what it matches


def test_a_changed_prompt_is_listed_but_held_back(app, surface):
    url, key = surface
    with app.app_context():
        for c in db.session.scalars(select(AgentConnection)):
            if c.connector.name == "Alpha":
                c.changed_prompts = ["greeting"]
        db.session.commit()

    async def main():
        async with sdk_client(url, key, "auto") as client:
            names = [p.name for p in (await client.list_prompts()).prompts]
            try:
                await client.get_prompt("alpha__greeting", {"name": "x"})
            except MCPError as exc:
                return names, exc.error.message

    names, message = run(main)
    assert "alpha__greeting" in names
    assert "The definition of the prompt greeting on Alpha changed" in message


def test_an_upstream_not_found_keeps_its_code_and_names_the_connector(app, surface):
    url, key = surface
    with app.app_context():  # listed in the catalog, gone upstream
        alpha = next(c for c in db.session.scalars(select(AgentConnection))
                     if c.connector.name == "Alpha")  # fmt: skip
        db.session.add(CatalogItem(connector_id=alpha.connector_id, kind=ItemKind.RESOURCE,
                                   key="peer://gone", definition={"uri": "peer://gone",
                                                                  "name": "gone"}))  # fmt: skip
        db.session.commit()

    async def main():
        async with sdk_client(url, key, "auto") as client:
            try:
                await client.read_resource("peer://gone")
            except MCPError as exc:
                return exc.error

    error = run(main)
    assert "Alpha refused the call" in error.message and "peer://gone" in error.message
    assert error.code == -32602 and error.data == {"uri": "peer://gone"}  # SEP-2164


def test_each_request_gets_a_row_with_its_kind(app, surface):
    url, key = surface

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            await client.read_resource(f"mcpadmin://beta/{README}")
            await client.get_prompt("alpha__summary")
            await client.complete(PromptReference(type="ref/prompt", name="alpha__greeting"),
                                  {"name": "name", "value": "G"})  # fmt: skip
            await client.subscribe_resource(f"mcpadmin://beta/{README}")
            with contextlib.suppress(MCPError):
                await client.get_prompt("nobody__greeting")

    run(main)
    found = [(r.kind, r.tool, r.upstream_tool, r.connector_name, r.outcome) for r in rows(app)]
    assert found == [
        ("resource", f"mcpadmin://beta/{README}", README, "Beta", "ok"),
        ("prompt", "alpha__summary", "summary", "Alpha", "ok"),
        ("completion", "alpha__greeting", "greeting", "Alpha", "ok"),
        ("subscription", f"mcpadmin://beta/{README}", README, "Beta", "ok"),
        ("prompt", "nobody__greeting", None, None, "refused_not_allowed"),
    ]


def test_a_read_and_a_get_cost_the_statements_of_a_tool_call(app, peers):
    """In process, as ``test_status_after_calls`` counts a tools/call (2 statements): the key
    with the catalog version, and the connection with its connector."""
    from tests.gateway_helpers import AgentClient
    from tests.test_gateway_wire import modern_body, modern_headers

    with app.app_context():
        alpha = synced_connector(peers[0].url, "Alpha")
        agent, key = agent_with_tools([alpha], name="Ada")
        tick(agent, "Alpha")
        db.session.commit()
        path = f"/agents/{agent.id}/mcp"
    requests = [
        (modern_body("resources/read", uri=README),
         modern_headers(key, "resources/read", **{"Mcp-Name": README})),
        (modern_body("prompts/get", name="alpha__greeting", arguments={"name": "Ada"}),
         modern_headers(key, "prompts/get", **{"Mcp-Name": "alpha__greeting"})),
    ]  # fmt: skip
    with AgentClient(app) as client:
        for body, headers in requests:
            assert "result" in client.post(path, json=body, headers=headers).json  # first use
            with statements(app) as seen:
                for _ in range(10):
                    answer = client.post(path, json=body, headers=headers).json
            assert "result" in answer, answer
            assert len(seen) == 2 * 10, seen


def test_a_listen_stream_hears_which_list_changed(app, surface):
    """Unticking prompts sends prompts/list_changed only; unticking resources then sends
    resources/list_changed only (tools did not change)."""
    import requests

    from tests.test_gateway_wire import modern_body, modern_headers

    url, key = surface
    app.config["GATEWAY_WATCH_SECONDS"] = 0.1
    asked = {"toolsListChanged": True, "resourcesListChanged": True, "promptsListChanged": True}
    body = modern_body("subscriptions/listen", request_id="listen-1", notifications=asked)
    headers = modern_headers(key, "subscriptions/listen")

    def untick(**choices):
        with app.app_context():
            for c in db.session.scalars(select(AgentConnection)):
                if c.connector.name == "Beta":
                    for column, value in choices.items():
                        setattr(c, column, value)
            db.session.commit()

    with requests.post(url, json=body, headers=headers, stream=True, timeout=5) as stream:
        lines = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith(b"data:"))
        assert next(lines)["params"]["notifications"] == asked
        untick(enabled_prompts=[])
        first = next(lines)
        untick(enabled_resources=[])
        second = next(lines)
    assert first["method"] == "notifications/prompts/list_changed"
    assert second["method"] == "notifications/resources/list_changed"


def test_a_per_agent_oauth_connector_reads_with_the_agents_own_token(
    app, served, logged_in, fresh_oauth_peer
):
    from tests.oauth_helpers import add_connector as add_oauth_connector
    from tests.oauth_helpers import connect

    connector_id = add_oauth_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent",
                                       name="Notes")  # fmt: skip
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        agent, key = agent_with_tools([connector], name="Ada", enabled={})
        db.session.add(CatalogItem(connector=connector, kind=ItemKind.RESOURCE,
                                   key="peer://whoami", definition={"uri": "peer://whoami",
                                                                    "name": "whoami"}))  # fmt: skip
        tick(agent, "Notes", prompts=())
        db.session.commit()
        agent_id, url = agent.id, served.endpoint(agent)
    connect(logged_in, connector_id, agent_id)
    with app.app_context():
        connection = db.session.get(Agent, agent_id).connections[0]
        token = connection.access_token_enc.reveal()

    async def main():
        async with sdk_client(url, key, "auto") as client:
            return await client.read_resource("peer://whoami")

    assert run(main).contents[0].text == hashlib.sha256(token.encode()).hexdigest()


def test_lists_are_paged_with_opaque_cursors_and_a_bad_cursor_is_invalid_params(
    app, peers, monkeypatch
):
    from tests.gateway_helpers import AgentClient
    from tests.test_gateway_wire import modern_body, modern_headers

    monkeypatch.setattr(service, "PAGE_SIZE", 1)
    with app.app_context():
        alpha = synced_connector(peers[0].url, "Alpha")
        agent, key = agent_with_tools([alpha], name="Ada")
        tick(agent, "Alpha")
        db.session.commit()
        path = f"/agents/{agent.id}/mcp"
    headers = modern_headers(key, "prompts/list")
    names, cursor = [], None
    with AgentClient(app) as client:
        while True:
            params = {"cursor": cursor} if cursor else {}
            result = client.post(path, json=modern_body("prompts/list", **params),
                                 headers=headers).json["result"]  # fmt: skip
            assert result["ttlMs"] == 0 and result["cacheScope"] == "private"
            names += [p["name"] for p in result["prompts"]]
            cursor = result.get("nextCursor")
            if cursor is None:
                break
        bad = client.post(path, json=modern_body("prompts/list", cursor="%%%"), headers=headers)
    assert names == ["alpha__greeting", "alpha__summary"]
    assert bad.json["error"]["code"] == -32602


@pytest.mark.parametrize("connector_name", ["Alpha", "Beta"])
def test_an_upstream_whose_era_is_unknown_is_probed_in_a_pool_thread(app, surface, connector_name):
    url, key = surface
    with app.app_context():
        connector = db.session.scalar(select(Connector).where(Connector.name == connector_name))
        connector.protocol_era = connector.protocol_version = None
        db.session.commit()
    prefix = "" if connector_name == "Alpha" else "mcpadmin://beta/"

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            return await client.read_resource(prefix + README)

    assert run(main).contents[0].text == "Read me."
    with app.app_context():
        connector = db.session.scalar(select(Connector).where(Connector.name == connector_name))
        assert connector.protocol_era == ("modern" if connector_name == "Alpha" else "legacy")


@pytest.mark.parametrize("era", [None, "legacy"])
def test_an_upstream_that_is_down_is_an_error_naming_the_connector(app, served, era):
    with app.app_context():
        connector = Connector(name="Gone", url="http://127.0.0.1:9/mcp", protocol_era=era,
                              protocol_version="2025-11-25" if era else None)  # fmt: skip
        db.session.add(CatalogItem(connector=connector, kind=ItemKind.PROMPT, key="ping",
                                   definition={"name": "ping"}))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        tick(agent, "Gone", prompts=["ping"], resources=())
        db.session.commit()
        url = served.endpoint(agent)

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            try:
                await client.get_prompt("gone__ping")
            except MCPError as exc:
                return exc.error

    error = run(main)
    assert error.code == -32603 and "Gone could not be reached" in error.message
    assert [(r.kind, r.outcome) for r in rows(app)] == [("prompt", "upstream_down")]
    with app.app_context():
        assert db.session.query(AgentConnection).one().last_call_error


def test_a_legacy_subscription_hears_the_upstreams_update_on_its_stream(app, peers):
    """The 1.30.0 peer sends one resources/updated for each subscription on the subscribing
    session's GET stream; the stream holding the agent's session relays it under the
    agent-side URI."""
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.gateway_helpers import serving

    app.config["GATEWAY_STREAM_SECONDS"] = 10
    with app.app_context():
        beta = synced_connector(peers[1].url, "Beta")
        agent, key = agent_with_tools([beta], name="Ada")
        tick(agent, "Beta")
        db.session.commit()
        agent_id = agent.id
    heard = []

    async def handler(message):
        if getattr(message, "method", None) == "notifications/resources/updated":
            heard.append(str(message.params.uri))

    async def main(url):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy",
                                message_handler=handler) as client:  # fmt: skip
            await client.subscribe_resource(README)
            with anyio.fail_after(8):
                while not heard:
                    await anyio.sleep(0.1)

    with serving(app, stream_seconds=10) as served, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_async(main, f"{served.url}/agents/{agent_id}/mcp")
    assert heard == [README]


@pytest.fixture
def asking_prompt(app, served):
    """Agent "Ada" with the conformance peer's prompt that asks first
    (``test_input_required_result_prompt``) ticked; its endpoint and key."""
    from tests.peers import start

    peer = start("conformance_server.py")
    try:
        with app.app_context():
            connector = synced_connector(peer.base_url + "/mcp", "Conformance")
            agent, key = agent_with_tools([connector], name="Ada")
            tick(agent, "Conformance", prompts=("test_input_required_result_prompt",))
            db.session.commit()
            yield served.endpoint(agent), key
    finally:
        peer.stop()


def test_a_modern_prompts_get_passes_input_required_through_and_its_retry_completes(
    app, asking_prompt
):
    """[26/mrtr]: the upstream's input_required result reaches the 2026 agent as it is; the
    retry's inputResponses go upstream and the prompt completes. A tampered requestState is
    the upstream's to refuse, and its -32602 reaches the agent."""
    import requests

    from tests.test_gateway_wire import modern_body, modern_headers

    url, key = asking_prompt
    name = "conformance__test_input_required_result_prompt"
    headers = modern_headers(key, "prompts/get", **{"Mcp-Name": name})

    def get(**params):
        body = modern_body("prompts/get", name=name, **params)
        return requests.post(url, json=body, headers=headers, timeout=10).json()

    first = get()["result"]
    assert first["resultType"] == "input_required"
    (key_asked,) = first["inputRequests"]
    assert first["inputRequests"][key_asked]["method"] == "elicitation/create"
    answer = {key_asked: {"action": "accept", "content": {"context": "the wiki"}}}
    done = get(inputResponses=answer)["result"]
    assert done["resultType"] == "complete"
    assert done["messages"][0]["content"]["text"] == "Use this context: the wiki"
    refused = get(inputResponses=answer, requestState="not-what-the-server-sealed")
    assert refused["error"]["code"] == -32602
    assert "Conformance" in refused["error"]["message"]
    assert [(r.kind, r.tool, r.outcome) for r in rows(app)][:2] == [
        ("prompt", name, "ok"),
        ("prompt", name, "ok"),
    ]


def test_a_legacy_prompts_get_of_an_asking_prompt_ends_with_a_sentence(asking_prompt):
    """A legacy agent's prompts/get has no stream to relay a request on: the upstream is
    told no capabilities, and an input_required answer ends in a JSON-RPC error naming the
    connector, never a hang."""
    url, key = asking_prompt

    async def main():
        async with sdk_client(url, key, "legacy") as client:
            try:
                await client.get_prompt("conformance__test_input_required_result_prompt")
            except MCPError as exc:
                return exc.error

    error = run(main)
    assert "Conformance" in error.message and "input_required" in error.message


# -- Progress, log messages and cancellation of forwarded requests ---------------------------
# A forwarded request is relayed as a tools/call: what the upstream sends before its answer
# (progress for the agent's token, log messages at the agent's level) reaches the agent's SDK
# callbacks, and the agent's cancellation reaches the upstream.

SLOW = "peer://items/slow"  # ``--noisy-surface``: read slowly, its runs counted


@pytest.fixture(scope="module")
def noisy_peer():
    """2.x (both eras), ``--noisy-surface``: progress and a log message before each read and
    get; ``count_stats`` (``--call-tools``) counts the slow read's runs."""
    from tests.peers.mcp_fixtures import _start, _stop

    peer = _start("mcp_server.py", "--call-tools", "--noisy-surface",
                  surface=surface_fixtures())  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(params=["modern", "legacy"])
def noisy(request, app, served, noisy_peer):
    """Agent "Ada" with "Noisy" (the noisy peer, asked in the era of the parameter),
    everything ticked; its endpoint and key."""
    with app.app_context():
        connector = synced_connector(noisy_peer.url, "Noisy")
        if request.param == "legacy":
            connector.protocol_era, connector.protocol_version = "legacy", "2025-11-25"
        agent, key = agent_with_tools([connector], name="Ada")
        tick(agent, "Noisy")
        db.session.commit()
        return served.endpoint(agent), key


@contextlib.asynccontextmanager
async def listening_client(url, key, mode, logged: list, level="info"):
    """The SDK client opted in to log messages at ``level``: ``log_level`` (stamped on each modern
    request [26/chg Major 5]) or, legacy, ``logging/setLevel``; each message's data into
    ``logged``."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def logging_callback(params):
        logged.append(params.data)

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
    client = Client(streamable_http_client(url, http_client=http), mode=mode,
                    logging_callback=logging_callback, log_level=level)  # fmt: skip
    async with http, client:
        if mode == "legacy":
            await client.set_logging_level(level)
        yield client


async def with_progress(client, request, result_type, seen: list):
    """``request`` sent by the SDK session with a progress callback (the SDK's
    ``read_resource``/``get_prompt`` take none): each progress into ``seen``."""

    async def progress(value, total, message):
        seen.append((value, total, message))

    return await client.session.send_request(request, result_type, progress_callback=progress)


@pytest.mark.parametrize("mode", MODES)
def test_a_read_and_a_get_relay_the_upstreams_progress_and_log_messages(app, noisy, mode):
    from mcp import types

    url, key = noisy
    progress, logged = [], []

    async def main():
        async with listening_client(url, key, mode, logged) as client:
            read = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=README))
            got = types.GetPromptRequest(params=types.GetPromptRequestParams(
                name="noisy__greeting", arguments={"name": "Ada"}))  # fmt: skip
            readme = await with_progress(client, read, types.ReadResourceResult, progress)
            prompt = await with_progress(client, got, types.GetPromptResult, progress)
            return readme, prompt

    readme, prompt = run(main)
    assert readme.contents[0].text == "Read me."
    assert prompt.messages[0].content.text == "Hello, Ada!"
    assert progress == [(0.5, 1.0, f"working on {README}"), (0.5, 1.0, "working on greeting")]
    assert logged == [f"serving {README}", "serving greeting"]
    assert [(r.kind, r.outcome) for r in rows(app)] == [("resource", "ok"), ("prompt", "ok")]


@pytest.mark.parametrize("mode", MODES)
def test_log_messages_below_the_agents_level_are_not_relayed(noisy, mode):
    """An agent at "warning" hears none of the peer's info messages, whichever era the
    upstream was asked in (a pooled legacy session upstream was never told the level)."""
    from mcp import types

    url, key = noisy
    progress, logged = [], []

    async def main():
        async with listening_client(url, key, mode, logged, level="warning") as client:
            read = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=README))
            return await with_progress(client, read, types.ReadResourceResult, progress)

    assert run(main).contents[0].text == "Read me."
    assert progress == [(0.5, 1.0, f"working on {README}")] and logged == []


def test_a_modern_read_without_the_log_opt_in_gets_no_log_message(noisy):
    """[26/chg Major 5]: no ``logLevel`` in the request's ``_meta``, no log messages: the
    upstream is not asked for them, and the answer is one JSON message."""
    import requests

    from tests.test_gateway_wire import modern_body, modern_headers

    url, key = noisy
    body = modern_body("resources/read", uri=README)
    headers = modern_headers(key, "resources/read", **{"Mcp-Name": README})
    answer = requests.post(url, json=body, headers=headers, timeout=10)
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["result"]["contents"][0]["text"] == "Read me."


def test_a_legacy_read_for_a_json_only_agent_is_answered_at_the_end(noisy):
    """An agent that accepts no event stream gets the answer alone, at the end."""
    import requests

    url, key = noisy
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    opened = requests.post(url, json=init, headers=headers, timeout=10)
    headers["Mcp-Session-Id"] = opened.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    requests.post(url, json=note, headers=headers, timeout=10)
    level = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "info"}}
    requests.post(url, json=level, headers=headers, timeout=10)
    read = {"jsonrpc": "2.0", "id": 3, "method": "resources/read",
            "params": {"uri": README, "_meta": {"progressToken": "p"}}}  # fmt: skip
    answer = requests.post(url, json=read, headers=headers, timeout=10)
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["result"]["contents"][0]["text"] == "Read me."


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_read_cancelled_by_the_agent_is_cancelled_upstream(app, noisy, noisy_peer, mode):
    """A modern agent closes the stream [26/http §Cancellation]; a legacy one sends
    notifications/cancelled [25N/canc]. The upstream's read is cancelled, and the row says
    so."""
    from mcp import types

    from tests.test_upstream_calls import wait_for

    url, key = noisy
    before = slow_reads(noisy_peer)["cancelled"]

    async def main():
        async with listening_client(url, key, mode, []) as client:
            first = anyio.Event()

            async def progress(value, total, message):
                first.set()

            request = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=SLOW))
            async with anyio.create_task_group() as group:

                async def slow():
                    await client.session.send_request(request, types.ReadResourceResult,
                                                      progress_callback=progress)  # fmt: skip

                group.start_soon(slow)
                await first.wait()
                group.cancel_scope.cancel()

    run(main)
    assert wait_for(lambda: slow_reads(noisy_peer)["cancelled"] > before)
    assert wait_for(lambda: [(r.kind, r.tool, r.outcome) for r in rows(app)]
                    == [("resource", SLOW, "cancelled")])  # fmt: skip


def slow_reads(peer) -> dict:
    """The noisy peer's counted runs (``count_stats``)."""
    from mcpadmin.protocol.http import Http

    *_, done = mcp.Client(Http(allow_private=True), peer.url, {}).call_tool("count_stats", {})
    return done.result["structuredContent"]


def test_a_legacy_cancellation_sent_to_another_process_stops_the_read(
    app, make_app, noisy, noisy_peer
):
    """The read runs in one process, the agent's notifications/cancelled reaches another: the
    database tells the first (``relay.CANCEL_CHECK_SECONDS``), which cancels upstream, and no
    response follows [25N/canc]."""
    import requests

    from tests.gateway_helpers import serving
    from tests.test_data_plane import cancel as cancelled
    from tests.test_data_plane import legacy_session, messages
    from tests.test_gateway_wire import legacy_headers
    from tests.test_upstream_calls import wait_for

    url, key = noisy
    other = make_app({"ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True})
    before = slow_reads(noisy_peer)["cancelled"]
    session = legacy_session(url, key)
    headers = {**legacy_headers(key, session), "MCP-Protocol-Version": "2025-11-25"}
    body = {"jsonrpc": "2.0", "id": "slow-read", "method": "resources/read",
            "params": {"uri": SLOW, "_meta": {"progressToken": "p"}}}  # fmt: skip
    reading = requests.post(url, json=body, headers=headers, stream=True, timeout=(5, 30))
    with serving(other) as second, reading as read:
        assert read.headers["Content-Type"].startswith("text/event-stream")
        stream = messages(read)
        assert next(stream)["method"] == "notifications/progress"
        elsewhere = second.url + "/agents/" + url.split("/agents/", 1)[1]
        assert cancelled(elsewhere, headers, "slow-read") == 202
        after = list(stream)
    assert not [m for m in after if "id" in m]
    assert wait_for(lambda: slow_reads(noisy_peer)["cancelled"] > before)
    assert wait_for(lambda: [(r.kind, r.outcome) for r in rows(app)][-1:]
                    == [("resource", "cancelled")])  # fmt: skip
