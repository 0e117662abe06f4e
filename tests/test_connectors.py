"""Connector pages: the index and its actions, the form and its htmx fields, details, delete."""

import pytest

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, Tool

SECRET = "rnd_s3cr3t_token_value_123"

# A new connector is synced at once: its made-up server names resolve nowhere, without a lookup.
pytestmark = pytest.mark.usefixtures("dns")


def form(**overrides):
    data = {"name": "Render", "url": "https://mcp.render.example/mcp", "auth_type": "bearer",
            "credential_mode": "shared", "secret": SECRET}  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def stored(app, name="Render"):
    with app.app_context():
        connector = db.session.query(Connector).filter_by(name=name).one()
        db.session.expunge(connector)
        return connector


def test_empty_index_explains_what_to_do(logged_in):
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "No connectors yet" in page and "Add your first connector" in page


def test_create_shared_bearer_connector_stores_secret_encrypted(app, logged_in):
    response = logged_in.post("/connectors/new", data=form())
    assert response.status_code == 302
    with app.app_context():
        connector = db.session.query(Connector).one()
        assert connector.secret_enc.reveal() == SECRET
        # Stored, then tried at once (test_ops_fixes): there is no server at this name.
        assert connector.status == "error" and "does not resolve" in connector.last_error


def test_create_flashes_confirmation(logged_in):
    response = logged_in.post("/connectors/new", data=form(), follow_redirects=True)
    assert "Connector Render created." in response.get_data(as_text=True)


def test_stored_secret_is_never_rendered(app, logged_in):
    logged_in.post("/connectors/new", data=form())
    connector = stored(app)
    for url in ("/connectors/", f"/connectors/{connector.id}", f"/connectors/{connector.id}/edit"):
        page = logged_in.get(url).get_data(as_text=True)
        assert SECRET not in page
    assert "A token or key is stored. Leave blank to keep it." in page


def test_blank_secret_keeps_the_stored_one(app, logged_in):
    logged_in.post("/connectors/new", data=form())
    connector = stored(app)
    logged_in.post(f"/connectors/{connector.id}/edit", data=form(name="Render 2", secret=""))
    with app.app_context():
        assert db.session.get(Connector, connector.id).secret_enc.reveal() == SECRET


def test_clear_secret_removes_it(app, logged_in):
    logged_in.post("/connectors/new", data=form())
    connector = stored(app)
    logged_in.post(f"/connectors/{connector.id}/edit", data=form(secret="", clear_secret="y"))
    with app.app_context():
        updated = db.session.get(Connector, connector.id)
        assert updated.secret_enc is None and updated.status == "not_connected"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "/relative/mcp",
        "mcp.example.com/mcp",
        "https://user:pass@mcp.example.com/mcp",
        "https://mcp.example.com/m cp",
        "https://mcp.example.com/\tmcp",
        "https:\\\\mcp.example.com",
        "https:///mcp",
        "https://mcp.example.com:99999/mcp",
    ],
)
def test_bad_server_url_is_refused_next_to_the_field(app, logged_in, url):
    response = logged_in.post("/connectors/new", data=form(url=url))
    assert response.status_code == 422
    assert 'id="url-error"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(Connector).count() == 0


def test_surrounding_whitespace_in_name_and_url_is_trimmed(app, logged_in):
    logged_in.post("/connectors/new", data=form(name="  Render ", url=" https://r.example/mcp\n"))
    connector = stored(app)
    assert connector.url == "https://r.example/mcp"


def test_duplicate_name_is_refused(logged_in):
    logged_in.post("/connectors/new", data=form())
    response = logged_in.post("/connectors/new", data=form(name="render"))
    assert response.status_code == 422
    assert "Another connector already has this name." in response.get_data(as_text=True)


def test_api_key_connector_needs_a_header_name(logged_in):
    response = logged_in.post("/connectors/new", data=form(auth_type="api_key_header"))
    assert response.status_code == 422
    assert "Enter the header that carries the API key." in response.get_data(as_text=True)


@pytest.mark.parametrize("header", ["Host", "Content-Length", "Mcp-Session-Id", "X Key", "a:b"])
def test_api_key_header_name_must_be_usable(logged_in, header):
    response = logged_in.post(
        "/connectors/new", data=form(auth_type="api_key_header", api_key_header_name=header)
    )
    assert response.status_code == 422


def test_oauth_manual_endpoints_come_in_pairs(logged_in):
    response = logged_in.post(
        "/connectors/new",
        data=form(auth_type="oauth", secret=None,
                  oauth_authorization_endpoint="https://auth.example/authorize"),
    )  # fmt: skip
    assert response.status_code == 422
    assert "Enter both the authorization and the token endpoint" in response.get_data(as_text=True)


def test_oauth_client_credentials_are_encrypted_and_not_echoed(app, logged_in):
    logged_in.post(
        "/connectors/new",
        data=form(auth_type="oauth", secret=None, oauth_client_id="client-abc",
                  oauth_client_secret="client-secret-xyz"),
    )  # fmt: skip
    connector = stored(app)
    with app.app_context():
        assert db.session.get(Connector, connector.id).oauth_client_secret_enc.reveal() == (
            "client-secret-xyz"
        )
    page = logged_in.get(f"/connectors/{connector.id}/edit").get_data(as_text=True)
    assert "client-abc" not in page and "client-secret-xyz" not in page
    assert "A client ID is stored" in page


@pytest.mark.parametrize(
    ("auth_type", "mode", "present", "absent"),
    [
        ("none", "shared", [], ['name="credential_mode" type="radio"', 'name="secret"']),
        (
            "bearer",
            "shared",
            ['name="secret"', 'value="per_agent"'],
            ['name="api_key_header_name"'],
        ),
        ("bearer", "per_agent", ["enters its own token"], ['name="secret"']),
        ("api_key_header", "shared", ['name="api_key_header_name"', 'name="secret"'], []),
        ("api_key_header", "per_agent", ['name="api_key_header_name"'], ['name="secret"']),
        ("oauth", "shared", ["Advanced OAuth settings", "oauth_token_endpoint"], ['name="secret"']),
        ("oauth", "per_agent", ["Each agent clicks"], ['name="secret"']),
    ],
)
def test_fields_partial_follows_auth_type_and_mode(logged_in, auth_type, mode, present, absent):
    response = logged_in.hx_get(
        "/connectors/fields", query_string={"auth_type": auth_type, "credential_mode": mode}
    )
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<div id="auth-fields"')
    for text in present:
        assert text in page
    for text in absent:
        assert text not in page


def test_form_without_javascript_can_refresh_fields(logged_in):
    response = logged_in.post("/connectors/new", data=form(auth_type="oauth", refresh="1"))
    assert response.status_code == 200
    assert "Advanced OAuth settings" in response.get_data(as_text=True)


def add(app, **kwargs):
    with app.app_context():
        connector = Connector(url="https://x.example/mcp", **kwargs)
        db.session.add(connector)
        db.session.commit()
        return connector.id


def test_index_actions_follow_auth_and_mode(app, logged_in):
    add(app, name="Linear", auth_type="oauth", credential_mode="shared")
    add(app, name="Sentry", auth_type="oauth", credential_mode="per_agent")
    add(app, name="Render", auth_type="bearer", credential_mode="per_agent")
    add(app, name="Docs", auth_type="none", credential_mode="shared", status="connected")
    page = logged_in.get("/connectors/").get_data(as_text=True)
    rows = {name: page[page.index(f">{name}</a>") :].split("</tr>")[0]
            for name in ("Linear", "Sentry", "Render", "Docs")}  # fmt: skip
    assert ">Connect</button>" in rows["Linear"]
    for name in ("Sentry", "Render"):
        assert "Per-agent" in rows[name] and ">Connect</button>" not in rows[name]
    assert ">Sync</button>" in rows["Docs"]


def test_remote_and_user_text_is_escaped(app, logged_in):
    connector_id = add(app, name="<script>alert(1)</script>", auth_type="none")
    with app.app_context():
        db.session.add(
            Tool(connector_id=connector_id, name="t", description="<img src=x onerror=alert(1)>")
        )
        db.session.commit()
    for url in ("/connectors/", f"/connectors/{connector_id}"):
        page = logged_in.get(url).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;" in page


def test_unknown_connector_is_404(logged_in):
    assert logged_in.get("/connectors/999").status_code == 404
    assert logged_in.get("/connectors/999/edit").status_code == 404
    assert logged_in.post("/connectors/999/delete").status_code == 404


def test_delete_asks_for_confirmation_first(app, logged_in):
    connector_id = add(app, name="Render", auth_type="none")
    page = logged_in.get(f"/connectors/{connector_id}/delete").get_data(as_text=True)
    assert "Delete Render?" in page and "cannot be undone" in page
    with app.app_context():
        assert db.session.get(Connector, connector_id) is not None


def test_delete_removes_connector_tools_and_agent_connections(app, logged_in):
    connector_id = add(app, name="Render", auth_type="bearer", credential_mode="per_agent")
    with app.app_context():
        agent = Agent(name="a")
        db.session.add_all([
            agent, Tool(connector_id=connector_id, name="t"),
            AgentConnection(agent=agent, connector_id=connector_id, secret_enc=seal("x")),
        ])  # fmt: skip
        db.session.commit()
    response = logged_in.post(f"/connectors/{connector_id}/delete", follow_redirects=True)
    assert "Connector Render deleted" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(Connector).count() == 0
        assert db.session.query(AgentConnection).count() == 0
        assert db.session.query(Tool).count() == 0
        assert db.session.query(Agent).count() == 1


def test_changing_auth_type_drops_credentials_and_says_so(app, logged_in):
    logged_in.post("/connectors/new", data=form())
    connector = stored(app)
    response = logged_in.post(
        f"/connectors/{connector.id}/edit",
        data=form(auth_type="api_key_header", api_key_header_name="X-Key", secret=""),
        follow_redirects=True,
    )
    assert "Stored credentials were removed" in response.get_data(as_text=True)
    assert stored(app).secret_enc is None


def test_switching_to_per_agent_keeps_no_shared_secret(app, logged_in):
    logged_in.post("/connectors/new", data=form())
    connector = stored(app)
    logged_in.post(f"/connectors/{connector.id}/edit", data=form(credential_mode="per_agent"))
    assert stored(app).secret_enc is None


def test_credential_in_place_but_never_synced_is_not_called_connected(app, logged_in):
    with app.app_context():
        secret = seal(SECRET)
    connector_id = add(app, name="Render", auth_type="bearer", credential_mode="shared",
                       secret_enc=secret, status="connected")  # fmt: skip
    for url in ("/connectors/", f"/connectors/{connector_id}"):
        page = logged_in.get(url).get_data(as_text=True)
        assert "Not synced yet" in page and ">Connected</span>" not in page
