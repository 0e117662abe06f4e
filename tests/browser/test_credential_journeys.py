"""Credential journeys of issue 21 in a real browser: a refused token replaced on the card,
Enable all / Disable all, a per-agent connector's agents, confirmations that name what they
take, a key expiry date that contradicts "Never", the redirect URI of a pre-registered client,
and the message of a per-agent Connect in view. axe on every page they change."""

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentKey, Connector
from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_journeys import add_agent, add_connector, card, consent_peer, row  # noqa: F401

REDIRECT_PATH = "/oauth/callback"


def connector_id(app, name):
    with app.app_context():
        return db.session.scalar(select(Connector.id).where(Connector.name == name))


def test_refused_agent_token_is_replaced_on_its_card(signed_in, live_server, bearer_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", mode="per_agent")
    add_agent(page, base, "Support bot")
    tracker = card(page, "Tracker")
    tracker.get_by_label("Bearer token for Support bot").fill("an-old-token")
    tracker.get_by_role("button", name="Save token").click()
    expect(tracker.get_by_text(re.compile(r"refused the token \(401"))).to_have_count(1)

    # The card says the token was refused, and the field to replace it is open below.
    new_token = tracker.get_by_label("New bearer token for Support bot")
    expect(new_token).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "agent-token-refused")
    # axe leaves style="" on the inputs, which htmx's settle would copy into the swapped card
    # (refused by the CSP): go on from a fresh page, where the field is open as well.
    page.reload()
    new_token.fill("peer-token")
    tracker.get_by_role("button", name="Replace token").click()
    expect(page.get_by_text("Token replaced for Support bot on Tracker: 2 tools")).to_be_visible()
    expect(tracker.get_by_text(re.compile("refused the token"))).to_have_count(0)
    expect(tracker.get_by_role("checkbox")).to_have_count(2)


def test_enable_all_and_disable_all(signed_in, live_server, bearer_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    row(page, "Tracker").get_by_role("button", name="Sync").click()
    expect(row(page, "Tracker").get_by_text("Connected")).to_be_visible()
    add_agent(page, base, "Support bot")
    tracker = card(page, "Tracker")

    tracker.get_by_role("button", name="Enable all tools of Tracker").click()
    expect(page.get_by_text("2 of 2 tools enabled on Tracker.")).to_be_visible()
    for box in tracker.get_by_role("checkbox").all():
        expect(box).to_be_checked()
    expect(tracker.get_by_role("button", name="Enable all tools of Tracker")).to_be_disabled()
    tracker.get_by_role("button", name="Disable all tools of Tracker").click()
    expect(page.get_by_text("0 of 2 tools enabled on Tracker.")).to_be_visible()
    for box in tracker.get_by_role("checkbox").all():
        expect(box).not_to_be_checked()
    assert axe_violations(page) == []
    page.reload()
    expect(card(page, "Tracker").get_by_role("checkbox").first).not_to_be_checked()


def test_per_agent_connector_page_lists_its_agents(signed_in, live_server, bearer_peer, app):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", mode="per_agent")
    add_agent(page, base, "Support bot")
    card(page, "Tracker").get_by_label("Bearer token for Support bot").fill("peer-token")
    card(page, "Tracker").get_by_role("button", name="Save token").click()
    expect(page.get_by_text(re.compile("Token saved for Support bot"))).to_be_visible()
    add_agent(page, base, "Ops bot")

    page.goto(f"{base}/connectors/{connector_id(app, 'Tracker')}")
    agents = page.get_by_role("region", name=re.compile("^Agents"))
    support = agents.get_by_role("row", name=re.compile("Support bot"))
    expect(support.get_by_text("Connected")).to_be_visible()
    expect(agents.get_by_role("row", name=re.compile("Ops bot")).get_by_text("Not connected"))
    assert axe_violations(page) == []
    shoot(page, "per-agent-connector-agents")
    support.get_by_role("link", name="Support bot").click()
    expect(page).to_have_url(re.compile(r"/agents/\d+#connector-\d+$"))


def test_delete_confirmation_names_the_agents(signed_in, live_server, bearer_peer, app):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    row(page, "Tracker").get_by_role("button", name="Sync").click()
    expect(row(page, "Tracker").get_by_text("Connected")).to_be_visible()
    add_agent(page, base, "Support bot")
    card(page, "Tracker").get_by_role("button", name="Enable all tools of Tracker").click()
    expect(page.get_by_text("2 of 2 tools enabled on Tracker.")).to_be_visible()

    page.goto(f"{base}/connectors/{connector_id(app, 'Tracker')}/delete")
    expect(
        page.get_by_text(re.compile(r"Agent Support bot\s+loses access to\s+2 tools"))
    ).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "connector-delete-names")


def test_key_expiry_date_with_never_is_refused(signed_in, live_server, app):
    page, base = signed_in, live_server.url
    add_agent(page, base, "Support bot")
    page.get_by_label("Label").fill("laptop")
    day = datetime.now(UTC).date() + timedelta(days=10)
    page.get_by_label("Expiry date").fill(day.isoformat())
    page.get_by_role("button", name="Create key").click()
    settle(page)
    expect(
        page.get_by_text(re.compile("“Expires” says Never, which ignores this date"))
    ).to_be_visible()
    with app.app_context():
        assert db.session.scalars(select(AgentKey)).all() == []

    page.get_by_label("Expires").select_option("date")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text(re.compile("Copy it now"))).to_be_visible()
    with app.app_context():
        assert db.session.scalar(select(AgentKey)).expires_at.date() == day + timedelta(days=1)


def test_pre_registered_client_shows_the_redirect_uri(signed_in, live_server, app):
    page, base = signed_in, live_server.url
    page.goto(base + "/connectors/new")
    page.get_by_label("Name").fill("Provider")
    page.get_by_label("MCP server URL").fill("https://mcp.provider.example/mcp")
    page.get_by_label("Authentication").select_option("oauth")
    settle(page)
    page.get_by_text("Advanced OAuth settings").click()
    expect(page.get_by_text(base + REDIRECT_PATH)).to_be_visible()
    expect(page.get_by_role("button", name="Copy the redirect URI")).to_be_visible()
    page.get_by_label("Client ID").fill("client-from-the-provider")
    page.get_by_role("button", name="Create connector").click()
    expect(page.get_by_text("Connector Provider created.")).to_be_visible()

    page.goto(f"{base}/connectors/{connector_id(app, 'Provider')}")
    expect(page.locator("#redirect-uri")).to_have_text(base + REDIRECT_PATH)
    expect(page.get_by_role("button", name="Copy the redirect URI")).to_be_visible()
    assert axe_violations(page) == []
    page.goto(f"{base}/connectors/{connector_id(app, 'Provider')}/edit")
    expect(page.get_by_text(base + REDIRECT_PATH)).to_be_visible()  # open: a client is stored
    assert axe_violations(page) == []


def test_per_agent_connect_message_is_in_view(signed_in, live_server, consent_peer):  # noqa: F811
    page, base = signed_in, live_server.url
    add_connector(page, base, "Peer", consent_peer.mcp_url, "oauth", mode="per_agent")
    add_agent(page, base, "Triage bot")
    for name in ("Alpha", "Beta", "Gamma"):  # cards above push Peer's down the page
        add_connector(page, base, name, consent_peer.mcp_url, "oauth", mode="per_agent")
    page.goto(base + "/agents/")
    page.get_by_role("link", name="Triage bot").click()
    page.set_viewport_size({"width": 390, "height": 700})
    card(page, "Peer").get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Approve").click()

    message = card(page, "Peer").get_by_text("Connected Triage bot on Peer: 3 tools available.")
    expect(message).to_be_in_viewport()
    page.set_viewport_size({"width": 1280, "height": 800})  # the phone layout is issue 21's #7
    assert axe_violations(page) == []
    shoot(page, "agent-connected-in-view")
