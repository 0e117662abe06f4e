"""OAuth Connect end to end against the real authorization server (the ``mcp`` SDK's auth
components in a subprocess), driven through the Flask test client: shared and per agent."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector, OAuthClient, PendingAuthorization, utcnow
from mcpadmin.protocol import pkce
from mcpadmin.services import connect as connect_service
from mcpadmin.services import tokens
from tests.conftest import Browser
from tests.oauth_helpers import add_agent, add_connector, connect, consent, query, start


def test_shared_connect_round_trip_stores_tokens_and_syncs_tools(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    done = connect(logged_in, connector_id)
    assert done.status_code == 302
    assert done.headers["Location"] == "/connectors/"
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "Connected Peer: 3 tools available." in page
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.status == "connected"
        assert connector.access_token_enc.reveal() and connector.refresh_token_enc.reveal()
        assert connector.token_expires_at > utcnow() + timedelta(minutes=30)
        assert sorted(t.name for t in connector.tools) == ["add", "echo", "whoami"]
        assert connector.oauth_metadata["issuer"] == fresh_oauth_peer.issuer
        assert [e["outcome"] for e in connector.discovery_log][0].startswith("401")
        assert db.session.scalars(select(PendingAuthorization)).all() == []
    stats = fresh_oauth_peer.stats()
    assert stats["registrations"] == 1
    assert stats["token_requests"].get("authorization_code") == 1
    assert not stats["token_requests"].get("refresh_token")


def test_connect_sends_pkce_s256_resource_scope_and_state(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    started = start(logged_in, connector_id)
    params = query(started.headers["Location"])
    assert params["code_challenge_method"] == "S256"
    assert params["resource"] == fresh_oauth_peer.mcp_url
    assert params["redirect_uri"] == "http://127.0.0.1:5000/oauth/callback"
    assert params["scope"] == "mcp:read"  # the protected resource's scopes_supported
    logged_in.get(consent(started.headers["Location"]))
    sent = fresh_oauth_peer.stats()["last_token_request"]
    assert sent["resource"] == fresh_oauth_peer.mcp_url
    assert pkce.challenge(sent["code_verifier"]) == params["code_challenge"]
    assert sent["redirect_uri"] == params["redirect_uri"]


def test_tokens_are_bound_to_the_mcp_server(app, logged_in, start_oauth_peer):
    peer = start_oauth_peer(validate_resource=True)
    connector_id = add_connector(app, peer.mcp_url)
    connect(logged_in, connector_id)
    with app.app_context():
        assert len(db.session.get(Connector, connector_id).tools) == 3


def test_per_agent_connect_stores_tokens_on_the_agent_and_returns_there(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    done = connect(logged_in, connector_id, agent_id)
    card = f"/agents/{agent_id}?card={connector_id}#connector-{connector_id}"
    assert done.headers["Location"] == card
    page = logged_in.get(f"/agents/{agent_id}").get_data(as_text=True)
    assert "Connected Ada on Peer: 3 tools available." in page
    assert '<span class="badge badge-connected">Connected</span>' in page
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.access_token_enc is None  # nothing shared
        connection = db.session.scalar(select(AgentConnection))
        assert connection.status == "connected"
        assert connection.access_token_enc.reveal()
        assert len(connector.tools) == 3  # the first agent's token synced the catalog


def test_second_connect_reuses_the_registration(app, logged_in, fresh_oauth_peer):
    first = add_connector(app, fresh_oauth_peer.mcp_url, name="One")
    second = add_connector(app, fresh_oauth_peer.mcp_url, name="Two")
    connect(logged_in, first)
    connect(logged_in, second)
    assert fresh_oauth_peer.stats()["registrations"] <= 1
    with app.app_context():
        assert len(db.session.scalars(select(OAuthClient)).all()) == 1


def test_htmx_connect_leaves_the_page_with_hx_redirect(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    answer = logged_in.hx_post(f"/oauth/connect/{connector_id}")
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"].startswith(oauth_peer.base_url + "/authorize?")


def test_callback_refuses_replayed_state(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    assert logged_in.get(callback).headers["Location"] == "/connectors/"
    replay = logged_in.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "already used or has expired" in replay


def test_callback_refuses_tampered_state(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    forged = callback.replace("state=", "state=x")
    page = logged_in.get(forged, follow_redirects=True).get_data(as_text=True)
    assert "could not be verified" in page
    with app.app_context():
        assert db.session.get(Connector, connector_id).access_token_enc is None


def test_callback_refuses_an_expired_flow(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    with app.app_context():
        pending = db.session.scalar(select(PendingAuthorization))
        pending.created_at = utcnow() - timedelta(minutes=11)
        db.session.commit()
    page = logged_in.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "already used or has expired" in page


def test_callback_refuses_a_flow_started_by_another_admin(app, client, logged_in, oauth_peer):
    from mcpadmin.services import admins

    connector_id = add_connector(app, oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    with app.app_context():
        admins.create_admin("mallory", "another long password")
        db.session.commit()
    other = Browser(app.test_client())
    other.post("/login", data={"username": "mallory", "password": "another long password"})
    assert other.get(callback).status_code == 302
    page = other.get("/connectors/").get_data(as_text=True)
    assert "started by another admin" in page


def test_callback_error_is_shown_escaped_on_the_agent_page(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    started = start(logged_in, connector_id, agent_id)
    state = query(started.headers["Location"])["state"]
    answer = logged_in.get(
        "/oauth/callback",
        query_string={"state": state, "error": "access_denied",
                      "error_description": "<script>alert(1)</script>"},
    )  # fmt: skip
    assert answer.headers["Location"] == f"/agents/{agent_id}"
    page = logged_in.get(answer.headers["Location"]).get_data(as_text=True)
    assert "did not grant access (access_denied" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_callback_refuses_a_foreign_issuer_without_showing_its_error(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    started = start(logged_in, connector_id)
    state = query(started.headers["Location"])["state"]
    answer = logged_in.get(
        "/oauth/callback",
        query_string={"state": state, "iss": "https://evil.example", "error": "planted-text"},
        follow_redirects=True,
    )
    page = answer.get_data(as_text=True)
    assert "issuer mismatch" in page
    assert "planted-text" not in page


def test_callback_needs_the_admin_login(app, client, admin, oauth_peer):
    answer = client.get("/oauth/callback?code=x&state=y")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login")


def test_expired_token_is_refreshed_once_against_the_peer(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        old_access, old_refresh = (connector.access_token_enc.reveal(),
                                   connector.refresh_token_enc.reveal())  # fmt: skip
        connector.token_expires_at = utcnow() + timedelta(minutes=4)  # inside the margin
        connector.token_obtained_at = utcnow() - timedelta(hours=1)
        db.session.commit()
        new_access = tokens.access_token(connector, None)
        assert new_access != old_access
        assert tokens.access_token(connector, None) == new_access  # fresh now: no request
        db.session.expire_all()
        connector = db.session.get(Connector, connector_id)
        assert connector.refresh_token_enc.reveal() != old_refresh  # rotation kept
        assert connector.token_expires_at > utcnow() + timedelta(minutes=30)
    assert fresh_oauth_peer.stats()["token_requests"] == {"authorization_code": 1,
                                                          "refresh_token": 1}  # fmt: skip


def test_dead_grant_marks_needs_reconnect_and_deletes_nothing(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    fresh_oauth_peer.revoke_grants()
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connector.token_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        with pytest.raises(tokens.NeedsReconnect):
            tokens.access_token(connector, None)
        db.session.expire_all()
        connector = db.session.get(Connector, connector_id)
        assert connector.status == "needs_reconnect"
        assert connector.refresh_token_enc is not None and len(connector.tools) == 3
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "Reconnect" in page and "revoked or expired at the provider" in page


def test_disconnect_revokes_at_the_peer_and_keeps_the_registration(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    answer = logged_in.post(f"/oauth/disconnect/{connector_id}")
    assert answer.status_code == 302
    assert fresh_oauth_peer.stats()["revocations"] == 2
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.access_token_enc is None and connector.refresh_token_enc is None
        assert connector.status == "not_connected"
        assert db.session.scalar(select(OAuthClient)) is not None


def test_per_agent_disconnect_revokes_the_agents_tokens(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    connect(logged_in, connector_id, agent_id)
    logged_in.post(f"/agents/{agent_id}/connectors/{connector_id}/disconnect")
    assert fresh_oauth_peer.stats()["revocations"] == 2
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection))
        assert connection.access_token_enc is None and connection.status == "not_connected"


def test_step_up_asks_for_the_union_of_scopes_next_time(app, logged_in, oauth_peer):
    connector_id = add_connector(app, oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        tokens.step_up(connector, 'Bearer error="insufficient_scope", scope="mcp:write"')
        db.session.commit()
        assert connector.status == "needs_reconnect"
        tokens.step_up(connector, 'Bearer error="insufficient_scope", scope="mcp:write"')
        assert connector.step_up_scope == "mcp:write"  # no growth, no loop
    started = start(logged_in, connector_id)
    assert query(started.headers["Location"])["scope"] == "mcp:read mcp:write"
    logged_in.get(consent(started.headers["Location"]))
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.status == "connected", connector.last_error
        assert connector.step_up_scope is None
        assert set(connector.token_scope.split()) == {"mcp:read", "mcp:write"}


def test_state_round_trip_keeps_every_field(app):
    with app.test_request_context():
        state = connect_service.write_state(7, 9, "nonce", retried=True)
        assert connect_service.read_state(state) == {"c": 7, "a": 9, "n": "nonce", "r": 1}
        state = connect_service.write_state(7, None, "nonce")
        assert connect_service.read_state(state) == {"c": 7, "a": None, "n": "nonce"}
