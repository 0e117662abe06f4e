"""Connect and refresh against what a real authorization server will not produce, with
``responses``: no OAuth at all, no S256, a refused registration, invalid_client at the code
exchange, and a token endpoint that fails (500, timeout) mid-refresh."""

from datetime import timedelta

import requests
import responses
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Connector, OAuthClient, utcnow
from mcpadmin.services import tokens
from tests.oauth_helpers import add_connector, query, start

MCP = "https://mcp.example.com/mcp"
ISSUER = "https://auth.example.com"
PRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def serve_oauth(rsps, **metadata):
    rsps.post(MCP, status=401, headers={"WWW-Authenticate": f'Bearer resource_metadata="{PRM}"'})
    rsps.get(PRM, json={"resource": MCP, "authorization_servers": [ISSUER]})
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/authorize",
        "token_endpoint": ISSUER + "/token",
        "registration_endpoint": ISSUER + "/register",
        "revocation_endpoint": ISSUER + "/revoke",
        "code_challenge_methods_supported": ["S256"],
    }
    doc.update(metadata)
    rsps.get(ISSUER + "/.well-known/oauth-authorization-server", json=doc)


def register_ok(rsps, client_id="client-1"):
    body = {"client_id": client_id, "client_secret": "s", "redirect_uris": ["x"]}
    rsps.post(ISSUER + "/register", status=201, json=body)


@responses.activate
def test_server_without_oauth_gets_a_clear_message_and_a_discovery_log(app, logged_in):
    responses.post(MCP, status=200, json={"jsonrpc": "2.0", "id": 1, "result": {}})
    for url in (PRM, "https://mcp.example.com/.well-known/oauth-protected-resource",
                "https://mcp.example.com/.well-known/oauth-authorization-server",
                "https://mcp.example.com/.well-known/openid-configuration"):  # fmt: skip
        responses.get(url, status=404)
    connector_id = add_connector(app, MCP)
    page = start(logged_in, connector_id).headers["Location"]
    assert page == "/connectors/"
    text = logged_in.get(page).get_data(as_text=True)
    assert "does not advertise OAuth" in text and "bearer token or API key" in text
    detail = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert "discovery tried" in detail
    assert "/.well-known/openid-configuration" in detail and "404" in detail


@responses.activate
def test_connect_refuses_a_server_without_s256(app, logged_in):
    serve_oauth(responses, code_challenge_methods_supported=["plain"])
    connector_id = add_connector(app, MCP)
    text = logged_in.get(start(logged_in, connector_id).headers["Location"]).get_data(as_text=True)
    assert "does not advertise PKCE with S256" in text
    assert not [c for c in responses.calls if c.request.url.endswith("/register")]


@responses.activate
def test_refused_registration_shows_the_servers_description(app, logged_in):
    serve_oauth(responses)
    responses.post(ISSUER + "/register", status=400,
                   json={"error": "invalid_client_metadata",
                         "error_description": "redirect_uris must be https"})  # fmt: skip
    connector_id = add_connector(app, MCP)
    text = logged_in.get(start(logged_in, connector_id).headers["Location"]).get_data(as_text=True)
    assert "redirect_uris must be https" in text


@responses.activate
def test_hand_entered_endpoints_skip_discovery(app, logged_in):
    connector_id = add_connector(
        app, MCP,
        oauth_authorization_endpoint=ISSUER + "/authorize", oauth_token_endpoint=ISSUER + "/token",
        client_id="pre-registered",
    )  # fmt: skip
    location = start(logged_in, connector_id).headers["Location"]
    assert location.startswith(ISSUER + "/authorize?")
    assert query(location)["client_id"] == "pre-registered"
    assert len(responses.calls) == 0


@responses.activate
def test_javascript_authorization_endpoint_is_never_a_redirect_target(app, logged_in):
    connector_id = add_connector(
        app, MCP,
        oauth_authorization_endpoint="javascript:alert(1)", oauth_token_endpoint=ISSUER + "/token",
        client_id="pre-registered",
    )  # fmt: skip
    answer = start(logged_in, connector_id)
    assert answer.headers["Location"] == "/connectors/"
    assert "not an https URL" in logged_in.get("/connectors/").get_data(as_text=True)


@responses.activate
def test_invalid_client_at_the_exchange_registers_again_once(app, logged_in):
    serve_oauth(responses)
    register_ok(responses, "client-1")
    register_ok(responses, "client-2")
    responses.post(ISSUER + "/token", status=401, json={"error": "invalid_client"})
    connector_id = add_connector(app, MCP)
    first = start(logged_in, connector_id).headers["Location"]
    again = logged_in.get(
        "/oauth/callback", query_string={"code": "c", "state": query(first)["state"]}
    )
    second = again.headers["Location"]
    assert second.startswith(ISSUER + "/authorize?")
    assert query(second)["client_id"] == "client-2"
    final = logged_in.get(
        "/oauth/callback", query_string={"code": "c", "state": query(second)["state"]}
    )
    assert final.headers["Location"] == "/connectors/"
    assert "invalid_client" in logged_in.get("/connectors/").get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(OAuthClient)).all() == []  # dropped again, no loop


def connected(app, expires_in=timedelta(minutes=1)):
    """A shared connector holding tokens that expire soon, registered as client-1."""
    with app.app_context():
        connector = Connector(
            name="Edge", url=MCP, auth_type="oauth", credential_mode="shared", status="connected",
            oauth_metadata={"issuer": ISSUER, "token_endpoint": ISSUER + "/token",
                            "authorization_endpoint": ISSUER + "/authorize"},
            access_token_enc=seal("old-access"), refresh_token_enc=seal("old-refresh"),
            token_expires_at=utcnow() + expires_in,
            oauth_grant={"issuer": ISSUER, "token_endpoint": ISSUER + "/token",
                         "revocation_endpoint": None, "resource": None},
        )  # fmt: skip
        db.session.add(connector)
        db.session.add(OAuthClient(issuer=ISSUER, redirect_uri="http://127.0.0.1:5000/oauth/callback",
                                   client_id_enc=seal("client-1"), client_secret_enc=seal("s"),
                                   token_endpoint_auth_method="client_secret_post"))  # fmt: skip
        db.session.commit()
        return connector.id


@responses.activate
def test_token_endpoint_500_keeps_the_tokens_and_uses_the_still_valid_one(app):
    connector_id = connected(app)
    responses.post(ISSUER + "/token", status=500, body="boom")
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert tokens.access_token(connector, None) == "old-access"
        db.session.expire_all()
        connector = db.session.get(Connector, connector_id)
        assert connector.refresh_token_enc.reveal() == "old-refresh"
        assert connector.status == "connected"
        assert "token endpoint failed (500)" in connector.last_error


@responses.activate
def test_token_endpoint_timeout_on_an_expired_token_raises_and_keeps_everything(app):
    connector_id = connected(app, expires_in=timedelta(seconds=-5))
    responses.post(ISSUER + "/token", body=requests.exceptions.ReadTimeout())
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        try:
            tokens.access_token(connector, None)
        except tokens.NeedsReconnect:
            raise AssertionError("a timeout is not a dead grant") from None
        except tokens.TokenError as exc:
            assert exc.transient
        db.session.expire_all()
        connector = db.session.get(Connector, connector_id)
        assert connector.access_token_enc.reveal() == "old-access"
        assert connector.status == "connected"


@responses.activate
def test_refresh_without_a_new_refresh_token_keeps_the_old_one(app):
    connector_id = connected(app)
    responses.post(ISSUER + "/token", json={"access_token": "new", "token_type": "Bearer",
                                            "expires_in": 3600})  # fmt: skip
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert tokens.access_token(connector, None) == "new"
        db.session.expire_all()
        assert db.session.get(Connector, connector_id).refresh_token_enc.reveal() == "old-refresh"
    assert "resource=https%3A%2F%2Fmcp.example.com%2Fmcp" in responses.calls[0].request.body


@responses.activate
def test_invalid_client_on_refresh_drops_the_registration_and_asks_to_reconnect(app):
    connector_id = connected(app)
    responses.post(ISSUER + "/token", status=401, json={"error": "invalid_client"})
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        try:
            tokens.access_token(connector, None)
            raise AssertionError("expected NeedsReconnect")
        except tokens.NeedsReconnect:
            pass
        db.session.expire_all()
        assert db.session.get(Connector, connector_id).status == "needs_reconnect"
        assert db.session.scalars(select(OAuthClient)).all() == []


def test_client_metadata_document_is_served_over_https_only(app, make_app):
    assert app.test_client().get("/oauth/client-metadata.json").status_code == 404
    https_app = make_app(
        {"PUBLIC_BASE_URL": "https://admin.example.com", "ALLOW_PRIVATE_NETWORKS": True}
    )
    doc = https_app.test_client().get("/oauth/client-metadata.json").get_json()
    assert doc["client_id"] == "https://admin.example.com/oauth/client-metadata.json"
    assert doc["redirect_uris"] == ["https://admin.example.com/oauth/callback"]
    assert doc["token_endpoint_auth_method"] == "none"


@responses.activate
def test_cimd_is_preferred_to_registration_when_the_issuer_supports_it(make_app, admin):
    https_app = make_app(
        {"PUBLIC_BASE_URL": "https://admin.example.com", "ALLOW_PRIVATE_NETWORKS": True,
         "ALLOW_HTTP_LOOPBACK": True, "SESSION_COOKIE_SECURE": False}
    )  # fmt: skip
    from tests.conftest import PASSWORD, Browser

    browser = Browser(https_app.test_client())
    browser.post("/login", data={"username": admin, "password": PASSWORD})
    browser.get("/connectors/")
    serve_oauth(responses, client_id_metadata_document_supported=True)
    connector_id = add_connector(https_app, MCP)
    location = start(browser, connector_id).headers["Location"]
    assert query(location)["client_id"] == "https://admin.example.com/oauth/client-metadata.json"
    assert not [c for c in responses.calls if c.request.url.endswith("/register")]
