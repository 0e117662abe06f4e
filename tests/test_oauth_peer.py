"""The OAuth peer (tests/peers/oauth_server.py) behaves as the integration tests assume: driven
here with plain ``requests`` through discovery, DCR, authorize, token, MCP, refresh and revoke."""

import base64
import hashlib
import json
import secrets
import threading
from urllib.parse import parse_qs, urlsplit

import requests

TIMEOUT = 10
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never visited: the test reads the Location
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def register(peer, **metadata) -> dict:
    body = {"redirect_uris": [REDIRECT_URI], "client_name": "peer test", **metadata}
    response = requests.post(peer.base_url + "/register", json=body, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    return response.json()


def authorize(peer, client, challenge, state="st-1", **extra) -> requests.Response:
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "resource": peer.mcp_url,
        **extra,
    }
    return requests.get(
        peer.base_url + "/authorize", params=params, allow_redirects=False, timeout=TIMEOUT
    )


def token_request(peer, client, **form) -> requests.Response:
    form = {"client_id": client["client_id"], "client_secret": client["client_secret"], **form}
    return requests.post(peer.base_url + "/token", data=form, timeout=TIMEOUT)


def login(peer, client=None) -> tuple[dict, dict]:
    """Register (unless given a client), authorize and exchange the code: (client, tokens)."""
    client = client or register(peer)
    verifier, challenge = pkce_pair()
    code = parse_qs(urlsplit(authorize(peer, client, challenge).headers["Location"]).query)
    response = token_request(
        peer,
        client,
        grant_type="authorization_code",
        code=code["code"][0],
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
        resource=peer.mcp_url,
    )
    assert response.status_code == 200, response.text
    return client, response.json()


def refresh(peer, client, refresh_token) -> requests.Response:
    return token_request(peer, client, grant_type="refresh_token", refresh_token=refresh_token)


def rpc_result(response: requests.Response) -> dict:
    """The JSON-RPC message of a JSON or SSE response (its last ``data:`` line)."""
    assert response.status_code == 200, response.text
    if response.headers["Content-Type"].startswith("application/json"):
        return response.json()
    data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


class McpSession:
    """The legacy handshake: initialize, notifications/initialized, then calls with the id."""

    def __init__(self, peer, access_token):
        self.url = peer.mcp_url
        self.headers = {**MCP_HEADERS, "Authorization": "Bearer " + access_token}
        self.next_id = 1
        response = self.post(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "peer-test", "version": "0"},
            },
        )
        assert "result" in rpc_result(response)
        self.headers["Mcp-Session-Id"] = response.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        posted = requests.post(self.url, json=note, headers=self.headers, timeout=TIMEOUT)
        assert posted.status_code == 202, posted.text

    def post(self, method, params=None) -> requests.Response:
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        self.next_id += 1
        return requests.post(self.url, json=message, headers=self.headers, timeout=TIMEOUT)

    def call(self, method, params=None) -> dict:
        return rpc_result(self.post(method, params))["result"]


def test_mcp_without_token_answers_401_naming_resource_metadata(fresh_oauth_peer):
    response = requests.post(fresh_oauth_peer.mcp_url, json={}, timeout=TIMEOUT)

    assert response.status_code == 401
    prm_url = fresh_oauth_peer.base_url + "/.well-known/oauth-protected-resource/mcp"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert f'resource_metadata="{prm_url}"' in response.headers["WWW-Authenticate"]
    assert fresh_oauth_peer.stats()["mcp_unauthorized"] == 1


def test_protected_resource_metadata_names_resource_and_issuer(fresh_oauth_peer):
    url = fresh_oauth_peer.base_url + "/.well-known/oauth-protected-resource/mcp"
    prm = requests.get(url, timeout=TIMEOUT).json()

    assert prm["resource"] == fresh_oauth_peer.mcp_url
    assert prm["authorization_servers"] == [fresh_oauth_peer.issuer]


def test_authorization_server_metadata_has_s256_registration_and_revocation(fresh_oauth_peer):
    base = fresh_oauth_peer.base_url
    url = base + "/.well-known/oauth-authorization-server"
    metadata = requests.get(url, timeout=TIMEOUT).json()
    expected = {
        "issuer": base,  # exactly, no trailing slash
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/token",
        "registration_endpoint": base + "/register",
        "revocation_endpoint": base + "/revoke",
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["mcp:read", "mcp:write"],
    }

    assert {key: metadata.get(key) for key in expected} == expected
    assert "authorization_response_iss_parameter_supported" not in metadata


def test_registration_defaults_to_client_secret_post(fresh_oauth_peer):
    client = register(fresh_oauth_peer)

    assert client["token_endpoint_auth_method"] == "client_secret_post"
    assert client["client_secret"]
    assert client["scope"] == "mcp:read mcp:write"
    assert fresh_oauth_peer.stats()["registrations"] == 1


def test_authorize_redirects_at_once_with_code_and_state(fresh_oauth_peer):
    client = register(fresh_oauth_peer)
    response = authorize(fresh_oauth_peer, client, pkce_pair()[1], state="xyz")

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location._replace(query="").geturl() == REDIRECT_URI
    assert set(parse_qs(location.query)) == {"code", "state"}
    assert parse_qs(location.query)["state"] == ["xyz"]
    stats = fresh_oauth_peer.stats()
    assert stats["authorize_requests"] == 1
    assert stats["last_authorize"]["resource"] == fresh_oauth_peer.mcp_url


def test_code_exchange_refuses_a_wrong_verifier(fresh_oauth_peer):
    client = register(fresh_oauth_peer)
    location = authorize(fresh_oauth_peer, client, pkce_pair()[1]).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]

    response = token_request(
        fresh_oauth_peer,
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=pkce_pair()[0],
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert fresh_oauth_peer.stats()["token_requests"]["authorization_code"] == 1


def test_access_token_lists_and_calls_tools(fresh_oauth_peer):
    client, tokens = login(fresh_oauth_peer)
    session = McpSession(fresh_oauth_peer, tokens["access_token"])

    names = {tool["name"] for tool in session.call("tools/list")["tools"]}
    whoami = session.call("tools/call", {"name": "whoami", "arguments": {}})

    assert names == {"echo", "add", "whoami"}
    assert whoami["structuredContent"]["client_id"] == client["client_id"]
    assert whoami["structuredContent"]["access_token"] == tokens["access_token"]
    assert whoami["structuredContent"]["resource"] == fresh_oauth_peer.mcp_url
    stats = fresh_oauth_peer.stats()
    assert stats["token_requests"] == {"authorization_code": 1, "refresh_token": 0}
    assert stats["last_token_request"]["resource"] == fresh_oauth_peer.mcp_url
    assert stats["last_token_request"]["code_verifier"]
    assert stats["last_token_client_auth"] == "post"
    assert stats["mcp_requests"] == 4  # initialize, initialized, tools/list, tools/call
    assert stats["mcp_unauthorized"] == 0


def test_refresh_rotates_and_the_old_refresh_token_is_dead(fresh_oauth_peer):
    client, tokens = login(fresh_oauth_peer)

    rotated = refresh(fresh_oauth_peer, client, tokens["refresh_token"])
    replayed = refresh(fresh_oauth_peer, client, tokens["refresh_token"])

    assert rotated.status_code == 200
    assert rotated.json()["access_token"] != tokens["access_token"]
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    assert rotated.json()["expires_in"] == 3600
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"
    counted = fresh_oauth_peer.stats()["token_requests"]
    assert counted == {"authorization_code": 1, "refresh_token": 2}


def test_expire_tokens_makes_mcp_answer_401_until_refresh(fresh_oauth_peer):
    client, tokens = login(fresh_oauth_peer)

    fresh_oauth_peer.expire_tokens()
    expired = requests.post(
        fresh_oauth_peer.mcp_url,
        json={},
        headers={**MCP_HEADERS, "Authorization": "Bearer " + tokens["access_token"]},
        timeout=TIMEOUT,
    )
    renewed = refresh(fresh_oauth_peer, client, tokens["refresh_token"]).json()

    assert expired.status_code == 401
    assert McpSession(fresh_oauth_peer, renewed["access_token"]).call("tools/list")["tools"]


def test_revoke_grants_makes_the_next_refresh_invalid_grant(fresh_oauth_peer):
    client, tokens = login(fresh_oauth_peer)

    assert fresh_oauth_peer.revoke_grants() >= 1
    response = refresh(fresh_oauth_peer, client, tokens["refresh_token"])

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_revoke_kills_the_access_token_and_its_refresh_token(fresh_oauth_peer):
    client, tokens = login(fresh_oauth_peer)

    revoked = requests.post(
        fresh_oauth_peer.base_url + "/revoke",
        data={
            "token": tokens["access_token"],
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
        timeout=TIMEOUT,
    )

    assert revoked.status_code == 200
    stats = fresh_oauth_peer.stats()
    assert stats["revocations"] == 1
    assert set(stats["revoked"]) == {tokens["access_token"], tokens["refresh_token"]}
    assert refresh(fresh_oauth_peer, client, tokens["refresh_token"]).json()["error"] == (
        "invalid_grant"
    )


def test_concurrent_refreshes_of_one_token_have_one_winner(start_oauth_peer):
    peer = start_oauth_peer(access_ttl=5, token_delay=0.5)
    client, tokens = login(peer)
    assert tokens["expires_in"] == 5
    answers = []

    def attempt():
        answers.append(refresh(peer, client, tokens["refresh_token"]).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [200, 400, 400]
    assert peer.stats()["token_requests"]["refresh_token"] == 3
