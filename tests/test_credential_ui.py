"""Credentials where the page says to fix them (issue 21): a stored token or key replaced in
place (an agent's card, the connector's page), Enable all / Disable all tools, a per-agent
connector's page listing its agents, confirmations naming what they take, a key's expiry
date that contradicts "Never", the OAuth redirect URI for a pre-registered client, and the
message of a form posted back to a card shown in that card.

Syncs and connections go to real peers: ``bearer_peer`` wants ``Bearer peer-token``."""

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, AgentKey, AuditEvent, Connector, Tool
from mcpadmin.services import agent_keys
from tests.oauth_helpers import add_agent, add_connector, connect
from tests.test_agents import card

OLD, GOOD = "refused-token-0a1b2c", "peer-token"


def sealed(values: dict) -> dict:
    """``values`` with the plaintext of each ``*_enc`` column sealed (in an app context)."""
    return {k: seal(v) if k.endswith("_enc") else v for k, v in values.items()}


def make(app, url="http://127.0.0.1:9/mcp", auth="bearer", mode="per_agent", tools=(), **kw):
    """A connector (``tools``: names of its catalog; ``*_enc``: plaintext to seal) and the
    agent Support bot; their ids."""
    with app.app_context():
        connector = Connector(name="Tracker", url=url, auth_type=auth, credential_mode=mode,
                              **sealed(kw))  # fmt: skip
        agent = Agent(name="Support bot")
        db.session.add_all([connector, agent])
        db.session.flush()
        db.session.add_all(Tool(connector_id=connector.id, name=n) for n in tools)
        db.session.commit()
        return connector.id, agent.id


def connection(app, connector_id, agent_id=None, **values):
    """The agent connection (made with ``values`` when given, as in ``make``)."""
    with app.app_context():
        if values:
            db.session.add(
                AgentConnection(connector_id=connector_id, agent_id=agent_id, **sealed(values))
            )
            db.session.commit()
        row = db.session.scalar(select(AgentConnection).filter_by(connector_id=connector_id))
        db.session.expunge_all()
        return row


def events(app, action):
    with app.app_context():
        return [e.details for e in db.session.scalars(select(AuditEvent).filter_by(action=action))]


def tool_ids(app, connector_id):
    with app.app_context():
        return {t.name: str(t.id) for t in db.session.scalars(select(Tool))}


# Defect 2: replace a secret in place.


def test_refused_agent_token_is_replaced_on_its_card(app, logged_in, bearer_peer):
    connector_id, agent_id = make(app, bearer_peer.url)
    url = f"/agents/{agent_id}/connectors/{connector_id}/secret"
    refused = card(logged_in.hx_post(url, data={"secret": OLD}).get_data(True), connector_id)
    assert "The server refused the token (401 Unauthorized)" in refused
    # The field is right there, open, under the error.
    assert '<details class="replace-secret" open>' in refused
    assert "New bearer token for Support bot" in refused and ">Replace token</button>" in refused

    page = logged_in.hx_post(url, data={"secret": GOOD}).get_data(True)
    assert "Token replaced for Support bot on Tracker: 2 tools" in page
    assert "refused" not in card(page, connector_id) and GOOD not in page
    row = connection(app, connector_id)
    with app.app_context():
        assert row.secret_enc.reveal() == GOOD and row.status == "connected"
    assert events(app, "agent.reconnected")[-1] == {"connector": "Tracker", "how": "token replaced"}


def test_blank_replacement_keeps_the_stored_token(app, logged_in):
    connector_id, agent_id = make(app)
    connection(app, connector_id, agent_id, secret_enc=OLD, status="error")
    url = f"/agents/{agent_id}/connectors/{connector_id}/secret"
    page = logged_in.hx_post(url, data={"secret": "  "}).get_data(True)
    assert "Enter the token or key before saving." in page
    with app.app_context():
        assert connection(app, connector_id).secret_enc.reveal() == OLD
    assert events(app, "agent.reconnected") == [] and events(app, "agent.connected") == []


def test_api_key_card_offers_to_replace_the_key(app, logged_in):
    connector_id, agent_id = make(app, auth="api_key_header", api_key_header_name="X-Api-Key")
    connection(app, connector_id, agent_id, secret_enc=OLD, status="connected")
    shown = card(logged_in.get(f"/agents/{agent_id}").get_data(True), connector_id)
    assert "<summary>Replace key</summary>" in shown
    assert "New API key (X-Api-Key) for Support bot" in shown and OLD not in shown


def test_refused_shared_token_is_replaced_on_the_connector_page(app, logged_in, bearer_peer):
    connector_id, _ = make(app, bearer_peer.url, mode="shared", secret_enc=OLD)
    logged_in.post(f"/connectors/{connector_id}/sync", data={"back": "show"})
    page = logged_in.get(f"/connectors/{connector_id}").get_data(True)
    assert "The server refused the token" in page and "<summary>Replace the token</summary>" in page

    done = logged_in.post(f"/connectors/{connector_id}/secret", data={"secret": GOOD})
    assert done.status_code == 302 and done.headers["Location"] == f"/connectors/{connector_id}"
    page = logged_in.get(done.headers["Location"]).get_data(True)
    assert "Token replaced for Tracker: 2 tools" in page and GOOD not in page
    with app.app_context():
        stored = db.session.get(Connector, connector_id)
        assert stored.secret_enc.reveal() == GOOD and stored.status == "connected"
    assert events(app, "connector.reconnected") == [{"how": "token replaced"}]


def test_shared_token_is_entered_on_the_connector_page(app, logged_in, bearer_peer):
    connector_id, _ = make(app, bearer_peer.url, mode="shared")
    page = logged_in.get(f"/connectors/{connector_id}").get_data(True)
    assert '<details id="secret" class="card replace-secret" open>' in page
    logged_in.post(f"/connectors/{connector_id}/secret", data={"secret": GOOD})
    assert events(app, "connector.connected") == [{"how": "token pasted"}]


def test_blank_shared_replacement_is_refused_and_keeps_the_token(app, logged_in):
    connector_id, _ = make(app, mode="shared", secret_enc=OLD)
    response = logged_in.post(f"/connectors/{connector_id}/secret", data={"secret": ""})
    assert response.status_code == 422
    assert "Enter the token or key before saving." in response.get_data(True)
    with app.app_context():
        assert db.session.get(Connector, connector_id).secret_enc.reveal() == OLD


def test_connector_page_refuses_a_token_for_a_per_agent_connector(app, logged_in):
    connector_id, _ = make(app)
    done = logged_in.post(f"/connectors/{connector_id}/secret", data={"secret": GOOD})
    page = logged_in.get(done.headers["Location"]).get_data(True)
    assert "Tracker does not take a shared token or key." in page
    with app.app_context():
        assert db.session.get(Connector, connector_id).secret_enc is None


# Defect 11: all or none.


def test_enable_all_enables_every_tool_and_is_recorded(app, logged_in):
    connector_id, agent_id = make(app, auth="none", mode="shared", tools=("a", "b", "c"))
    url = f"/agents/{agent_id}/connectors/{connector_id}/tools"
    page = logged_in.hx_post(url, data={"select": "all"}).get_data(True)
    assert "3 of 3 tools enabled on Tracker." in page
    assert connection(app, connector_id).enabled_tools == ["a", "b", "c"]
    [details] = events(app, "agent.tools_chosen")
    assert details["selected"] == "all" and details["enabled"] == ["a", "b", "c"]


def test_disable_all_disables_every_tool(app, logged_in):
    connector_id, agent_id = make(app, auth="none", mode="shared", tools=("a", "b"))
    connection(app, connector_id, agent_id, enabled_tools=["a", "b"])
    url = f"/agents/{agent_id}/connectors/{connector_id}/tools"
    page = logged_in.hx_post(url, data={"select": "none", "tools": ["1"]}).get_data(True)
    assert "0 of 2 tools enabled on Tracker." in page
    assert connection(app, connector_id).enabled_tools == []
    assert events(app, "agent.tools_chosen")[0]["selected"] == "none"


def test_enable_all_without_javascript_returns_to_the_card(app, logged_in):
    connector_id, agent_id = make(app, auth="none", mode="shared", tools=("a", "b"))
    url = f"/agents/{agent_id}/connectors/{connector_id}/tools"
    done = logged_in.post(url, data={"select": "all"})
    assert done.headers["Location"] == (
        f"/agents/{agent_id}?card={connector_id}#connector-{connector_id}"
    )
    shown = card(logged_in.get(done.headers["Location"]).get_data(True), connector_id)
    assert "2 of 2 tools enabled on Tracker." in shown  # the message is in the card


def test_enable_all_takes_only_the_tools_this_account_is_offered(app, logged_in):
    connector_id, agent_id = make(app, tools=("a", "b", "c"))
    connection(app, connector_id, agent_id, secret_enc=OLD, status="connected",
               offered_tools=["b"], enabled_tools=[])  # fmt: skip
    logged_in.hx_post(f"/agents/{agent_id}/connectors/{connector_id}/tools", data={"select": "all"})
    assert connection(app, connector_id).enabled_tools == ["b"]


def test_enable_all_keeps_a_changed_definition_waiting_for_review(app, logged_in):
    connector_id, agent_id = make(app, auth="none", mode="shared", tools=("a", "b"))
    connection(app, connector_id, agent_id, enabled_tools=["a"], changed_tools=["a"])
    url = f"/agents/{agent_id}/connectors/{connector_id}/tools"
    logged_in.hx_post(url, data={"select": "none"})
    page = logged_in.hx_post(url, data={"select": "all"}).get_data(True)
    assert connection(app, connector_id).changed_tools == ["a"]
    assert "Definition changed" in page and "Mark reviewed" in page


# Defect 12: per-agent connectors name their agents.


def test_per_agent_connector_page_lists_each_agents_credential(app, logged_in):
    connector_id, agent_id = make(app, tools=("a", "b"))
    connection(app, connector_id, agent_id, secret_enc=OLD, status="error",
               last_error="The server refused the token (401 Unauthorized): check or replace it.",
               enabled_tools=["a"])  # fmt: skip
    with app.app_context():
        db.session.add(Agent(name="Ops bot"))
        db.session.commit()
    page = logged_in.get(f"/connectors/{connector_id}").get_data(True)
    agents = page[page.index('id="agents"') : page.index("</section>", page.index('id="agents"'))]
    assert "See each agent" not in page
    assert f'href="/agents/{agent_id}#connector-{connector_id}">Support bot</a>' in agents
    assert "badge-error" in agents and "The server refused the token" in agents
    assert re.search(
        r"Ops bot</a></th>\s*<td>\s*<span class=\"badge badge-no_credential\">", agents
    )
    assert "1 error, 1 not connected" in page


def test_connector_delete_confirmation_names_agents_and_tools(app, logged_in):
    names = [f"tool{i}" for i in range(7)]
    connector_id, agent_id = make(app, tools=names)
    connection(app, connector_id, agent_id, secret_enc=OLD, enabled_tools=names[:3])
    page = logged_in.get(f"/connectors/{connector_id}/delete").get_data(True)
    assert "its 7 synced tools: tool0, tool1, tool2, tool3, tool4 and 2 more;" in page
    assert re.search(r"Agent Support bot\s+loses access to\s+3 tools;", page)
    assert "the own token or key of Support bot is deleted;" in page


def test_agent_delete_confirmation_names_keys_and_connectors(app, logged_in):
    connector_id, agent_id = make(app, tools=("a", "b"))
    connection(app, connector_id, agent_id, secret_enc=OLD, enabled_tools=["a", "b"])
    with app.app_context():
        agent = db.session.get(Agent, agent_id)
        for label in ("laptop", "CI runner"):
            agent_keys.create(agent, label)
        db.session.commit()
    page = logged_in.get(f"/agents/{agent_id}/delete").get_data(True)
    assert re.search(r"its 2 keys (CI runner and laptop|laptop and CI runner): their", page)
    assert "its access to 2 tools on Tracker;" in page
    assert "its own credentials for Tracker;" in page


def test_revoke_confirmation_names_the_keys_that_keep_working(app, logged_in):
    _, agent_id = make(app)
    with app.app_context():
        agent = db.session.get(Agent, agent_id)
        keys = [agent_keys.create(agent, label)[0] for label in ("laptop", "CI runner")]
        db.session.commit()
        laptop = keys[0].id
    page = logged_in.get(f"/agents/{agent_id}/keys/{laptop}/revoke").get_data(True)
    assert "Support bot's other key CI runner keeps working." in page
    keys_html = logged_in.get(f"/agents/{agent_id}").get_data(True)
    assert "CI runner keeps working." in keys_html  # the htmx confirmation says it too
    logged_in.post(f"/agents/{agent_id}/keys/{laptop}/revoke")
    with app.app_context():
        other = db.session.scalar(select(AgentKey).filter_by(label="CI runner")).id
    page = logged_in.get(f"/agents/{agent_id}/keys/{other}/revoke").get_data(True)
    assert "It is Support bot's only working key" in page


def test_disconnect_confirmation_names_the_enabled_tools(app, logged_in):
    connector_id, agent_id = make(app, tools=("create_issue", "search"))
    connection(app, connector_id, agent_id, secret_enc=OLD, status="connected",
               enabled_tools=["create_issue", "search"])  # fmt: skip
    shown = card(logged_in.get(f"/agents/{agent_id}").get_data(True), connector_id)
    assert "its 2 enabled tools (create_issue and search) stop working" in shown


def test_shared_disconnect_confirmation_names_the_agents(app, logged_in):
    connector_id, agent_id = make(app, "https://t.example/mcp", auth="oauth", mode="shared",
                                  tools=("a",), access_token_enc=OLD,
                                  status="connected")  # fmt: skip
    connection(app, connector_id, agent_id, enabled_tools=["a"])
    page = logged_in.get(f"/connectors/{connector_id}").get_data(True)
    assert "Support bot loses access to its tools until you connect again." in page


# Defect 13: a key's expiry date with another choice.


def test_expiry_date_with_never_is_refused_next_to_the_date(app, logged_in):
    _, agent_id = make(app)
    day = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    for send in (logged_in.post, logged_in.hx_post):
        page = send(f"/agents/{agent_id}/keys", data={"label": "ci", "lifetime": "", "until": day})
        text = page.get_data(True)
        assert "“Expires” says Never, which ignores this date" in text
        assert 'id="until-error"' in text
    with app.app_context():
        assert db.session.scalars(select(AgentKey)).all() == []


def test_expiry_date_with_a_number_of_days_is_refused(app, logged_in):
    _, agent_id = make(app)
    day = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    data = {"label": "ci", "lifetime": "30", "until": day}
    page = logged_in.hx_post(f"/agents/{agent_id}/keys", data=data).get_data(True)
    assert "“Expires” says 30 days, which ignores this date" in page


def test_expiry_date_with_until_a_date_is_taken(app, logged_in):
    _, agent_id = make(app)
    day = datetime.now(UTC).date() + timedelta(days=10)
    data = {"label": "ci", "lifetime": "date", "until": day.isoformat()}
    logged_in.hx_post(f"/agents/{agent_id}/keys", data=data)
    with app.app_context():
        key = db.session.scalar(select(AgentKey))
        assert key.expires_at.date() == day + timedelta(days=1)


# Defect 15: the redirect URI, and Connect's message in view.

REDIRECT_URI = "http://127.0.0.1:5000/oauth/callback"


def test_connector_form_shows_the_redirect_uri_by_the_client_fields(app, logged_in):
    fields = logged_in.hx_get("/connectors/fields?auth_type=oauth").get_data(True)
    client = fields.index("Pre-registered client")
    assert fields.index(REDIRECT_URI) > client
    assert f'data-copy="{REDIRECT_URI}"' in fields
    connector_id, _ = make(app, "https://t.example/mcp", auth="oauth", mode="shared",
                           oauth_client_id_enc="client-1")  # fmt: skip
    form = logged_in.get(f"/connectors/{connector_id}/edit").get_data(True)
    assert '<details class="advanced" open>' in form and REDIRECT_URI in form
    assert "copy.js" in form and "client-1" not in form


def test_connector_page_shows_the_redirect_uri(app, logged_in):
    connector_id, _ = make(app, "https://t.example/mcp", auth="oauth", mode="per_agent",
                           oauth_client_id_enc="client-1")  # fmt: skip
    page = logged_in.get(f"/connectors/{connector_id}").get_data(True)
    assert f'<code id="redirect-uri">{REDIRECT_URI}</code>' in page
    assert f'data-copy="{REDIRECT_URI}"' in page and "the provider must list exactly" in page


def test_per_agent_connect_shows_its_message_in_the_card(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    done = connect(logged_in, connector_id, agent_id)
    shown = card(logged_in.get(done.headers["Location"]).get_data(True), connector_id)
    assert '<div class="card-flashes">' in shown
    assert "Connected Ada on Peer: 3 tools available." in shown
