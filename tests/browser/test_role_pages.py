"""Each role in a real browser: the header names the person and their role, the navigation
lists the pages the role may open, and the main pages show the buttons the role may use and
none of the others."""

import re

import pytest
from playwright.sync_api import expect

from mcpadmin.models import Role
from mcpadmin.roles import GRANTS, Access
from tests.browser.conftest import axe_violations, settle, shoot
from tests.conftest import PASSWORD
from tests.roles_helpers import NAMES, build_world


def sign_in_as(page, base, name):
    page.goto(base + "/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/(agents|connectors)/$"))


def sign_out(page):
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile(r"/login"))


def nav_links(page) -> list[str]:
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    return [text.split()[0] for text in links.all_inner_texts()]


def test_member_without_agents_is_asked_to_create_the_first(page, live_server, people):
    sign_in_as(page, live_server.url, "member")
    expect(page).to_have_url(re.compile(r"/agents/$"))
    expect(page.locator(".who")).to_have_text(re.compile(r"member\s+Member"))
    assert nav_links(page) == ["Agents"]
    expect(page.get_by_role("link", name="Create your first agent")).to_be_visible()
    shoot(page, "role-member-no-agents")
    assert axe_violations(page) == []
    page.set_viewport_size({"width": 390, "height": 800})
    shoot(page, "role-member-no-agents-phone")


@pytest.fixture
def world(make_app, live_server, people):
    """The role tests' objects, sealed with the live server's keys (its instance folder)."""
    config = {"ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True}
    return build_world(make_app(config, instance_path=live_server.instance))


@pytest.mark.parametrize("role", Role.ALL)
def test_each_role_sees_the_buttons_it_may_use_and_no_other(page, live_server, world, role):
    base, grants = live_server.url, GRANTS[role]
    reads, operates = Access.READ in grants, Access.OPERATE in grants
    changes = Access.AGENT_CHANGE in grants
    sign_in_as(page, base, role)
    expect(page.locator(".who")).to_have_text(re.compile(rf"{role}\s+{Role.LABELS[role]}"))
    readers_pages = ["Connectors", "Agents", "Calls", "Audit", "Attention", "People"]
    owners_pages = ["Settings"] if Access.ADMINISTER in grants else []
    assert nav_links(page) == (readers_pages if reads else ["Agents"]) + owners_pages

    page.goto(base + "/agents/")
    expect(page.get_by_role("link", name="Add agent")).to_have_count(int(changes))
    expect(page.get_by_role("button", name="Delete selected…")).to_have_count(int(changes))
    shoot(page, f"role-{role}-agents")

    page.get_by_role("link", name=NAMES["own"]).click()
    settle(page)
    card = page.locator(f"#connector-{world.per_agent}")
    expect(page.get_by_role("link", name="Delete agent…")).to_have_count(int(changes))
    expect(page.get_by_role("button", name="Create key")).to_have_count(int(changes))
    expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(int(changes))
    expect(page.get_by_role("link", name=re.compile("^Try a tool"))).to_have_count(int(changes))
    expect(card.get_by_role("button", name="Sync tools")).to_have_count(int(changes))
    expect(card.get_by_role("button", name="Disconnect")).to_have_count(int(changes))
    expect(card.get_by_role("checkbox", name=re.compile("lookup"))).to_be_enabled(enabled=changes)
    expect(card.get_by_role("button", name=re.compile("^Mark reviewed"))).to_have_count(
        2 if operates else 0
    )
    expect(page.get_by_role("link", name=re.compile("^All calls"))).to_have_count(int(reads))
    shoot(page, f"role-{role}-agent")
    if role == Role.MEMBER:
        assert axe_violations(page) == []
        expect(page.locator(f"#connector-{world.shared}")).to_have_count(0)  # not available

    if reads:
        team = world.agents["unowned"]
        page.goto(base + "/connectors/")
        expect(page.get_by_role("link", name="Add connector")).to_have_count(int(operates))
        expect(page.get_by_role("button", name="Sync selected")).to_have_count(int(operates))
        expect(page.get_by_role("link", name="Edit")).to_have_count(2 if operates else 0)
        shoot(page, f"role-{role}-connectors")
        page.goto(f"{base}/connectors/{world.shared}/tools/{world.tool}?agent={team}")
        expect(page.get_by_role("button", name=re.compile("^Mark reviewed"))).to_have_count(
            int(operates)
        )
        shoot(page, f"role-{role}-tool-review")
        page.goto(base + "/attention/webhooks")
        expect(page.get_by_role("button", name="Add webhook")).to_have_count(int(operates))
        expect(page.get_by_role("link", name=re.compile("^Remove"))).to_have_count(int(operates))
    sign_out(page)
