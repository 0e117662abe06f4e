"""Tool definitions written by a hostile MCP server (the SDK's server serving whatever list a
test writes): markup and template syntax stay text on the page, hidden characters are shown,
long text is cut at storage, too many tools stop the sync, duplicate names are reported."""

import pytest
from flask import render_template_string
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.filters import remote_text, suspicious
from mcpadmin.models import Connector, Tool
from mcpadmin.protocol import mcp
from mcpadmin.services import catalog, sync
from tests.peers.mcp_fixtures import _start, _stop
from tests.peers.mcp_wrap import generated_tools
from tests.test_sync import add_connector, run_sync, tool_names

RLO, ZWSP = "\u202e", "\u200b"


@pytest.fixture(scope="module")
def hostile_peer():
    """A 2.x server in JSON mode serving the list the test writes with ``set_tools`` (tools
    only: the sync messages are the tools')."""
    peer = _start("mcp_server.py", "--json", "--no-surface", tools=generated_tools(1))
    yield peer
    _stop(peer)


def tool(name, description="", **fields):
    return {"name": name, "description": description,
            "inputSchema": {"type": "object", "properties": {}}, **fields}  # fmt: skip


def stored(app, connector_id, name) -> Tool:
    with app.app_context():
        row = db.session.scalar(select(Tool).filter_by(connector_id=connector_id, name=name))
        db.session.expunge(row)
        return row


def test_markup_and_template_syntax_in_tools_stay_text_on_the_connector_page(
    app, logged_in, hostile_peer
):
    hostile_peer.set_tools([
        tool("<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
             title="{{7*7}}{% print 'ssti' %}"),
        tool("links", "[click](javascript:alert(1)) <a href=\"javascript:alert(2)\">x</a>",
             inputSchema={"type": "object", "properties": {
                 "q": {"type": "string", "description": "</pre><script>alert(3)</script>"}}}),
    ])  # fmt: skip
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    assert isinstance(run_sync(app, connector_id), sync.SyncResult)
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert 'href="javascript:' not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "{{7*7}}" in page and "ssti" not in page.replace("print &#39;ssti&#39;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the name, escaped


def test_hidden_characters_are_escaped_into_json_in_the_schema_view(app, logged_in, hostile_peer):
    schema = {"type": "object", "properties": {f"a{RLO}b": {"type": "string"}}}
    hostile_peer.set_tools([tool("bidi", "x", inputSchema=schema)])
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    run_sync(app, connector_id)
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert RLO not in page.split("Input schema")[1]  # tojson writes it as \u202e
    assert "\\u202e" in page


def test_remote_text_filter_shows_bidi_and_zero_width_characters(app):
    shown = remote_text(f"admin{ZWSP}_tool {RLO}txt.exe<b>")
    assert RLO not in shown and ZWSP not in shown
    assert "‹U+200B›" in shown and "‹U+202E›" in shown
    assert 'class="hidden-char"' in shown and "&lt;b&gt;" in shown
    assert suspicious(f"a{RLO}") and not suspicious("plain ünïcode 名前")


def test_remote_text_filter_cuts_before_marking(app):
    assert remote_text("x" * 50, 10) == "x" * 9 + "…"
    assert remote_text(None) == ""
    with app.test_request_context():
        rendered = render_template_string("{{ v|remote_text(6) }}", v="<scr" + RLO + "ipt>")
    assert rendered.startswith("&lt;scr<mark") and "‹U+202E›" in rendered


def test_a_1_mb_description_is_stored_cut_to_the_cap(app, logged_in, hostile_peer):
    hostile_peer.set_tools([tool("big", "A" * 1_000_000, title="T" * 5000)])
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    result = run_sync(app, connector_id)
    assert isinstance(result, sync.SyncResult), result
    big = stored(app, connector_id, "big")
    assert len(big.description) == catalog.MAX_DESCRIPTION and big.description.endswith("…")
    assert len(big.title) == catalog.MAX_TITLE
    assert "1 other warning" in result.summary()
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert len(page) < 100_000


def test_an_oversized_input_schema_is_not_stored(app, hostile_peer):
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "d" * 100}
                                             for i in range(1000)}}  # fmt: skip
    hostile_peer.set_tools([tool("wide", "x", inputSchema=huge)])
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    result = run_sync(app, connector_id)
    assert stored(app, connector_id, "wide").input_schema is None
    assert any("larger than 64 KB" in w for w in result.warnings)


def test_names_too_long_to_store_are_skipped_not_cut_into_one(app, hostile_peer):
    prefix = "n" * mcp.MAX_STORED_NAME
    longest = "m" * mcp.MAX_STORED_NAME
    hostile_peer.set_tools([tool(prefix + "_one"), tool(prefix + "_two"), tool(longest)])
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    run_sync(app, connector_id)
    assert tool_names(app, connector_id) == [longest]  # whole, never truncated


def test_duplicate_names_are_skipped_and_counted_in_the_sync_message(app, logged_in, hostile_peer):
    hostile_peer.set_tools([tool("dup", "first"), tool("dup", "second"), tool("dup", "third"),
                            tool("ok", "fine")])  # fmt: skip
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    answer = logged_in.post(f"/connectors/{connector_id}/sync", follow_redirects=True)
    assert "2 tools (2 new); 2 duplicate names skipped" in answer.get_data(as_text=True)
    assert stored(app, connector_id, "dup").description == "first"


def test_more_than_10000_tools_stop_the_sync_and_keep_the_old_list(app, hostile_peer):
    hostile_peer.set_tools(generated_tools(2))
    connector_id = add_connector(app, "Hostile", hostile_peer.url)
    run_sync(app, connector_id)
    hostile_peer.set_tools([tool(f"t{i}") for i in range(mcp.MAX_TOOLS + 1)])
    error = run_sync(app, connector_id)
    assert isinstance(error, sync.SyncError)
    assert "more than 10000 tools" in str(error)
    assert tool_names(app, connector_id) == ["tool_000", "tool_001"]
    with app.app_context():
        assert "more than 10000 tools" in db.session.get(Connector, connector_id).last_error
