"""The agent page's gateway parts in a real browser: create a key, copy it and the client
configuration, revoke it; accessible throughout."""

import json
import re

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_journeys import add_agent
from tests.gateway_helpers import run_async

KEY = re.compile(r"mcpa_[a-z2-7]{24}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def agent_page(signed_in, live_server):
    """The page of a new agent, with the clipboard open to the page."""
    signed_in.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=live_server.url
    )
    add_agent(signed_in, live_server.url, "Triage bot")
    return signed_in


def clipboard(page) -> str:
    # A function, not an expression: the page's CSP refuses eval().
    return page.evaluate("() => navigator.clipboard.readText()")


def create_key(page, label):
    keys = page.locator("#keys")
    keys.get_by_label("Label").fill(label)
    keys.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()
    settle(page)


def test_new_key_is_shown_once_and_copied(agent_page, live_server):
    page = agent_page
    create_key(page, "laptop")
    key = page.locator("#new-key-value").inner_text()
    assert KEY.fullmatch(key)
    copy = page.locator(".new-key .copy-row button")
    expect(copy).to_have_accessible_name("Copy the new key")
    expect(copy).to_be_focused()  # the panel asks for attention where the work is
    copy.click()
    expect(copy).to_have_text(re.compile("^Copied"))
    expect(page.locator("#copy-status")).to_have_text("Copied")
    assert clipboard(page) == key

    page.get_by_text("Client configuration with this key").click()
    page.get_by_role("button", name="Copy the mcpServers entry with the key").click()
    entry = json.loads(clipboard(page))["mcpServers"]["triage-bot"]
    assert entry["headers"] == {"Authorization": f"Bearer {key}"}
    assert re.fullmatch(re.escape(live_server.url) + r"/agents/\d+/mcp", entry["url"])
    row = page.locator("#keys tbody tr", has_text="laptop")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("never")
    assert axe_violations(page) == []
    shoot(page, "agent-gateway-new-key")

    page.reload()
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    assert key.split("_", 2)[2] not in page.content()
    expect(page.locator("#new-key-value")).to_have_count(0)


def test_endpoint_url_is_copied(agent_page):
    page = agent_page
    url = page.locator("#endpoint-url").inner_text()
    page.get_by_role("button", name="Copy the endpoint URL").click()
    assert clipboard(page) == url
    page.get_by_text("Client configuration", exact=True).click()
    page.get_by_role("button", name="Copy the Python code").click()
    code = clipboard(page)
    assert f'URL = "{url}"' in code and 'KEY = "<your key>"' in code


def test_revoke_asks_then_keeps_the_key_listed_greyed(agent_page):
    page = agent_page
    create_key(page, "old laptop")
    create_key(page, "new laptop")
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.get_by_role("button", name="Revoke key old laptop").click()
    expect(page.get_by_text("Key old laptop of Triage bot revoked")).to_be_visible()
    settle(page)
    assert asked and asked[0].startswith("Revoke the key “old laptop” of Triage bot?")
    old = page.locator("#keys tbody tr", has_text="old laptop")
    expect(old).to_contain_text("Revoked")
    expect(old).to_have_class("key-revoked")
    expect(page.locator("#keys tbody tr", has_text="new laptop")).to_contain_text("Active")
    expect(page.get_by_role("button", name="Revoke key old laptop")).to_have_count(0)
    assert axe_violations(page) == []
    shoot(page, "agent-gateway-keys")


def test_revoke_dismissed_changes_nothing(agent_page):
    page = agent_page
    create_key(page, "laptop")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke key laptop").click()
    expect(page.locator("#keys tbody tr", has_text="laptop")).to_contain_text("Active")


def test_key_form_errors_show_in_place(agent_page):
    page = agent_page
    keys = page.locator("#keys")
    keys.get_by_label("Expires").select_option("date")
    keys.get_by_label("Label").fill("ci")
    keys.get_by_role("button", name="Create key").click()
    expect(keys.get_by_text("Choose the day the key expires.")).to_be_visible()
    assert axe_violations(page) == []


def test_last_used_changes_after_the_agent_connects_with_the_copied_configuration(agent_page):
    page = agent_page
    create_key(page, "ci")
    page.get_by_text("Client configuration with this key").click()
    page.get_by_role("button", name="Copy the mcpServers entry with the key").click()
    entry = json.loads(clipboard(page))["mcpServers"]["triage-bot"]
    row = page.locator("#keys tbody tr", has_text="ci")
    expect(row).to_contain_text(re.compile(r"just now\s+never\s+never"))  # created, used

    async def connect():
        headers = entry["headers"]
        http = httpx2.AsyncClient(headers=headers)
        async with http, Client(streamable_http_client(entry["url"], http_client=http)) as client:
            return await client.list_tools()

    assert run_async(connect).tools == []
    page.reload()
    row = page.locator("#keys tbody tr", has_text="ci")
    expect(row).to_contain_text(re.compile(r"just now\s+just now\s+never"))  # created, used
    shoot(page, "agent-key-used")
