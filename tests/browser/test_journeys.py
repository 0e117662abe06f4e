"""Every operator journey in a real browser: the app under gunicorn, Chromium, real peers.

Screens are saved to artifacts/browser/ (see ``shoot``); the README's screenshots come from there.
"""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow
from tests.browser.conftest import settle, shoot, start_live_server
from tests.conftest import PASSWORD
from tests.peers.oauth_fixtures import start_peer


@pytest.fixture(scope="session")
def consent_peer():
    """The OAuth peer with a consent page: Approve or Deny, as a person would."""
    peer = start_peer(consent=True)
    yield peer
    peer.stop()


def add_connector(page, base, name, url, auth="none", mode="shared", secret=None):
    """Fill and submit the new-connector form; wait for the connectors index."""
    page.goto(base + "/connectors/new")
    page.get_by_label("Name").fill(name)
    page.get_by_label("MCP server URL").fill(url)
    page.get_by_label("Authentication").select_option(auth)
    settle(page)
    if mode != "shared":
        page.get_by_label("Per agent", exact=False).check()
        settle(page)
    if secret:
        page.get_by_label("Token or key").fill(secret)
    page.get_by_role("button", name="Create connector").click()
    expect(page.get_by_text(f"Connector {name} created.")).to_be_visible()


def add_agent(page, base, name):
    page.goto(base + "/agents/new")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_text(f"Agent {name} created.")).to_be_visible()
    # htmx takes over the agent page's forms once it has loaded: a click before that posts
    # the plain form (a key made that way is shown at /agents/<id>/keys, which a reload posts
    # again).
    page.wait_for_load_state("load")


def row(page, name):
    return page.locator("tr", has=page.get_by_role("link", name=name, exact=True))


def card(page, name):
    return page.locator("article.connector-card", has=page.get_by_role("heading", name=name))


def test_first_run_setup_link_creates_the_admin_who_then_signs_in(
    page, problems, database_uri, tmp_path
):
    problems.allow.append(r"status of 404")  # the used setup link, opened again on purpose
    server = start_live_server(database_uri, str(tmp_path / "first-run"))
    try:
        page.goto(server.setup_link())
        shoot(page, "setup")
        page.get_by_label("Username").fill("operator")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat password").fill(PASSWORD)
        page.get_by_role("button", name="Create admin").click()
        expect(page.get_by_text("Admin account operator created")).to_be_visible()
        expect(page.get_by_role("heading", name="No connectors yet")).to_be_visible()
        shoot(page, "connectors-empty")

        page.get_by_role("button", name="Sign out", exact=True).click()
        page.get_by_label("Username").fill("operator")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as operator.")).to_be_visible()
        page.goto(server.setup_link())  # the link works once
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    finally:
        server.stop()


def test_sign_out_ends_the_session(signed_in, live_server):
    page = signed_in
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("Signed out.")).to_be_visible()
    shoot(page, "signed-out")
    page.goto(live_server.url + "/agents/")
    expect(page).to_have_url(re.compile(r"/login\?next=/agents/"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_sign_out_everywhere_ends_a_copied_session(signed_in, live_server):
    page = signed_in
    copied = page.context.cookies()
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page.get_by_text("Signed out on every browser.")).to_be_visible()
    elsewhere = page.context.browser.new_context()
    try:
        elsewhere.add_cookies(copied)
        other = elsewhere.new_page()
        other.goto(live_server.url + "/agents/")
        expect(other).to_have_url(re.compile(r"/login\?next=/agents/"))
    finally:
        elsewhere.close()


def test_bearer_connector_syncs_and_lists_its_tools(signed_in, live_server, bearer_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    tracker = row(page, "Tracker")
    # A new connector with its token is synced at once (issue 21, 11b).
    expect(page.locator("#flashes").get_by_text("Synced Tracker: 2 tools")).to_be_visible()
    expect(tracker.get_by_text("Connected")).to_be_visible()
    tracker.get_by_role("button", name="Sync").click()
    expect(tracker.get_by_text("Connected")).to_be_visible()
    expect(page.locator("#flashes").get_by_text("Synced Tracker")).to_be_visible()
    expect(tracker.locator("td").nth(4)).to_have_text("2")
    shoot(page, "connectors-index")
    page.get_by_role("link", name="Tracker", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"Tools"))).to_contain_text("2")
    shoot(page, "connector-tools")


def test_shared_oauth_connect_approves_on_the_consent_page(signed_in, live_server, consent_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Peer", consent_peer.mcp_url, "oauth")
    row(page, "Peer").get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name=re.compile("Authorize"))).to_be_visible()
    shoot(page, "oauth-consent")
    page.get_by_role("button", name="Approve").click()

    expect(page).to_have_url(re.compile(r"/connectors/$"))
    expect(page.get_by_text("Connected Peer: 3 tools available.")).to_be_visible()
    expect(row(page, "Peer").get_by_text("Connected")).to_be_visible()
    expect(row(page, "Peer").locator("td").nth(4)).to_have_text("3")
    shoot(page, "oauth-connected")


def test_per_agent_oauth_connect_returns_to_the_agent_page(signed_in, live_server, consent_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Peer", consent_peer.mcp_url, "oauth", mode="per_agent")
    add_agent(page, base, "Triage bot")
    agent_url = page.url
    shoot(page, "agent-connect")
    card(page, "Peer").get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Approve").click()

    expect(page).to_have_url(re.compile(re.escape(agent_url) + r"\?card=\d+#connector-\d+$"))
    connected = card(page, "Peer").get_by_text("Connected Triage bot on Peer: 3 tools available.")
    expect(connected).to_be_visible()
    expect(card(page, "Peer").get_by_text("Tools Triage bot may use")).to_be_visible()
    shoot(page, "agent-connected")


def test_per_agent_token_saved_inline_turns_the_card_configured(
    signed_in, live_server, bearer_peer
):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", mode="per_agent")
    add_agent(page, base, "Support bot")
    page.evaluate("() => { window.notReloaded = true; }")
    tracker = card(page, "Tracker")
    tracker.get_by_label(re.compile("Bearer token for Support bot")).fill("peer-token")
    tracker.get_by_role("button", name="Save token").click()

    expect(tracker.get_by_text("Token configured")).to_be_visible()
    expect(page.get_by_text(re.compile("Token saved for Support bot on Tracker"))).to_be_visible()
    assert page.evaluate("() => window.notReloaded === true"), "the page reloaded"
    shoot(page, "agent-token-saved")


def test_tool_choices_survive_a_reload(signed_in, live_server, bearer_peer):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    row(page, "Tracker").get_by_role("button", name="Sync").click()
    expect(row(page, "Tracker").get_by_text("Connected")).to_be_visible()
    add_agent(page, base, "Support bot")
    boxes = card(page, "Tracker").get_by_role("checkbox")
    expect(boxes).to_have_count(2)

    boxes.nth(0).check()
    expect(page.get_by_text("1 of 2 tools enabled on Tracker.")).to_be_visible()
    boxes.nth(1).check()
    expect(page.get_by_text("2 of 2 tools enabled on Tracker.")).to_be_visible()
    boxes.nth(0).uncheck()
    expect(page.get_by_text("1 of 2 tools enabled on Tracker.")).to_be_visible()
    page.reload()
    boxes = card(page, "Tracker").get_by_role("checkbox")
    expect(boxes.nth(0)).not_to_be_checked()
    expect(boxes.nth(1)).to_be_checked()
    shoot(page, "agent-tools")


def test_connector_form_shows_the_fields_of_the_chosen_auth(signed_in, live_server):
    page = signed_in
    page.goto(live_server.url + "/connectors/new")
    expect(page.get_by_label("Token or key")).to_have_count(0)

    page.get_by_label("Authentication").select_option("bearer")
    expect(page.get_by_label("Token or key")).to_be_visible()
    page.get_by_label("Per agent", exact=False).check()
    expect(page.get_by_label("Token or key")).to_have_count(0)
    expect(page.get_by_text("Each agent enters its own token")).to_be_visible()

    page.get_by_label("Authentication").select_option("api_key_header")
    expect(page.get_by_label("Header name")).to_be_visible()
    page.get_by_label("Shared", exact=False).check()
    expect(page.get_by_label("Token or key")).to_be_visible()

    page.get_by_label("Authentication").select_option("oauth")
    expect(page.get_by_label("Header name")).to_have_count(0)
    expect(page.get_by_text("Advanced OAuth settings")).to_be_visible()
    shoot(page, "connector-form")
    page.get_by_label("Authentication").select_option("none")
    expect(page.get_by_role("group", name="Credentials")).to_have_count(0)


def test_access_denied_returns_to_the_agent_page_with_a_message(
    signed_in, live_server, consent_peer
):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Peer", consent_peer.mcp_url, "oauth", mode="per_agent")
    add_agent(page, base, "Triage bot")
    agent_url = page.url
    card(page, "Peer").get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Deny").click()

    expect(page).to_have_url(re.compile(re.escape(agent_url)))
    expect(page.locator("#flashes")).to_contain_text("denied the request). Connect again to retry.")
    expect(card(page, "Peer").get_by_role("button", name="Connect")).to_be_visible()
    shoot(page, "oauth-denied")


def test_refresh_invalid_grant_needs_reconnect_and_reconnect_works(
    signed_in, live_server, consent_peer, app
):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Peer", consent_peer.mcp_url, "oauth")
    row(page, "Peer").get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Approve").click()
    expect(row(page, "Peer").get_by_text("Connected")).to_be_visible()

    consent_peer.revoke_grants()  # the provider forgets the grant: the refresh gets invalid_grant
    with app.app_context():
        connector = db.session.execute(db.select(Connector)).scalar_one()
        connector.token_expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    row(page, "Peer").get_by_role("button", name="Sync").click()
    expect(row(page, "Peer").get_by_text("Needs reconnect")).to_be_visible()
    shoot(page, "needs-reconnect")

    row(page, "Peer").get_by_role("button", name="Reconnect").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Connected Peer: 3 tools available.")).to_be_visible()
    expect(row(page, "Peer").get_by_text("Connected")).to_be_visible()


def test_delete_connector_asks_first(signed_in, live_server):
    page, base = signed_in, live_server.url
    add_connector(page, base, "Scratch", "https://mcp.example.com/mcp")
    page.get_by_role("link", name="Scratch", exact=True).click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_role("link", name="Delete connector…").click()
    expect(page.get_by_role("heading", name="Delete Scratch?")).to_be_visible()
    shoot(page, "delete-confirm")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name="Edit Scratch")).to_be_visible()

    page.get_by_role("link", name="Delete connector…").click()
    page.get_by_role("button", name="Delete connector").click()
    expect(page.get_by_text("Connector Scratch deleted")).to_be_visible()
    expect(page.get_by_role("heading", name="No connectors yet")).to_be_visible()


def test_moving_a_connector_to_another_host_asks_about_its_token(
    signed_in, live_server, problems, bearer_peer, json_peer
):
    page, base = signed_in, live_server.url
    problems.allow.append(r"status of 422")  # the form comes back with the question
    add_connector(page, base, "Mover", bearer_peer.url, "bearer", secret="peer-token")
    row(page, "Mover").get_by_role("link", name="Edit").click()
    page.get_by_label("MCP server URL").fill(json_peer.url)
    page.get_by_role("button", name="Save connector").click()
    question = page.get_by_role("group", name="Stored tokens and keys")
    expect(question).to_contain_text("Send the stored secrets to the new host")
    shoot(page, "moved-secret-question")
    question.get_by_label("Forget them; enter them again").check()
    page.get_by_role("button", name="Save connector").click()
    expect(page.get_by_text("The stored tokens and keys were removed")).to_be_visible()
    expect(row(page, "Mover").get_by_role("link", name="Enter token")).to_be_visible()
    shoot(page, "moved-secret-forgotten")
