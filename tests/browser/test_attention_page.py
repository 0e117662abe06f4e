"""Needs attention in Chromium: the badge in the navigation, the page's items leading to their
fixes, a webhook added (its secret shown once) and tested against a real receiver, axe on both
pages, and the phone width."""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, Connector, utcnow
from mcpadmin.services import agent_keys
from tests.browser.conftest import axe_violations, shoot
from tests.browser.test_journeys import add_connector
from tests.test_webhooks import Receiver, verify


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def needing(app, signed_in, live_server, bearer_peer):
    """Two items: a shared token the server refuses (saved in the form, then synced), and a
    key expiring in three days."""
    add_connector(signed_in, live_server.url, "Weather", bearer_peer.url, auth="bearer",
                  secret="expired-token")  # fmt: skip
    signed_in.get_by_role("button", name="Sync", exact=True).click()
    expect(signed_in.get_by_text(re.compile("^Sync of Weather failed"))).to_be_visible()
    with app.app_context():
        agent = Agent(name="Triage bot")
        db.session.add(agent)
        agent_keys.create(agent, "laptop", utcnow() + timedelta(days=3, hours=2))
        db.session.commit()
        connector_id = db.session.scalar(select(Connector.id))
        return {"connector": connector_id, "agent": agent.id}


def test_the_badge_counts_the_items_and_each_leads_to_its_fix(signed_in, live_server, needing):
    page, base = signed_in, live_server.url
    page.goto(base + "/connectors/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name=re.compile(r"^Attention 2"))).to_be_visible()
    nav.get_by_role("link", name=re.compile("^Attention")).click()
    expect(page.get_by_role("heading", name="Needs attention", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Credentials to renew"))).to_be_visible()
    expect(page.get_by_text("Weather (shared credential): Error.")).to_be_visible()
    expect(
        page.get_by_text(re.compile("Key “laptop” of Triage bot expires in 3 days"))
    ).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "attention")

    page.get_by_role("link", name="Check and sync").click()
    expect(page).to_have_url(f"{base}/connectors/{needing['connector']}")
    expect(page.get_by_role("button", name="Sync")).to_be_visible()
    page.go_back()
    page.get_by_role("link", name="Open the agent's keys").click()
    expect(page).to_have_url(f"{base}/agents/{needing['agent']}#keys")
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()


def test_nothing_needs_you_fits_a_phone(signed_in, live_server):
    page = signed_in
    page.goto(live_server.url + "/attention/")
    expect(page.get_by_role("heading", name="Nothing needs you")).to_be_visible()
    assert axe_violations(page) == []
    # At 390 px the page's own content fits (the navigation's layout is another part's).
    page.set_viewport_size({"width": 390, "height": 800})
    width, viewport = page.evaluate(
        "() => [document.querySelector('main').scrollWidth, innerWidth]"
    )
    assert width <= viewport


def test_a_webhook_is_added_and_its_test_event_appears_in_the_log(
    signed_in, live_server, receiver, needing
):
    page = signed_in
    page.goto(live_server.url + "/attention/")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_label("Generic JSON, signed").check()
    page.get_by_role("button", name="Add webhook").click()
    secret = page.locator("#new-secret-value").inner_text()
    assert secret.startswith("whsec_")
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()
    assert axe_violations(page) == []

    page.get_by_role("button", name=re.compile("^Send a test event")).click()
    expect(
        page.get_by_text(re.compile("^Test event delivered to http://127.0.0.1:"))
    ).to_be_visible()
    log = page.locator("#deliveries")
    expect(log.get_by_text("A test event from mcpadmin")).to_be_visible()
    expect(log.get_by_text("Delivered")).to_be_visible()
    expect(page.locator("#new-secret-value")).to_have_count(0)  # shown once only
    (request,) = receiver.requests
    assert verify(secret, request)
    assert axe_violations(page) == []
    shoot(page, "attention-webhooks")

    page.get_by_role("link", name=re.compile("^Remove")).click()
    page.get_by_role("button", name="Remove webhook").click()
    expect(page.get_by_text(re.compile("removed; nothing more is sent to it"))).to_be_visible()
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
