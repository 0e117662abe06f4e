"""Reviewing a changed prompt in a real browser, against a real server whose prompt changes
between syncs: the agent card flags it, "review it" opens the prompt page with the before and
after of its description and arguments, Mark reviewed records who reviewed it and releases
the prompt; the hostile text stays text."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, shoot
from tests.browser.test_definition_review import sync
from tests.browser.test_journeys import add_agent, add_connector, card
from tests.peers.mcp_fixtures import _start, _stop
from tests.test_prompt_history import listing, triage
from tests.test_tool_history import INJECTION, read_file


@pytest.fixture(scope="module")
def changing_peer():
    """A 2.x server serving the prompts the test writes with ``set_surface``."""
    started = _start("mcp_server.py", "--json", tools=[read_file()], surface=listing(triage()))
    yield started
    _stop(started)


def test_a_changed_prompt_is_reviewed_from_its_diff(signed_in, live_server, changing_peer):
    page, base = signed_in, live_server.url
    changing_peer.set_surface(listing(triage()))
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    add_connector(page, base, "Linear", changing_peer.url)
    sync(page, base, "Linear")
    add_agent(page, base, "Support bot")
    prompts = card(page, "Linear").get_by_role("group", name=re.compile("^Prompts Support bot"))
    prompts.get_by_role("checkbox", name=re.compile("Triage")).check()
    expect(page.get_by_text(re.compile(r"1 of 1 prompts? enabled on Linear\."))).to_be_visible()

    # The server turns the description into a prompt injection and adds an argument.
    changing_peer.set_surface(listing(triage(INJECTION, extra=True, required=False)))
    sync(page, base, "Linear")
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("link", name="Support bot").click()
    linear = card(page, "Linear")
    expect(linear.get_by_text("Definition changed")).to_be_visible()
    linear.get_by_role("link", name=re.compile("^review it")).click()

    expect(page.get_by_role("heading", name="Review for Support bot")).to_be_visible()
    expect(page.get_by_text("Support bot had version 1 enabled when the server changed it")
           ).to_be_visible()  # fmt: skip
    added = page.locator("#description-diff + p ins")
    expect(added.last).to_contain_text("<script>alert(1)</script> IMPORTANT: before answering")
    expect(added.locator("mark.hidden-char")).to_have_text("‹U+202E›")
    arguments = page.get_by_role("table", name="Arguments")
    expect(arguments.get_by_role("row", name=re.compile(r"^upload_to added"))).to_be_visible()
    expect(arguments.get_by_role("row", name=re.compile(r"^team no longer required"))
           ).to_be_visible()  # fmt: skip
    # Only the app's own files: the server's <script> is text.
    assert page.locator("script:not([src^='/static/'])").count() == 0
    assert axe_violations(page) == []
    shoot(page, "prompt-diff-review")

    page.get_by_role("button", name="Mark reviewed for Support bot").click()
    expect(page.get_by_text("Prompt triage marked reviewed for Support bot.")).to_be_visible()
    expect(page.get_by_text("Nothing awaits review for Support bot.")).to_be_visible()
    reviews = page.get_by_role("table", name="Reviews")
    expect(reviews.get_by_role("row", name=re.compile(r"Support bot Reviewed version 2 admin"))
           ).to_be_visible()  # fmt: skip
    expect(reviews.get_by_role("row", name=re.compile(r"Support bot Had version 1 enabled"))
           ).to_be_visible()  # fmt: skip
    page.get_by_role("link", name="Back to Support bot").click()
    expect(card(page, "Linear").get_by_text("Definition changed")).to_have_count(0)
    assert dialogs == []
