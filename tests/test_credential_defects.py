"""Credentials go only where they belong, against real peers: a pasted secret does not follow a
URL to another origin unasked; a 403 for a scope already held does not loop the operator;
per-agent refreshes never wait on the request's own write; deleting or switching away
revokes at the provider first."""

from datetime import timedelta

from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, utcnow
from mcpadmin.services import lifecycle
from tests.oauth_helpers import add_agent, add_connector, connect
from tests.peers.switch_resource import SwitchResource


def bearer_connector(app, url, mode="shared", secret="peer-token") -> int:  # noqa: S107
    with app.app_context():
        connector = Connector(name="Keyed", url=url, auth_type="bearer", credential_mode=mode)
        if mode == "shared":
            connector.secret_enc = seal(secret)
        else:
            agent = Agent(name="Ada")
            db.session.add(
                AgentConnection(
                    agent=agent, connector=connector, secret_enc=seal(secret), status="connected"
                )
            )
        db.session.add(connector)
        db.session.commit()
        return connector.id


def edit(client, connector_id, url, mode="shared", **extra):
    data = {"name": "Keyed", "url": url, "auth_type": "bearer", "credential_mode": mode, **extra}
    return client.post(f"/connectors/{connector_id}/edit", data=data)


def stored_secrets(app, connector_id) -> list:
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        secrets = [connector.secret_enc] + [c.secret_enc for c in connector.connections]
        return [s.reveal() for s in secrets if s is not None]


# -- a pasted secret and a URL on another origin ---------------------------------------------


def test_moving_a_shared_token_to_another_origin_asks_first(app, logged_in, bearer_peer, json_peer):
    connector_id = bearer_connector(app, bearer_peer.url)
    asked = edit(logged_in, connector_id, json_peer.url)
    assert asked.status_code == 422
    assert "Send the stored secrets to the new host" in asked.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Connector, connector_id).url == bearer_peer.url
    assert stored_secrets(app, connector_id) == ["peer-token"]

    assert edit(logged_in, connector_id, json_peer.url, moved_secrets="forget").status_code == 302
    assert stored_secrets(app, connector_id) == []
    assert "enter them again" in logged_in.get("/connectors/").get_data(as_text=True)


def test_keeping_a_token_for_the_new_host_is_an_explicit_visible_choice(
    app, logged_in, bearer_peer, json_peer
):
    connector_id = bearer_connector(app, bearer_peer.url)
    assert edit(logged_in, connector_id, json_peer.url, moved_secrets="keep").status_code == 302
    assert stored_secrets(app, connector_id) == ["peer-token"]
    assert "now sent to" in logged_in.get("/connectors/").get_data(as_text=True)


def test_a_new_token_entered_with_the_move_needs_no_question(
    app, logged_in, bearer_peer, json_peer
):
    connector_id = bearer_connector(app, bearer_peer.url)
    assert edit(logged_in, connector_id, json_peer.url, secret="new-one").status_code == 302
    assert stored_secrets(app, connector_id) == ["new-one"]


def test_agents_tokens_do_not_follow_a_per_agent_connector_to_another_origin(
    app, logged_in, bearer_peer, json_peer
):
    connector_id = bearer_connector(app, bearer_peer.url, mode="per_agent")
    asked = edit(logged_in, connector_id, json_peer.url, mode="per_agent")
    assert asked.status_code == 422 and "1 agent has a token" in asked.get_data(as_text=True)
    assert stored_secrets(app, connector_id) == ["peer-token"]
    edit(logged_in, connector_id, json_peer.url, mode="per_agent", moved_secrets="forget")
    assert stored_secrets(app, connector_id) == []


def test_a_path_change_on_the_same_origin_keeps_the_token(app, logged_in, bearer_peer):
    connector_id = bearer_connector(app, bearer_peer.url)
    assert edit(logged_in, connector_id, bearer_peer.url + "/").status_code == 302
    assert stored_secrets(app, connector_id) == ["peer-token"]


# -- 403 insufficient_scope -------------------------------------------------------------------


def test_a_403_for_a_scope_already_held_says_so_and_offers_no_reconnect(
    app, logged_in, fresh_oauth_peer
):
    with SwitchResource(fresh_oauth_peer.base_url, fresh_oauth_peer.issuer) as resource:
        connector_id = add_connector(app, resource.mcp_url)
        connect(logged_in, connector_id)
        resource.forbid_scope = "mcp:read"  # granted already
        logged_in.post(f"/connectors/{connector_id}/sync")
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.status == lifecycle.Status.ERROR
        assert connector.step_up_scope is None
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "reconnecting would not help" in page and ">Reconnect<" not in page
    assert ">Reconnect<" not in logged_in.get(f"/connectors/{connector_id}").get_data(True)


def test_a_403_naming_a_new_scope_asks_for_reconnect_with_it(app, logged_in, fresh_oauth_peer):
    with SwitchResource(fresh_oauth_peer.base_url, fresh_oauth_peer.issuer) as resource:
        connector_id = add_connector(app, resource.mcp_url)
        connect(logged_in, connector_id)
        resource.forbid_scope = "mcp:admin"  # not granted
        logged_in.post(f"/connectors/{connector_id}/sync")
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.status == lifecycle.Status.NEEDS_RECONNECT
        assert connector.step_up_scope == "mcp:admin"
    assert ">Reconnect<" in logged_in.get("/connectors/").get_data(as_text=True)


# -- per-agent refreshes during one request ---------------------------------------------------


def test_syncing_a_per_agent_connector_refreshes_each_agent_without_a_lock_wait(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agents = [add_agent(app, "Ada"), add_agent(app, "Bob")]
    for agent_id in agents:
        connect(logged_in, connector_id, agent_id)
    with app.app_context():
        for connection in db.session.scalars(select(AgentConnection)):
            connection.token_obtained_at = utcnow() - timedelta(hours=1)
            connection.token_expires_at = utcnow() + timedelta(minutes=1)
        db.session.commit()
    fresh_oauth_peer.reset()
    answer = logged_in.post(f"/connectors/{connector_id}/sync", follow_redirects=True)
    assert answer.status_code == 200
    assert answer.get_data(as_text=True).count("Synced Peer (as") == 2
    assert fresh_oauth_peer.stats()["token_requests"]["refresh_token"] == 2


# -- revocation before delete -----------------------------------------------------------------


def test_deleting_a_connector_revokes_its_tokens_and_says_so_first(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    confirm = logged_in.get(f"/connectors/{connector_id}/delete").get_data(as_text=True)
    assert "revoked at the provider" in confirm
    fresh_oauth_peer.reset()
    logged_in.post(f"/connectors/{connector_id}/delete")
    assert fresh_oauth_peer.stats()["revocations"] == 2  # refresh token, then access token


def test_deleting_an_agent_revokes_its_own_tokens(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    connect(logged_in, connector_id, agent_id)
    assert "revoked at the provider" in logged_in.get(f"/agents/{agent_id}/delete").get_data(True)
    fresh_oauth_peer.reset()
    logged_in.post(f"/agents/{agent_id}/delete")
    assert fresh_oauth_peer.stats()["revocations"] == 2


def test_switching_away_from_oauth_revokes_the_tokens(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    fresh_oauth_peer.reset()
    logged_in.post(f"/connectors/{connector_id}/edit",
                   data={"name": "Peer", "url": fresh_oauth_peer.mcp_url, "auth_type": "bearer",
                         "credential_mode": "shared", "secret": "x"})  # fmt: skip
    assert fresh_oauth_peer.stats()["revocations"] == 2
    with app.app_context():
        assert db.session.get(Connector, connector_id).access_token_enc is None


def test_the_connector_page_offers_sync_and_comes_back_to_itself(app, logged_in, json_peer):
    with app.app_context():
        connector = Connector(name="Docs", url=json_peer.url)
        db.session.add(connector)
        db.session.commit()
        connector_id = connector.id
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert "Sync tools" in page and "Not synced yet" in page
    back = logged_in.post(f"/connectors/{connector_id}/sync", data={"back": "show"})
    assert back.headers["Location"] == f"/connectors/{connector_id}"
    page = logged_in.get(back.headers["Location"]).get_data(as_text=True)
    assert "Synced Docs: 4 tools" in page and ">Connected<" in page
