"""Agent pages: index, create, the connector cards and their htmx actions, delete."""

import pytest
from cryptography.fernet import Fernet, MultiFernet

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, Tool

TOKEN = "agent-token-5f4e3d2c1b"


@pytest.fixture
def world(app):
    """An agent and one connector of each kind that shapes the agent page."""
    with app.app_context():
        agent = Agent(name="Support bot")
        connectors = {
            "oauth_pa": Connector(name="Sentry", url="https://s.example/mcp", auth_type="oauth",
                                  credential_mode="per_agent"),
            "bearer_pa": Connector(name="Render", url="http://127.0.0.1:9/mcp", auth_type="bearer",
                                   credential_mode="per_agent"),
            "shared": Connector(name="Docs", url="https://d.example/mcp", auth_type="none",
                                status="connected"),
        }  # fmt: skip
        db.session.add_all([agent, *connectors.values()])
        db.session.flush()
        for connector in connectors.values():
            db.session.add_all(
                Tool(connector_id=connector.id, name=n, description=f"{n} things")
                for n in ("create_issue", "list_issues", "search")
            )
        db.session.commit()
        return {"agent": agent.id, **{k: c.id for k, c in connectors.items()}}


def ids(app, connector_id, *names) -> list[str]:
    """The row ids of the connector's tools ``names``, as the tool checkboxes send them."""
    with app.app_context():
        rows = db.session.query(Tool).filter_by(connector_id=connector_id)
        by_name = {t.name: str(t.id) for t in rows}
    return [by_name.get(n, n) for n in names]


def card(page, connector_id):
    start = page.index(f'id="connector-{connector_id}"')
    return page[start : page.index("</article>", start)]


def test_empty_agents_index_explains_what_to_do(logged_in):
    assert "No agents yet" in logged_in.get("/agents/").get_data(as_text=True)


def test_create_agent_lands_on_its_page(app, logged_in):
    response = logged_in.post("/agents/new", data={"name": " Triage ", "description": "d"})
    assert response.status_code == 302
    with app.app_context():
        agent = db.session.query(Agent).one()
        assert agent.name == "Triage"
    assert response.headers["Location"] == f"/agents/{agent.id}"


def test_agent_name_must_be_unique(logged_in):
    logged_in.post("/agents/new", data={"name": "Triage"})
    response = logged_in.post("/agents/new", data={"name": "triage"})
    assert response.status_code == 422
    assert "Another agent already has this name." in response.get_data(as_text=True)


def test_agent_page_shows_one_card_per_connector_state(logged_in, world):
    page = logged_in.get(f"/agents/{world['agent']}").get_data(as_text=True)
    oauth_card = card(page, world["oauth_pa"])
    assert "card-inactive" in oauth_card and ">Connect</button>" in oauth_card
    bearer_card = card(page, world["bearer_pa"])
    assert 'type="password"' in bearer_card and "Save token" in bearer_card
    shared_card = card(page, world["shared"])
    assert 'type="checkbox"' in shared_card and "Token configured" not in shared_card


def test_inline_token_saves_over_htmx_and_shows_token_configured(app, logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['bearer_pa']}/secret"
    response = logged_in.hx_post(url, data={"secret": f"  {TOKEN}\n"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.lstrip().startswith(f'<article id="connector-{world["bearer_pa"]}"')
    # Saved, but the check failed: the card says Error (not a green "Token configured").
    assert 'class="badge badge-error"' in page and 'type="checkbox"' in page
    assert 'hx-swap-oob="innerHTML"' in page
    assert "Token saved for Support bot on Render, but" in page
    assert TOKEN not in page
    with app.app_context():
        connection = db.session.query(AgentConnection).one()
        assert connection.secret_enc.reveal() == TOKEN
        # Saving checks the token by listing tools; nothing listens on this port.
        assert connection.status == "error" and "unreachable" in connection.last_error


def test_inline_token_without_javascript_redirects_back(logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['bearer_pa']}/secret"
    response = logged_in.post(url, data={"secret": TOKEN})
    assert response.status_code == 302
    agent, connector = world["agent"], world["bearer_pa"]
    # The card shows the message: the page opens scrolled to it.
    assert response.headers["Location"] == f"/agents/{agent}?card={connector}#connector-{connector}"


def test_empty_inline_token_is_refused_in_the_card(logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['bearer_pa']}/secret"
    page = logged_in.hx_post(url, data={"secret": ""}).get_data(as_text=True)
    assert "Enter the token or key before saving." in page
    assert 'type="password"' in page


def test_token_for_shared_connector_is_refused(app, logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['shared']}/secret"
    page = logged_in.hx_post(url, data={"secret": TOKEN}).get_data(as_text=True)
    assert "does not take a per-agent token" in page
    with app.app_context():
        assert db.session.query(AgentConnection).count() == 0


def test_tool_choices_persist_and_ignore_unknown_tools(app, logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['shared']}/tools"
    wanted = ids(app, world["shared"], "search", "create_issue", "rm_rf", "99999")
    page = logged_in.hx_post(url, data={"tools": wanted}).get_data(as_text=True)
    assert "2 of 3 tools enabled on Docs." in page
    with app.app_context():
        assert db.session.query(AgentConnection).one().enabled_tools == ["create_issue", "search"]
    reloaded = card(
        logged_in.get(f"/agents/{world['agent']}").get_data(as_text=True), world["shared"]
    )
    search, list_issues = ids(app, world["shared"], "search", "list_issues")
    assert f'value="{search}" checked' in reloaded
    assert f'value="{list_issues}" checked' not in reloaded


def test_unticking_every_tool_disables_them_all(app, logged_in, world):
    url = f"/agents/{world['agent']}/connectors/{world['shared']}/tools"
    logged_in.hx_post(url, data={"tools": ids(app, world["shared"], "search")})
    logged_in.hx_post(url, data={})
    with app.app_context():
        assert db.session.query(AgentConnection).one().enabled_tools == []


def test_disconnect_forgets_the_credential_and_keeps_tool_choices(app, logged_in, world):
    base = f"/agents/{world['agent']}/connectors/{world['bearer_pa']}"
    logged_in.hx_post(f"{base}/secret", data={"secret": TOKEN})
    logged_in.hx_post(f"{base}/tools", data={"tools": ids(app, world["bearer_pa"], "search")})
    page = logged_in.hx_post(f"{base}/disconnect").get_data(as_text=True)
    assert "Save token" in page
    with app.app_context():
        connection = db.session.query(AgentConnection).one()
        assert connection.secret_enc is None and connection.enabled_tools == ["search"]


def test_disconnect_asks_for_confirmation(logged_in, world):
    base = f"/agents/{world['agent']}/connectors/{world['bearer_pa']}"
    page = logged_in.hx_post(f"{base}/secret", data={"secret": TOKEN}).get_data(as_text=True)
    assert 'hx-confirm="Disconnect Support bot from Render?' in page


def test_unreadable_agent_token_asks_to_reenter(app, logged_in, world):
    with app.app_context():
        db.session.add(AgentConnection(agent_id=world["agent"], connector_id=world["bearer_pa"],
                                       secret_enc=seal(TOKEN), status="connected"))  # fmt: skip
        db.session.commit()
    app.extensions["mcpadmin.keyring"] = MultiFernet([Fernet(Fernet.generate_key())])
    page = logged_in.get(f"/agents/{world['agent']}").get_data(as_text=True)
    assert "must be re-entered" in card(page, world["bearer_pa"])


def test_delete_agent_asks_then_removes_its_connections(app, logged_in, world):
    base = f"/agents/{world['agent']}"
    logged_in.hx_post(f"{base}/connectors/{world['bearer_pa']}/secret", data={"secret": TOKEN})
    assert "cannot be undone" in logged_in.get(f"{base}/delete").get_data(as_text=True)
    response = logged_in.post(f"{base}/delete", follow_redirects=True)
    assert "Agent Support bot deleted" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(AgentConnection).count() == 0
        assert db.session.query(Connector).count() == 3


def test_unknown_agent_is_404(logged_in, world):
    assert logged_in.get("/agents/999").status_code == 404
    assert logged_in.hx_post(f"/agents/999/connectors/{world['shared']}/tools").status_code == 404
