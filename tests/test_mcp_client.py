"""The MCP client against real servers from the official SDK (both eras, JSON and SSE,
sessions or none, credentials, paging, failures). Request counts are what the peer saw."""

import pytest

from mcpadmin.protocol.http import Http
from mcpadmin.protocol.mcp import Client, McpError, Unauthorized
from tests.peers import free_port
from tests.peers.mcp_wrap import generated_tools


def listing(peer_url, headers=None, era=None, version=None, **http):
    client = Client(Http(allow_private=True, **http), peer_url, headers, era=era, version=version)
    return client.list_tools()


def seen(peer, before):
    return peer.requests()[before:]


def test_modern_server_is_probed_then_listed_in_two_requests(modern_peer):
    modern_peer.set_tools(generated_tools(3))
    before = len(modern_peer.requests())
    result = listing(modern_peer.url)
    assert (result.era, result.version) == ("modern", "2026-07-28")
    assert [t["name"] for t in result.tools] == ["tool_000", "tool_001", "tool_002"]
    assert seen(modern_peer, before) == [["POST", "server/discover"], ["POST", "tools/list"]]
    assert result.requests == 2
    assert (result.ttl_ms, result.cache_scope) == (600000, "public")


def test_known_modern_server_takes_one_request_per_page_and_no_probe(paged_peer):
    before = len(paged_peer.requests())
    result = listing(paged_peer.url, era="modern", version="2026-07-28")
    assert len(result.tools) == 250
    assert seen(paged_peer, before) == [["POST", "tools/list"]] * 7
    assert result.requests == 7


def test_hundreds_of_tools_across_pages_are_all_listed_after_a_probe(paged_peer):
    result = listing(paged_peer.url)
    assert len({t["name"] for t in result.tools}) == 250
    assert result.requests == 1 + 7


def test_legacy_only_server_falls_back_to_the_handshake(legacy_peer):
    legacy_peer.set_tools(generated_tools(3))
    before = len(legacy_peer.requests())
    result = listing(legacy_peer.url)
    assert (result.era, result.version) == ("legacy", "2025-11-25")
    assert len(result.tools) == 3
    assert seen(legacy_peer, before) == [
        ["POST", "server/discover"],
        ["POST", "initialize"],
        ["POST", "notifications/initialized"],
        ["POST", "tools/list"],
        ["DELETE", None],
    ]


def test_known_legacy_server_skips_the_probe(legacy_peer):
    before = len(legacy_peer.requests())
    result = listing(legacy_peer.url, era="legacy", version="2025-11-25")
    assert [r[1] for r in seen(legacy_peer, before)] == [
        "initialize", "notifications/initialized", "tools/list", None
    ]  # fmt: skip
    assert result.requests == 4


def test_stateless_legacy_server_without_session_id_is_not_sent_a_delete(stateless_legacy_peer):
    before = len(stateless_legacy_peer.requests())
    result = listing(stateless_legacy_peer.url)
    assert result.era == "legacy" and len(result.tools) == 2
    assert [r[1] for r in seen(stateless_legacy_peer, before)] == [
        "server/discover", "initialize", "notifications/initialized", "tools/list"
    ]  # fmt: skip


def test_dual_era_server_answers_legacy_in_json_mode_too(json_peer):
    result = listing(json_peer.url, era="legacy")
    assert (result.era, len(result.tools)) == ("legacy", 4)
    assert listing(json_peer.url).era == "modern"


def test_bearer_protected_server_refuses_without_the_token(bearer_peer):
    with pytest.raises(Unauthorized) as caught:
        listing(bearer_peer.url)
    assert "401" in str(caught.value)
    assert len(listing(bearer_peer.url, {"Authorization": "Bearer peer-token"}).tools) == 2


def test_api_key_header_is_sent_on_every_legacy_request(api_key_peer):
    with pytest.raises(McpError, match="403"):
        listing(api_key_peer.url, {"X-Api-Key": "wrong"})
    result = listing(api_key_peer.url, {"X-Api-Key": "peer-key"})
    assert (result.era, len(result.tools)) == ("legacy", 2)


def test_connection_dropped_mid_stream_is_a_clear_error(dropping_peer):
    with pytest.raises(McpError, match="closed the connection before its answer was complete"):
        listing(dropping_peer.url, era="modern", version="2026-07-28")


def test_slow_server_times_out(slow_peer):
    with pytest.raises(McpError, match="in time"):
        listing(slow_peer.url, era="modern", version="2026-07-28", timeout=0.5)


def test_nothing_listening_is_a_clear_error():
    with pytest.raises(McpError, match="Could not connect"):
        listing(f"http://127.0.0.1:{free_port()}/mcp")
