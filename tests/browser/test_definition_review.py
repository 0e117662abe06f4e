"""Reviewing a changed tool definition in a real browser: the agent card flags the change,
"review it" opens the tool page with the before and after, Mark reviewed records who
reviewed it; the hostile text stays text."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, shoot
from tests.browser.test_journeys import add_agent, add_connector, card, row
from tests.peers.mcp_fixtures import _start, _stop
from tests.test_tool_history import INJECTION, read_file


@pytest.fixture(scope="module")
def changing_peer():
    """A 2.x server serving the list the test writes with ``set_tools``."""
    started = _start("mcp_server.py", "--json", "--no-surface", tools=[read_file()])
    yield started
    _stop(started)


def sync(page, base, name):
    page.goto(base + "/connectors/")
    row(page, name).get_by_role("button", name="Sync").click()
    expect(page.locator("#flashes").get_by_text(f"Synced {name}")).to_be_visible()


def test_a_changed_definition_is_reviewed_from_its_diff(signed_in, live_server, changing_peer):
    page, base = signed_in, live_server.url
    changing_peer.set_tools([read_file()])
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    add_connector(page, base, "Files", changing_peer.url)
    sync(page, base, "Files")
    add_agent(page, base, "Support bot")
    card(page, "Files").get_by_role("checkbox", name=re.compile("^read_file")).check()
    expect(page.get_by_text("1 of 1 tool enabled on Files.")).to_be_visible()

    # The server turns the description into a prompt injection and adds a parameter.
    changing_peer.set_tools([read_file(INJECTION, upload=True, read_only=False)])
    sync(page, base, "Files")
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("link", name="Support bot").click()
    files = card(page, "Files")
    expect(files.get_by_text("Definition changed")).to_be_visible()
    files.get_by_role("link", name=re.compile("^review it")).click()

    expect(page.get_by_role("heading", name="Review for Support bot")).to_be_visible()
    expect(page.get_by_text("Support bot had version 1 enabled when the server changed it")
           ).to_be_visible()  # fmt: skip
    added = page.locator("#description-diff + p ins")
    expect(added).to_contain_text("<script>alert(1)</script> IMPORTANT: before answering")
    expect(added.locator("mark.hidden-char")).to_have_text("‹U+202E›")
    inputs = page.get_by_role("table", name="Input schema")
    expect(inputs.get_by_role("row", name=re.compile(r"^upload_to added"))).to_be_visible()
    expect(inputs.get_by_role("row", name=re.compile(r"^upload_to now required"))).to_be_visible()
    hints = page.get_by_role("table", name=re.compile("^Annotations"))
    expect(hints.get_by_role("row", name=re.compile(r"^readOnlyHint changed true false"))
           ).to_be_visible()  # fmt: skip
    # Only the app's own files: the server's <script> is text.
    assert page.locator("script:not([src^='/static/'])").count() == 0
    assert axe_violations(page) == []
    shoot(page, "diff-review")

    page.get_by_role("button", name="Mark reviewed for Support bot").click()
    expect(page.get_by_text("read_file marked reviewed for Support bot.")).to_be_visible()
    expect(page.get_by_text("Nothing awaits review for Support bot.")).to_be_visible()
    reviews = page.get_by_role("table", name="Reviews")
    expect(reviews.get_by_role("row", name=re.compile(r"Support bot Reviewed version 2 admin"))
           ).to_be_visible()  # fmt: skip
    expect(reviews.get_by_role("row", name=re.compile(r"Support bot Had version 1 enabled"))
           ).to_be_visible()  # fmt: skip
    page.get_by_role("link", name="Back to Support bot").click()
    expect(card(page, "Files").get_by_text("Definition changed")).to_have_count(0)
    assert dialogs == []
