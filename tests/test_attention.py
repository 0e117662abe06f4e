"""Needs attention: each kind of item made real (a peer refusing a token, call log rows, a
changed definition, a key about to expire), the page, the navigation badge, and what the
list costs to compute."""

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, insert

from mcpadmin import create_app
from mcpadmin.config import ConfigError
from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, CallRecord, Connector, utcnow
from mcpadmin.services import agent_keys, attention
from mcpadmin.services.attention import Kind, Severity
from tests.peers.mcp_wrap import generated_tools
from tests.records_helpers import call_values
from tests.test_sync import add_agent, add_connector, run_sync, tool_id


def items(app, now=None):
    with app.app_context():
        return attention.items(now)


def badge(page: bytes) -> str | None:
    match = re.search(rb'class="nav-count">(\d+)<', page)
    return match.group(1).decode() if match else None


def test_an_empty_install_needs_nobody(app, logged_in):
    page = logged_in.get("/attention/")
    assert page.status_code == 200
    assert b"Nothing needs you" in page.data
    assert badge(page.data) is None and b">Attention<" in page.data


def test_a_shared_token_the_server_refuses_is_listed_with_its_fix(app, logged_in, bearer_peer):
    cid = add_connector(app, "Locked", bearer_peer.url, auth_type="bearer", secret="nope")
    run_sync(app, cid)
    (item,) = items(app)
    assert (item.kind, item.severity) == (Kind.CREDENTIAL, Severity.ERROR)
    assert item.key == f"credential/{cid}/error"
    assert item.text.startswith("Locked (shared credential): Error. The server refused the token")
    page = logged_in.get("/attention/")
    assert badge(page.data) == "1"
    assert b"Credentials to renew or check" in page.data
    assert f'href="/connectors/{cid}">Check and sync</a>'.encode() in page.data
    # The fix: the right token, then a sync; the item is gone.
    with app.app_context():
        db.session.get(Connector, cid).secret_enc = seal("peer-token")
        db.session.commit()
    run_sync(app, cid)
    assert items(app) == []
    assert badge(logged_in.get("/connectors/").data) is None


def test_an_agents_refused_token_links_to_its_card(app, logged_in, bearer_peer):
    cid = add_connector(app, "Per agent", bearer_peer.url, auth_type="bearer",
                        credential_mode="per_agent")  # fmt: skip
    aid = add_agent(app, "Zoë", cid, secret="wrong")
    add_agent(app, "Quiet", cid)  # never connected: nothing to do yet
    run_sync(app, cid, aid)
    (item,) = items(app)
    assert item.key == f"credential/{cid}/agent/{aid}/error"
    assert item.text.startswith("Zoë's credential for Per agent: Error.")
    page = logged_in.get("/attention/").data
    assert f'href="/agents/{aid}#connector-{cid}">'.encode() in page


def test_a_connector_failing_more_calls_than_the_threshold_is_listed(app, logged_in):
    now = utcnow()
    with app.app_context():
        flaky, steady, quiet = (Connector(name=n, url=f"https://{n}.example/mcp")
                                for n in ("flaky", "steady", "quiet"))  # fmt: skip
        db.session.add_all([flaky, steady, quiet])
        db.session.flush()
        rows = []

        def calls(connector, outcome, count, at=now - timedelta(minutes=5)):
            rows.extend(call_values(connector_id=connector.id, connector_name=connector.name,
                                    outcome=outcome, at=at) for _ in range(count))  # fmt: skip

        calls(flaky, "ok", 7)
        calls(flaky, "upstream_down", 2)
        calls(flaky, "upstream_timeout", 1)
        calls(flaky, "refused_not_allowed", 30)  # the agent's doing: not counted
        calls(flaky, "upstream_down", 50, at=now - timedelta(hours=2))  # over
        calls(steady, "ok", 8)
        calls(steady, "tool_error", 10)  # the tool answered: the connector works
        calls(steady, "upstream_down", 2)  # 2 of 20: 10 %
        calls(quiet, "upstream_down", 9)  # fewer calls than ATTENTION_MIN_CALLS
        db.session.execute(insert(CallRecord), rows)
        db.session.commit()
        flaky_id = flaky.id
    (item,) = items(app, now)
    assert (item.kind, item.key) == (Kind.ERROR_RATE, f"error-rate/{flaky_id}")
    assert item.text == "flaky: 3 of 10 calls in the last hour failed (30 %)."
    page = logged_in.get("/attention/").data
    assert f'href="/calls/?connector={flaky_id}">See the failed calls</a>'.encode() in page


def test_a_changed_definition_is_listed_until_it_is_reviewed(app, logged_in, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid, enabled=["tool_000", "tool_001"])
    tools = generated_tools(3)
    tools[0]["description"] = "Now deletes everything."
    tools[2]["description"] = "Changed, but not enabled for bot."
    modern_peer.set_tools(tools)
    run_sync(app, cid)
    (item,) = items(app)
    assert (item.kind, item.severity) == (Kind.REVIEW, Severity.WARNING)
    assert item.key == f"review/{cid}/agent/{aid}/tool_000"
    assert "tool_000 on Docs changed since it was enabled for bot" in item.text
    page = logged_in.get("/attention/").data
    assert f'href="/agents/{aid}#connector-{cid}">Review</a>'.encode() in page
    logged_in.post(f"/agents/{aid}/connectors/{cid}/reviewed",
                   data={"tool": tool_id(app, cid, "tool_000")})  # fmt: skip
    assert items(app) == []


def test_keys_expiring_within_seven_days_are_listed(app, logged_in):
    now = utcnow()
    with app.app_context():
        agent = Agent(name="Triage")
        db.session.add(agent)
        soon, _ = agent_keys.create(agent, "laptop", now + timedelta(days=3, hours=1))
        agent_keys.create(agent, "later", now + timedelta(days=8))
        agent_keys.create(agent, "forever")
        agent_keys.create(agent, "gone", now - timedelta(hours=1))
        revoked, _ = agent_keys.create(agent, "revoked", now + timedelta(days=1))
        agent_keys.revoke(revoked)
        db.session.commit()
        soon_id, aid = soon.id, agent.id
    (item,) = items(app, now)
    assert (item.kind, item.key) == (Kind.KEY_EXPIRING, f"key-expiring/{soon_id}")
    assert item.text.startswith("Key “laptop” of Triage expires in 3 days")
    page = logged_in.get("/attention/").data
    assert f'href="/agents/{aid}#keys">'.encode() in page


def test_items_are_grouped_by_kind_with_stable_keys(app, bearer_peer):
    cid = add_connector(app, "Locked", bearer_peer.url, auth_type="bearer", secret="nope")
    run_sync(app, cid)
    with app.app_context():
        agent = Agent(name="Triage")
        db.session.add(agent)
        agent_keys.create(agent, "laptop", utcnow() + timedelta(days=1))
        db.session.commit()
    first, second = items(app), items(app)
    assert [i.key for i in first] == [i.key for i in second]
    assert [i.kind for i in first] == [Kind.CREDENTIAL, Kind.KEY_EXPIRING]
    with app.app_context():
        assert [h for h, _ in attention.grouped(first)] == [
            "Credentials to renew or check", "Agent keys expiring soon"
        ]  # fmt: skip


def test_the_list_costs_four_statements_however_much_there_is(app):
    """The badge runs on every admin page: a fixed number of statements, whatever the
    number of connectors, connections, calls and keys."""
    now = utcnow()
    with app.app_context():
        token = seal("token")
        connectors = [Connector(name=f"c{n}", url=f"https://c{n}.example/mcp", status="error",
                                last_error="down", credential_mode="per_agent" if n % 2 else
                                "shared", auth_type="bearer", secret_enc=token)
                      for n in range(40)]  # fmt: skip
        agents = [Agent(name=f"a{n}") for n in range(50)]
        db.session.add_all(connectors + agents)
        for agent in agents:
            for connector in connectors[:10]:
                db.session.add(AgentConnection(agent=agent, connector=connector, status="error",
                                               secret_enc=token, enabled_tools=["t"],
                                               changed_tools=["t"]))  # fmt: skip
            agent_keys.create(agent, "k", now + timedelta(days=2))
        db.session.flush()
        rows = [call_values(connector_id=c.id, outcome="upstream_down", at=now)
                for c in connectors for _ in range(20)]  # fmt: skip
        db.session.execute(insert(CallRecord), rows)
        db.session.commit()

        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            db.session.expire_all()
            started = time.perf_counter()
            found = attention.items(now)
            seconds = time.perf_counter() - started
            db.session.expunge_all()  # again, as the next page does: statements compiled
            started = time.perf_counter()
            attention.items(now)
            warm = time.perf_counter() - started
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
    # 20 shared credentials + 250 per-agent ones + 40 error rates + 500 reviews + 50 keys
    assert len(found) == 20 + 250 + 40 + 500 + 50
    assert len(statements) == 8, statements  # four each time
    print(
        f"attention.items: {len(found)} items, 4 statements, {seconds * 1000:.0f} ms "
        f"(then {warm * 1000:.0f} ms)"
    )
    assert seconds < 5  # a shared machine's slowest; see the README for the figures


def test_pages_without_navigation_compute_no_badge(app, logged_in, bearer_peer):
    """An htmx partial has no navigation: the count is computed only where it is shown."""
    cid = add_connector(app, "Locked", bearer_peer.url, auth_type="bearer", secret="nope")
    with app.app_context():
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            logged_in.hx_post(f"/connectors/{cid}/sync")
            partial = list(statements)
            statements.clear()
            logged_in.get("/connectors/")
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
    assert partial and not any("FROM call_log" in s for s in partial)
    assert any("FROM call_log" in s for s in statements)


@pytest.mark.parametrize(
    "setting, value",
    [("ATTENTION_ERROR_RATE", "1.5"), ("ATTENTION_ERROR_RATE", "lots"),
     ("NOTIFY_INTERVAL", "-1"), ("WEBHOOK_RETRY_SECONDS", "30, 0")],
)  # fmt: skip
def test_settings_out_of_range_stop_the_start_with_their_name(tmp_path, setting, value):
    with pytest.raises(ConfigError, match=f"MCPADMIN_{setting}"):
        create_app({setting: value, "AUTO_MIGRATE": False,
                    "SQLALCHEMY_DATABASE_URI": "sqlite://"},
                   instance_path=str(tmp_path))  # fmt: skip
