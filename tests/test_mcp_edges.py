"""Edge cases of the MCP client that real servers rarely produce, with ``responses``:
era-detection verdicts, malformed bodies, odd statuses, pagination limits, tool checks."""

import json

import pytest
import responses

from mcpadmin.protocol.http import Http
from mcpadmin.protocol.mcp import Client, McpError, RpcError, Unauthorized, checked_tools

URL = "http://mcp.test/mcp"
TOOL = {"name": "echo", "inputSchema": {"type": "object"}}


def client(**kwargs):
    return Client(Http(allow_private=True), URL, {"Authorization": "Bearer t"}, **kwargs)


def rpc(result=None, error=None, id=1):
    body = {"jsonrpc": "2.0", "id": id}
    body.update({"error": error} if error else {"result": result})
    return body


def methods(mock):
    return [json.loads(c.request.body)["method"] if c.request.body else c.request.method
            for c in mock.calls]  # fmt: skip


def legacy_server(mock, tools=(TOOL,), session="s1"):
    headers = {"Mcp-Session-Id": session} if session else {}
    init = rpc({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {}}, id=2)
    mock.post(URL, json=init, headers=headers)
    mock.post(URL, status=202)
    mock.post(URL, json=rpc({"tools": list(tools)}, id=3))
    mock.delete(URL, status=405)


@responses.activate
def test_method_not_found_to_the_probe_means_legacy():
    responses.post(URL, json=rpc(error={"code": -32601, "message": "Method not found"}))
    legacy_server(responses)
    result = client().list_tools()
    assert (result.era, result.version, result.requests) == ("legacy", "2025-06-18", 5)
    init = json.loads(responses.calls[1].request.body)
    assert init["params"]["protocolVersion"] == "2025-11-25"
    listed = responses.calls[3].request.headers
    assert listed["Mcp-Session-Id"] == "s1" and listed["MCP-Protocol-Version"] == "2025-06-18"


@responses.activate
def test_probe_carries_the_modern_headers_and_meta():
    responses.post(URL, json=rpc({"supportedVersions": ["2026-07-28"]}))
    responses.post(URL, json=rpc({"tools": [TOOL]}, id=2))
    client().list_tools()
    probe = responses.calls[0].request
    assert probe.headers["Accept"] == "application/json, text/event-stream"
    assert probe.headers["MCP-Protocol-Version"] == "2026-07-28"
    assert probe.headers["Mcp-Method"] == "server/discover"
    meta = json.loads(probe.body)["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert meta["io.modelcontextprotocol/clientCapabilities"] == {}
    assert responses.calls[1].request.headers["Mcp-Method"] == "tools/list"
    assert "Mcp-Session-Id" not in responses.calls[1].request.headers


@responses.activate
def test_unsupported_version_listing_only_legacy_versions_falls_back():
    error = {"code": -32022, "message": "Unsupported", "data": {"supported": ["2025-11-25"]}}
    responses.post(URL, json=rpc(error=error), status=400)
    legacy_server(responses)
    assert client().list_tools().era == "legacy"


@responses.activate
def test_unsupported_version_listing_only_unknown_modern_versions_is_an_error():
    error = {"code": -32022, "message": "Unsupported", "data": {"supported": ["2030-01-01"]}}
    responses.post(URL, json=rpc(error=error), status=400)
    with pytest.raises(McpError, match="2030-01-01"):
        client().list_tools()
    assert len(responses.calls) == 1  # no initialize


@responses.activate
def test_header_mismatch_from_a_modern_server_never_falls_back():
    responses.post(URL, json=rpc(error={"code": -32020, "message": "mismatch"}), status=400)
    with pytest.raises(RpcError, match="-32020"):
        client().list_tools()
    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [500, 503])
@responses.activate
def test_server_errors_to_the_probe_are_not_an_era_verdict(status):
    responses.post(URL, body="oops", status=status)
    with pytest.raises(McpError, match=str(status)):
        client().list_tools()
    assert len(responses.calls) == 1


@responses.activate
def test_401_to_the_probe_is_unauthorized_not_legacy():
    responses.post(URL, status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    with pytest.raises(Unauthorized) as caught:
        client().list_tools()
    assert "invalid_token" in caught.value.www_authenticate and len(responses.calls) == 1


@responses.activate
def test_404_everywhere_says_to_check_the_url():
    responses.post(URL, status=404)
    with pytest.raises(McpError, match="404 Not Found: check the connector URL"):
        client().list_tools()
    assert methods(responses) == ["server/discover", "initialize"]


@responses.activate
def test_406_names_the_accept_header():
    responses.post(URL, status=406)
    with pytest.raises(McpError, match="Accept: application/json, text/event-stream"):
        client().list_tools()


@responses.activate
def test_missing_session_id_is_explained():
    responses.post(URL, json=rpc(error={"code": -32601, "message": "nope"}))
    init = rpc({"protocolVersion": "2025-11-25", "capabilities": {}}, id=2)
    responses.post(URL, json=init)  # no Mcp-Session-Id header
    responses.post(URL, status=202)
    missing = {"jsonrpc": "2.0", "id": "server-error",
               "error": {"code": -32600, "message": "Bad Request: Missing session ID"}}  # fmt: skip
    responses.post(URL, json=missing, status=400)
    with pytest.raises(McpError, match="requires a session"):
        client().list_tools()


@responses.activate
def test_unknown_negotiated_version_is_refused_and_the_session_closed():
    responses.post(URL, status=400)
    init = rpc({"protocolVersion": "2024-11-05", "capabilities": {}}, id=2)
    responses.post(URL, json=init, headers={"Mcp-Session-Id": "s9"})
    responses.delete(URL, status=200)
    with pytest.raises(McpError, match="2024-11-05"):
        client().list_tools()
    assert responses.calls[-1].request.method == "DELETE"


@responses.activate
def test_session_lost_with_404_is_initialized_again_once():
    init = rpc({"protocolVersion": "2025-11-25", "capabilities": {}}, id=1)
    responses.post(URL, json=init, headers={"Mcp-Session-Id": "old"})
    responses.post(URL, status=202)
    responses.post(URL, status=404)
    responses.post(URL, json=rpc({"protocolVersion": "2025-11-25"}, id=3),
                   headers={"Mcp-Session-Id": "new"})  # fmt: skip
    responses.post(URL, status=202)
    responses.post(URL, json=rpc({"tools": [TOOL]}, id=4))
    responses.delete(URL, status=200)
    result = client(era="legacy").list_tools()
    assert [t["name"] for t in result.tools] == ["echo"]
    assert responses.calls[-1].request.headers["Mcp-Session-Id"] == "new"
    assert [c.request.method for c in responses.calls].count("DELETE") == 1


@responses.activate
def test_event_stream_answer_skips_notifications_and_server_requests():
    stream = (
        b": keep-alive\r\n\r\n"
        b'data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
        b'data: {"jsonrpc":"2.0","id":"srv-1","method":"ping"}\r\n\r\n'
        b"data: not json\r\n\r\n"
        b'data: {"jsonrpc":"2.0","id":1,\r\ndata: "result":{"tools":[{"name":"a"}]}}\r\n\r\n'
    )
    responses.post(URL, body=stream, content_type="text/event-stream")
    result = client(era="modern", version="2026-07-28").list_tools()
    assert [t["name"] for t in result.tools] == ["a"]


@responses.activate
def test_event_stream_without_our_answer_is_an_error():
    responses.post(URL, body=b"data: {not json\n\n", content_type="text/event-stream")
    with pytest.raises(McpError, match="ended without an answer.*not JSON"):
        client(era="modern", version="2026-07-28").list_tools()


@responses.activate
def test_non_json_body_is_an_error():
    responses.post(URL, body=b"<html>hi</html>", content_type="application/json")
    with pytest.raises(McpError, match="not a JSON-RPC response"):
        client(era="modern", version="2026-07-28").list_tools()


@responses.activate
def test_html_answer_names_the_content_type():
    responses.post(URL, body=b"<html>login</html>", content_type="text/html")
    with pytest.raises(McpError, match="text/html"):
        client(era="modern", version="2026-07-28").list_tools()


@responses.activate
def test_redirects_are_not_followed_with_the_credential():
    responses.post(URL, status=307, headers={"Location": "http://elsewhere.test/mcp"})
    with pytest.raises(McpError, match="redirected to http://elsewhere.test/mcp"):
        client(era="modern", version="2026-07-28").list_tools()
    assert len(responses.calls) == 1


@responses.activate
def test_oversized_answer_is_refused():
    responses.post(URL, body=b"x" * 2048, content_type="application/json")
    small = Client(Http(allow_private=True, max_bytes=1024), URL, era="modern",
                   version="2026-07-28")  # fmt: skip
    with pytest.raises(McpError, match="1024"):
        small.list_tools()


@responses.activate
def test_jsonrpc_error_becomes_one_sentence():
    responses.post(URL, json=rpc(error={"code": -32603, "message": "Internal error"}))
    with pytest.raises(McpError) as caught:
        client(era="modern", version="2026-07-28").list_tools()
    assert str(caught.value) == "The server answered tools/list with error -32603: Internal error"


@responses.activate
def test_invalid_cursor_restarts_the_listing_once():
    responses.post(URL, json=rpc({"tools": [TOOL], "nextCursor": "c1"}, id=1))
    responses.post(URL, json=rpc(error={"code": -32602, "message": "Invalid cursor"}, id=2))
    responses.post(URL, json=rpc({"tools": [TOOL], "nextCursor": "c2"}, id=3))
    responses.post(URL, json=rpc({"tools": [{"name": "two"}]}, id=4))
    result = client(era="modern", version="2026-07-28").list_tools()
    assert [t["name"] for t in result.tools] == ["echo", "two"]


@responses.activate
def test_repeated_cursor_stops_the_listing():
    responses.post(URL, json=rpc({"tools": [], "nextCursor": "same"}, id=1))
    responses.post(URL, json=rpc({"tools": [], "nextCursor": "same"}, id=2))
    with pytest.raises(McpError, match="same page cursor twice"):
        client(era="modern", version="2026-07-28").list_tools()


@responses.activate
def test_endless_pages_stop_at_the_limit():
    for i in range(3):
        responses.post(URL, json=rpc({"tools": [], "nextCursor": f"c{i}"}, id=i + 1))
    endless = Client(Http(allow_private=True), URL, era="modern", version="2026-07-28",
                     max_pages=3)  # fmt: skip
    with pytest.raises(McpError, match="past 3 pages"):
        endless.list_tools()


@responses.activate
def test_empty_cursor_is_a_valid_cursor():
    responses.post(URL, json=rpc({"tools": [TOOL], "nextCursor": ""}, id=1))
    responses.post(URL, json=rpc({"tools": [{"name": "b"}]}, id=2))
    result = client(era="modern", version="2026-07-28").list_tools()
    assert len(result.tools) == 2
    assert json.loads(responses.calls[1].request.body)["params"]["cursor"] == ""


@responses.activate
def test_cached_modern_era_that_stopped_working_is_probed_again():
    responses.post(URL, json=rpc(error={"code": -32600, "message": "Bad Request"}), status=400)
    responses.post(URL, json=rpc(error={"code": -32601, "message": "no"}, id=2))
    init = rpc({"protocolVersion": "2025-11-25", "capabilities": {}}, id=3)
    responses.post(URL, json=init)
    responses.post(URL, status=202)
    responses.post(URL, json=rpc({"tools": [TOOL]}, id=4))
    result = client(era="modern", version="2026-07-28").list_tools()
    assert result.era == "legacy"
    assert methods(responses) == [
        "tools/list", "server/discover", "initialize", "notifications/initialized", "tools/list"
    ]  # fmt: skip


@responses.activate
def test_input_required_result_type_is_refused():
    responses.post(URL, json=rpc({"resultType": "input_required", "tools": []}))
    with pytest.raises(McpError, match="input_required"):
        client(era="modern", version="2026-07-28").list_tools()


def test_tool_checks_drop_what_cannot_be_stored_and_warn_on_the_rest():
    tools = [
        {"name": "ok", "inputSchema": {"type": "object"}},
        {"name": "ok", "inputSchema": {"type": "object"}},
        {"description": "no name"},
        {"name": "has space", "inputSchema": {"type": "object"}},
        {"name": "x" * 300},
        {"name": "bad_header", "inputSchema": {"type": "object", "properties": {
            "a": {"type": "object", "x-mcp-header": "A"}}}},
        {"name": "dup_header", "inputSchema": {"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "Region"},
            "b": {"type": "string", "x-mcp-header": "region"}}}},
        {"name": "good_header", "inputSchema": {"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "Region"}}}},
    ]  # fmt: skip
    kept, warnings = checked_tools(tools)
    assert [t["name"] for t in kept] == ["ok", "has space", "good_header"]
    assert len(warnings) == 6
