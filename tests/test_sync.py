"""Tool sync end to end: the service, the Sync button, the agent card and ``flask sync-tools``
against real MCP servers."""

from datetime import timedelta

from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, Tool, utcnow
from mcpadmin.services import fanout, sync
from tests.peers.mcp_wrap import generated_tools


def add_connector(app, name, url, **fields):
    with app.app_context():
        secret = fields.pop("secret", None)
        connector = Connector(name=name, url=url, status="connected", **fields)
        if secret:
            connector.secret_enc = seal(secret)
        db.session.add(connector)
        db.session.commit()
        return connector.id


def add_agent(app, name, connector_id=None, enabled=(), secret=None):
    with app.app_context():
        agent = Agent(name=name)
        db.session.add(agent)
        if connector_id:
            connection = AgentConnection(agent=agent, connector_id=connector_id,
                                         enabled_tools=list(enabled))  # fmt: skip
            if secret:
                connection.secret_enc, connection.status = seal(secret), "connected"
            db.session.add(connection)
        db.session.commit()
        return agent.id


def run_sync(app, connector_id, agent_id=None):
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        agent = db.session.get(Agent, agent_id) if agent_id else None
        try:
            return sync.sync_tools(connector, agent)
        except sync.SyncError as exc:
            return exc
        finally:
            db.session.commit()


def tool_id(app, connector_id, name) -> str:
    """The row id of the connector's tool ``name``, as a checkbox or button sends it."""
    with app.app_context():
        return str(db.session.scalar(select(Tool.id).filter_by(connector_id=connector_id,
                                                               name=name)))  # fmt: skip


def tool_names(app, connector_id):
    with app.app_context():
        return db.session.scalars(
            select(Tool.name).where(Tool.connector_id == connector_id).order_by(Tool.name)
        ).all()


def test_sync_stores_tools_and_the_era_and_then_skips_the_probe(app, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    first = run_sync(app, cid)
    assert first.tool_count == 3 and first.requests == 2 and first.added == tool_names(app, cid)
    second = run_sync(app, cid)
    assert second.requests == 1 and second.summary() == "3 tools"
    with app.app_context():
        connector = db.session.get(Connector, cid)
        assert (connector.protocol_era, connector.protocol_version) == ("modern", "2026-07-28")
        assert connector.status == "connected" and connector.last_error is None
        assert connector.last_synced_at is not None
        assert connector.tools_fresh_until > utcnow() + timedelta(minutes=9)
        tool = connector.tools[0]
        assert (tool.title, tool.input_schema["required"]) == ("Tool 0", ["text"])
        assert tool.annotations == {"readOnlyHint": True} and len(tool.definition_hash) == 64


def test_choices_survive_gone_tools_leave_and_changed_ones_are_flagged(app, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid, enabled=["tool_000", "tool_001", "tool_002"])
    tools = generated_tools(4)
    tools[0]["description"] = "Now deletes everything."
    del tools[2]
    modern_peer.set_tools(tools)
    result = run_sync(app, cid)
    assert (result.added, result.changed, result.removed) == (
        ["tool_003"], ["tool_000"], ["tool_002"]
    )  # fmt: skip
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        assert connection.enabled_tools == ["tool_000", "tool_001"]  # tool_003 arrives unchecked
        assert connection.changed_tools == ["tool_000"]
    assert tool_names(app, cid) == ["tool_000", "tool_001", "tool_003"]


def test_failed_sync_keeps_the_previous_tools_and_records_the_error(
    app, modern_peer, dropping_peer
):
    modern_peer.set_tools(generated_tools(2))
    cid = add_connector(app, "Flaky", modern_peer.url)
    run_sync(app, cid)
    with app.app_context():
        db.session.get(Connector, cid).url = dropping_peer.url
        db.session.commit()
    error = run_sync(app, cid)
    assert isinstance(error, sync.SyncError)
    assert tool_names(app, cid) == ["tool_000", "tool_001"]
    with app.app_context():
        connector = db.session.get(Connector, cid)
        assert connector.status == "error"
        assert connector.last_error == str(error)
        assert "closed the connection" in connector.last_error


def test_wrong_bearer_token_is_reported_and_the_right_one_works(app, bearer_peer):
    cid = add_connector(app, "Locked", bearer_peer.url, auth_type="bearer", secret="nope")
    error = run_sync(app, cid)
    assert str(error) == "The server refused the token (401 Unauthorized): check or replace it."
    with app.app_context():
        db.session.get(Connector, cid).secret_enc = seal("peer-token")
        db.session.commit()
    assert run_sync(app, cid).tool_count == 2


def test_no_credential_still_tries_an_unauthenticated_listing(app, bearer_peer, modern_peer):
    cid = add_connector(app, "Open", modern_peer.url, auth_type="bearer",
                        credential_mode="per_agent")  # fmt: skip
    assert run_sync(app, cid).tool_count >= 1
    locked = add_connector(app, "Locked", bearer_peer.url, auth_type="bearer",
                           credential_mode="per_agent")  # fmt: skip
    assert "No agent has connected yet" in str(run_sync(app, locked))


def test_per_agent_api_key_syncs_with_the_agents_own_key(app, api_key_peer):
    cid = add_connector(app, "Keyed", api_key_peer.url, auth_type="api_key_header",
                        credential_mode="per_agent", api_key_header_name="X-Api-Key")  # fmt: skip
    good = add_agent(app, "good", cid, secret="peer-key")
    bad = add_agent(app, "bad", cid, secret="wrong")
    with app.app_context():
        outcomes = fanout.sync_connector(db.session.get(Connector, cid))
        db.session.commit()
    assert [(o.agent, o.ok) for o in outcomes] == [("bad", False), ("good", True)]
    with app.app_context():
        by_agent = {c.agent_id: c for c in db.session.scalars(select(AgentConnection))}
        assert by_agent[good].offered_tools == ["tool_000", "tool_001"]
        assert by_agent[good].last_synced_at is not None and by_agent[good].status == "connected"
        assert by_agent[bad].status == "error" and "403" in by_agent[bad].last_error
        assert by_agent[bad].offered_tools is None
    assert tool_names(app, cid) == ["tool_000", "tool_001"]


def test_sync_button_answers_htmx_with_the_row(app, logged_in, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    response = logged_in.hx_post(f"/connectors/{cid}/sync")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and page.lstrip().startswith(f'<tr id="connector-{cid}"')
    assert "Synced 3 tools (3 new)" in page and '<td data-label="Tools">3</td>' in page
    assert "HX-Request" in response.headers["Vary"]


def test_sync_button_without_htmx_redirects_with_a_flash(app, logged_in, dropping_peer):
    cid = add_connector(app, "Broken", dropping_peer.url)
    response = logged_in.post(f"/connectors/{cid}/sync")
    assert response.status_code == 302
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "Sync of Broken failed" in page and "closed the connection" in page


def test_index_row_offers_a_busy_indicator(app, logged_in, modern_peer):
    add_connector(app, "Docs", modern_peer.url)
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert 'hx-disabled-elt="find button"' in page and "htmx-indicator" in page


def test_remote_text_is_escaped_on_the_connector_page(app, logged_in, modern_peer):
    tools = generated_tools(1)
    tools[0]["description"] = "<script>alert(1)</script>"
    tools[0]["title"] = "<b>bold</b>"
    modern_peer.set_tools(tools)
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    page = logged_in.get(f"/connectors/{cid}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "Input schema" in page


def test_agent_card_flags_a_changed_tool_until_reviewed(app, logged_in, modern_peer):
    modern_peer.set_tools(generated_tools(2))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid, enabled=["tool_001"])
    tools = generated_tools(2, variant=" Changed.")
    modern_peer.set_tools(tools)
    run_sync(app, cid)
    page = logged_in.get(f"/agents/{aid}").get_data(as_text=True)
    assert page.count("Definition changed") == 1
    response = logged_in.hx_post(f"/agents/{aid}/connectors/{cid}/reviewed",
                                 data={"tool": tool_id(app, cid, "tool_001")})  # fmt: skip
    assert "Definition changed" not in response.get_data(as_text=True)


def test_agent_card_sync_uses_the_agents_credential(app, logged_in, api_key_peer):
    cid = add_connector(app, "Keyed", api_key_peer.url, auth_type="api_key_header",
                        credential_mode="per_agent", api_key_header_name="X-Api-Key")  # fmt: skip
    aid = add_agent(app, "good", cid, secret="peer-key")
    response = logged_in.hx_post(f"/agents/{aid}/connectors/{cid}/sync")
    page = response.get_data(as_text=True)
    assert f'id="connector-{cid}"' in page and "Tools good may use (0 of 2)" in page
    assert "Synced Keyed (as good): 2 tools (2 new)." in page


def test_cli_syncs_everything_and_exits_1_when_one_fails(app, runner, modern_peer, dropping_peer):
    modern_peer.set_tools(generated_tools(3))
    add_connector(app, "Good", modern_peer.url)
    add_connector(app, "Bad", dropping_peer.url)
    result = runner.invoke(args=["sync-tools"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "FAILED  Bad: The server closed the connection" in result.output
    assert "    ok  Good: 3 tools (3 new)" in lines
    assert lines[-2] == "1 synced, 0 skipped (fresh), 1 failed."
    assert lines[-1].startswith("Pruned logs: ")  # then the logs are pruned (test_retention)


def test_cli_syncs_one_connector_by_name_and_skips_fresh_ones(app, runner, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    add_connector(app, "Good", modern_peer.url)
    assert runner.invoke(args=["sync-tools", "good"]).exit_code == 0
    before = len(modern_peer.requests())
    result = runner.invoke(args=["sync-tools", "--stale"])  # the peer sets ttlMs = 10 minutes
    assert result.exit_code == 0 and "still fresh; skipped" in result.output
    assert len(modern_peer.requests()) == before
    assert runner.invoke(args=["sync-tools", "Missing"]).exit_code == 1


def test_cli_agent_option_syncs_only_that_agents_connections(app, runner, api_key_peer):
    cid = add_connector(app, "Keyed", api_key_peer.url, auth_type="api_key_header",
                        credential_mode="per_agent", api_key_header_name="X-Api-Key")  # fmt: skip
    add_agent(app, "good", cid, secret="peer-key")
    add_agent(app, "bad", cid, secret="wrong")
    result = runner.invoke(args=["sync-tools", "--agent", "good"])
    assert result.exit_code == 0, result.output
    assert "Keyed (as good)" in result.output and "as bad" not in result.output


def test_saving_an_agents_token_lists_its_tools_at_once(app, logged_in, bearer_peer):
    cid = add_connector(app, "Per agent", bearer_peer.url, auth_type="bearer",
                        credential_mode="per_agent")  # fmt: skip
    with app.app_context():
        agent = Agent(name="Ada")
        db.session.add(agent)
        db.session.commit()
        agent_id = agent.id
    answer = logged_in.hx_post(f"/agents/{agent_id}/connectors/{cid}/secret",
                               data={"secret": "peer-token"})  # fmt: skip
    page = answer.get_data(as_text=True)
    assert "Token saved for Ada on Per agent: 2 tools" in page
    assert page.count('type="checkbox"') == 2
