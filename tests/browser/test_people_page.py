"""The People page in a real browser: an owner invites an operator, who joins through the link
in a browser of their own and lands signed in; the owner changes a role and deactivates
someone through the confirmation; an auditor reads the page without its actions."""

import re

from playwright.sync_api import expect

from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, Role
from tests.browser.conftest import axe_violations, shoot
from tests.conftest import PASSWORD

NEW_PASSWORD = "ada's own password"  # noqa: S105 (a test password)


def new_tab(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), lambda route: route.abort())
    return context, context.new_page()


def sign_in_as(tab, live_server, name):
    tab.goto(live_server.url + "/login")
    tab.get_by_label("Username").fill(name)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(re.compile(r"/connectors/$"))


def test_an_owner_invites_changes_a_role_and_deactivates(signed_in, live_server, chromium, app,
                                                         password_hash):  # fmt: skip
    page = signed_in
    with app.app_context():
        for name, role in (("mia", Role.MEMBER), ("audrey", Role.AUDITOR)):
            db.session.add(AdminUser(username=name, password_hash=password_hash, role=role,
                                     email=f"{name}@example.com"))  # fmt: skip
        db.session.commit()

    page.goto(live_server.url + "/people/")
    expect(page.get_by_text("No pending invites.")).to_be_visible()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Role", exact=True).select_option("operator")
    page.get_by_role("button", name="Create invite link").click()
    link = page.locator("#new-invite-link").text_content()
    assert link.startswith(live_server.url + "/invite/")
    expect(page.get_by_role("button", name="Copy the invite link")).to_be_visible()
    expect(page.locator("#invites tbody")).to_contain_text("ada@example.com")
    assert not axe_violations(page)
    shoot(page, "people-owner")

    context, newcomer = new_tab(chromium)
    try:
        newcomer.goto(link)
        expect(newcomer.get_by_role("heading")).to_have_text(
            "You are invited to mcpadmin as Operator"
        )
        assert not axe_violations(newcomer)
        shoot(newcomer, "people-invite")
        newcomer.get_by_label("Username").fill("ada")
        newcomer.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        newcomer.get_by_label("Repeat password").fill(NEW_PASSWORD)
        newcomer.get_by_role("button", name="Join as Operator").click()
        newcomer.wait_for_url(re.compile(r"/connectors/$"))
        expect(newcomer.locator(".flash-success")).to_contain_text("you joined as an operator")
        newcomer.goto(link)  # the link worked once
        expect(newcomer.get_by_role("heading", level=1)).to_have_text("You are signed in already")
    finally:
        context.close()

    page.goto(live_server.url + "/people/")
    expect(page.locator("#people tr", has_text="ada")).to_contain_text("Active")
    expect(page.get_by_text("No pending invites.")).to_be_visible()
    mia = page.locator("#people tr", has_text="mia@example.com")
    mia.get_by_label("Role of mia").select_option("auditor")
    mia.get_by_role("button", name="Save role of mia").click()
    expect(page.locator("#flashes")).to_contain_text("mia is now an auditor.")

    page.locator("#people tr", has_text="mia@example.com").get_by_role(
        "link", name="Deactivate… mia"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Deactivate mia?")
    expect(page.locator(".consequences")).to_contain_text("Their sessions end now")
    page.get_by_role("button", name="Deactivate mia").click()
    page.wait_for_url(re.compile(r"/people/$"))
    expect(page.locator("#flashes")).to_contain_text("mia is deactivated")
    expect(page.locator("#people tr", has_text="mia@example.com")).to_contain_text("Deactivated")

    context, auditor = new_tab(chromium)
    try:
        sign_in_as(auditor, live_server, "audrey")
        auditor.goto(live_server.url + "/people/")
        expect(auditor.locator("#people")).to_contain_text("ada")
        assert auditor.get_by_role("button", name="Create invite link").count() == 0
        assert auditor.get_by_role("link", name=re.compile("Deactivate")).count() == 0
        shoot(auditor, "people-auditor")
    finally:
        context.close()
