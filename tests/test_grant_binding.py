"""A grant is only ever sent to the issuer that granted it.

A resource server (``SwitchResource``) first names authorization server A (a real OAuth peer),
then another one, B: a second real peer, or B's metadata refusing PKCE S256. The peers count
every token and revocation request, so each test asserts on what reached which server.
"""

from datetime import timedelta

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector, utcnow
from mcpadmin.services import lifecycle
from tests.oauth_helpers import add_agent, add_connector, connect, consent, start
from tests.peers.switch_resource import SwitchResource


def refreshes(peer) -> int:
    return peer.stats()["token_requests"].get("refresh_token", 0)


def token_requests(peer) -> int:
    return sum(peer.stats()["token_requests"].values())


def expire_soon(app, model, row_id):
    """The holder's token is an hour-long one in its last two minutes: the next use refreshes."""
    with app.app_context():
        place = db.session.get(model, row_id)
        place.token_obtained_at = utcnow() - timedelta(hours=1)
        place.token_expires_at = utcnow() + timedelta(minutes=2)
        db.session.commit()


@pytest.fixture
def two_servers(start_oauth_peer):
    a, b = start_oauth_peer(), start_oauth_peer()
    with SwitchResource(a.base_url, issuer=a.issuer) as resource:
        yield resource, a, b


def test_a_refused_connect_leaves_the_issuer_and_refresh_where_they_were(
    app, logged_in, two_servers, monkeypatch
):
    resource, a, b = two_servers
    connector_id = add_connector(app, resource.mcp_url)
    assert connect(logged_in, connector_id).status_code == 302
    resource.issuer = b.issuer
    from mcpadmin.protocol import discovery

    real = discovery.discover

    def without_s256(*args, **kwargs):  # B's metadata lists no S256
        found = real(*args, **kwargs)
        found.code_challenge_methods_supported = ["plain"]
        return found

    monkeypatch.setattr(discovery, "discover", without_s256)
    refused = start(logged_in, connector_id)
    assert refused.status_code == 302 and "/oauth/" not in refused.headers["Location"]
    assert "will not start a sign-in there" in logged_in.get("/connectors/").get_data(True)
    with app.app_context():
        assert db.session.get(Connector, connector_id).oauth_metadata["issuer"] == a.issuer

    a.reset(), b.reset()
    expire_soon(app, Connector, connector_id)
    logged_in.post(f"/connectors/{connector_id}/sync")
    assert refreshes(a) == 1 and token_requests(b) == 0


def test_refresh_and_disconnect_go_to_the_issuer_after_discovery_moved(app, logged_in, two_servers):
    resource, a, b = two_servers
    connector_id = add_connector(app, resource.mcp_url)
    connect(logged_in, connector_id)
    resource.issuer = b.issuer
    assert b.issuer in start(logged_in, connector_id).headers["Location"]  # never finished
    a.reset(), b.reset()

    expire_soon(app, Connector, connector_id)
    logged_in.post(f"/connectors/{connector_id}/sync")
    assert refreshes(a) == 1 and token_requests(b) == 0

    logged_in.post(f"/oauth/disconnect/{connector_id}")
    assert a.stats()["revocations"] >= 1 and b.stats()["revocations"] == 0


def test_connecting_one_agent_elsewhere_retires_but_never_repoints_the_others(
    app, logged_in, two_servers
):
    resource, a, b = two_servers
    connector_id = add_connector(app, resource.mcp_url, mode="per_agent")
    first, second = add_agent(app, "Ada"), add_agent(app, "Bob")
    connect(logged_in, connector_id, first)
    resource.issuer = b.issuer
    connect(logged_in, connector_id, second)
    a.reset(), b.reset()

    with app.app_context():
        rows = {c.agent_id: c for c in db.session.scalars(select(AgentConnection))}
        assert rows[first].status == lifecycle.Status.NEEDS_RECONNECT
        assert b.issuer in rows[first].last_error and a.issuer in rows[first].last_error
        assert rows[first].oauth_grant["issuer"] == a.issuer
        assert rows[second].oauth_grant["issuer"] == b.issuer
    expire_soon(app, AgentConnection, rows[first].id)
    logged_in.post(f"/agents/{first}/connectors/{connector_id}/sync")
    assert token_requests(b) == 0 and refreshes(a) == 0  # needs reconnect: nothing is sent
    page = logged_in.get(f"/agents/{first}").get_data(as_text=True)
    assert "Reconnect" in page


def test_a_flow_started_before_an_edit_is_refused_at_the_callback(
    app, logged_in, fresh_oauth_peer, modern_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    edited = logged_in.post(
        f"/connectors/{connector_id}/edit",
        data={"name": "Peer", "url": modern_peer.url, "auth_type": "oauth",
              "credential_mode": "shared"},
    )  # fmt: skip
    assert edited.status_code == 302
    back = logged_in.get(callback)
    assert back.status_code == 302
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "was changed" in page and "nothing was stored" in page
    assert fresh_oauth_peer.stats()["token_requests"].get("authorization_code", 0) == 0
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.access_token_enc is None and connector.oauth_grant is None
