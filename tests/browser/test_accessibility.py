"""axe-core on the pages operators use most: no serious or critical violation."""

import pytest

from tests.browser.conftest import axe_violations
from tests.browser.test_journeys import add_agent, add_connector, row


@pytest.fixture
def populated(signed_in, live_server, bearer_peer):
    """A synced bearer connector, a per-agent OAuth one, and an agent."""
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    row(page, "Tracker").get_by_role("button", name="Sync").click()
    row(page, "Tracker").get_by_text("Connected").wait_for()
    add_connector(page, base, "Sentry", "https://mcp.sentry.example/mcp", "oauth", "per_agent")
    add_agent(page, base, "Triage bot")
    return page


@pytest.mark.parametrize(
    "path",
    ["/connectors/", "/connectors/new", "/connectors/1/edit", "/connectors/1", "/agents/"],
)
def test_page_has_no_serious_accessibility_violations(populated, live_server, path):
    populated.goto(live_server.url + path)
    assert axe_violations(populated) == []


def test_agent_page_has_no_serious_accessibility_violations(populated):
    # ``populated`` ends on the new agent's page.
    assert axe_violations(populated) == []


def test_empty_states_have_no_serious_accessibility_violations(signed_in, live_server):
    for path in ("/connectors/", "/agents/"):
        signed_in.goto(live_server.url + path)
        assert axe_violations(signed_in) == [], path


@pytest.mark.parametrize("width", [1024, 1440])
def test_pages_fit_laptop_and_desktop_widths(populated, live_server, width):
    populated.set_viewport_size({"width": width, "height": 800})
    for path in ("/connectors/", "/connectors/1", "/connectors/new", "/agents/1"):
        populated.goto(live_server.url + path)
        overflow = populated.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
