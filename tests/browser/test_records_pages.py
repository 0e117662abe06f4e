"""The Calls and Audit pages and the usage charts in a real browser: filters, the pager, the
exports as downloads, and axe on each (rows written straight to the tables)."""

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from playwright.sync_api import expect

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AuditEvent, Connector
from tests.browser.conftest import axe_violations, shoot
from tests.browser.test_gateway_page import KEY
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector
from tests.records_helpers import call, event, many_calls


@pytest.fixture
def records(app):
    """Two agents, a connector, calls of both agents today (one failed) and audit events."""
    now = datetime.now(UTC).replace(microsecond=0)
    with app.app_context():
        triage, reporter = Agent(name="Triage bot"), Agent(name="Reporter")
        weather = Connector(name="Weather", url="https://weather.example/mcp")
        db.session.add_all([triage, reporter, weather])
        db.session.flush()
        triage_calls = [
            dict(at=now - timedelta(days=i % 4, minutes=10 + i), total_ms=ms, upstream_ms=ms - 2,
                 request_id=f"triage{i}")
            for i, ms in enumerate((12, 15, 18, 22, 40, 95, 400))
        ] + [
            dict(at=now - timedelta(minutes=5), outcome="upstream_down", total_ms=3000,
                 upstream_ms=None, error="connection refused by weather.example",
                 request_id="failed1"),
        ]  # fmt: skip
        for values in sorted(triage_calls, key=lambda v: v["at"]):  # ids follow time
            call(agent_id=triage.id, agent_name="Triage bot", connector_id=weather.id, **values)
        call(at=now - timedelta(minutes=1), agent_id=reporter.id, agent_name="Reporter",
             tool="news__headlines", connector_name="News", outcome="refused_not_allowed",
             error="=cmd|' /C calc'!A0", request_id="reporter1")  # fmt: skip
        event(at=now - timedelta(hours=2), action="auth.sign_in_failed", admin_name="mallory",
              target_type=None, target_id=None, target_name=None, details=None)  # fmt: skip
        event(at=now - timedelta(hours=1), target_id=weather.id)
        event(at=now, action="agent.created", target_type="agent", target_id=triage.id,
              target_name="Triage bot", details={"name": "Triage bot"})  # fmt: skip
        db.session.commit()
        return {"triage": triage.id, "weather": weather.id}


def test_calls_page_filters_pages_and_exports(signed_in, live_server, records, app):
    page = signed_in
    page.get_by_role("link", name="Calls", exact=True).click()
    expect(page.get_by_role("heading", name="Calls")).to_be_visible()
    table = page.locator("table.records tbody")
    expect(table.locator("tr")).to_have_count(9)
    expect(table.locator("tr").first).to_contain_text("Refused: tool not allowed")
    assert axe_violations(page) == []
    shoot(page, "calls")

    page.get_by_label("Agent").select_option(label="Triage bot")
    page.get_by_label("Outcome").select_option(label="Upstream down")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tr")).to_have_count(1)
    expect(table).to_contain_text("connection refused by weather.example")
    expect(page.get_by_label("Outcome")).to_have_value("upstream_down")

    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    assert re.fullmatch(r"mcpadmin-calls-\d{8}T\d{6}Z\.csv", download.value.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["request_id"] for r in rows] == ["failed1"]

    page.get_by_role("link", name="Clear filters").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON Lines").click()
    lines = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert len(lines) == 9
    reporter = next(r for r in lines if r["request_id"] == "reporter1")
    assert reporter["error"] == "=cmd|' /C calc'!A0"  # JSON keeps it as it is; CSV neutralises


def test_calls_page_pager_and_range(signed_in, live_server, app, problems):
    problems.allow.append(r"status of 400")  # the page with a bad range is answered 400
    with app.app_context():
        many_calls(120, start=datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    page = signed_in
    page.goto(live_server.url + "/calls/")
    page.get_by_role("link", name="Older →").click()
    page.get_by_role("link", name="Older →").click()
    expect(page.locator("table.records tbody tr")).to_have_count(20)
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    page.get_by_role("link", name="← Newer").click()
    expect(page.locator("table.records tbody tr")).to_have_count(50)

    page.goto(live_server.url + "/calls/")
    page.get_by_label("From (UTC)").fill("2026-11-20T11:00")
    page.get_by_label("To (UTC)").fill("2026-11-20T10:00")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("The range ends before it starts")
    assert axe_violations(page) == []
    page.get_by_label("To (UTC)").fill("2026-11-20T11:29")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.records tbody tr")).to_have_count(30)


def test_audit_page_filters_and_exports(signed_in, live_server, records):
    page = signed_in
    page.get_by_role("link", name="Audit", exact=True).click()
    table = page.locator("table.records tbody")
    expect(table.locator("tr")).to_have_count(4)  # the three above and this sign-in
    expect(table).to_contain_text("auth.signed_in")
    expect(table).to_contain_text("url: https://old.example/mcp → https://new.example/mcp")
    assert axe_violations(page) == []
    shoot(page, "audit")

    page.get_by_label("Action").select_option("auth.sign_in_failed")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tr")).to_have_count(1)
    expect(table).to_contain_text("mallory")
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON Lines").click()
    assert download.value.suggested_filename.endswith(".jsonl")
    assert [
        json.loads(x)["admin_name"] for x in Path(download.value.path()).read_text().splitlines()
    ] == ["mallory"]


def test_empty_pages_are_accessible(signed_in, live_server, app):
    with app.app_context():  # signing in was the first event
        db.session.execute(db.delete(AuditEvent))
        db.session.commit()
    for path, text in (("/calls/", "No calls yet"), ("/audit/", "Nothing recorded yet")):
        signed_in.goto(live_server.url + path)
        expect(signed_in.get_by_text(text)).to_be_visible()
        assert axe_violations(signed_in) == [], path


def test_agent_page_shows_usage_charts(signed_in, live_server, records):
    page = signed_in
    page.goto(live_server.url + f"/agents/{records['triage']}")
    usage = page.locator("section.usage")
    expect(usage.locator("svg[role=img]")).to_have_count(3)
    expect(usage.get_by_role("img", name="Calls per day")).to_be_visible()
    expect(usage.get_by_role("img", name="Latency per day (p50 and p95)")).to_be_visible()
    expect(usage).to_contain_text("8 calls, 1 not OK (12.5 %)")
    expect(usage.locator("table.failures")).to_contain_text("connection refused by weather.example")
    usage.get_by_text("The numbers, day by day").click()
    expect(usage.locator(".usage-numbers table tbody tr")).to_have_count(14)
    usage.scroll_into_view_if_needed()
    assert axe_violations(page) == []
    shoot(page, "agent-usage")
    usage.get_by_role("link", name="All calls of this agent").click()
    expect(page.locator("table.records tbody tr")).to_have_count(8)
    expect(page.get_by_label("Agent")).to_have_value(str(records["triage"]))


def test_connector_page_shows_usage_charts(signed_in, live_server, records):
    page = signed_in
    page.goto(live_server.url + f"/connectors/{records['weather']}")
    expect(page.locator("section.usage svg[role=img]")).to_have_count(3)
    assert axe_violations(page) == []
    shoot(page, "connector-usage")


@pytest.fixture(scope="module")
def weather_peer():
    from tests.peers.mcp_fixtures import _start, _stop

    peer = _start("mcp_server.py", "--call-tools", "--tools", "0")
    yield peer
    _stop(peer)


def test_a_call_made_with_the_sdk_shows_on_the_calls_page_and_the_agent_page(
    signed_in, live_server, app, weather_peer
):
    """End to end: a key made on the page, the official SDK client calling through the
    gateway (one call that works, one refused), then the operator reading both calls."""
    page = signed_in
    with app.app_context():
        weather = synced_connector(weather_peer.url, "Weather")
        agent, _ = agent_with_tools([weather], name="Triage bot",
                                    enabled={"Weather": ["weather"]})  # fmt: skip
        agent_id = agent.id
    page.goto(f"{live_server.url}/agents/{agent_id}")
    keys = page.locator("#keys")
    keys.get_by_label("Label").fill("ci")
    keys.get_by_role("button", name="Create key").click()
    key = page.locator("#keys").get_by_text(KEY).first.inner_text()

    async def calls():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key.strip()}"})
        url = f"{live_server.url}/agents/{agent_id}/mcp"
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()
            worked = await client.call_tool("weather__weather", {"city": "Oslo"})
            with pytest.raises(MCPError, match="Unknown tool") as refused:
                await client.call_tool("weather__count", {"to": 2})
            return worked, refused.value

    worked, refused = run_async(calls)
    assert not worked.is_error
    request_id = re.search(r"\(request ([0-9a-f]{16})\)", str(refused)).group(1)
    page.goto(live_server.url + "/calls/")
    table = page.locator("table.records tbody")
    for _ in range(20):  # the log is written within a second of the call
        if table.locator("tr").count() == 2:
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(table.locator("tr")).to_have_count(2)
    expect(table.locator("tr").first).to_contain_text("Refused: tool not allowed")
    expect(table.locator("tr").nth(1)).to_contain_text("weather__weather")
    expect(table.locator("tr").nth(1)).to_contain_text("OK")
    expect(table.locator("tr").first).to_contain_text(request_id)  # as the agent was told
    expect(table).to_contain_text("ci")  # the key's label, never the key
    assert key.strip() not in page.content()
    page.goto(f"{live_server.url}/agents/{agent_id}")
    expect(page.locator("section.usage svg[role=img]")).to_have_count(3)
    expect(page.locator("main")).to_contain_text("weather__count")  # the last failures
