"""A protected resource metadata document that discovery refused (RFC 9728 §3.3: it names
another resource) is named as the reason Connect stopped, never read as "no OAuth here" with
advice to enter endpoints by hand, which would skip the very check that refused it.
``responses`` serves the lying document: the real OAuth peer only tells the truth."""

import responses

from mcpadmin.protocol import discovery
from mcpadmin.protocol.http import Http
from tests.oauth_helpers import add_connector, start
from tests.test_adversarial_oauth import flashed
from tests.test_oauth_edges import ISSUER, MCP, PRM

EVIL = "https://evil.example.com/mcp"


def serve_lying_resource_metadata(rsps):
    rsps.post(MCP, status=401, headers={"WWW-Authenticate": f'Bearer resource_metadata="{PRM}"'})
    rsps.get(PRM, json={"resource": EVIL, "authorization_servers": [ISSUER]})
    for url in ("https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
                "https://mcp.example.com/.well-known/oauth-authorization-server",
                "https://mcp.example.com/.well-known/openid-configuration"):  # fmt: skip
        rsps.get(url, status=404)


@responses.activate
def test_discovery_names_the_refused_resource_metadata():
    serve_lying_resource_metadata(responses)
    try:
        discovery.discover(Http(allow_private=True), MCP)
    except discovery.DiscoveryError as exc:
        message = str(exc)
    assert message.startswith(f"The protected resource metadata at {PRM} was refused: "
                              f"describes another resource ('{EVIL}').")  # fmt: skip
    assert "does not advertise OAuth" not in message and "by hand" not in message


@responses.activate
def test_connect_shows_the_refusal_not_advice_to_enter_endpoints_by_hand(app, logged_in):
    serve_lying_resource_metadata(responses)
    connector_id = add_connector(app, MCP)
    assert start(logged_in, connector_id).headers["Location"] == "/connectors/"
    page = flashed(logged_in)
    assert "was refused: describes another resource" in page
    assert "does not advertise OAuth" not in page and "by hand" not in page
