"""A 390 px phone and a keyboard alone: every page fits the screen with its navigation, status
and actions reachable; focus stays on the control used across every in-place update, and the
result is read out from the live region."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector, Tool
from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_journeys import add_connector, row
from tests.records_helpers import call, event
from tests.test_surface_choices import CAPABILITIES, TRIAGE, item
from tests.test_sync import add_agent
from tests.test_sync import add_connector as add_stored_connector

PHONE = {"width": 390, "height": 844}
# A name with no place to break, as long as a name may be.
UNBROKEN = "Unbroken" + "x" * 92


@pytest.fixture
def world(signed_in, live_server, app, bearer_peer):
    """A shared bearer connector synced through the pages (2 tools; prompts and resources
    stored beside them), a per-agent bearer one, a connector with a 100-character unbroken
    name, an agent using them, calls and audit events with long names and values."""
    page, base = signed_in, live_server.url
    add_connector(page, base, "Tracker", bearer_peer.url, "bearer", secret="peer-token")
    # The sync's own answer, not only "Connected" (which the sync made at creation already
    # shows): a sync still running would delete the items stored below, which it does not list.
    with page.expect_response(lambda r: r.request.method == "POST" and "/sync" in r.url):
        row(page, "Tracker").get_by_role("button", name="Sync").click()
    expect(row(page, "Tracker").get_by_text("Connected")).to_be_visible()
    with app.app_context():
        tracker = db.session.scalar(select(Connector.id).filter_by(name="Tracker"))
        tool = db.session.scalar(select(Tool.id).filter_by(connector_id=tracker))
    per_agent = add_stored_connector(app, "Desk", bearer_peer.url, auth_type="bearer",
                                     credential_mode="per_agent")  # fmt: skip
    long_one = add_stored_connector(app, UNBROKEN, "https://" + "h" * 60 + ".example/mcp")
    agent = add_agent(app, "Support bot", tracker)
    now = datetime.now(UTC).replace(microsecond=0)
    with app.app_context():
        # What Tracker offers besides tools, with unbroken names; a changed enabled prompt.
        db.session.get(Connector, tracker).server_capabilities = CAPABILITIES
        item(tracker, "prompt", "triage", title="Triage", definition=TRIAGE)
        long_prompt = item(tracker, "prompt", "p" * 100)
        item(tracker, "resource", "file:///" + "r" * 120, mime_type="text/plain")
        item(tracker, "template", "tracker://issues/{id}")
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=agent))
        connection.enabled_prompts = connection.changed_prompts = ["triage"]
        for i in range(3):
            call(at=now - timedelta(minutes=i), agent_id=agent, agent_name="Support bot",
                 connector_id=tracker, connector_name=UNBROKEN, tool="tracker__" + "t" * 60,
                 request_id=f"req{i}", outcome="upstream_down" if i else "ok",
                 error="refused " + "e" * 200 if i else None)  # fmt: skip
        event(at=now, target_id=long_one, target_name=UNBROKEN,
              details={"url": ["https://" + "a" * 120, "https://" + "b" * 120],
                       "name": ["Old", UNBROKEN]})  # fmt: skip
        db.session.commit()
        prompt = long_prompt.id
    return {"tracker": tracker, "tool": tool, "per_agent": per_agent, "long": long_one,
            "agent": agent, "prompt": prompt}  # fmt: skip


def every_page(world) -> list[str]:
    c, a, t = world["tracker"], world["agent"], world["tool"]
    return ["/connectors/", "/connectors/new", f"/connectors/{c}", f"/connectors/{c}/edit",
            f"/connectors/{c}/delete", f"/connectors/{world['long']}",
            f"/connectors/{c}/tools/{t}", f"/connectors/{c}/prompts/{world['prompt']}?agent={a}",
            "/agents/", "/agents/new", f"/agents/{a}",
            f"/agents/{a}/delete", f"/agents/{a}/usage", f"/agents/{a}/try", "/calls/",
            "/audit/", "/attention/", "/attention/webhooks"]  # fmt: skip


def overflow(page) -> int:
    return page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def widest(page) -> list[str]:
    """The innermost elements reaching past the right edge of the window."""
    return page.evaluate(
        """() => {
          const past = (el) => el.getBoundingClientRect().right > innerWidth + 1;
          return [...document.querySelectorAll('main *, header *')]
            .filter((el) => past(el) && ![...el.children].some(past)).slice(0, 5)
            .map((el) => el.tagName + '.' + el.className);
        }"""
    )


def focused(page) -> dict:
    return page.evaluate(
        """() => { const el = document.activeElement;
                   const card = el.closest('[id]:not(input)');
                   return {id: el.id, tag: el.tagName, text: el.textContent.trim(),
                           checked: el.checked, within: card ? card.id : null}; }"""
    )


def tab_to(page, predicate, limit=80) -> dict:
    """Press Tab until the focused element satisfies ``predicate``; what has focus then."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if predicate(now):
            return now
    raise AssertionError(f"Tab never reached the control; last: {now}")


def test_every_page_fits_a_phone_with_navigation_in_reach(signed_in, live_server, world):
    page = signed_in
    page.set_viewport_size(PHONE)
    wide = {}
    for path in every_page(world):
        page.goto(live_server.url + path)
        settle(page)
        shoot(page, "phone" + re.sub(r"\W+", "-", path).rstrip("-"))
        if overflow(page) > 0:
            wide[path] = (overflow(page), widest(page))
        for name in ("Connectors", "Agents", "Calls", "Audit"):
            expect(
                page.get_by_role("navigation", name="Main").get_by_role("link", name=name)
            ).to_be_in_viewport()
        expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_in_viewport()
    assert wide == {}, f"pages wider than 390 px (by px): {wide}"


def test_connectors_table_shows_status_and_actions_on_a_phone(signed_in, live_server, world):
    page = signed_in
    page.set_viewport_size(PHONE)
    page.goto(live_server.url + "/connectors/")
    tracker = page.locator(f"#connector-{world['tracker']}")
    for control in (tracker.get_by_text("Connected"), tracker.get_by_role("button", name="Sync")):
        control.scroll_into_view_if_needed()
        expect(control).to_be_in_viewport()
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    page.evaluate("() => window.scrollTo(0, 0)")
    shoot(page, "phone")


def test_the_audit_page_keeps_what_changed_on_screen_with_long_values(
    signed_in, live_server, world
):
    page = signed_in
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(live_server.url + "/audit/")
    changed = page.locator(".details-cell").first
    box = changed.bounding_box()
    assert box["x"] + box["width"] <= 1280, box
    assert overflow(page) <= 0


@pytest.mark.parametrize("width", [390, 1280])
def test_pages_pass_axe_and_long_names_widen_no_table_at(signed_in, live_server, world, width):
    page = signed_in
    page.set_viewport_size({"width": width, "height": 844})
    found = {}
    for path in every_page(world):
        page.goto(live_server.url + path)
        settle(page)
        violations = axe_violations(page)
        wider = page.evaluate(
            "() => [...document.querySelectorAll('table')].filter("
            "(t) => t.getBoundingClientRect().width > t.parentElement.clientWidth + 1).length"
        )
        if violations or wider or overflow(page) > 0:
            found[path] = (violations, f"{wider} tables wider than their box", overflow(page))
    assert found == {}


def test_space_on_a_tool_keeps_focus_on_that_checkbox_and_tab_stays_in_the_card(
    signed_in, live_server, world
):
    page = signed_in
    page.goto(live_server.url + f"/agents/{world['agent']}")
    page.wait_for_load_state("load")
    box = tab_to(page, lambda f: f["id"].startswith("agent-tool-"))
    assert not box["checked"]
    page.keyboard.press("Space")
    expect(page.locator("#flashes")).to_contain_text("1 of 2 tools enabled on Tracker.")
    settle(page)
    after = focused(page)
    assert after["id"] == box["id"] and after["checked"], after
    page.keyboard.press("Tab")
    assert focused(page)["within"] == f"connector-{world['tracker']}", focused(page)
    # The live region read it out: it stayed in place and htmx refilled it.
    expect(page.get_by_role("status").filter(has_text="tools enabled")).to_have_count(1)


def test_sync_keeps_focus_on_the_sync_button_and_the_result_is_announced(
    signed_in, live_server, world
):
    page = signed_in
    page.goto(live_server.url + "/connectors/")
    row = f"connector-{world['tracker']}"
    tab_to(page, lambda f: f["text"] == "Sync" and f["within"] == row)
    page.keyboard.press("Enter")
    expect(page.locator("#flashes[role=status][aria-live=polite]")).to_contain_text(
        "Synced Tracker"
    )
    settle(page)
    now = focused(page)
    assert now["text"] == "Sync" and now["within"] == row, now


def test_saving_a_token_keeps_focus_in_the_card(signed_in, live_server, world):
    page = signed_in
    page.goto(live_server.url + f"/agents/{world['agent']}")
    page.wait_for_load_state("load")
    field = page.locator(f"#secret-{world['per_agent']}")
    field.focus()
    field.fill("peer-token")
    page.keyboard.press("Enter")
    expect(page.locator("#flashes")).to_contain_text("Token saved")
    settle(page)
    assert (
        focused(page)["within"] == f"connector-{world['per_agent']}"
        or focused(page)["id"] == f"connector-{world['per_agent']}"
    ), focused(page)


def test_creating_and_revoking_a_key_keeps_focus_in_the_keys_section(signed_in, live_server, world):
    page = signed_in
    page.goto(live_server.url + f"/agents/{world['agent']}")
    page.wait_for_load_state("load")
    page.get_by_label("Label").focus()
    page.keyboard.type("phone")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("New key"))).to_be_visible()
    settle(page)
    assert focused(page)["text"].startswith("Copy"), focused(page)  # the new key's copy button

    page.on("dialog", lambda dialog: dialog.accept())
    revoke = page.get_by_role("button", name=re.compile("Revoke key phone"))
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#flashes")).to_contain_text("revoked")
    settle(page)
    now = focused(page)
    assert now["tag"] != "BODY" and now["within"] and now["within"].startswith("key"), now


def test_a_filter_brings_focus_back_to_the_control_used(signed_in, live_server, world):
    page = signed_in
    page.goto(live_server.url + "/calls/")
    page.get_by_label("Tool").focus()
    page.keyboard.type("nothing")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"tool=nothing"))
    page.wait_for_load_state("load")
    assert focused(page)["id"] == "filter-tool"
