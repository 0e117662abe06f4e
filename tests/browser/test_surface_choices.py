"""Prompts and resources in a real browser (issue 22): the connector page lists what the server
offers besides tools; on the agent's card a ticked prompt and "All resources" are saved as they
change and still ticked after a reload; a changed prompt is marked reviewed in place. Catalog
rows are written straight to the tables, as a sync stores them."""

import re

import pytest
from playwright.sync_api import expect

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection
from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_journeys import card
from tests.test_surface_choices import CAPABILITIES, TRIAGE, item
from tests.test_sync import add_agent, add_connector

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def linear(app):
    """A shared connector offering a tool's worth of nothing, two prompts, two resources and a
    URI template; the agent Ada. Their ids."""
    connector = add_connector(app, "Linear", "https://l.example/mcp", auth_type="none",
                              server_capabilities=CAPABILITIES)  # fmt: skip
    with app.app_context():
        item(connector, "prompt", "triage", name="triage", title="Triage an issue",
             description="Sort an issue into a team", definition=TRIAGE)  # fmt: skip
        item(connector, "prompt", "summarize", name="summarize")
        item(connector, "resource", "file:///readme.md", name="readme", mime_type="text/markdown")
        item(connector, "resource", "linear://teams", name="teams")
        item(connector, "template", "linear://issues/{id}", name="issue")
        db.session.commit()
    return {"connector": connector, "agent": add_agent(app, "Ada")}


def test_a_ticked_prompt_and_all_resources_survive_a_reload(signed_in, live_server, linear):
    page, base = signed_in, live_server.url
    page.goto(f"{base}/agents/{linear['agent']}")
    page.wait_for_load_state("load")
    linear_card = card(page, "Linear")
    prompts = linear_card.get_by_role("group", name=re.compile("^Prompts Ada may get"))
    prompts.get_by_role("checkbox", name=re.compile("Triage an issue")).check()
    expect(page.get_by_text("1 of 2 prompts enabled on Linear.")).to_be_visible()
    settle(page)
    linear_card.get_by_role("checkbox", name=re.compile("^All resources")).check()
    expect(page.get_by_text("All resources of Linear enabled, those it adds later too.")
           ).to_be_visible()  # fmt: skip
    settle(page)
    # Every single resource is included, and cannot be unticked on its own.
    teams = linear_card.get_by_role("checkbox", name="linear://teams")
    expect(teams).to_be_checked()
    expect(teams).to_be_disabled()
    assert axe_violations(page) == []

    page.reload()
    linear_card = card(page, "Linear")
    expect(linear_card.get_by_role("checkbox", name=re.compile("Triage an issue"))).to_be_checked()
    expect(linear_card.get_by_role("checkbox", name=re.compile("summarize"))).not_to_be_checked()
    expect(linear_card.get_by_role("checkbox", name=re.compile("^All resources"))).to_be_checked()
    expect(linear_card.get_by_role("group", name="Resources Ada may read (all)")).to_be_visible()
    shoot(page, "agent-card-prompts-resources")
    # A screenshot leaves style attributes that htmx's settle would copy (refused by the CSP).
    page.reload()

    # Unticking "All resources" leaves none; one URI template can then be ticked alone.
    linear_card.get_by_role("checkbox", name=re.compile("^All resources")).uncheck()
    expect(page.get_by_text("0 of 3 resources enabled on Linear.")).to_be_visible()
    settle(page)
    card(page, "Linear").get_by_role("checkbox", name="linear://issues/{id}").check()
    expect(page.get_by_text("1 of 3 resources enabled on Linear.")).to_be_visible()


def test_a_changed_prompt_is_marked_reviewed_on_the_card(signed_in, live_server, app, linear):
    with app.app_context():
        db.session.add(AgentConnection(agent_id=linear["agent"], connector_id=linear["connector"],
                                       enabled_tools=[], enabled_prompts=["triage"],
                                       changed_prompts=["triage"]))  # fmt: skip
        db.session.commit()
    page = signed_in
    page.goto(f"{live_server.url}/agents/{linear['agent']}")
    page.wait_for_load_state("load")
    linear_card = card(page, "Linear")
    expect(linear_card.get_by_text("Definition changed")).to_be_visible()
    assert axe_violations(page) == []
    linear_card.get_by_role("button", name="Mark reviewed (triage)").click()
    expect(page.get_by_text("Prompt triage marked reviewed for Ada.")).to_be_visible()
    expect(card(page, "Linear").get_by_text("Definition changed")).to_have_count(0)


def test_the_connector_page_lists_them_and_fits_a_phone(signed_in, live_server, linear):
    page = signed_in
    page.goto(f"{live_server.url}/connectors/{linear['connector']}")
    prompts = page.get_by_role("table", name="Prompts of Linear")
    expect(prompts.get_by_role("row", name=re.compile(r"^triage Triage an issue"))).to_be_visible()
    expect(page.get_by_role("table", name="Resources of Linear").get_by_role("row")
           ).to_have_count(3)  # fmt: skip
    expect(page.get_by_role("table", name="Resource templates of Linear")
           .get_by_text("linear://issues/{id}")).to_be_visible()  # fmt: skip
    assert axe_violations(page) == []
    shoot(page, "connector-resources-prompts")
    page.set_viewport_size(PHONE)
    page.reload()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the connector page scrolls sideways by {overflow}px on a phone"
    shoot(page, "phone-connector-resources-prompts")
    page.goto(f"{live_server.url}/agents/{linear['agent']}")
    shoot(page, "phone-agent-prompts-resources")
