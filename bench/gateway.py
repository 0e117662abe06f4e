"""The agent gateway (``/agents/<id>/mcp``, the async data plane of ``mcpadmin/gateway``),
each figure beside its baseline in one run.

1. ``tools/call`` of a fast tool (``weather``) through the gateway vs the same lean client
   (``requests.Session``, modern JSON-RPC posts) calling the upstream peer directly, one
   client, sequential, interleaved: added p50 and the p99 ratio. The gateway runs as
   production runs it (``gunicorn -c gunicorn.conf.py asgi:app``, 2 uvicorn workers).
   Interleaved with them, the floors: ``GET /healthz`` on the same server (the admin app
   behind the WSGI adapter) and on a bare Starlette app under uvicorn (``bare_starlette``).
2. Throughput at 16 concurrent clients, gateway vs the same 16 clients calling the peer
   directly; errors counted; the CPU the server's processes (master and workers, user +
   system, ``/proc/<pid>/stat``) spent per call, beside the peer's own.
3. ``tools/list`` through the gateway (50 enabled tools over 5 connectors, the catalog cached)
   vs one direct ``tools/list`` of a peer serving 50 tools.
4. SQL statements per ``tools/call`` on the call's path, in process (the ASGI application
   through ``tests.gateway_helpers.AgentClient``, counted at the engine), at (1 connector,
   1 agent, 5 tools) and (20 connectors, 20 agents, 400 tools); the call log writer's
   batched inserts are counted apart.
5. RSS of a one-worker server after N and 10·N calls (``/proc/<worker>/status``): N is
   1,000 (100 with ``--quick``).
6. The call log's cost: p50 of ``tools/call`` in process with ``CALL_LOG`` on vs off, the two
   interleaved call by call on one app (the setting is read per call); the rows the "on"
   calls wrote are counted (the writer thread writes them in batches, off the call's path).

A figure that misses its target gets a py-spy profile of the server's workers under the same
load, summed up in its note (``common.top_frames``).

The upstream is the SDK peer (``tests/peers/mcp_server.py --json --stateless``, uvicorn), one
process: its own cost per call bounds figures 1, 2 and 5, and is named in their notes. The
database is SQLite (a file shared by the workers), as in the other benchmarks.
"""

import collections
import statistics
import sys
import time

import requests

from bench.common import (
    CONCURRENCY,
    META,
    MODERN,
    Figure,
    Lean,
    McpPeer,
    Server,
    SqlCounter,
    bare_starlette,
    concurrent_calls,
    cpu_seconds,
    interleaved_times,
    make_app,
    percentile,
    repeat_for,
    rss_kib,
    top_frames,
    workdir,
)

WORKERS = 2  # uvicorn workers under gunicorn, as the targets say (2 CPUs here)
WRITER = "call-log"  # the call log writer's thread (services.calllog.Writer.THREAD_NAME)


def run(quick: bool = False) -> list[Figure]:
    from tests.gateway_helpers import agent_with_tools, synced_connector

    calls = 100 if quick else 300
    peer = McpPeer("mcp_server.py", "--call-tools", "--tools", "0", "--json", "--stateless")
    fifty = McpPeer("mcp_server.py", "--tools", "50", "--json", "--stateless")
    ten = McpPeer("mcp_server.py", "--tools", "10", "--json", "--stateless")
    twenty = McpPeer("mcp_server.py", "--call-tools", "--tools", "14", "--json", "--stateless")
    directory = workdir("gateway")
    app = make_app(directory)
    figures = []
    try:
        with app.app_context():
            weather = synced_connector(peer.url, "Peer")
            agent, key = agent_with_tools([weather])
            listing = [synced_connector(ten.url, f"Ten {i}") for i in range(5)]
            lister, lister_key = agent_with_tools(listing, name="lister")
            small_agent, small_key = agent_with_tools(
                [weather], name="small",
                enabled={"Peer": ["weather", "count", "count_stats", "fail", "locate"]},
            )  # fmt: skip
            many = [synced_connector(twenty.url, f"Twenty {i}") for i in range(20)]
            crowd = [agent_with_tools(many, name=f"crowd {i}") for i in range(20)]
            assert sum(len(c.tools) for c in many) == 400
            ids = agent.id, lister.id, small_agent.id, [a.id for a, _ in crowd]
            crowd_keys = [k for _, k in crowd]
            weather_slug, many_slug = weather.slug, many[-1].slug

        figures += _sql_per_call(app, "1 connector, 1 agent, 5 tools", [(ids[2], small_key)],
                                 f"{weather_slug}__weather", quick)  # fmt: skip
        figures += _sql_per_call(app, "20 connectors, 20 agents, 400 tools",
                                 list(zip(ids[3], crowd_keys, strict=True)),
                                 f"{many_slug}__weather", quick)  # fmt: skip
        figures += _call_log_cost(app, ids[2], small_key, f"{weather_slug}__weather",
                                  100 if quick else 400)  # fmt: skip

        with Server(directory, workers=WORKERS) as server, bare_starlette() as bare:
            gateway_url = f"{server.url}/agents/{ids[0]}/mcp"
            figures += _latency(peer.url, gateway_url, key, bare, calls, server)
            figures += _throughput(peer, server, gateway_url, key, 300 if quick else 600)
            lister_url = f"{server.url}/agents/{ids[1]}/mcp"
            figures += _listing(fifty.url, lister_url, lister_key, 50 if quick else 150, server)
        with Server(directory, workers=1) as server:
            gateway_url = f"{server.url}/agents/{ids[0]}/mcp"
            figures += _memory(server, gateway_url, key, 100 if quick else 1000)
    finally:
        for p in (peer, fifty, ten, twenty):
            p.stop()
    return figures


# -- the lean client ----------------------------------------------------------------------------


# -- figures ------------------------------------------------------------------------------------


def _latency(peer_url, gateway_url, key, bare_url, calls, server) -> list[Figure]:
    """Also times ``/healthz`` on the same server and on a bare Starlette app: what any
    request costs there before the gateway does anything (the floors under the added p50)."""
    direct, gateway = Lean(peer_url), Lean(gateway_url, key)
    healthz, bare = _Get(server.url + "/healthz"), _Get(bare_url + "/healthz")
    sides = {"direct": direct.weather, "gateway": _gateway_call(gateway), "healthz": healthz.get,
             "bare": bare.get}  # fmt: skip
    times = interleaved_times(sides, calls, warmup=20)
    p50 = {side: statistics.median(values) for side, values in times.items()}
    p99 = {side: percentile(values, 99) for side, values in times.items()}
    added = p50["gateway"] - p50["direct"]
    added_met, p99_met = added <= 1, p99["gateway"] <= 1.5 * p99["direct"]
    note = (f"{calls} calls each, interleaved, {WORKERS} uvicorn workers; upstream p50 "
            f"{p50['direct']:.2f} ms, gateway p50 {p50['gateway']:.2f} ms; "
            f"{_upstream_path()}")  # fmt: skip
    profile = ""
    if not (added_met and p99_met):
        profile = "; " + _profile(server, lambda: repeat_for(4, _gateway_call(gateway)))
    return [
        Figure("tools/call weather, one client: added p50", added, None, "ms", "≤ 1 ms",
               added_met, note=note + (profile if not added_met else "")),
        Figure("tools/call weather, one client: p99 gateway vs direct", p99["gateway"],
               p99["direct"], "ms", "≤ 1.5×", p99_met,
               note=("" if p99_met else "profile: see the added p50's row" if not added_met
                     else profile.removeprefix("; "))),
        Figure("floor: GET /healthz on the same server (Flask behind a2wsgi) vs a bare "
               "Starlette app on uvicorn, p50", p50["healthz"], p50["bare"], "ms", "(info)"),
        Figure("floor: bare Starlette GET on uvicorn, p50 (vs the upstream's whole call)",
               p50["bare"], p50["direct"], "ms", "(info)"),
    ]  # fmt: skip


class _Get:
    """``GET url`` with the same kind of client (one keep-alive ``requests.Session``)."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def get(self):
        self.http.get(self.url, timeout=30).raise_for_status()


def _gateway_call(client):
    return lambda: client.weather("peer__weather")


def _gateway_call_on(client):
    return client.weather("peer__weather")


def _profile(server, load) -> str:
    """Where the server's time goes while ``load()`` runs: py-spy on its workers."""
    return top_frames(server.worker_pids(), 5, during=load)


def _throughput(peer, server, gateway_url, key, calls) -> list[Figure]:
    """Calls per second both ways, and the CPU each process spent per call (what limits it:
    the 2 CPUs are shared by the clients, the server's processes and the peer)."""
    peer_pid = [peer.peer.process.pid]
    before = cpu_seconds(peer_pid)
    direct = concurrent_calls(lambda: Lean(peer.url), lambda c: c.weather(), calls)
    peer_direct = (cpu_seconds(peer_pid) - before) / calls * 1000
    workers = server.worker_pids()
    before = (cpu_seconds(peer_pid), cpu_seconds(server.pids()),
              cpu_seconds(workers, main_thread=True))  # fmt: skip
    gateway = concurrent_calls(lambda: Lean(gateway_url, key), _gateway_call_on, calls)
    peer_gateway = (cpu_seconds(peer_pid) - before[0]) / calls * 1000
    server_cpu = (cpu_seconds(server.pids()) - before[1]) / calls * 1000
    loops = (cpu_seconds(workers, main_thread=True) - before[2]) / calls * 1000
    errors = direct[1] + gateway[1]
    rate_met, cpu_met = gateway[0] >= 0.7 * direct[0], server_cpu <= 1.0
    profile = ""
    if not (rate_met and cpu_met):
        load = max(100, int(gateway[0] * 4))  # about four seconds of it
        profile = "; " + _profile(server, lambda: concurrent_calls(
            lambda: Lean(gateway_url, key), _gateway_call_on, load))  # fmt: skip
    note = (f"{calls} calls, {WORKERS} uvicorn workers on 2 CPUs shared with the clients and "
            f"the peer; the peer's CPU per call direct: {peer_direct:.2f} ms; "
            f"{_upstream_path()}")  # fmt: skip
    cpu_note = (f"event loop threads {loops:.2f} ms, other threads and the master "
                f"{server_cpu - loops:.2f} ms")  # fmt: skip
    return [
        Figure(f"tools/call at {CONCURRENCY} clients: calls per second", gateway[0], direct[0],
               "/s", "≥ 0.7× direct", rate_met, note=note + (profile if not rate_met else "")),
        Figure(f"tools/call at {CONCURRENCY} clients: server CPU per call (gunicorn master + "
               "workers, user + system; baseline: the upstream peer's own)", server_cpu,
               peer_gateway, "ms", "≤ 1.0 ms", cpu_met,
               note=cpu_note + (profile if not cpu_met else "")),
        Figure(f"tools/call at {CONCURRENCY} clients: errors (gateway + direct)", errors, None,
               "", "0", errors == 0),
    ]  # fmt: skip


def _upstream_path() -> str:
    """How the data plane reaches the upstream in this build (the figures depend on it)."""
    from mcpadmin.gateway import outbound

    if hasattr(outbound, "client"):
        return "upstream calls on the event loop (the async outbound client)"
    return ("upstream calls through the synchronous client in a pool thread (the async "
            "outbound client is not merged yet)")  # fmt: skip


def _listing(peer_url, gateway_url, key, runs, server) -> list[Figure]:
    direct, gateway = Lean(peer_url), Lean(gateway_url, key)
    assert len(direct.rpc("tools/list", {})["tools"]) == 50
    assert len(gateway.rpc("tools/list", {})["tools"]) == 50
    times = {"direct": [], "gateway": []}
    for _ in range(runs):
        for side, client in (("direct", direct), ("gateway", gateway)):
            began = time.perf_counter()
            client.rpc("tools/list", {})
            times[side].append((time.perf_counter() - began) * 1000)
    gateway_ms, direct_ms = (statistics.median(times[s]) for s in ("gateway", "direct"))
    met = gateway_ms <= 0.5 * direct_ms
    note = f"{runs} each, interleaved"
    if not met:
        note += "; " + _profile(
            server, lambda: repeat_for(4, lambda: gateway.rpc("tools/list", {}))
        )
    return [
        Figure("tools/list, 50 tools over 5 connectors (cached) vs one upstream of 50: median",
               gateway_ms, direct_ms, "ms", "≤ 0.5×", met, note=note),
    ]  # fmt: skip


def _call_request(tool: str) -> tuple[dict, dict]:
    """The body and headers (less the key) of a modern ``tools/call`` of ``tool``."""
    meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"city": "Oslo"}, "_meta": meta}}  # fmt: skip
    headers = {"Mcp-Method": "tools/call", "Mcp-Name": tool, "MCP-Protocol-Version": MODERN,
               "Accept": "application/json, text/event-stream"}  # fmt: skip
    return body, headers


def _sql_per_call(app, label, agents, tool, quick) -> list[Figure]:
    """Statements per call in process (the ASGI application through ``AgentClient``), after
    one warm call per agent (the first call of a connection writes its last-call time, once
    a minute at most). The call log writer's statements (a batch insert and its commit, off
    the call's path) are counted apart."""
    from mcpadmin.extensions import db
    from mcpadmin.services import calllog
    from tests.gateway_helpers import AgentClient

    with app.app_context():
        engine = db.engine
    body, headers = _call_request(tool)
    rounds = 20 if quick else 40
    with AgentClient(app) as client:

        def call(agent_id, key):
            answer = client.post(f"/agents/{agent_id}/mcp", json=body,
                                 headers={**headers, "Authorization": f"Bearer {key}"})  # fmt: skip
            assert answer.status_code == 200 and not answer.json["result"]["isError"], answer.text

        warm = SqlCounter(engine, apart=WRITER)
        with warm:
            for agent_id, key in agents:
                call(agent_id, key)
        calllog.flush(app)  # the warm calls' rows
        sql = SqlCounter(engine, apart=WRITER)
        began = time.perf_counter()
        with sql:
            for i in range(rounds):
                call(*agents[i % len(agents)])
        per_call_ms = (time.perf_counter() - began) / rounds * 1000
        rest = SqlCounter(engine)
        with rest:
            calllog.flush(app)  # the rows the writer had not written yet
    per_call = sql.count / rounds
    kinds = collections.Counter(_kind(statement) for statement in sql.statements)
    each = ", ".join(f"{kind} ×{n / rounds:g}" for kind, n in kinds.most_common())
    return [
        Figure(f"SQL statements per tools/call ({label})", per_call, None, "", "≤ 2",
               per_call <= 2,
               note=f"per call: {each}; first call per agent: {warm.count / len(agents):.0f}; "
                    f"the call log writer: {sql.apart_count + rest.count} for the {rounds} "
                    f"calls' rows, batched off the call's path; {per_call_ms:.1f} ms per call "
                    f"in process, upstream included; {_upstream_path()}"),
    ]  # fmt: skip


def _kind(statement: str) -> str:
    """``SELECT agent_key`` for a statement: its verb and the first table it names outside
    parentheses (not a subquery's)."""
    words = statement.split()
    verb = words[0].upper()
    marker = {"SELECT": "FROM", "DELETE": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE"}.get(verb)
    depth = 0
    for word, following in zip(words, words[1:], strict=False):
        if depth == 0 and word.upper() == marker:
            return f"{verb} {following.strip('()')}"
        depth += word.count("(") - word.count(")")
    return verb


def _call_log_cost(app, agent_id, key, tool, calls) -> list[Figure]:
    """p50 of a call with the call log written vs not, alternating per call, in process (the
    ASGI application through ``AgentClient``); the rows the "on" calls wrote are counted, so a
    log that silently wrote nothing cannot pass."""
    from sqlalchemy import func, select

    from mcpadmin.extensions import db
    from mcpadmin.models import CallRecord
    from mcpadmin.services import calllog
    from tests.gateway_helpers import AgentClient

    body, headers = _call_request(tool)
    headers["Authorization"] = f"Bearer {key}"
    calllog.flush(app)  # the rows of the figures before this one
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(CallRecord))
    times = {True: [], False: []}
    with AgentClient(app) as client:

        def timed(logged: bool) -> float:
            app.config["CALL_LOG"] = logged
            began = time.perf_counter()
            answer = client.post(f"/agents/{agent_id}/mcp", json=body, headers=headers)
            spent = (time.perf_counter() - began) * 1000
            assert answer.status_code == 200 and not answer.json["result"]["isError"], answer.text
            return spent

        for _ in range(20):
            timed(True), timed(False)
        for _ in range(calls):
            for logged in (True, False):
                times[logged].append(timed(logged))
    app.config["CALL_LOG"] = True
    calllog.flush(app)  # what still waits in the writer
    with app.app_context():
        written = db.session.scalar(select(func.count()).select_from(CallRecord)) - before
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return [
        Figure("tools/call p50, call log on vs off", on, off, "ms", "≤ 1.10×",
               on <= 1.10 * off and written == calls + 20,
               note=f"{calls} calls each, interleaved, in process, upstream included; "
                    f"{written} rows written"),
    ]  # fmt: skip


def _memory(server, gateway_url, key, first) -> list[Figure]:
    """RSS of the one worker after ``first`` calls, then after ten times as many."""
    concurrent_calls(lambda: Lean(gateway_url, key), _gateway_call_on, first)
    after_first = rss_kib(server.worker_pids())
    concurrent_calls(lambda: Lean(gateway_url, key), _gateway_call_on, 9 * first)
    after_all = rss_kib(server.worker_pids())
    return [
        Figure(f"gateway worker RSS after {10 * first} calls vs after {first}",
               after_all / 1024, after_first / 1024, "MiB", "≤ 1.1×",
               after_all <= 1.1 * after_first,
               note=f"1 uvicorn worker, {CONCURRENCY} clients"),
    ]  # fmt: skip


if __name__ == "__main__":  # one benchmark alone: python -m bench.gateway [--quick]
    from bench.common import table

    print(table(run(quick="--quick" in sys.argv)))
