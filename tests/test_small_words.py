"""Counts read as English ("1 tool", "2 tools") and ``flask sync-tools`` prints its lines in
name order, whatever order the syncs finish in."""

from mcpadmin.extensions import db
from mcpadmin.filters import plural
from mcpadmin.models import Agent, AgentConnection, Connector, Tool
from tests.peers import free_port


def test_plural_says_one_thing_and_many_things():
    assert [plural(n, "tool") for n in (0, 1, 2)] == ["0 tools", "1 tool", "2 tools"]


def test_sync_tools_prints_lines_sorted_by_name_with_the_totals_last(app, runner, slow_peer,
                                                                      modern_peer):  # fmt: skip
    with app.app_context():
        db.session.add_all([
            Connector(name="alpha (slow)", url=slow_peer.url),  # finishes last, 3 s in
            Connector(name="Bravo", url=modern_peer.url),
            Connector(name="charlie (closed port)", url=f"http://127.0.0.1:{free_port()}/mcp"),
        ])  # fmt: skip
        db.session.commit()
    result = runner.invoke(args=["sync-tools"])
    lines = result.output.splitlines()
    assert [line.split(":")[0].split(maxsplit=1)[1] for line in lines[:3]] == [
        "alpha (slow)", "Bravo", "charlie (closed port)",
    ]  # fmt: skip
    assert lines[3] == "2 synced, 0 skipped (fresh), 1 failed."
    assert lines[4].startswith("Pruned logs: ")  # then the logs are pruned (test_retention)
    assert len(lines) == 5 and result.exit_code == 1


def test_choosing_the_only_tool_says_one_tool(app, logged_in):
    with app.app_context():
        agent = Agent(name="Ada")
        connector = Connector(name="Docs", url="https://d.example/mcp", status="connected")
        db.session.add_all([agent, connector])
        db.session.flush()
        tool = Tool(connector_id=connector.id, name="search", description="find")
        db.session.add(tool)
        db.session.commit()
        url = f"/agents/{agent.id}/connectors/{connector.id}/tools"
        checkbox = str(tool.id)  # a checkbox sends its tool's id
    page = logged_in.hx_post(url, data={"tools": [checkbox]}).get_data(as_text=True)
    assert "1 of 1 tool enabled on Docs." in page


def test_one_kept_tool_choice_is_said_in_the_singular(app, logged_in):
    with app.app_context():
        agent = Agent(name="Ada")
        connector = Connector(name="Render", url="https://r.example/mcp", auth_type="bearer",
                              credential_mode="per_agent")  # fmt: skip
        db.session.add_all([agent, connector])
        db.session.flush()
        db.session.add(AgentConnection(agent_id=agent.id, connector_id=connector.id,
                                       enabled_tools=["search"]))  # fmt: skip
        db.session.commit()
        agent_id = agent.id
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    assert "1 tool choice kept: it applies again once a token is saved." in page


def test_lockout_of_one_minute_says_one_minute(app, client):
    app.config.update(LOGIN_MAX_FAILURES=1, LOGIN_LOCKOUT_SECONDS=60)
    client.post("/login", data={"username": "nobody", "password": "wrong password"})
    page = client.post("/login", data={"username": "nobody", "password": "wrong password"})
    assert page.status_code == 429
    assert "Try again in 1 minute." in page.get_data(as_text=True)
