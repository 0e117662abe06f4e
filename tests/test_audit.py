"""The admin audit trail: one event per admin action, with who, when, from where, to what and
what changed; never a secret. Driven as the operator does: the signed-in test client posting
the real forms (CSRF included), real OAuth and MCP peers for Connect and sync, and the CLI."""

import json
import os
import re

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import (
    AdminUser,
    Agent,
    AgentConnection,
    AgentKey,
    AuditEvent,
    Connector,
    OAuthClient,
    Tool,
)
from mcpadmin.services import audit
from mcpadmin.services import tokens as token_service
from tests.conftest import PASSWORD, Browser
from tests.oauth_helpers import add_agent, add_connector, connect

SECRET = "rnd_s3cr3t_token_value_123"
AGENT_TOKEN = "agent-token-5f4e3d2c1b"
CLIENT_SECRET = "client-s3cret-9a8b7c"
ADDRESS = "198.51.100.7"
KEY = re.compile(r"mcpa_[a-z2-7]{24}_[A-Za-z0-9_-]{43}")


def events(app, action=None) -> list[dict]:
    """The trail, oldest first, as plain dicts (optionally only ``action``)."""
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return [
            {
                "action": e.action, "admin": e.admin_name, "address": e.address,
                "type": e.target_type, "id": e.target_id, "name": e.target_name,
                "details": e.details or {}, "at": e.at,
            }
            for e in db.session.scalars(query)
        ]  # fmt: skip


def one(app, action) -> dict:
    found = events(app, action)
    assert len(found) == 1, (action, events(app))
    return found[0]


def trail_text(app) -> str:
    """Every column of every event as text: what a secret must never appear in."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent)).all()
        return json.dumps(
            [[e.admin_name, e.address, e.action, e.target_name, e.details] for e in rows]
        )


def connector_form(**overrides):
    data = {"name": "Render", "url": "https://mcp.render.example/mcp", "auth_type": "bearer",
            "credential_mode": "shared", "secret": SECRET}  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def connector_id(app, name="Render") -> int:
    with app.app_context():
        return db.session.scalar(select(Connector.id).where(Connector.name == name))


@pytest.fixture
def signed_in(client, admin):
    """The admin, signed in from ``ADDRESS``."""
    client.environ_base["REMOTE_ADDR"] = ADDRESS
    response = client.post("/login", data={"username": admin, "password": PASSWORD})
    assert response.status_code == 302
    client.get("/connectors/")
    return client


# -- signing in and out ------------------------------------------------------------------------


def test_sign_in_is_recorded_with_the_admin_and_address(app, signed_in):
    event = one(app, "auth.signed_in")
    assert (event["admin"], event["address"]) == ("admin", ADDRESS)
    assert (event["type"], event["name"]) == ("admin", "admin")


def test_failed_sign_in_records_the_username_tried_never_the_password(app, client, admin):
    client.environ_base["REMOTE_ADDR"] = ADDRESS
    answer = client.post("/login", data={"username": "mallory", "password": "guess-Hunter2!"})
    assert answer.status_code == 401
    event = one(app, "auth.sign_in_failed")
    assert (event["admin"], event["address"], event["type"]) == ("mallory", ADDRESS, None)
    assert "guess-Hunter2!" not in trail_text(app)


def test_a_wrong_password_for_a_real_admin_is_a_failed_sign_in(app, client, admin):
    client.post("/login", data={"username": admin, "password": "not the password"})
    assert one(app, "auth.sign_in_failed")["admin"] == "admin"
    assert events(app, "auth.signed_in") == []


def test_the_address_is_the_one_trusted_proxies_forwarded(make_app, admin):
    proxied = Browser(make_app({"TRUSTED_PROXY_HOPS": 1}).test_client())
    headers = {"X-Forwarded-For": "203.0.113.9"}
    proxied.post("/login", data={"username": admin, "password": PASSWORD}, headers=headers)
    assert one(proxied.application, "auth.signed_in")["address"] == "203.0.113.9"


def test_a_forwarded_address_is_ignored_without_trusted_proxies(app, client, admin):
    headers = {"X-Forwarded-For": "203.0.113.9"}
    client.post("/login", data={"username": admin, "password": PASSWORD}, headers=headers)
    assert one(app, "auth.signed_in")["address"] == "127.0.0.1"


def test_sign_out_is_recorded(app, signed_in):
    signed_in.post("/logout")
    event = one(app, "auth.signed_out")
    assert (event["admin"], event["address"]) == ("admin", ADDRESS)


def test_sign_out_everywhere_is_recorded(app, signed_in):
    signed_in.post("/logout/everywhere")
    assert one(app, "auth.signed_out_everywhere")["admin"] == "admin"


def test_the_setup_link_records_the_first_admin_and_its_sign_in(app, client):
    with open(os.path.join(app.instance_path, "setup_token"), encoding="utf-8") as f:
        token = f.read().strip()
    form = {"username": "root", "password": PASSWORD, "confirm": PASSWORD}
    assert client.post(f"/setup/{token}", data=form).status_code == 302
    created = one(app, "auth.signed_in")
    assert [e["action"] for e in events(app)] == ["admin.created", "auth.signed_in"]
    event = one(app, "admin.created")
    assert (event["admin"], event["name"], event["details"]) == (
        "root",
        "root",
        {"via": "setup link"},
    )
    assert created["address"] == "127.0.0.1"
    assert PASSWORD not in trail_text(app)


# -- the shell ---------------------------------------------------------------------------------


def test_create_admin_from_the_shell_is_the_shells_doing(app, runner):
    result = runner.invoke(args=["create-admin", "alice", "--password-stdin"],
                           input=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    event = one(app, "admin.created")
    assert (event["admin"], event["address"], event["name"]) == ("shell", None, "alice")
    assert event["details"]["via"] == "flask create-admin"
    assert "os_user" in event["details"]
    assert PASSWORD not in trail_text(app)


def test_set_password_is_recorded_without_the_password(app, runner, admin):
    result = runner.invoke(args=["set-password", "admin", "--password-stdin"],
                           input="a brand new password\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    event = one(app, "admin.password_changed")
    assert (event["admin"], event["name"]) == ("shell", "admin")
    assert "a brand new password" not in trail_text(app)


def test_key_rotation_is_recorded_with_its_counts(app, runner):
    add_connector(app, "https://mcp.example/mcp", client_id="pre-registered-id")
    result = runner.invoke(args=["rotate-keys"])
    assert result.exit_code == 0, result.output
    event = one(app, "encryption_keys.rotated")
    assert event["admin"] == "shell" and event["type"] is None
    assert (event["details"]["rotated"], event["details"]["unreadable"]) == (1, 0)
    assert "pre-registered-id" not in trail_text(app)


# -- connectors --------------------------------------------------------------------------------


def test_creating_a_connector_records_its_settings_and_that_a_token_was_set(app, signed_in):
    assert signed_in.post("/connectors/new", data=connector_form()).status_code == 302
    created = one(app, "connector.created")
    assert (created["admin"], created["address"]) == ("admin", ADDRESS)
    assert (created["type"], created["id"], created["name"]) == (
        "connector",
        connector_id(app),
        "Render",
    )
    assert created["details"]["url"] == [None, "https://mcp.render.example/mcp"]
    assert created["details"]["secret"] == "set"
    pasted = one(app, "connector.connected")
    assert pasted["details"] == {"how": "token pasted"}
    assert SECRET not in trail_text(app)


def test_editing_a_connector_records_each_changed_field_before_and_after(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    id = connector_id(app)
    signed_in.post(f"/connectors/{id}/edit", data=connector_form(name="Render EU", secret=""))
    event = one(app, "connector.updated")
    assert event["details"] == {"name": ["Render", "Render EU"]}
    assert event["name"] == "Render EU"


def test_saving_a_connector_unchanged_records_nothing(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    signed_in.post(f"/connectors/{connector_id(app)}/edit", data=connector_form(secret=""))
    assert events(app, "connector.updated") == []


def test_a_new_token_is_recorded_as_changed_and_connected_never_its_value(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    id = connector_id(app)
    signed_in.post(f"/connectors/{id}/edit", data=connector_form(secret="another-Secret-42"))
    assert one(app, "connector.updated")["details"] == {"secret": "changed"}
    assert len(events(app, "connector.connected")) == 2
    text = trail_text(app)
    assert SECRET not in text and "another-Secret-42" not in text


def test_clearing_the_token_is_recorded(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    id = connector_id(app)
    signed_in.post(f"/connectors/{id}/edit", data=connector_form(secret="", clear_secret="y"))
    details = one(app, "connector.updated")["details"]
    assert details["secret"] == "cleared"
    assert details["notices"] == ["The stored token or key was removed."]


def test_an_oauth_client_secret_is_recorded_as_set_only(app, signed_in):
    form = connector_form(auth_type="oauth", secret=None, oauth_client_id="my-client-id",
                          oauth_client_secret=CLIENT_SECRET)  # fmt: skip
    assert signed_in.post("/connectors/new", data=form).status_code == 302
    details = one(app, "connector.created")["details"]
    assert (details["oauth_client_id"], details["oauth_client_secret"]) == ("set", "set")
    text = trail_text(app)
    assert CLIENT_SECRET not in text and "my-client-id" not in text


def test_moving_a_token_to_another_host_records_the_choice(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    id = connector_id(app)
    moved = connector_form(url="https://elsewhere.example/mcp", secret="", moved_secrets="keep")
    assert signed_in.post(f"/connectors/{id}/edit", data=moved).status_code == 302
    event = one(app, "connector.secrets_moved")
    assert event["details"] == {"choice": "keep", "from": "https://mcp.render.example:443",
                                "to": "https://elsewhere.example:443"}  # fmt: skip
    assert one(app, "connector.updated")["details"]["url"][1] == "https://elsewhere.example/mcp"


def test_deleting_a_connector_is_recorded_with_its_name(app, signed_in):
    signed_in.post("/connectors/new", data=connector_form())
    id = connector_id(app)
    signed_in.post(f"/connectors/{id}/delete")
    event = one(app, "connector.deleted")
    assert (event["id"], event["name"]) == (id, "Render")
    assert event["details"]["url"] == "https://mcp.render.example/mcp"


def test_a_sync_from_the_page_is_recorded_with_its_result(app, signed_in, json_peer):
    form = connector_form(name="Docs", url=json_peer.url, auth_type="none", secret=None)
    signed_in.post("/connectors/new", data=form)  # synced once on creation (test_ops_fixes)
    signed_in.post(f"/connectors/{connector_id(app, 'Docs')}/sync")
    for event in events(app, "connector.tools_synced"):
        [result] = event["details"]["results"]
        assert result["ok"] is True and result["agent"] is None and "4 tools" in result["message"]
    assert len(events(app, "connector.tools_synced")) == 2


# -- OAuth Connect, Reconnect, Disconnect (real authorization server) --------------------------


def oauth_secrets(app, holder_id=None) -> list[str]:
    """Every token and client secret the app holds: none may be in the trail."""
    with app.app_context():
        found = []
        for row in [*db.session.scalars(select(Connector)),
                    *db.session.scalars(select(AgentConnection))]:  # fmt: skip
            for sealed in (row.access_token_enc, row.refresh_token_enc, row.secret_enc):
                if sealed is not None:
                    found.append(sealed.reveal())
        for client in db.session.scalars(select(OAuthClient)):
            if client.client_secret_enc is not None:
                found.append(client.client_secret_enc.reveal())
        return found


def test_oauth_connect_then_reconnect_then_disconnect(app, signed_in, fresh_oauth_peer):
    id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(signed_in, id)
    connected = one(app, "connector.connected")
    assert (connected["admin"], connected["address"], connected["id"]) == ("admin", ADDRESS, id)
    assert connected["details"]["how"] == "oauth"
    assert connected["details"]["issuer"] == fresh_oauth_peer.issuer
    held = oauth_secrets(app)

    with app.app_context():  # the provider revoked the grant: the connector needs reconnect
        connector = db.session.get(Connector, id)
        token_service.step_up(connector, 'Bearer error="insufficient_scope", scope="mcp:write"')
        db.session.commit()
    connect(signed_in, id)
    assert one(app, "connector.reconnected")["details"]["issuer"] == fresh_oauth_peer.issuer
    held += oauth_secrets(app)

    signed_in.post(f"/oauth/disconnect/{id}")
    assert one(app, "connector.disconnected")["details"] == {"grants_to_revoke": 1}
    text = trail_text(app)
    assert held and not [s for s in held if s in text]


def test_per_agent_oauth_connect_and_disconnect_are_the_agents(app, signed_in, fresh_oauth_peer):
    id = add_connector(app, fresh_oauth_peer.mcp_url, mode="per_agent")
    agent_id = add_agent(app)
    connect(signed_in, id, agent_id)
    event = one(app, "agent.connected")
    assert (event["type"], event["id"], event["name"]) == ("agent", agent_id, "Ada")
    assert event["details"]["connector"] == "Peer"
    held = oauth_secrets(app)
    signed_in.post(f"/agents/{agent_id}/connectors/{id}/disconnect")
    assert one(app, "agent.disconnected")["details"] == {"connector": "Peer", "grants_to_revoke": 1}
    text = trail_text(app)
    assert held and not [s for s in held if s in text]


# -- agents ------------------------------------------------------------------------------------


@pytest.fixture
def agent_id(app, signed_in):
    signed_in.post("/agents/new", data={"name": "Triage", "description": "sorts issues"})
    with app.app_context():
        return db.session.scalar(select(Agent.id))


def test_creating_an_agent_is_recorded(app, agent_id):
    event = one(app, "agent.created")
    assert (event["admin"], event["name"], event["id"]) == ("admin", "Triage", agent_id)
    assert event["details"]["description"] == [None, "sorts issues"]


def test_changing_an_agent_records_the_keep_names_setting(app, signed_in, agent_id):
    form = {"name": "Triage", "description": "sorts issues", "keep_tool_names": "y"}
    assert signed_in.post(f"/agents/{agent_id}", data=form).status_code == 302
    assert one(app, "agent.updated")["details"] == {"keep_tool_names": [False, True]}


def test_deleting_an_agent_is_recorded(app, signed_in, agent_id):
    signed_in.post(f"/agents/{agent_id}/delete")
    event = one(app, "agent.deleted")
    assert (event["id"], event["name"]) == (agent_id, "Triage")


def test_an_agents_pasted_token_is_a_connect_without_the_token(app, signed_in, agent_id):
    with app.app_context():
        connector = Connector(name="Render", url="http://127.0.0.1:9/mcp", auth_type="bearer",
                              credential_mode="per_agent")  # fmt: skip
        db.session.add(connector)
        db.session.commit()
        id = connector.id
    signed_in.hx_post(f"/agents/{agent_id}/connectors/{id}/secret", data={"secret": AGENT_TOKEN})
    event = one(app, "agent.connected")
    assert event["details"] == {"connector": "Render", "how": "token pasted"}
    assert AGENT_TOKEN not in trail_text(app)


def tool_connector(app, *names) -> tuple[int, dict[str, str]]:
    """A shared connector with tools ``names``; its id and the tools' row ids by name."""
    with app.app_context():
        connector = Connector(name="Docs", url="https://d.example/mcp", auth_type="none",
                              status="connected")  # fmt: skip
        db.session.add(connector)
        db.session.flush()
        tools = [Tool(connector_id=connector.id, name=n) for n in names]
        db.session.add_all(tools)
        db.session.commit()
        return connector.id, {t.name: str(t.id) for t in tools}


def test_tool_choices_record_what_was_enabled_and_disabled(app, signed_in, agent_id):
    id, tools = tool_connector(app, "search", "create_issue", "delete_all")
    url = f"/agents/{agent_id}/connectors/{id}/tools"
    signed_in.hx_post(url, data={"tools": [tools["search"], tools["create_issue"]]})
    signed_in.hx_post(url, data={"tools": [tools["search"], tools["delete_all"]]})
    signed_in.hx_post(url, data={"tools": [tools["search"], tools["delete_all"]]})  # no change
    first, second = events(app, "agent.tools_chosen")
    assert first["details"] == {"connector": "Docs", "enabled": ["create_issue", "search"],
                                "disabled": []}  # fmt: skip
    assert second["details"] == {"connector": "Docs", "enabled": ["delete_all"],
                                 "disabled": ["create_issue"]}  # fmt: skip


def test_a_sync_from_an_agents_card_is_recorded_with_its_agent(app, signed_in, agent_id, json_peer):
    with app.app_context():
        connector = Connector(name="Docs", url=json_peer.url, auth_type="none",
                              credential_mode="per_agent")  # fmt: skip
        db.session.add(connector)
        db.session.commit()
        id = connector.id
    signed_in.hx_post(f"/agents/{agent_id}/connectors/{id}/sync")
    event = one(app, "connector.tools_synced")
    assert (event["admin"], event["id"], event["name"]) == ("admin", id, "Docs")
    [result] = event["details"]["results"]
    assert result["agent"] == "Triage" and result["ok"] is True


def test_mark_reviewed_is_recorded(app, signed_in, agent_id):
    id, tools = tool_connector(app, "search")
    with app.app_context():
        db.session.add(
            AgentConnection(
                agent_id=agent_id,
                connector_id=id,
                enabled_tools=["search"],
                changed_tools=["search"],
            )
        )
        db.session.commit()  # fmt: skip
    signed_in.hx_post(f"/agents/{agent_id}/connectors/{id}/reviewed",
                      data={"tool": tools["search"]})  # fmt: skip
    assert one(app, "agent.tool_reviewed")["details"] == {"connector": "Docs", "tool": "search"}


def test_agent_keys_created_and_revoked_on_the_page_never_show_the_key(app, signed_in, agent_id):
    page = signed_in.post(f"/agents/{agent_id}/keys", data={"label": "laptop"})
    key = KEY.search(page.get_data(as_text=True)).group(0)
    with app.app_context():
        row = db.session.scalar(select(AgentKey))
        row_id, lookup = row.id, row.lookup
    created = one(app, "agent_key.created")
    assert (created["type"], created["id"]) == ("agent", agent_id)
    assert created["details"] == {"key_id": row_id, "label": "laptop",
                                  "shown_as": f"mcpa_{lookup}_…", "expires_at": None}  # fmt: skip
    signed_in.post(f"/agents/{agent_id}/keys/{row_id}/revoke")
    signed_in.post(f"/agents/{agent_id}/keys/{row_id}/revoke")  # already revoked: no new event
    assert one(app, "agent_key.revoked")["details"]["key_id"] == row_id
    assert key.split("_", 2)[2] not in trail_text(app)


def test_agent_keys_from_the_shell_are_the_shells_doing(app, runner):
    add_agent(app, "Support bot")
    created = runner.invoke(args=["agent-key", "create", "Support bot", "--label", "ci"])
    key = created.stdout.strip().splitlines()[-1]
    runner.invoke(args=["agent-key", "revoke", "Support bot", key])
    made, revoked = one(app, "agent_key.created"), one(app, "agent_key.revoked")
    assert (made["admin"], made["address"], made["name"]) == ("shell", None, "Support bot")
    assert revoked["admin"] == "shell" and revoked["details"]["label"] == "ci"
    assert key not in trail_text(app) and key.split("_", 2)[2] not in trail_text(app)


# -- the record itself -------------------------------------------------------------------------


def test_values_are_capped_and_secret_names_redacted():
    values = {"note": "x" * 1000, "names": list(range(80)), "password": "hunter2",
              "token": "set", "oauth_token_endpoint": "https://a.example/token"}  # fmt: skip
    capped = audit.capped(values)
    assert len(capped["note"]) == audit.MAX_TEXT and capped["note"].endswith("…")
    assert len(capped["names"]) == audit.MAX_ITEMS + 1 and capped["names"][-1] == "… 30 more"
    assert capped["password"] == audit.REDACTED and capped["token"] == "set"
    assert capped["oauth_token_endpoint"] == "https://a.example/token"


def test_an_unknown_action_is_refused(app):
    with app.app_context(), pytest.raises(ValueError):
        audit.record("connector.exploded")


def test_an_event_is_written_only_with_the_change_it_describes(app):
    with app.app_context():
        admin = AdminUser(username="ghost", password_hash="x")
        db.session.add(admin)
        audit.record(audit.Action.ADMIN_CREATED, admin)
        db.session.rollback()
    assert events(app) == []
