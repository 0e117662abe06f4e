"""Issue 23's member and auditor journeys in a real browser, against the app under gunicorn,
the OAuth peer (its consent page, and its MCP endpoint behind OAuth) and the official Python
SDK client calling through the gateway:

- an operator makes a per-agent OAuth connector available to members; a member creates an
  agent, connects their own account, ticks a tool and creates a key, and the SDK client calls
  the tool with that key;
- another member does not see the agent, and its address answers the 403 page;
- an auditor reads the call on the Calls page and in its CSV export, sees no change buttons
  on the connector and agent pages, and a forged POST is refused.
"""

import csv
import io
import json
import re
from html import unescape
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AuditEvent, Connector
from mcpadmin.services.audit import Action
from tests.browser.conftest import axe_violations, settle, shoot
from tests.browser.test_gateway_page import KEY
from tests.browser.test_journeys import card, consent_peer  # noqa: F401
from tests.conftest import PASSWORD
from tests.gateway_helpers import run_async

SOMEONE_ELSES = "This agent belongs to someone else, so you cannot open or change it."
# Buttons and links that change a connector or an agent (an auditor must see none).
CHANGES = re.compile(
    r"^(Edit|Sync tools|Sync|Delete.*|Connect|Reconnect|Disconnect|Create key|Revoke key.*|"
    r"Save agent|Enable all.*|Disable all.*|Add agent|Add connector|Try a tool.*)$"
)


def sign_in(page, base, name):
    page.goto(base + "/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}.")).to_be_visible()


def sign_out(page):
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("Signed out.")).to_be_visible()


def changes_offered(page) -> list[str]:
    """The names of the buttons and links on the page that would change something."""
    settle(page)  # the usage section arrives over htmx
    names = (
        page.locator("main")
        .locator("a, button, input[type=submit]")
        .evaluate_all("controls => controls.map((c) => (c.innerText || c.value || '').trim())")
    )
    return [n for n in names if CHANGES.match(n)]


def call_echo(base, agent_id, key) -> str:
    """Call the agent's ``peer__echo`` with the official SDK client; its text."""

    async def call():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        url = f"{base}/agents/{agent_id}/mcp"
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == ["peer__echo"]
            return await client.call_tool("peer__echo", {"text": "hello from my laptop"})

    result = run_async(call)
    assert not result.is_error, result
    return result.content[0].text


def test_member_runs_their_own_agent_which_others_cannot_see_and_an_auditor_reads(
    page,
    live_server,
    consent_peer,  # noqa: F811
    app,
    people,
    problems,
):
    base = live_server.url
    # The 403 page the second member is shown is a document answered 403.
    problems.allow.append(r"status of 403")

    # (a) An operator makes a per-agent OAuth connector available to members.
    sign_in(page, base, "operator")
    page.goto(base + "/connectors/new")
    page.get_by_label("Name").fill("Peer")
    page.get_by_label("MCP server URL").fill(consent_peer.mcp_url)
    page.get_by_label("Authentication").select_option("oauth")
    settle(page)
    page.get_by_label("Per agent", exact=False).check()
    settle(page)
    page.get_by_label("Available to members").check()
    page.get_by_role("button", name="Create connector").click()
    expect(page.get_by_text("Connector Peer created.")).to_be_visible()
    sign_out(page)

    # The member creates an agent, connects their own account, ticks a tool, creates a key.
    sign_in(page, base, "member")
    expect(page).to_have_url(base + "/agents/")
    page.goto(base + "/agents/new")
    page.get_by_label("Name").fill("Laptop bot")
    expect(page.get_by_label("Owner")).to_have_count(0)
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_text("Agent Laptop bot created.")).to_be_visible()
    page.wait_for_load_state("load")
    agent_url = page.url.split("?")[0]
    peer = card(page, "Peer")
    peer.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name=re.compile("Authorize"))).to_be_visible()
    page.get_by_role("button", name="Approve").click()
    connected = "Connected Laptop bot on Peer: 3 tools available."
    expect(card(page, "Peer").get_by_text(connected)).to_be_visible()
    page.wait_for_load_state("load")  # htmx posts the tick once it has loaded
    card(page, "Peer").get_by_role("checkbox", name=re.compile("echo")).check()
    expect(page.get_by_text("1 of 3 tools enabled on Peer.")).to_be_visible()
    settle(page)
    keys = page.locator("#keys")
    keys.get_by_label("Label").fill("laptop")
    keys.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()
    key = page.locator("#new-key-value").inner_text().strip()
    assert KEY.fullmatch(key)
    settle(page)
    with app.app_context():
        agent = db.session.scalar(select(Agent).where(Agent.name == "Laptop bot"))
        agent_id, owner = agent.id, agent.owner.username
    assert owner == "member"
    assert agent_url == f"{base}/agents/{agent_id}"

    # The official Python SDK client calls the tool through the gateway with that key.
    assert call_echo(base, agent_id, key) == "hello from my laptop"

    page.reload()
    assert axe_violations(page) == []
    shoot(page, "member-agent")
    page.goto(base + "/agents/")
    expect(page.get_by_role("link", name="Laptop bot")).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "member-agents")
    sign_out(page)

    # (b) Another member does not see it, and its address answers the 403 page.
    sign_in(page, base, "member2")
    page.goto(base + "/agents/")
    expect(page.get_by_role("link", name="Laptop bot")).to_have_count(0)
    answer = page.goto(agent_url)
    assert answer.status == 403
    expect(page.get_by_text(SOMEONE_ELSES)).to_be_visible()
    sign_out(page)

    # (c) An auditor reads the call on the Calls page and in the CSV export...
    sign_in(page, base, "auditor")
    page.get_by_role("link", name="Calls", exact=True).click()
    table = page.locator("table.records tbody")
    for _ in range(20):  # the log is written within a second of the call
        if table.locator("tr").count() == 1:
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(table.locator("tr")).to_have_count(1)
    expect(table).to_contain_text("peer__echo")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["agent_name"], r["tool"], r["key_label"]) for r in rows] == [
        ("Laptop bot", "peer__echo", "laptop")
    ]
    assert key not in Path(download.value.path()).read_text()

    # ... finds the member's agent by its owner ...
    page.goto(base + "/agents/")
    page.get_by_label("Owner").select_option(label="member")
    page.get_by_role("button", name="Filter").click()
    expect(
        page.get_by_role("row", name=re.compile("Laptop bot")).get_by_text("member")
    ).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "agents-owner-filter")
    page.get_by_label("Owner").select_option(label="Me")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No agents match")).to_be_visible()

    # ... sees nothing that would change the connector or the agent ...
    with app.app_context():
        connector_id = db.session.scalar(select(Connector.id))
    page.goto(f"{base}/connectors/{connector_id}")
    expect(page.get_by_text("Members may use this connector")).to_be_visible()
    assert axe_violations(page) == []
    shoot(page, "auditor-connector")
    assert changes_offered(page) == []
    page.goto(agent_url)
    expect(page.get_by_role("heading", name="Laptop bot")).to_be_visible()
    assert changes_offered(page) == []

    # ... and a forged POST is refused, with a sentence and an audit event.
    token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRFToken"]
    forged = page.request.post(f"{agent_url}/keys", form={"csrf_token": token, "label": "mine"})
    assert forged.status == 403
    assert "Only owners, operators and an agent's own member can change it." in unescape(
        forged.text()
    )
    with app.app_context():
        refused = db.session.scalar(
            select(AuditEvent).filter_by(action=Action.ACCESS_REFUSED, admin_name="auditor")
        )
        assert refused.details["path"] == f"/agents/{agent_id}/keys"
        assert [k.label for k in db.session.get(Agent, agent_id).keys] == ["laptop"]
