"""Tool sync with OAuth tokens against the real peer: a token the server stops accepting is
refreshed once and the listing retried; a dead grant ends in needs-reconnect, tools kept."""

from mcpadmin.extensions import db
from mcpadmin.models import Connector
from mcpadmin.services import sync
from tests.oauth_helpers import add_connector, connect


def test_401_refreshes_once_and_retries(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    fresh_oauth_peer.expire_tokens()  # the peer refuses the token we still think is fresh
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        result = sync.sync_tools(connector)
        db.session.commit()
        assert result.tool_count == 3
        assert connector.status == "connected"
    assert fresh_oauth_peer.stats()["token_requests"].get("refresh_token") == 1


def test_401_with_a_dead_grant_marks_needs_reconnect_and_keeps_tools(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    fresh_oauth_peer.expire_tokens()
    fresh_oauth_peer.revoke_grants()
    answer = logged_in.post(f"/connectors/{connector_id}/sync", follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert "Reconnect" in page
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.status == "needs_reconnect"
        assert len(connector.tools) == 3
        assert connector.refresh_token_enc is not None
