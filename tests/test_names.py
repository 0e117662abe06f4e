"""Names operators type and names that arrive from elsewhere: the limit is stated at input and a
longer name is refused with a sentence (never cut); bidirectional controls are refused at input
and shown as visible markers wherever a stored one is displayed."""

import pytest
from flask import render_template_string
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.filters import bidi_controls, bidi_safe
from mcpadmin.models import Agent, AgentKey, Connector
from tests.peers.mcp_fixtures import _start, _stop
from tests.peers.mcp_wrap import generated_tools
from tests.records_helpers import call, event
from tests.test_hostile_tools import tool
from tests.test_sync import add_agent, add_connector, run_sync

RLO = "\u202e"
LONG = "n" * 500
# Every bidirectional control the validator refuses (UAX #9).
CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.fixture(scope="module")
def hostile_peer():
    """A 2.x server serving the tool list the test writes with ``set_tools``."""
    peer = _start("mcp_server.py", "--json", tools=generated_tools(1))
    yield peer
    _stop(peer)


def connector_form(**overrides):
    data = {"name": "Weather", "url": "https://mcp.weather.example/mcp", "auth_type": "none",
            "credential_mode": "shared"}  # fmt: skip
    return {**data, **overrides}


def count(app, model) -> int:
    with app.app_context():
        return len(db.session.scalars(select(model)).all())


def agent_key_form(label):
    return {"label": label, "lifetime": ""}


# Each form with a name field: where it posts, the data, and the model that must stay empty.
NAME_FIELDS = {
    "connector name": ("/connectors/new", lambda v: connector_form(name=v), Connector),
    "api key header name": (
        "/connectors/new",
        lambda v: connector_form(auth_type="api_key_header", api_key_header_name=v, secret="k"),
        Connector,
    ),
    "agent name": ("/agents/new", lambda v: {"name": v}, Agent),
}


@pytest.mark.parametrize("which", NAME_FIELDS)
def test_a_500_character_name_is_refused_with_its_length(app, logged_in, which):
    url, data, model = NAME_FIELDS[which]
    response = logged_in.post(url, data=data(LONG))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "is 500 characters long; it can have up to 100. Shorten it." in page
    assert LONG in page  # what was typed is still in the field
    assert count(app, model) == 0


def test_a_500_character_key_label_is_refused_in_the_keys_section(app, logged_in):
    agent_id = add_agent(app, "Triage bot")
    response = logged_in.hx_post(f"/agents/{agent_id}/keys", data=agent_key_form(LONG))
    assert "Label is 500 characters long; it can have up to 100." in response.get_data(as_text=True)
    assert count(app, AgentKey) == 0


def test_a_100_character_name_is_kept_whole(app, logged_in):
    logged_in.post("/connectors/new", data=connector_form(name="n" * 100))
    with app.app_context():
        assert db.session.scalar(select(Connector.name)) == "n" * 100


@pytest.mark.parametrize("url", ["/connectors/new", "/agents/new"])
def test_the_limit_is_stated_under_the_name_field_and_nothing_cuts_a_paste(logged_in, url):
    page = logged_in.get(url).get_data(as_text=True)
    assert "Up to 100 characters." in page
    name_input = page[page.index('id="name"') :].split(">", 1)[0]
    assert "maxlength" not in name_input  # a browser would cut a pasted 500 to 100 silently


def test_the_key_label_states_its_limit(app, logged_in):
    agent_id = add_agent(app, "Triage bot")
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    assert "or “CI runner”. Up to 100 characters." in page
    label_input = page[page.index('id="label"') :].split(">", 1)[0]
    assert "maxlength" not in label_input


@pytest.mark.parametrize("which", NAME_FIELDS)
def test_a_bidi_override_in_a_name_is_refused(app, logged_in, which):
    url, data, model = NAME_FIELDS[which]
    page = logged_in.post(url, data=data(f"Zo\u00eb{RLO}live")).get_data(as_text=True)
    assert "holds an invisible direction control (U+202E)" in page
    assert count(app, model) == 0


@pytest.mark.parametrize("control", CONTROLS)
def test_every_bidi_control_is_refused_in_a_connector_name(app, logged_in, control):
    page = logged_in.post("/connectors/new", data=connector_form(name=f"a{control}b"))
    assert f"(U+{ord(control):04X})" in page.get_data(as_text=True)
    assert count(app, Connector) == 0


def test_a_bidi_control_in_a_key_label_is_refused(app, logged_in):
    agent_id = add_agent(app, "Triage bot")
    response = logged_in.hx_post(f"/agents/{agent_id}/keys", data=agent_key_form(f"lap{RLO}pot"))
    assert "Label holds an invisible direction control" in response.get_data(as_text=True)
    assert count(app, AgentKey) == 0


def test_right_to_left_letters_are_names_like_any_other(app, logged_in):
    logged_in.post("/agents/new", data={"name": "בוט שירות"})
    assert count(app, Agent) == 1


def test_bidi_safe_marks_each_control_and_leaves_other_text(app):
    assert bidi_safe(f"Zo\u00eb{RLO}live\u2066x\u2069") == "Zoë‹U+202E›live‹U+2066›x‹U+2069›"
    assert bidi_safe("plain") == "plain" and bidi_safe(3) == 3
    assert bidi_controls("a\u200fb\u061c") == ["\u200f", "\u061c"]


def test_every_expression_on_a_page_is_neutralised_attributes_too(app):
    with app.test_request_context():
        html = render_template_string(
            '<b title="{{ name }}">{{ name }}</b>{{ name|upper }}', name=f"Zo\u00eb{RLO}live"
        )
    assert RLO not in html
    assert html == '<b title="Zoë‹U+202E›live">Zoë‹U+202E›live</b>ZOË‹U+202E›LIVE'


def test_stored_bidi_names_show_markers_on_every_page(app, logged_in):
    """Rows stored before names were refused, or written by the gateway: no page displays a
    raw control."""
    connector_id = add_connector(app, f"Zo\u00eb{RLO}live", "https://mcp.example/mcp")
    agent_id = add_agent(app, f"bot{RLO}evil", connector_id)
    with app.app_context():
        call(agent_name=f"bot{RLO}evil", key_label=f"lap{RLO}top", connector_name=f"w{RLO}x")
        event(target_name=f"Zo\u00eb{RLO}live", admin_name=f"ad{RLO}min")
        db.session.commit()
    urls = ["/connectors/", f"/connectors/{connector_id}", "/agents/", f"/agents/{agent_id}",
            "/calls/", "/audit/"]  # fmt: skip
    for url in urls:
        page = logged_in.get(url).get_data(as_text=True)
        assert RLO not in page, url
        assert "‹U+202E›" in page, url


def test_tool_names_and_titles_from_a_hostile_peer_show_markers_on_the_agent_page(
    app, logged_in, hostile_peer
):
    hostile_peer.set_tools([tool(f"get{RLO}txt", f"reads {RLO}fdp.exe", title=f"Get {RLO}txt")])
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    run_sync(app, connector_id)
    agent_id = add_agent(app, "Triage bot", connector_id)
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    assert RLO not in page
    assert page.count("U+202E") >= 3  # name, title, description
