"""Tool names that look alike: every name outside the spec's tool-name rule is flagged where
it is shown, invisible characters and blanks are shown as markers, and each checkbox and
"Mark reviewed" button identifies exactly one tool (by row id: browsers rewrite line breaks in
form values, so names cannot be values)."""

import re

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.filters import nonstandard_name, tool_name
from mcpadmin.models import AgentConnection
from mcpadmin.protocol import mcp
from tests.peers.mcp_fixtures import _start, _stop
from tests.peers.mcp_wrap import generated_tools
from tests.test_sync import add_agent, add_connector, run_sync, tool_id

# Eight names that render like delete_repo, and the marker each must show.
LOOKALIKES = {
    "delete\u00a0repo": "U+00A0",
    "delete_\u034frepo": "U+034F",
    "delete_repo\u3164": "U+3164",
    "delete_repo\u2800": "U+2800",
    "delete_repo\ufe0f": "U+FE0F",
    "delete\trepo": "U+0009",
    "delete  repo": "U+0020",
    "delete_repo ": "U+0020",
}
CRLF, LF = "delete\r\nrepo", "delete\nrepo"


@pytest.fixture(scope="module")
def peer():
    """A 2.x server in JSON mode serving the list the test writes with ``set_tools``."""
    server = _start("mcp_server.py", "--json", tools=generated_tools(1))
    yield server
    _stop(server)


def tool(name):
    return {"name": name, "description": "Deletes a repository.",
            "inputSchema": {"type": "object", "properties": {}}}  # fmt: skip


def synced(app, peer, names) -> int:
    peer.set_tools([tool(n) for n in names])
    connector_id = add_connector(app, "Lookalikes", peer.url)
    run_sync(app, connector_id)
    return connector_id


def rows(page: str) -> dict[str, str]:
    """Each ``<li id="tool-N">`` of the connector page's catalog, by id."""
    return dict(re.findall(r'<li id="tool-(\d+)">(.*?)</li>', page, re.S))


def test_every_lookalike_of_a_tool_name_is_flagged_and_reads_differently(app, logged_in, peer):
    connector_id = synced(app, peer, ["delete_repo", *LOOKALIKES])
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    shown = rows(page)
    assert len(shown) == 9
    plain = shown[tool_id(app, connector_id, "delete_repo")]
    assert "Hidden characters" not in plain and "Non-standard" not in plain
    headings = {plain.split("</strong>")[0]}
    for name, code in LOOKALIKES.items():
        row = shown[tool_id(app, connector_id, name)]
        assert "Hidden characters" in row, name
        assert f"‹{code}›" in row, name
        headings.add(row.split("</strong>")[0])
    assert len(headings) == 9  # no two headings read the same


def test_a_name_outside_the_tool_name_rule_is_flagged_on_the_agent_card(app, logged_in, peer):
    connector_id = synced(app, peer, ["user/profile", "créer_dépôt", "ok_name"])
    agent_id = add_agent(app, "bot", connector_id)
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    assert page.count("Non-standard name") == 2


def test_tool_name_rule_is_the_specs_pattern_exactly():
    assert mcp.is_standard_tool_name("admin.tools.list-v2_X")
    assert mcp.is_standard_tool_name("a" * 128) and not mcp.is_standard_tool_name("a" * 129)
    for name in ("delete_repo\n", "", "user/profile", "delete repo", *LOOKALIKES):
        assert not mcp.is_standard_tool_name(name) and nonstandard_name(name), repr(name)


def test_tool_name_filter_marks_blanks_and_escapes_the_rest():
    assert (
        tool_name("a b<i>")
        == 'a<mark class="hidden-char" title="hidden character U+0020">‹U+0020›</mark>b&lt;i&gt;'
    )  # noqa: E501
    assert tool_name("plain_name") == "plain_name" and tool_name(None) == ""


def test_tools_whose_names_differ_only_in_line_breaks_have_a_checkbox_each(app, logged_in, peer):
    connector_id = synced(app, peer, [CRLF, LF])
    agent_id = add_agent(app, "bot", connector_id)
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    values = re.findall(r'name="tools" value="([^"]*)"', page)
    crlf, lf = tool_id(app, connector_id, CRLF), tool_id(app, connector_id, LF)
    assert sorted(values) == sorted([crlf, lf])

    url = f"/agents/{agent_id}/connectors/{connector_id}/tools"
    logged_in.hx_post(url, data={"tools": [crlf]})
    assert enabled(app, agent_id) == [CRLF]
    logged_in.hx_post(url, data={"tools": [lf]})
    assert enabled(app, agent_id) == [LF]


def test_mark_reviewed_clears_only_the_tool_it_belongs_to(app, logged_in, peer):
    connector_id = synced(app, peer, [CRLF, LF])
    agent_id = add_agent(app, "bot", connector_id, enabled=[CRLF, LF])
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=agent_id))
        connection.changed_tools = sorted([CRLF, LF])
        db.session.commit()
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    buttons = re.findall(r'name="tool" value="([^"]*)"', page)
    lf = tool_id(app, connector_id, LF)
    assert lf in buttons and len(set(buttons)) == 2

    response = logged_in.hx_post(f"/agents/{agent_id}/connectors/{connector_id}/reviewed",
                                 data={"tool": lf})  # fmt: skip
    assert response.status_code == 200
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=agent_id))
        assert connection.changed_tools == [CRLF]


def test_mark_reviewed_for_a_tool_the_connector_no_longer_has_shows_the_current_card(
    app, logged_in, peer
):
    connector_id = synced(app, peer, ["one"])
    agent_id = add_agent(app, "bot", connector_id, enabled=["one"])
    response = logged_in.hx_post(f"/agents/{agent_id}/connectors/{connector_id}/reviewed",
                                 data={"tool": "one"})  # fmt: skip
    assert response.status_code == 200
    assert "no longer offered" in response.get_data(as_text=True)


def enabled(app, agent_id):
    with app.app_context():
        return db.session.scalar(select(AgentConnection).filter_by(agent_id=agent_id)).enabled_tools
