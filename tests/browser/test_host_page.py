"""Issue 21, defect 5, in Chromium: ``localhost`` reaches a server that printed 127.0.0.1, and a
refused Host gets a page styled by the app's stylesheet that names the address to use."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, start_live_server
from tests.peers import free_port


@pytest.fixture
def tab(chromium):
    """A tab that may open any name of this machine (the shared ``page`` fixture allows
    127.0.0.1 only)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def public_server(database_uri, tmp_path):
    """The production recipe with a public address that is not this machine's name."""
    port = free_port()
    env = {"MCPADMIN_PUBLIC_BASE_URL": f"http://admin.example:{port}"}
    server = start_live_server(database_uri, str(tmp_path / "instance"), port=port, env=env)
    yield server
    server.stop()


def test_localhost_opens_the_app_at_the_address_it_printed(tab, app, live_server):
    port = live_server.url.rsplit(":", 1)[1]
    tab.goto(f"http://localhost:{port}/login")
    expect(tab).to_have_url(f"{live_server.url}/login")
    expect(tab.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_refused_host_gets_a_styled_page_naming_the_address(tab, public_server):
    answer = tab.goto(public_server.url + "/connectors/")
    assert answer.status == 400
    expect(tab.get_by_role("heading", name="Unknown host")).to_be_visible()
    link = tab.get_by_role("link", name=public_server.url.replace("127.0.0.1", "admin.example"))
    expect(link).to_be_visible()
    expect(tab.get_by_text("MCPADMIN_EXTRA_HOSTS", exact=False)).to_be_visible()
    # app.css applied: the top bar's dark background and the card around the message.
    expect(tab.locator("header.topbar")).to_have_css("background-color", "rgb(17, 24, 39)")
    expect(tab.locator(".card")).to_have_css("border-top-style", "solid")
    assert axe_violations(tab) == []
