"""Connect against hostile answers: forged or stale callbacks (counted at the real peer: no
token request may follow), lying metadata, dangerous endpoint URLs, a token endpoint that
redirects elsewhere, a spoofed Host, refresh answers that drop the refresh token, and a
search for every secret in the logs and pages after a whole flow."""

import json
import logging
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
import responses
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Connector, OAuthClient, PendingAuthorization, utcnow
from mcpadmin.services import admins, tokens
from tests.conftest import Browser
from tests.oauth_helpers import add_connector, connect, consent, query, start
from tests.test_oauth_edges import ISSUER, MCP, PRM, connected, register_ok

CALLBACK = "http://127.0.0.1:5000/oauth/callback"


def token_requests(peer) -> int:
    return sum(peer.stats()["token_requests"].values())


def flashed(client) -> str:
    return client.get("/connectors/").get_data(as_text=True)


def stored_access_token(app, connector_id):
    with app.app_context():
        return db.session.get(Connector, connector_id).access_token_enc


# -- state -----------------------------------------------------------------------------------


def test_callback_without_state_is_refused_before_any_token_request(
    app, logged_in, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    without_state = "/oauth/callback?code=" + query(callback)["code"]
    assert logged_in.get(without_state).headers["Location"] == "/connectors/"
    assert "could not be verified" in flashed(logged_in)
    assert token_requests(fresh_oauth_peer) == 0
    assert stored_access_token(app, connector_id) is None


def test_tampered_state_sends_no_token_request(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    logged_in.get(callback.replace("state=", "state=x"))
    assert "could not be verified" in flashed(logged_in)
    assert token_requests(fresh_oauth_peer) == 0


def test_expired_flow_sends_no_token_request(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    with app.app_context():
        pending = db.session.scalar(select(PendingAuthorization))
        pending.created_at = utcnow() - timedelta(minutes=11)
        db.session.commit()
    logged_in.get(callback)
    assert "already used or has expired" in flashed(logged_in)
    assert token_requests(fresh_oauth_peer) == 0


def test_replayed_callback_sends_no_second_token_request(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    logged_in.get(callback)
    first = stored_access_token(app, connector_id)
    logged_in.get(callback)
    assert "already used or has expired" in flashed(logged_in)
    assert fresh_oauth_peer.stats()["token_requests"]["authorization_code"] == 1
    assert stored_access_token(app, connector_id) == first  # the first grant's tokens stay


def test_flow_started_by_another_admin_sends_no_token_request(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    with app.app_context():
        admins.create_admin("mallory", "another long password")
        db.session.commit()
    other = Browser(app.test_client())
    other.get("/login")
    other.post("/login", data={"username": "mallory", "password": "another long password"})
    other.get(callback)
    assert "started by another admin" in flashed(other)
    assert token_requests(fresh_oauth_peer) == 0
    assert stored_access_token(app, connector_id) is None


# -- iss (RFC 9207) ----------------------------------------------------------------------------


def test_iss_mismatch_is_refused_before_the_token_request(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    logged_in.get(callback + "&iss=https%3A%2F%2Fevil.example")
    assert "issuer mismatch" in flashed(logged_in)
    assert token_requests(fresh_oauth_peer) == 0


def test_missing_iss_is_refused_when_the_server_promised_it(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    callback = consent(start(logged_in, connector_id).headers["Location"])
    with app.app_context():
        # As recorded when the metadata says authorization_response_iss_parameter_supported
        # (the SDK's server never says it, nor sends iss).
        db.session.scalar(select(PendingAuthorization)).iss_required = True
        db.session.commit()
    logged_in.get(callback)
    assert "no iss parameter" in flashed(logged_in)
    assert token_requests(fresh_oauth_peer) == 0


# -- metadata that lies about itself ------------------------------------------------------------


def serve_metadata(rsps, prm=None, **overrides):
    """The MCP server's 401 and PRM, and the issuer's RFC 8414 metadata with ``overrides``."""
    rsps.post(MCP, status=401, headers={"WWW-Authenticate": f'Bearer resource_metadata="{PRM}"'})
    rsps.get(PRM, json=prm or {"resource": MCP, "authorization_servers": [ISSUER]})
    doc = {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/authorize",
           "token_endpoint": ISSUER + "/token", "registration_endpoint": ISSUER + "/register",
           "code_challenge_methods_supported": ["S256"], **overrides}  # fmt: skip
    rsps.get(ISSUER + "/.well-known/oauth-authorization-server", json=doc)
    rsps.get(ISSUER + "/.well-known/openid-configuration", json=doc)
    for url in ("https://mcp.example.com/.well-known/oauth-protected-resource",
                "https://mcp.example.com/.well-known/oauth-authorization-server",
                "https://mcp.example.com/.well-known/openid-configuration"):  # fmt: skip
        rsps.get(url, status=404)


@responses.activate
def test_metadata_for_another_issuer_is_discarded_with_its_reason_shown(app, logged_in):
    serve_metadata(responses, issuer="https://evil.example")
    connector_id = add_connector(app, MCP)
    assert start(logged_in, connector_id).headers["Location"] == "/connectors/"
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert "is not &#39;https://auth.example.com&#39;" in page  # RFC 8414 §3.3, in the log
    assert not any(c.request.url.startswith(ISSUER + "/register") for c in responses.calls)


@responses.activate
def test_resource_metadata_for_another_resource_is_discarded_with_its_reason_shown(app, logged_in):
    serve_metadata(responses, prm={"resource": "https://other.example/mcp",
                                   "authorization_servers": [ISSUER]})  # fmt: skip
    connector_id = add_connector(app, MCP)
    start(logged_in, connector_id)
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert "describes another resource" in page  # RFC 9728 §3.3
    with app.app_context():
        log = db.session.get(Connector, connector_id).discovery_log
        assert any(e.get("refused") and e["url"] == PRM for e in log)


BAD_ENDPOINTS = [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "http://auth.example.com/x",  # plain http on a public host
    "https://auth.example.com/x;rm -rf /",
    "https://auth.example.com/x`id`",
    "https://auth.example.com/$(id)",
    "https://auth.example.com/x|nc evil.example 1",
    "https://auth.example.com/x\n/y",
    'https://auth.example.com/x"><script>',
]


@pytest.mark.parametrize("field", ["authorization_endpoint", "token_endpoint",
                                   "registration_endpoint"])  # fmt: skip
@pytest.mark.parametrize("url", BAD_ENDPOINTS)
@responses.activate
def test_dangerous_endpoint_in_metadata_refuses_connect_and_is_never_a_redirect(
    app, logged_in, field, url
):
    serve_metadata(responses, **{field: url})
    register_ok(responses)
    connector_id = add_connector(app, MCP)
    answer = start(logged_in, connector_id)
    assert answer.headers["Location"] == "/connectors/"
    assert "was refused" in flashed(logged_in)
    hx = logged_in.hx_post(f"/oauth/connect/{connector_id}")
    assert hx.headers.get("HX-Redirect") == "/connectors/"
    assert not any(c.request.url.startswith(ISSUER + "/register") for c in responses.calls)


# -- a token endpoint that redirects ------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Records every request; answers with ``self.server.answer(handler)``."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.seen.append((self.path, body, dict(self.headers)))
        self.server.answer(self)

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """``http_server(answer)`` starts a threaded server on 127.0.0.1; ``.seen`` lists
    ``(path, body, headers)``."""
    servers = []

    def make(answer):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        server.seen, server.answer = [], answer
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def register_at(peer) -> dict:
    """A client registered at the real peer (RFC 7591), as an operator would pre-register."""
    answer = requests.post(peer.base_url + "/register", timeout=10, json={
        "redirect_uris": [CALLBACK], "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "scope": "mcp:read mcp:write"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_token_endpoint_redirect_to_another_host_is_not_followed(
    app, logged_in, oauth_peer, http_server
):
    elsewhere = http_server(lambda h: (h.send_response(200), h.end_headers()))

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", elsewhere.url + "/token")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hostile = http_server(redirect)
    client = register_at(oauth_peer)
    connector_id = add_connector(
        app, oauth_peer.mcp_url, client_id=client["client_id"],
        oauth_authorization_endpoint=oauth_peer.base_url + "/authorize",
        oauth_token_endpoint=hostile.url + "/token",
    )  # fmt: skip
    with app.app_context():
        db.session.get(Connector, connector_id).oauth_client_secret_enc = seal(
            client["client_secret"]
        )
        db.session.commit()
    done = connect(logged_in, connector_id)
    assert done.headers["Location"] == "/connectors/"
    assert "Signing in to Peer failed" in flashed(logged_in)
    assert len(hostile.seen) == 1 and "code_verifier=" in hostile.seen[0][1]
    assert elsewhere.seen == []  # code, verifier and secret went nowhere else
    assert stored_access_token(app, connector_id) is None


# -- Host header ---------------------------------------------------------------------------------


def test_spoofed_host_headers_do_not_change_the_redirect_uri(app, logged_in, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
               "Forwarded": "host=evil.example"}  # fmt: skip
    session = logged_in.get_cookie("mcpadmin_session").value
    logged_in.set_cookie("mcpadmin_session", session, domain="evil.example")
    refused = logged_in.post(f"/oauth/connect/{connector_id}",
                             headers={**spoofed, "Host": "evil.example"})  # fmt: skip
    assert refused.status_code == 400  # not a host this app answers at
    started = logged_in.post(f"/oauth/connect/{connector_id}", headers=spoofed)
    assert query(started.headers["Location"])["redirect_uri"] == CALLBACK
    logged_in.get(consent(started.headers["Location"]))
    assert fresh_oauth_peer.stats()["last_token_request"]["redirect_uri"] == CALLBACK


# -- refresh answers without a refresh token -----------------------------------------------------


@responses.activate
def test_refresh_keeps_the_newest_refresh_token_when_answers_omit_it(app):
    connector_id = connected(app)
    for answer in ({"access_token": "a1"}, {"access_token": "a2", "refresh_token": "r2"},
                   {"access_token": "a3"}):  # fmt: skip
        responses.post(ISSUER + "/token", json={"token_type": "Bearer", "expires_in": 60, **answer})
    sent = []
    with app.app_context():
        for expected_access in ("a1", "a2", "a3"):
            connector = db.session.get(Connector, connector_id)
            connector.token_expires_at = utcnow() - timedelta(seconds=1)
            db.session.commit()
            assert tokens.access_token(connector, None) == expected_access
            db.session.expire_all()
        assert db.session.get(Connector, connector_id).refresh_token_enc.reveal() == "r2"
    for call in responses.calls:
        sent.append(dict(parse_qsl(call.request.body))["refresh_token"])
    assert sent == ["old-refresh", "old-refresh", "r2"]  # RFC 6749 §6: omitted = keep


# -- no secret leaks -----------------------------------------------------------------------------


def test_no_secret_reaches_logs_pages_or_cli_after_connect_sync_and_refresh(
    app, logged_in, fresh_oauth_peer, runner, caplog
):
    caplog.set_level(logging.DEBUG)
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    started = start(logged_in, connector_id)
    callback = consent(started.headers["Location"])
    answers = [started, logged_in.get(callback)]
    secrets = {"code": query(callback)["code"]}
    secrets["verifier"] = fresh_oauth_peer.stats()["last_token_request"]["code_verifier"]
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        secrets["access 1"] = connector.access_token_enc.reveal()
        secrets["refresh 1"] = connector.refresh_token_enc.reveal()
        secrets["client secret"] = db.session.scalar(select(OAuthClient)).client_secret_enc.reveal()
        connector.token_expires_at = utcnow() + timedelta(minutes=1)
        connector.token_obtained_at = utcnow() - timedelta(hours=1)
        db.session.commit()
        secrets["access 2"] = tokens.access_token(connector, None)  # a refresh at the peer
        db.session.expire_all()
        secrets["refresh 2"] = db.session.get(Connector, connector_id).refresh_token_enc.reveal()
    assert fresh_oauth_peer.stats()["token_requests"]["refresh_token"] == 1
    answers.append(logged_in.post(f"/connectors/{connector_id}/sync"))
    answers.append(logged_in.hx_post(f"/connectors/{connector_id}/sync"))
    answers.append(logged_in.get(callback))  # the replay error
    answers.append(logged_in.get(callback.replace("state=", "state=x")))
    for url in ("/connectors/", f"/connectors/{connector_id}", f"/connectors/{connector_id}/edit",
                "/connectors/new", "/agents/", "/agents/new", "/nowhere",
                f"/connectors/fields?id={connector_id}&auth_type=oauth"):  # fmt: skip
        answers.append(logged_in.get(url))
    cli = runner.invoke(args=["sync-tools"])
    assert cli.exit_code == 0, cli.output

    seen = "\n".join(
        [caplog.text, cli.output, json.dumps(fresh_oauth_peer.stats()["last_authorize"])]
        + [a.get_data(as_text=True) + json.dumps(dict(a.headers)) for a in answers]
    )
    leaked = [name for name, value in secrets.items() if value and value in seen]
    assert leaked == []
    assert all(len(v) >= 16 for v in secrets.values())  # real secrets, not empty matches
