"""The OAuth protocol modules on their own: spec vectors for the pure parts, ``responses``
for what a real authorization server will not produce (404s, wrong issuer, bad JSON, 500s)."""

import pytest
import requests
import responses

from mcpadmin.protocol import discovery, pkce, registration
from mcpadmin.protocol import tokens as grants
from mcpadmin.protocol.endpoints import InsecureEndpoint, check_endpoint
from mcpadmin.protocol.http import Http

MCP = "https://mcp.example.com/mcp"
ISSUER = "https://auth.example.com"


def http():
    return Http(timeout=2, allow_private=True)


def test_pkce_challenge_matches_rfc7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_verifier_is_long_unreserved_and_fresh():
    verifiers = {pkce.make_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for v in verifiers:
        assert 43 <= len(v) <= 128
        assert set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def test_www_authenticate_parameters_are_unquoted():
    header = (
        'Bearer error="insufficient_scope", scope="files:read files:write", '
        'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"'
    )
    assert discovery.parse_www_authenticate(header) == {
        "error": "insufficient_scope",
        "scope": "files:read files:write",
        "resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
    }
    assert discovery.parse_www_authenticate('Basic realm="x"') == {}
    assert discovery.parse_www_authenticate(None) == {}


def test_protected_resource_urls_try_header_then_path_then_root():
    assert discovery.protected_resource_urls(MCP, "https://mcp.example.com/meta") == [
        "https://mcp.example.com/meta",
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert discovery.protected_resource_urls("https://mcp.example.com/") == [
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    ]


def test_authorization_server_urls_follow_the_spec_order():
    assert discovery.authorization_server_urls("https://a.example/tenant1") == [
        "https://a.example/.well-known/oauth-authorization-server/tenant1",
        "https://a.example/.well-known/openid-configuration/tenant1",
        "https://a.example/tenant1/.well-known/openid-configuration",
    ]
    assert discovery.authorization_server_urls("https://a.example/") == [
        "https://a.example/.well-known/oauth-authorization-server",
        "https://a.example/.well-known/openid-configuration",
    ]


def test_canonical_resource_and_matching():
    assert discovery.canonical_resource("HTTPS://MCP.Example.com/mcp/#x") == MCP
    assert discovery.resource_matches(MCP, MCP)
    assert discovery.resource_matches("https://mcp.example.com", MCP)
    assert not discovery.resource_matches("https://mcp.example.com/other", MCP)
    assert not discovery.resource_matches("https://evil.example/mcp", MCP)
    assert not discovery.resource_matches("https://mcp.example.com/mc", MCP)


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "http://auth.example.com/a",
     "https://user:pw@auth.example.com/a", "https://auth.example.com/a b", "", "//auth.example"],
)  # fmt: skip
def test_check_endpoint_refuses_anything_but_https(url):
    with pytest.raises(InsecureEndpoint):
        check_endpoint(url, allow_http_loopback=True)


def test_check_endpoint_allows_http_loopback_only_in_development():
    assert check_endpoint("http://127.0.0.1:9/authorize", allow_http_loopback=True)
    assert check_endpoint("http://localhost:9/authorize", allow_http_loopback=True)
    with pytest.raises(InsecureEndpoint):
        check_endpoint("http://127.0.0.1:9/authorize", allow_http_loopback=False)


def as_metadata(**overrides):
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/authorize",
        "token_endpoint": ISSUER + "/token",
        "registration_endpoint": ISSUER + "/register",
        "code_challenge_methods_supported": ["S256"],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def challenge_401(rsps, scope=None):
    header = 'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"'
    if scope:
        header += f', scope="{scope}"'
    rsps.post(MCP, status=401, headers={"WWW-Authenticate": header})


def serve_issuer_metadata(**overrides):
    """A 401 pointing at resource metadata that names ``ISSUER``, whose RFC 8414 document is
    ``as_metadata(**overrides)`` (no OpenID configuration)."""
    challenge_401(responses)
    responses.get(
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        json={"resource": MCP, "authorization_servers": [ISSUER]},
    )
    responses.get(ISSUER + "/.well-known/oauth-authorization-server", json=as_metadata(**overrides))
    responses.get(ISSUER + "/.well-known/openid-configuration", status=404)


@responses.activate
def test_discover_reads_prm_then_issuer_metadata():
    challenge_401(responses, scope="read")
    responses.get(
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        json={"resource": MCP, "authorization_servers": [ISSUER], "scopes_supported": ["read"]},
    )
    responses.get(ISSUER + "/.well-known/oauth-authorization-server", json=as_metadata())
    found = discovery.discover(http(), MCP)
    assert found.issuer == ISSUER
    assert found.token_endpoint == ISSUER + "/token"
    assert found.challenge_scope == "read"
    assert [entry["outcome"] for entry in found.log] == [
        "401: names its resource metadata",
        "found",
        "found",
    ]


@responses.activate
def test_discover_falls_back_to_the_server_origin_without_prm():
    responses.post(MCP, status=401)
    for path in (
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ):
        responses.get("https://mcp.example.com" + path, status=404)
    responses.get("https://mcp.example.com/.well-known/oauth-authorization-server", status=404)
    responses.get(
        "https://mcp.example.com/.well-known/openid-configuration",
        json=as_metadata(issuer="https://mcp.example.com",
                         authorization_endpoint="https://mcp.example.com/authorize",
                         token_endpoint="https://mcp.example.com/token"),
    )  # fmt: skip
    found = discovery.discover(http(), MCP)
    assert found.issuer == "https://mcp.example.com"
    assert [e["outcome"] for e in found.log] == ["401 without resource_metadata", "404", "404",
                                                  "404", "found"]  # fmt: skip


@responses.activate
def test_discover_404_everywhere_says_the_server_does_not_use_oauth():
    responses.post(MCP, status=200, json={})
    for path in ("oauth-protected-resource/mcp", "oauth-protected-resource",
                 "oauth-authorization-server", "openid-configuration"):  # fmt: skip
        responses.get("https://mcp.example.com/.well-known/" + path, status=404)
    with pytest.raises(discovery.DiscoveryError) as caught:
        discovery.discover(http(), MCP)
    assert "does not advertise OAuth" in str(caught.value)
    assert "bearer token or API key" in str(caught.value)
    assert len(caught.value.log) == 5  # probe, 2 PRM URLs, 2 AS metadata URLs


@responses.activate
def test_discover_refuses_metadata_for_another_issuer():
    serve_issuer_metadata(issuer="https://evil.example.com")
    with pytest.raises(discovery.DiscoveryError) as caught:
        discovery.discover(http(), MCP)
    assert "is not 'https://auth.example.com'" in caught.value.log[2]["outcome"]


@responses.activate
def test_discover_refuses_prm_for_another_resource():
    challenge_401(responses)
    responses.get(
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        json={"resource": "https://other.example.com/mcp", "authorization_servers": [ISSUER]},
    )
    responses.get("https://mcp.example.com/.well-known/oauth-protected-resource", status=404)
    responses.get("https://mcp.example.com/.well-known/oauth-authorization-server", status=404)
    responses.get("https://mcp.example.com/.well-known/openid-configuration", status=404)
    with pytest.raises(discovery.DiscoveryError) as caught:
        discovery.discover(http(), MCP)
    assert "describes another resource" in caught.value.log[1]["outcome"]


@responses.activate
def test_discover_survives_malformed_json_and_javascript_endpoints():
    challenge_401(responses)
    responses.get(
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        json={"resource": MCP, "authorization_servers": [ISSUER]},
    )
    responses.get(ISSUER + "/.well-known/oauth-authorization-server", body="{not json")
    responses.get(
        ISSUER + "/.well-known/openid-configuration",
        json=as_metadata(authorization_endpoint="javascript:alert(1)"),
    )
    with pytest.raises(discovery.DiscoveryError) as caught:
        discovery.discover(http(), MCP)
    outcomes = [e["outcome"] for e in caught.value.log]
    assert "not JSON" in outcomes[2]
    assert "authorization_endpoint refused" in outcomes[3]


@responses.activate
def test_registration_error_shows_the_servers_description():
    responses.post(
        ISSUER + "/register",
        status=400,
        json={"error": "invalid_redirect_uri", "error_description": "redirect must be https"},
    )
    with pytest.raises(registration.RegistrationError) as caught:
        registration.register(http(), ISSUER + "/register", {"redirect_uris": ["x"]})
    assert caught.value.error == "invalid_redirect_uri"
    assert "redirect must be https" in str(caught.value)


def test_client_metadata_describes_a_web_or_native_client():
    web = registration.client_metadata(
        "https://admin.example.com/oauth/callback", "client_secret_post"
    )
    assert web["application_type"] == "web"
    assert web["grant_types"] == ["authorization_code", "refresh_token"]
    assert web["redirect_uris"] == ["https://admin.example.com/oauth/callback"]
    native = registration.client_metadata("http://127.0.0.1:5000/oauth/callback", "none", "a b")
    assert native["application_type"] == "native"
    assert native["scope"] == "a b"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": "invalid_grant", "error_description": "expired"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (500, "oops", "unavailable"),
        (200, "<html>", "invalid_response"),
        (200, {"token_type": "Bearer"}, "invalid_response"),
        (400, "nope", "http_400"),
    ],
)
@responses.activate
def test_token_errors_are_typed(status, body, error):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(ISSUER + "/token", status=status, **kwargs)
    with pytest.raises(grants.TokenError) as caught:
        grants.refresh(http(), ISSUER + "/token", grants.ClientAuth("c"), refresh_token="r",
                       resource=MCP)  # fmt: skip
    assert caught.value.error == error


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("3600", 3600), ("59.9", 59), ("1e400", None), ("NaN", None), ("true", None), ('"60"', None)],
)
@responses.activate
def test_expires_in_must_be_a_finite_number(raw, seconds):
    body = '{"access_token": "a", "token_type": "Bearer", "expires_in": ' + raw + "}"
    responses.post(ISSUER + "/token", body=body, content_type="application/json")
    got = grants.refresh(http(), ISSUER + "/token", grants.ClientAuth("c"), refresh_token="r",
                         resource=MCP)  # fmt: skip
    assert got.expires_in == seconds


@responses.activate
def test_token_endpoint_timeout_is_transient():
    responses.post(ISSUER + "/token", body=requests.exceptions.ReadTimeout())
    with pytest.raises(grants.TokenError) as caught:
        grants.refresh(http(), ISSUER + "/token", grants.ClientAuth("c"), refresh_token="r",
                       resource=MCP)  # fmt: skip
    assert caught.value.transient
    assert "did not answer in time" in str(caught.value)


@responses.activate
def test_client_auth_methods_put_the_secret_where_asked():
    responses.post(ISSUER + "/token", json={"access_token": "a", "token_type": "Bearer"})
    grants.refresh(http(), ISSUER + "/token", grants.ClientAuth("id", "s3", "client_secret_basic"),
                   refresh_token="r", resource=MCP)  # fmt: skip
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Basic aWQ6czM="
    assert "client_secret" not in sent.body and "client_id=id" in sent.body
    assert "resource=https%3A%2F%2Fmcp.example.com%2Fmcp" in sent.body


@responses.activate
def test_refused_metadata_is_named_instead_of_no_oauth():
    serve_issuer_metadata(token_endpoint="http://auth.example.com/token")
    with pytest.raises(discovery.DiscoveryError) as caught:
        discovery.discover(http(), MCP)
    assert "was refused: token_endpoint refused" in str(caught.value)
    assert "does not advertise OAuth" not in str(caught.value)
