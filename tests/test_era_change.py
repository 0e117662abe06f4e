"""A remembered protocol era that stops working is probed again: a server replaced by one of
the other era at the same URL is found on the next sync, with the real peers of both kinds
(mcp 2.x speaking the modern era; mcp 1.30.0 speaking only the legacy one)."""

import pytest

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Connector
from mcpadmin.services import sync
from tests.peers import start
from tests.peers.mcp_fixtures import LEGACY_PYTHON, McpPeer
from tests.test_sync import add_connector, run_sync, tool_names


@pytest.fixture
def swap():
    """``swap(script, port=None, python=None)`` starts a peer (on ``port`` when given), stopping
    the one started before; the last one is stopped after the test."""
    running = []

    def starter(script, *args, port=None, **kwargs) -> McpPeer:
        while running:
            running.pop().stop()
        peer = start(script, "--tools", "2", *args, port=port, **kwargs)
        running.append(peer)
        return McpPeer(peer)

    yield starter
    while running:
        running.pop().stop()


def stored_era(app, connector_id):
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        return connector.protocol_era, connector.protocol_version


def test_a_modern_server_replaced_by_a_legacy_one_is_probed_again_and_synced(app, swap):
    modern = swap("mcp_server.py")
    connector_id = add_connector(app, "Docs", modern.url)
    assert isinstance(run_sync(app, connector_id), sync.SyncResult)
    assert stored_era(app, connector_id) == ("modern", "2026-07-28")

    legacy = swap("mcp_legacy_server.py", port=modern.peer.port, python=LEGACY_PYTHON)
    result = run_sync(app, connector_id)
    assert isinstance(result, sync.SyncResult), str(result)
    assert result.era == "legacy"
    assert stored_era(app, connector_id)[0] == "legacy"
    assert tool_names(app, connector_id) == ["tool_000", "tool_001"]
    methods = [m for _http, m in legacy.requests()]
    assert methods[:3] == ["tools/list", "server/discover", "initialize"]


def test_a_remembered_era_failing_on_authentication_is_not_probed_again(app, swap):
    modern = swap("mcp_server.py", "--bearer", "peer-token")
    connector_id = add_connector(app, "Docs", modern.url, auth_type="bearer",
                                 secret="peer-token")  # fmt: skip
    assert isinstance(run_sync(app, connector_id), sync.SyncResult)
    with app.app_context():
        db.session.get(Connector, connector_id).secret_enc = seal("wrong")
        db.session.commit()
    before = len(modern.requests())
    failed = run_sync(app, connector_id)
    assert isinstance(failed, sync.SyncError) and "401" in str(failed)
    assert [m for _h, m in modern.requests()[before:]] == ["tools/list"]
