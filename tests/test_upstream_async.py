"""The data plane's tool call upstream (``gateway.upstream.AsyncClient``) against real SDK peers,
beside the synchronous ``protocol.mcp.Client`` whose call path it must match: both eras, JSON
and event-stream answers, progress and log relays, results and errors, pooled legacy sessions,
cancellation by closing the call or cancelling its task, deadlines, an upstream that is down,
the same requests on the wire, and ``EraUnknown`` sending the caller to the probing client."""

import contextlib
import json
import threading
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest

from mcpadmin.gateway.outbound import AsyncHttp
from mcpadmin.gateway.upstream import AsyncClient, EraUnknown
from mcpadmin.protocol import mcp
from mcpadmin.protocol.http import Http
from mcpadmin.protocol.versions import MODERN_VERSIONS
from tests import test_upstream_calls as sync_calls
from tests.gateway_helpers import run_async
from tests.peers import call_tools, free_port
from tests.peers.mcp_fixtures import McpPeer
from tests.test_upstream_calls import TOKEN, initializes, stats, wait_for

# The synchronous client's call-tool peers, as fixtures here too.
modern_tools, legacy_tools = sync_calls.modern_tools, sync_calls.legacy_tools
bearer_tools = sync_calls.bearer_tools

MODERN = MODERN_VERSIONS[0]
SLOW_COUNT = {"steps": 50, "delay": 0.2}  # ten seconds unless cancelled


@contextlib.asynccontextmanager
async def outbound():
    http = AsyncHttp(allow_private=True)
    try:
        yield http
    finally:
        await http.aclose()


def async_client(http, url, headers=None, *, era, version=None, pool=None, deadline=30.0):
    pool = pool if pool is not None else mcp.SessionPool()
    return AsyncClient(http, url, headers, era=era, version=version, pool=pool,
                       deadline=deadline)  # fmt: skip


def run_call(kind, url, tool, arguments=None, *, era, version=None, pool=None, headers=None,
             deadline=30.0, **options) -> tuple[list, object]:  # fmt: skip
    """One call run to the end by the ``kind`` ("sync" or "async") client, configured as the
    gateway configures it: (what it yielded, the client)."""
    pool = pool if pool is not None else mcp.SessionPool()
    if kind == "sync":
        http = Http(allow_private=True, deadline=deadline, read_timeout=deadline)
        client = mcp.Client(http, url, headers, era=era, version=version, pool=pool,
                            deadline=deadline)  # fmt: skip
        return list(client.call_tool(tool, arguments, **options)), client

    async def run():
        async with outbound() as http:
            client = async_client(http, url, headers, era=era, version=version, pool=pool,
                                  deadline=deadline)  # fmt: skip
            async with aclosing(client.call_tool(tool, arguments, **options)) as calls:
                return [item async for item in calls], client

    return run_async(run)


@dataclass
class Known:
    """A call-tool peer, and the era a client remembers for it."""

    peer: McpPeer
    era: str
    version: str | None

    @property
    def url(self) -> str:
        return self.peer.url

    @property
    def remembered(self) -> dict:
        return {"era": self.era, "version": self.version}


@pytest.fixture(params=["modern_tools", "legacy_tools"])
def known(request) -> Known:
    """Each era's call-tool peer: 2.x remembered as modern, 1.30.0 as legacy."""
    era, version = ("modern", MODERN) if request.param == "modern_tools" else ("legacy", None)
    return Known(request.getfixturevalue(request.param), era, version)


@pytest.fixture(params=["sync", "async"])
def call(request):
    """``run_call`` for each client: what one states, the other must too."""
    return partial(run_call, request.param)


def relayed(items) -> tuple[list[dict], dict]:
    """The notifications and the result of a finished call."""
    *updates, done = items
    assert all(isinstance(item, mcp.CallUpdate) for item in updates)
    assert isinstance(done, mcp.CallDone)
    return [item.message for item in updates], done.result


def test_progress_and_logs_are_relayed_then_the_result(call, known):
    items, client = call(known.url, "count", {"steps": 3, "delay": 0}, **known.remembered,
                         meta={"progressToken": "p-7"}, log_level="info")  # fmt: skip
    notes, result = relayed(items)
    progress = [m["params"] for m in notes if m["method"] == "notifications/progress"]
    assert [(p["progress"], p["progressToken"]) for p in progress] == [(1, "p-7"), (2, "p-7"),
                                                                        (3, "p-7")]  # fmt: skip
    logs = [m["params"]["data"] for m in notes if m["method"] == "notifications/message"]
    assert logs == ["counted 1", "counted 2", "counted 3"]
    assert result["content"] == [{"type": "text", "text": "counted 3"}]
    assert (client.era, client.version) == (known.era, known.version or "2025-11-25")


def test_an_update_arrives_while_the_tool_still_runs(known):
    before = stats(known.peer)["finished"]

    async def run():
        async with outbound() as http:
            client = async_client(http, known.url, **known.remembered)
            calls = client.call_tool("count", {"steps": 3, "delay": 1.0}, meta={"progressToken": 1})
            async with aclosing(calls):
                first = await anext(calls)
                running = await anyio.to_thread.run_sync(stats, known.peer)
                rest = [item async for item in calls]
        return first, running, rest

    first, running, rest = run_async(run)
    assert first.message["params"]["progress"] == 1
    assert running["finished"] == before  # the first step came while the tool was counting
    assert isinstance(rest[-1], mcp.CallDone)
    assert stats(known.peer)["finished"] == before + 1


@pytest.mark.parametrize(("peer_name", "era"), [("json_peer", "modern"), ("json_peer", "legacy"),
                                                ("stateless_legacy_peer", "legacy")])  # fmt: skip
def test_json_answers_are_read_whole(request, call, peer_name, era):
    peer = request.getfixturevalue(peer_name)
    version = MODERN if era == "modern" else None
    items, client = call(peer.url, "weather", {"city": "Oslo"}, era=era, version=version)
    assert relayed(items)[1]["structuredContent"] == {"city": "Oslo", "celsius": 21.5}
    assert client.era == era


def test_results_pass_through_untouched(call, known):
    items, _client = call(known.url, "weather", {"city": "Zürich"}, **known.remembered)
    result = relayed(items)[1]
    assert result["structuredContent"] == {"city": "Zürich", "celsius": 21.5}
    assert result["content"] == [{"type": "text", "text": "Zürich: 21.5 °C"}]
    assert result["_meta"]["peer/source"] == "made up"


def test_a_tool_error_is_a_result_not_an_exception(call, known):
    items, _client = call(known.url, "fail", {"text": "on purpose"}, **known.remembered)
    result = relayed(items)[1]
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "it failed: on purpose"}]


def test_a_json_rpc_error_is_raised_as_rpc_error(call, known):
    with pytest.raises(mcp.RpcError) as refused:
        call(known.url, "refuse", {"text": "this"}, **known.remembered)
    assert refused.value.code == -32603
    assert str(refused.value).startswith("The server answered tools/call with error -32603: "
                                         "refused this; you sent")  # fmt: skip


def test_a_refused_credential_is_unauthorized(call, bearer_tools):
    with pytest.raises(mcp.Unauthorized) as refused:
        call(bearer_tools.url, "weather", {"city": "Oslo"}, era="modern", version=MODERN,
             headers={"Authorization": "Bearer wrong-token-0000000"})  # fmt: skip
    assert str(refused.value) == "The server answered 401 Unauthorized to tools/call."


def test_after_a_401_the_caller_swaps_the_credential_and_calls_again(bearer_tools):
    async def run():
        async with outbound() as http:
            client = async_client(http, bearer_tools.url, {"Authorization": "Bearer stale-0000"},
                                  era="modern", version=MODERN)  # fmt: skip
            with pytest.raises(mcp.Unauthorized):
                async with aclosing(client.call_tool("weather", {"city": "Oslo"})) as calls:
                    await anext(calls)
            client.auth = {"Authorization": f"Bearer {TOKEN}"}
            async with aclosing(client.call_tool("weather", {"city": "Oslo"})) as calls:
                return [item async for item in calls]

    assert relayed(run_async(run))[1]["structuredContent"]["city"] == "Oslo"


def test_legacy_calls_share_one_pooled_session(legacy_tools):
    pool = mcp.SessionPool()
    before = initializes(legacy_tools)

    async def weather(http, city, cities):
        client = async_client(http, legacy_tools.url, era="legacy", pool=pool)
        async with aclosing(client.call_tool("weather", {"city": city})) as calls:
            *_, done = [item async for item in calls]
        cities.append(done.result["structuredContent"]["city"])

    async def run():
        cities = []
        async with outbound() as http:
            await weather(http, "first", cities)
            async with anyio.create_task_group() as group:
                for i in range(12):
                    group.start_soon(weather, http, f"city {i}", cities)
        return cities

    cities = run_async(run)
    assert sorted(cities) == sorted(["first", *(f"city {i}" for i in range(12))])
    assert initializes(legacy_tools) == before + 1
    assert len(pool) == 1


def test_a_vanished_legacy_session_is_initialized_again_once(call, legacy_tools):
    pool = mcp.SessionPool()
    key = mcp.SessionPool.key(legacy_tools.url, {})
    pool.put(key, "gone-session-0123456789abcdef", "2025-11-25")
    before = initializes(legacy_tools)
    items, _client = call(legacy_tools.url, "weather", {"city": "Oslo"}, era="legacy", pool=pool)
    assert relayed(items)[1]["structuredContent"]["city"] == "Oslo"
    assert initializes(legacy_tools) == before + 1
    assert pool.get(key)[0] != "gone-session-0123456789abcdef"


async def _first_update_then_stop(calls, how: str):
    """Take the call's first update, then stop it: ``aclose()``, or cancel the task that is
    waiting inside it for the next one."""
    if how == "aclose":
        first = await anext(calls)
        await calls.aclose()
        return first
    got = anyio.Event()
    updates = []

    async def consume():
        async for item in calls:
            updates.append(item)
            got.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await got.wait()
        await anyio.sleep(0.05)  # the consumer is back inside the call, waiting upstream
        group.cancel_scope.cancel()
    return updates[0]


@pytest.mark.parametrize("how", ["aclose", "task cancelled"])
def test_stopping_a_call_cancels_it_upstream(known, how):
    before = stats(known.peer)["cancelled"]
    notes_before = known.peer.requests().count(["POST", "notifications/cancelled"])

    async def run():
        async with outbound() as http:
            client = async_client(http, known.url, **known.remembered)
            calls = client.call_tool("count", SLOW_COUNT, meta={"progressToken": 1})
            async with aclosing(calls):
                return await _first_update_then_stop(calls, how)

    assert run_async(run).message["params"]["progress"] == 1
    assert wait_for(lambda: stats(known.peer)["cancelled"] == before + 1)
    notes = known.peer.requests().count(["POST", "notifications/cancelled"]) - notes_before
    # Legacy: told [25N/canc]; modern: the closed stream is the cancellation [26/http].
    assert notes == (1 if known.era == "legacy" else 0)


def test_a_call_past_its_deadline_times_out_and_is_cancelled_upstream(call, known):
    before = stats(known.peer)["cancelled"]
    with pytest.raises(mcp.TimedOut):
        call(known.url, "count", SLOW_COUNT, **known.remembered, deadline=1.0)
    assert wait_for(lambda: stats(known.peer)["cancelled"] == before + 1)
    if known.era == "legacy":
        assert ["POST", "notifications/cancelled"] in known.peer.requests()


def test_an_upstream_that_is_down_is_unreachable(call):
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(mcp.ServerUnreachable) as down:
        call(url, "weather", {"city": "Oslo"}, era="modern", version=MODERN)
    assert url in str(down.value)


def test_a_modern_upstream_gets_the_mcp_param_headers_it_checks(call, modern_tools):
    schema = next(t for t in call_tools.TOOLS if t["name"] == "locate")["inputSchema"]
    items, _client = call(modern_tools.url, "locate", {"place": {"region": "eu-west"}},
                          era="modern", version=MODERN, input_schema=schema)  # fmt: skip
    assert relayed(items)[1]["content"][0]["text"] == "Mcp-Param-Region: eu-west"


@pytest.mark.parametrize(("era", "version"), [(None, None), ("modern", "2099-01-01"),
                                              ("carrier-pigeon", None)])  # fmt: skip
def test_without_a_usable_era_nothing_is_sent(modern_tools, era, version):
    sent = len(modern_tools.requests())

    async def run():
        async with outbound() as http:
            client = async_client(http, modern_tools.url, era=era, version=version)
            async with aclosing(client.call_tool("weather", {"city": "Oslo"})) as calls:
                await anext(calls)

    with pytest.raises(EraUnknown):
        run_async(run)
    assert len(modern_tools.requests()) == sent


def test_a_remembered_era_that_no_longer_works_sends_the_caller_to_the_probing_client(
    legacy_tools,
):
    pool = mcp.SessionPool()

    async def run():
        async with outbound() as http:
            client = async_client(http, legacy_tools.url, era="modern", version=MODERN,
                                  pool=pool)  # fmt: skip
            try:
                async with aclosing(client.call_tool("weather", {"city": "Oslo"})) as calls:
                    return [item async for item in calls], client
            except EraUnknown:
                assert (client.era, client.version) == (None, None)
                # As the gateway does: the synchronous client probes, off the event loop.
                probing = partial(run_call, "sync", legacy_tools.url, "weather",
                                  {"city": "Oslo"}, era=None, pool=pool)  # fmt: skip
                return await anyio.to_thread.run_sync(probing)

    items, client = run_async(run)
    assert isinstance(client, mcp.Client)
    assert relayed(items)[1]["structuredContent"]["city"] == "Oslo"
    assert (client.era, client.version) == ("legacy", "2025-11-25")


# -- the same requests on the wire -------------------------------------------------------------


class _Scripted(BaseHTTPRequestHandler):
    """Records every POST; answers ``initialize`` (with a session), and ``tools/call`` with an
    event stream holding a log message, two server requests, then the result."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if body.get("method") == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {},
                      "serverInfo": {"name": "scripted", "version": "1"}}  # fmt: skip
            answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result})
            return self._send("application/json", answer, {"Mcp-Session-Id": "scripted-1"})
        if body.get("method") == "tools/call":
            log = {"level": "info", "data": "working"}
            messages = [
                {"jsonrpc": "2.0", "method": "notifications/message", "params": log},
                {"jsonrpc": "2.0", "id": "ask-1", "method": "ping"},
                {"jsonrpc": "2.0", "id": "ask-2", "method": "roots/list"},
                {"jsonrpc": "2.0", "id": body["id"], "result": {"content": []}},
            ]
            events = "".join(f"event: message\ndata: {json.dumps(m)}\n\n" for m in messages)
            return self._send("text/event-stream", events)
        return self._send("application/json", "", status=202)

    def _send(self, content_type, text, headers=None, status=200):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


TRANSPORT_HEADERS = {"host", "user-agent", "accept-encoding", "connection", "content-length"}


def _wire(seen) -> list:
    """What an MCP server reads in each request: its MCP headers and its body (a call's id,
    unique in the process, as a placeholder)."""
    wire = []
    for headers, body in seen:
        if body.get("method") == "tools/call":
            body = {**body, "id": "call"}
        kept = {k: v for k, v in headers.items() if k not in TRANSPORT_HEADERS}
        wire.append((kept, body))
    return wire


def wire_of(kind: str, era: str, version: str | None) -> tuple[list, tuple]:
    """The requests the ``kind`` client sends for one call (``_wire``), and what it relays."""
    schema = next(t for t in call_tools.TOOLS if t["name"] == "locate")["inputSchema"]
    with scripted() as server:
        url = f"http://127.0.0.1:{server.server_port}/mcp"
        items, _client = run_call(kind, url, "météo", {"place": {"region": "Zürich"}}, era=era,
                                  version=version, meta={"progressToken": "p"},
                                  headers={"Authorization": "Bearer t0ken-0123456789"},
                                  input_schema=schema, log_level="debug")  # fmt: skip
        return _wire(server.seen), relayed(items)


@pytest.mark.parametrize(("era", "version"), [("modern", MODERN), ("legacy", None)])
def test_both_clients_send_the_same_requests_and_relay_the_same_updates(era, version):
    assert wire_of("sync", era, version) == wire_of("async", era, version)


def test_a_modern_call_carries_its_envelope_and_headers():
    [(headers, body)], (notes, _result) = wire_of("async", "modern", MODERN)
    assert headers["authorization"] == "Bearer t0ken-0123456789"
    assert (headers["mcp-protocol-version"], headers["mcp-method"]) == (MODERN, "tools/call")
    assert headers["mcp-name"] == mcp.header_value("météo")
    assert headers["mcp-param-region"] == mcp.header_value("Zürich")
    meta = body["params"]["_meta"]
    assert (meta["progressToken"], meta[mcp.META + "protocolVersion"]) == ("p", MODERN)
    assert meta[mcp.META + "logLevel"] == "debug"
    # The ping and roots/list on its stream go unanswered: a modern server sends none.
    assert [m["method"] for m in notes] == ["notifications/message"]


def test_a_legacy_call_runs_in_its_session_and_answers_the_servers_requests():
    wire, (notes, _result) = wire_of("async", "legacy", None)
    methods = [body.get("method") for _headers, body in wire]
    assert methods == ["initialize", "notifications/initialized", "tools/call", None, None]
    headers, body = wire[2]
    assert headers["mcp-session-id"] == "scripted-1"
    assert headers["mcp-protocol-version"] == "2025-11-25"
    assert not [name for name in headers if name.startswith("mcp-") and name not in
                ("mcp-session-id", "mcp-protocol-version")]  # fmt: skip
    assert mcp.META + "protocolVersion" not in body["params"]["_meta"]
    ping, other = (body for _headers, body in wire[3:])
    assert ping == {"jsonrpc": "2.0", "id": "ask-1", "result": {}}  # [25N/ping]
    assert other["id"] == "ask-2" and other["error"]["code"] == -32601
    assert [m["method"] for m in notes] == ["notifications/message"]
