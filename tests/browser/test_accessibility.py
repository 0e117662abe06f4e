"""axe-core on the pages operators use most: no serious or critical violation."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, CatalogItem, Connector
from tests.browser.conftest import axe_violations
from tests.browser.test_journeys import add_agent, add_connector, row
from tests.test_surface_choices import CAPABILITIES, TRIAGE, item


@pytest.fixture
def populated(signed_in, live_server, bearer_peer, app):
    """A synced bearer connector (prompts and resources stored beside its tools), a
    per-agent OAuth one, and an agent."""
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    # The sync's own answer, not only "Connected" (which the sync made at creation already
    # shows): a sync still running would delete the items stored below, which it does not list.
    with page.expect_response(lambda r: r.request.method == "POST" and "/sync" in r.url):
        row(page, "Tracker").get_by_role("button", name="Sync").click()
    row(page, "Tracker").get_by_text("Connected").wait_for()
    with app.app_context():
        tracker = db.session.scalar(select(Connector).where(Connector.name == "Tracker"))
        tracker.server_capabilities = CAPABILITIES
        item(tracker.id, "prompt", "triage", title="Triage", definition=TRIAGE)
        item(tracker.id, "resource", "file:///readme.md", mime_type="text/markdown")
        item(tracker.id, "template", "tracker://issues/{id}")
        db.session.commit()
    add_connector(page, base, "Sentry", "https://mcp.sentry.example/mcp", "oauth", "per_agent")
    add_agent(page, base, "Triage bot")
    return page


def paths(app, *templates):
    """The URLs, with ``{connector}`` and ``{agent}`` filled in from the database (ids are not
    1 on PostgreSQL, whose sequences outlive the emptied tables)."""
    with app.app_context():
        connector = db.session.scalar(select(Connector.id).where(Connector.name == "Tracker"))
        agent = db.session.scalar(select(Agent.id))
        prompt = db.session.scalar(select(CatalogItem.id).filter_by(key="triage"))
    return [t.format(connector=connector, agent=agent, prompt=prompt) for t in templates]


@pytest.mark.parametrize(
    "path",
    ["/connectors/", "/connectors/new", "/connectors/{connector}/edit", "/connectors/{connector}",
     "/connectors/{connector}/prompts/{prompt}?agent={agent}", "/agents/"],
)  # fmt: skip
def test_page_has_no_serious_accessibility_violations(populated, live_server, app, path):
    populated.goto(live_server.url + paths(app, path)[0])
    assert axe_violations(populated) == []


def test_agent_page_has_no_serious_accessibility_violations(populated):
    # ``populated`` ends on the new agent's page.
    assert axe_violations(populated) == []


def test_empty_states_have_no_serious_accessibility_violations(signed_in, live_server):
    for path in ("/connectors/", "/agents/"):
        signed_in.goto(live_server.url + path)
        assert axe_violations(signed_in) == [], path


@pytest.mark.parametrize("width", [1024, 1440])
def test_pages_fit_laptop_and_desktop_widths(populated, live_server, app, width):
    populated.set_viewport_size({"width": width, "height": 800})
    pages = ("/connectors/", "/connectors/{connector}", "/connectors/new", "/agents/{agent}")
    for path in paths(app, *pages):
        populated.goto(live_server.url + path)
        overflow = populated.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"


def test_keyboard_alone_reaches_and_runs_sync(populated, live_server):
    """Tab through the connectors page: every control is reachable, Enter on Sync works."""
    page = populated
    page.goto(live_server.url + "/connectors/")
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.textContent.trim()"))
        if reached[-1] == "Sync" and "Tracker" in reached:  # Tracker's own Sync button
            break
    assert reached[0] == "Skip to content"
    assert "Add connector" in reached and "Tracker" in reached
    assert reached[-1] == "Sync", reached
    page.keyboard.press("Enter")
    expect(page.locator("#flashes")).to_contain_text("Synced Tracker")
