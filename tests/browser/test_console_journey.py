"""The try-it console in a real browser: from the agent page to a tool's generated form (text,
number, boolean, choice, list, nested object), the call, and its result; axe on the page."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, shoot
from tests.gateway_helpers import agent_with_tools, synced_connector
from tests.peers.call_tools import CONSOLE_TOOLS


@pytest.fixture(scope="module")
def console_peer():
    from tests.peers.mcp_fixtures import _start, _stop

    peer = _start("mcp_server.py", "--call-tools", tools=CONSOLE_TOOLS)
    yield peer
    _stop(peer)


def test_an_operator_tries_a_tool_as_the_agent(signed_in, live_server, app, console_peer,
                                               problems):  # fmt: skip
    page = signed_in
    problems.allow.append(r"status of 422")  # a form that does not read comes back with errors
    with app.app_context():
        weather = synced_connector(console_peer.url, "Weather")
        agent, _ = agent_with_tools([weather], name="Triage bot")
        agent_id = agent.id
    page.goto(f"{live_server.url}/agents/{agent_id}")
    page.get_by_role("link", name="Try a tool as Triage bot").click()
    page.get_by_label("Tool", exact=True).select_option("weather__echo")
    page.get_by_role("button", name="Show its form").click()

    page.get_by_label("City").fill("Oslo")
    page.get_by_label("days").fill("3")
    page.get_by_label("metric").select_option("true")
    page.get_by_label("unit").select_option("fahrenheit")
    page.get_by_label("tags").fill("rain\nwind")
    page.get_by_label("region").fill("north")
    page.get_by_role("button", name="Call weather__echo").click()

    result = page.locator("section.console-result")
    expect(result.get_by_role("heading", name="Result of weather__echo")).to_be_focused()
    expect(result).to_contain_text("OK")
    received = {"city": "Oslo", "days": 3, "metric": True, "unit": "fahrenheit",
                "tags": ["rain", "wind"], "place": {"region": "north"}}  # fmt: skip
    shown = json.loads(result.locator("pre.console-structured").inner_text())
    assert shown == {"received": received}
    expect(page.get_by_label("City")).to_have_value("Oslo")  # kept for the next try
    assert axe_violations(page) == []
    shoot(page, "try-it")

    page.get_by_label("days").fill("99")
    page.get_by_role("button", name="Call weather__echo").click()
    expect(page.locator("#arg-1-error")).to_have_text("Too large: at most 14.")
    expect(page.get_by_label("days")).to_have_value("99")
    assert axe_violations(page) == []

    page.get_by_label("Tool", exact=True).select_option("weather__picture")
    page.get_by_role("button", name="Show its form").click()
    page.get_by_role("button", name="Call weather__picture").click()
    image = page.locator("img.console-image")
    expect(image).to_be_visible()
    assert image.evaluate("(img) => img.complete && img.naturalWidth") == 48
