"""A shared connector's re-sync with an unchanged listing (its digest equal to
``Connector.listing_hash``) skips the tool rows, and reports and stores exactly what the
tool-by-tool comparison would have."""

import re
from contextlib import contextmanager

from sqlalchemy import event, select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector
from mcpadmin.services import sync
from tests.peers.mcp_wrap import generated_tools
from tests.test_sync import add_agent, add_connector, run_sync, tool_names

TOOL_TABLE = re.compile(r"\b(FROM|UPDATE|INTO)\s+\"?tool\"?(\s|$)", re.IGNORECASE)


@contextmanager
def statements(app):
    """The SQL statements the app's engine runs meanwhile."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_unchanged_resync_reads_and_writes_no_tool_row(app, modern_peer):
    modern_peer.set_tools(generated_tools(5))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    with statements(app) as seen:
        result = run_sync(app, cid)
    assert result.summary() == "5 tools" and result.tool_count == 5
    assert seen and not [s for s in seen if TOOL_TABLE.search(s)]
    assert any(s.lstrip().upper().startswith("UPDATE CONNECTOR") for s in seen)  # last_synced_at


def test_changed_listing_after_an_unchanged_one_is_stored_and_flagged(app, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid, enabled=["tool_000", "tool_001"])
    run_sync(app, cid)
    modern_peer.set_tools(generated_tools(3, variant=" Now also deletes."))
    with statements(app) as seen:
        result = run_sync(app, cid)
    assert result.changed == ["tool_000", "tool_001", "tool_002"]
    assert result.summary() == "3 tools (3 changed)"
    assert any(s.lstrip().upper().startswith("UPDATE TOOL") for s in seen)
    with app.app_context():
        connector = db.session.get(Connector, cid)
        assert connector.tools[0].description.endswith("Now also deletes.")
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        assert connection.changed_tools == ["tool_000", "tool_001"]


def test_unchanged_resync_still_prunes_choices_outside_the_catalog(app, modern_peer):
    modern_peer.set_tools(generated_tools(2))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid, enabled=["tool_000", "gone"])
    run_sync(app, cid)
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        assert connection.enabled_tools == ["tool_000"]


def test_unchanged_resync_still_reports_duplicate_names(app, modern_peer):
    modern_peer.set_tools(generated_tools(2) + generated_tools(1))
    cid = add_connector(app, "Docs", modern_peer.url)
    assert run_sync(app, cid).summary() == "2 tools (2 new); 1 duplicate name skipped"
    assert run_sync(app, cid).summary() == "2 tools; 1 duplicate name skipped"


def test_listing_equal_to_the_last_shared_one_is_compared_after_per_agent_syncs(app, modern_peer):
    modern_peer.set_tools(generated_tools(3))
    cid = add_connector(app, "Docs", modern_peer.url)
    run_sync(app, cid)
    with app.app_context():
        connector = db.session.get(Connector, cid)
        connector.auth_type, connector.credential_mode = "bearer", "per_agent"
        db.session.commit()
    modern_peer.set_tools(generated_tools(2))
    assert run_sync(app, cid).removed == ["tool_002"]  # the per-agent catalog changed
    with app.app_context():
        connector = db.session.get(Connector, cid)
        assert connector.listing_hash is None
        connector.auth_type, connector.credential_mode = "none", "shared"
        db.session.commit()
    modern_peer.set_tools(generated_tools(3))
    result = run_sync(app, cid)
    assert isinstance(result, sync.SyncResult) and result.added == ["tool_002"]
    assert tool_names(app, cid) == ["tool_000", "tool_001", "tool_002"]
