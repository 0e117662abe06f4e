"""Finding things in a real browser: the request id an agent's error names, pasted whole into
the Calls page's filter, finds the call (and its place among all calls); the connectors and
agents indexes narrowed by name and status, Sync selected and Delete selected; the agent
page's list of what its client sees, updated as tools are ticked. axe on each changed page."""

import re

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector
from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_gateway_page import KEY
from tests.browser.test_journeys import card, row
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector


@pytest.fixture(scope="module")
def weather_peer():
    from tests.peers.mcp_fixtures import _start, _stop

    peer = _start("mcp_server.py", "--call-tools", "--tools", "0")
    yield peer
    _stop(peer)


def held_back_call(url, key) -> str:
    """Call a tool whose definition changed with the official SDK client; the text of the
    ``isError`` result the agent gets."""

    async def main():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            return await client.call_tool("weather__weather", {"city": "Oslo"})

    result = run_async(main)
    assert result.is_error
    return result.content[0].text


def test_a_request_id_copied_from_an_agents_error_finds_the_call(
    signed_in, live_server, app, weather_peer
):
    page = signed_in
    with app.app_context():
        weather = synced_connector(weather_peer.url, "Weather")
        agent, _ = agent_with_tools([weather], name="Triage bot",
                                    enabled={"Weather": ["weather", "fail"]})  # fmt: skip
        db.session.scalars(select(AgentConnection)).one().changed_tools = ["weather"]
        db.session.commit()
        agent_id = agent.id
    # A key made on the page: the live server's instance has keys of its own.
    page.goto(f"{live_server.url}/agents/{agent_id}")
    page.locator("#keys").get_by_label("Label").fill("ci")
    page.locator("#keys").get_by_role("button", name="Create key").click()
    key = page.locator("#keys").get_by_text(KEY).first.inner_text().strip()
    said = held_back_call(f"{live_server.url}/agents/{agent_id}/mcp", key)
    request_id = re.search(r"\(request ([0-9a-f]{16})\)$", said).group(1)

    page.goto(live_server.url + "/calls/")
    field = page.get_by_label("Request id")
    field.fill(said)  # the agent's whole sentence, as an operator pastes it
    field.press("Enter")
    table = page.locator("table.records tbody")
    for _ in range(20):  # the log is written within a second of the call
        if table.locator("tr").count() == 1:
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(table.locator("tr")).to_have_count(1)
    expect(table).to_contain_text(request_id)
    expect(table).to_contain_text("Refused: definition changed")
    expect(page.get_by_label("Request id")).to_have_value(request_id)
    assert axe_violations(page) == []
    shoot(page, "calls-by-request-id")

    page.get_by_role("link", name="Show among all calls").click()
    target = page.locator("table.records tr:target")
    expect(target).to_have_count(1)
    expect(target).to_contain_text(request_id)

    page.goto(live_server.url + "/calls/?request=0000")
    expect(page.get_by_role("heading", name="No calls match")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Request id “0000”")
    assert axe_violations(page) == []


def test_the_connectors_index_is_narrowed_and_several_are_synced_at_once(
    signed_in, live_server, app, weather_peer
):
    page, base = signed_in, live_server.url
    with app.app_context():
        synced_connector(weather_peer.url, "Weather")
        for name in ("Tides", "Tide tables"):
            db.session.add(Connector(name=name, url=weather_peer.url))
        db.session.commit()
    page.goto(base + "/connectors/")
    page.get_by_label("Name contains").fill("tide")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_label("Status").select_option(label="Not synced yet")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    assert axe_violations(page) == []

    page.get_by_role("checkbox", name="Select Tides", exact=True).check()
    page.get_by_role("checkbox", name="Select Tide tables").check()
    page.get_by_role("button", name="Sync selected").click()
    expect(page.get_by_text("Synced Tides:")).to_be_visible()
    expect(page.get_by_text("Synced Tide tables:")).to_be_visible()
    # Back on the index as it was filtered: none of them is unsynced any more.
    expect(page.get_by_role("heading", name="No connectors match")).to_be_visible()
    assert axe_violations(page) == []
    page.get_by_role("link", name="Clear filters").first.click()
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(row(page, "Tides")).to_contain_text("tides__")


def test_agents_are_narrowed_and_deleted_after_a_page_naming_them(signed_in, live_server, app):
    page, base = signed_in, live_server.url
    with app.app_context():
        for name in ("Triage bot", "Reporter", "Triage helper"):
            agent_with_tools([], name=name)
    page.goto(base + "/agents/")
    page.get_by_label("Name contains").fill("triage")
    page.get_by_label("Name contains").press("Enter")
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_role("checkbox", name="Select Triage bot").check()
    page.get_by_role("checkbox", name="Select Triage helper").check()
    page.get_by_role("button", name="Delete selected…").click()
    expect(page.get_by_role("heading", name="Delete 2 agents?")).to_be_visible()
    expect(page.locator("main li")).to_have_text([re.compile("Triage bot"),
                                                  re.compile("Triage helper")])  # fmt: skip
    assert axe_violations(page) == []
    page.get_by_role("button", name="Delete 2 agents").click()
    expect(page.get_by_text("Deleted 2 agents")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text("Reporter")


def test_the_agent_page_shows_the_names_its_client_sees_as_tools_are_ticked(
    signed_in, live_server, app, weather_peer
):
    page = signed_in
    with app.app_context():
        weather = synced_connector(weather_peer.url, "Weather")
        agent, _ = agent_with_tools([weather], name="Triage bot", enabled={"Weather": []})
        agent_id = agent.id
    page.goto(f"{live_server.url}/agents/{agent_id}")
    page.wait_for_load_state("load")
    seen = page.locator("#seen")
    expect(seen).to_contain_text("Nothing yet")
    card(page, "Weather").get_by_role("checkbox", name=re.compile("^weather")).check()
    settle(page)
    expect(seen.locator("code.seen-name")).to_have_text(["weather__weather"])
    assert axe_violations(page) == []
