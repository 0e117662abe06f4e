"""The try-it console against real peers: an operator calls an agent's tools as the agent —
text, structured content, images, tool errors, refusals, a dead upstream, form errors — and
each call is in the call log, made by that operator with that agent's credential."""

import html

import pytest

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, CallRecord, Connector, Tool
from mcpadmin.protocol import mcp
from mcpadmin.services import calllog, calls
from tests.gateway_helpers import agent_with_tools, synced_connector
from tests.peers.call_tools import CONSOLE_TOOLS
from tests.peers.mcp_fixtures import LEGACY_PYTHON, _start, _stop

TOKEN = "console-peer-token-0123456789"  # noqa: S105 (the bearer peer's test credential)
ADA_KEY = "ada-ledger-key-1"


@pytest.fixture(scope="module")
def tools_peer():
    peer = _start("mcp_server.py", "--call-tools", "--bearer", TOKEN, tools=CONSOLE_TOOLS)
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def ledger_peer():
    """A legacy peer that takes one API key: Ada's."""
    peer = _start("mcp_legacy_server.py", "--call-tools", "--api-key", f"X-Api-Key={ADA_KEY}",
                  python=LEGACY_PYTHON)  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.setattr(calls, "POOL", mcp.SessionPool())


@pytest.fixture
def ada(app, tools_peer, ledger_peer):
    """Agent Ada (id): every tool of a shared-bearer modern upstream ("Weather") but
    ``count``, and a per-agent API-key legacy upstream ("Ledger") with her own key."""
    with app.app_context():
        weather = synced_connector(tools_peer.url, "Weather", auth_type="bearer",
                                   secret_enc=seal(TOKEN))  # fmt: skip
        ledger = ledger_connector(ledger_peer.url)
        names = [t.name for t in weather.tools if t.name != "count"]
        agent, _ = agent_with_tools([weather, ledger], name="Ada",
                                    enabled={"Weather": names, "Ledger": ["weather"]})  # fmt: skip
        with_key(agent, ledger, ADA_KEY)
        db.session.commit()
        return agent.id


def ledger_connector(url) -> Connector:
    connector = Connector(name="Ledger", url=url, auth_type="api_key_header",
                          api_key_header_name="X-Api-Key", credential_mode="per_agent")  # fmt: skip
    connector.tools = [Tool(name="weather", definition_hash="w", input_schema={
        "type": "object", "properties": {"city": {"type": "string"}}})]  # fmt: skip
    db.session.add(connector)
    return connector


def with_key(agent, connector, key):
    connection = next(c for c in agent.connections if c.connector is connector)
    connection.secret_enc, connection.status = seal(key), "connected"


def try_url(agent_id) -> str:
    return f"/agents/{agent_id}/try"


def call(client, agent_id, tool, **fields):
    return client.post(try_url(agent_id), data={"tool": tool, **fields})


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def rows(app) -> list[CallRecord]:
    calllog.flush(app)
    with app.app_context():
        return db.session.query(CallRecord).order_by(CallRecord.id).all()


def test_the_agent_page_links_to_the_console(logged_in, ada):
    page = logged_in.get(f"/agents/{ada}").get_data(as_text=True)
    assert f'href="{try_url(ada)}"' in page and "Try a tool as Ada" in page


def test_the_picker_offers_the_tools_as_the_agents_tools_list_names_them(logged_in, ada):
    page = logged_in.get(try_url(ada)).get_data(as_text=True)
    for name in ("weather__echo", "weather__picture", "weather__weather", "ledger__weather"):
        assert f'<option value="{name}"' in page
    assert 'value="weather__count"' not in page  # not enabled for Ada


def test_a_tool_form_is_generated_from_its_input_schema(logged_in, ada):
    page = logged_in.get(try_url(ada) + "?tool=weather__echo").get_data(as_text=True)
    assert '<input type="text" id="arg-0" name="arg-0" value="" aria-required="true"' in page
    assert '<input type="number" id="arg-1" name="arg-1" value="" min="1" max="14" step="1"' in page
    assert '<select id="arg-2" name="arg-2"' in page and '<select id="arg-3"' in page
    assert '<textarea id="arg-4"' in page and "One item per line." in page
    assert '<fieldset class="console-object"' in page and 'name="arg-5-0"' in page


def test_a_call_shows_text_and_structured_content(app, logged_in, ada):
    response = call(logged_in, ada, "weather__weather", **{"arg-0": "Oslo"})
    assert response.status_code == 200
    text = page_text(response)
    assert "Oslo: 21.5 °C" in text
    assert '"celsius": 21.5' in text and "Structured content" in text
    assert "console-failed" not in text


def test_form_values_arrive_upstream_as_typed_arguments(logged_in, ada):
    response = call(logged_in, ada, "weather__echo", **{
        "arg-0": "Oslo", "arg-1": "3", "arg-2": "1", "arg-3": "0", "arg-4": "a\nb",
        "arg-5-0": "north"})  # fmt: skip
    received = ('"received": {\n    "city": "Oslo",\n    "days": 3,\n    "metric": false,\n'
                '    "unit": "celsius",\n    "tags": [\n      "a",\n      "b"\n    ],\n'
                '    "place": {\n      "region": "north"\n    }\n  }')  # fmt: skip
    assert received in page_text(response)


def test_an_image_tool_shows_the_image(logged_in, ada):
    page = call(logged_in, ada, "weather__picture").get_data(as_text=True)
    assert '<img class="console-image" src="data:image/png;base64,iVBORw0KGgo' in page
    assert "a test card" in page


def test_a_tool_that_reports_an_error_is_shown_as_one(app, logged_in, ada):
    response = call(logged_in, ada, "weather__fail", **{"arg-0": "boom"})
    text = page_text(response)
    assert response.status_code == 200
    assert "console-failed" in text and "it failed: boom" in text
    assert rows(app)[-1].outcome == "tool_error"


def test_a_tool_not_enabled_is_refused_as_the_agent_would_be(app, logged_in, ada):
    text = page_text(call(logged_in, ada, "weather__count"))
    assert "Unknown tool: weather__count is not one of agent Ada's tools." in text
    assert "console-failed" in text
    row = rows(app)[-1]
    assert (row.outcome, row.operator_name, row.tool) == (
        "refused_not_allowed", "admin", "weather__count")  # fmt: skip


def test_a_tool_whose_definition_changed_is_refused_until_reviewed(app, logged_in, ada):
    with app.app_context():
        connection = db.session.query(AgentConnection).join(Connector).filter(
            Connector.name == "Weather").one()  # fmt: skip
        connection.changed_tools = ["weather"]
        db.session.commit()
    page = logged_in.get(try_url(ada) + "?tool=weather__weather").get_data(as_text=True)
    assert "Held back until reviewed" in page
    text = page_text(call(logged_in, ada, "weather__weather", **{"arg-0": "Oslo"}))
    assert ("The definition of weather on Weather changed since it was enabled for agent Ada; "
            "an operator must review it on the agent's page") in text  # fmt: skip
    assert "21.5" not in text
    assert rows(app)[-1].outcome == "refused_definition_changed"


def test_an_unreachable_upstream_gives_a_sentence_not_a_500(app, logged_in, admin):
    with app.app_context():
        connector = Connector(name="Gone", url="http://127.0.0.1:9/mcp")
        connector.tools = [Tool(name="ping", definition_hash="p")]
        db.session.add(connector)
        agent, _ = agent_with_tools([connector], name="Cy")
        agent_id = agent.id
    response = call(logged_in, agent_id, "gone__ping")
    assert response.status_code == 200
    assert "Gone could not be reached" in page_text(response)
    assert rows(app)[-1].outcome == "upstream_down"


def test_bad_form_input_is_named_per_field_and_the_values_are_kept(app, logged_in, ada):
    response = call(logged_in, ada, "weather__echo", **{"arg-0": "Oslo", "arg-1": "many",
                                                         "arg-4": "x"})  # fmt: skip
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<p class="error" id="arg-1-error">“many” is not a whole number.</p>' in page
    assert 'name="arg-0" value="Oslo"' in page and 'name="arg-1" value="many"' in page
    assert ">x</textarea>" in page
    assert "Nothing was called." in page
    response = call(logged_in, ada, "weather__echo", **{"raw-on": "on", "raw": "{nope"})
    assert response.status_code == 422 and "This is not valid JSON" in page_text(response)
    assert ">{nope</textarea>" in response.get_data(as_text=True)
    assert rows(app) == []


def test_the_call_log_row_names_the_operator_and_the_agent(app, logged_in, ada):
    call(logged_in, ada, "weather__weather", **{"arg-0": "Oslo"})
    row = rows(app)[-1]
    assert (row.agent_name, row.operator_name, row.key_id, row.outcome) == (
        "Ada", "admin", None, "ok")  # fmt: skip
    assert (row.tool, row.upstream_tool, row.connector_name) == (
        "weather__weather", "weather", "Weather")  # fmt: skip
    page = logged_in.get("/calls/").get_data(as_text=True)
    assert "by operator admin" in page


def test_the_call_uses_the_agents_own_credential(app, logged_in, ada, ledger_peer):
    with app.app_context():
        ledger = db.session.query(Connector).filter_by(name="Ledger").one()
        bo, _ = agent_with_tools([ledger], name="Bo")
        with_key(bo, ledger, "bo-ledger-key-2")
        db.session.commit()
        bo_id = bo.id
    seen = len(ledger_peer.requests())
    text = page_text(call(logged_in, ada, "ledger__weather", **{"arg-0": "Rome"}))
    assert "Rome: 21.5 °C" in text  # the peer takes Ada's key only
    assert ["POST", "tools/call"] in ledger_peer.requests()[seen:]
    text = page_text(call(logged_in, bo_id, "ledger__weather", **{"arg-0": "Rome"}))
    # This peer answers a key it does not take with 403.
    assert "Ledger refused the call (403 Forbidden): the credential is valid" in text
    assert "bo-ledger-key-2" not in text


def test_an_agent_without_its_credential_is_told_to_connect(app, logged_in, ledger_peer, admin):
    with app.app_context():
        agent, _ = agent_with_tools([ledger_connector(ledger_peer.url)], name="Dee")
        agent_id = agent.id
    text = page_text(call(logged_in, agent_id, "ledger__weather", **{"arg-0": "x"}))
    assert "Agent Dee has no credential for Ledger; connect it on its page." in text
    assert rows(app)[-1].outcome == "refused_no_credential"


def test_unknown_agents_and_tools_are_answered_with_a_page(logged_in, ada):
    assert logged_in.get("/agents/999999/try").status_code == 404
    response = logged_in.get(try_url(ada) + "?tool=nope")
    assert response.status_code == 404
    assert "Unknown tool: nope is not one of agent Ada's tools." in page_text(response)


def test_the_console_needs_a_signed_in_admin_and_a_csrf_token(app, logged_in, ada):
    response = logged_in.post(try_url(ada), data={"tool": "weather__picture"}, csrf=False)
    assert response.status_code == 403 and rows(app) == []
    logged_in.post("/logout")
    assert logged_in.get(try_url(ada)).status_code == 302


def test_an_agent_without_tools_is_pointed_to_its_page(app, logged_in):
    with app.app_context():
        agent = Agent(name="Empty")
        db.session.add(agent)
        db.session.commit()
        agent_id = agent.id
    page = logged_in.get(try_url(agent_id)).get_data(as_text=True)
    assert "Empty has no tools yet." in page


def test_hostile_schemas_render_as_text(app, logged_in):
    name = '"><script>alert(1)</script>'
    schema = {"type": "object", "properties": {
        name: {"type": "string", "title": "Zoë \u202elive", "description": "<b>bold</b>"},
        "deep": {"$ref": "#/$defs/x"},
        "choice": {"enum": [f"v{i}" for i in range(5000)]}}}  # fmt: skip
    with app.app_context():
        connector = Connector(name="Odd", url="http://127.0.0.1:9/mcp")
        connector.tools = [Tool(name="odd", definition_hash="o", input_schema=schema)]
        db.session.add(connector)
        agent, _ = agent_with_tools([connector], name="Eve")
        agent_id = agent.id
    page = logged_in.get(try_url(agent_id) + "?tool=odd__odd").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold" not in page and "‹U+202E›" in page  # the override shown, not obeyed
    assert 'id="arg-1" name="arg-1"' in page and "a reference or a combination" in page
    assert "One of 5000 allowed values." in page and "<option" not in page.split('id="arg-2"')[1]
