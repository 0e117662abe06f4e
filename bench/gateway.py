"""The agent gateway (``POST /agents/<id>/mcp``), each figure beside its baseline in one run.

1. ``tools/call`` of a fast tool (``weather``) through the gateway vs the same lean client
   (``requests.Session``, modern JSON-RPC posts) calling the upstream peer directly, one
   client, sequential, interleaved: added p50 and the p99 ratio. Gateway under gunicorn.
   Beside it, the floors: ``GET /healthz`` on the same gunicorn, and on a bare Starlette app
   under uvicorn (``bench.peers.bare_floor``), what any ASGI answer costs here.
2. Throughput at 16 concurrent clients, gateway under gunicorn (several workers) vs the same
   16 clients calling the peer directly; errors counted.
3. ``tools/list`` through the gateway (50 enabled tools over 5 connectors) vs one direct
   ``tools/list`` of a peer serving 50 tools.
4. SQL statements per ``tools/call`` in process (``before_cursor_execute``), at (1 connector,
   1 agent, 5 tools) and (20 connectors, 20 agents, 400 tools).
5. RSS of a one-worker gunicorn after N and 10·N calls (``/proc/<worker>/status``): N is
   1,000, as the issue asks (100 with ``--quick``); the 10,000 calls take about two minutes.
6. The call log's cost: p50 of ``tools/call`` in process with ``CALL_LOG`` on vs off, the two
   interleaved call by call on one app (the setting is read per call); the rows the "on"
   calls wrote are counted (the writer thread writes them in batches, off the call's path).

The upstream is the SDK peer (``tests/peers/mcp_server.py --json --stateless``), one process:
its own cost per call bounds figures 1, 2 and 5, and is named in their notes. The database
is SQLite (a file shared by the gunicorn workers), as in the other benchmarks.
"""

import os
import statistics
import subprocess
import sys
import time
import urllib.request

import requests

from bench.common import (
    CONCURRENCY,
    META,
    MODERN,
    PYTHON,
    ROOT,
    Figure,
    Lean,
    McpPeer,
    SqlCounter,
    cli_env,
    concurrent_calls,
    cpu_seconds,
    make_app,
    percentile,
    workdir,
)
from bench.peers import bare_floor
from tests.peers import free_port, terminate

WORKERS = 3  # gunicorn workers for figure 2 (2 CPUs here; 8 threads each)


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

        with Gunicorn(directory, WORKERS) as server:
            gateway_url = f"{server.url}/agents/{ids[0]}/mcp"
            figures += _latency(peer.url, gateway_url, key, calls)
            figures.append(bare_floor(100 if quick else 300))  # under the /healthz floor
            figures += _throughput(peer, server, gateway_url, key, 300 if quick else 600)
            lister_url = f"{server.url}/agents/{ids[1]}/mcp"
            figures += _listing(fifty.url, lister_url, lister_key, 50 if quick else 150)
        with Gunicorn(directory, 1) as server:
            gateway_url = f"{server.url}/agents/{ids[0]}/mcp"
            figures += _memory(server, gateway_url, key, 100 if quick else 1000)
    finally:
        for p in (peer, fifty, ten, twenty):
            p.stop()
    return figures


# -- figures ------------------------------------------------------------------------------------


def _latency(peer_url, gateway_url, key, calls) -> list[Figure]:
    """Also times ``/healthz`` on the same gunicorn: what any request costs there before the
    gateway does anything (the floor under the added latency)."""
    direct, gateway, floor = Lean(peer_url), Lean(gateway_url, key), _Floor(gateway_url)
    for _ in range(20):
        direct.weather()
        gateway.weather("peer__weather")
        floor.get()
    times = {"direct": [], "gateway": [], "floor": []}
    for _ in range(calls):  # interleaved, so load from elsewhere falls on all alike
        for side, call in (("direct", direct.weather), ("gateway", _gateway_call(gateway)),
                           ("floor", floor.get)):  # fmt: skip
            began = time.perf_counter()
            call()
            times[side].append((time.perf_counter() - began) * 1000)
    p50 = {side: statistics.median(values) for side, values in times.items()}
    p99 = {side: percentile(values, 99) for side, values in times.items()}
    added = p50["gateway"] - p50["direct"]
    note = f"{calls} calls each, gunicorn {WORKERS} workers; upstream p50 {p50['direct']:.1f} ms"
    return [
        Figure("tools/call weather, one client: added p50", added, None, "ms", "≤ 2 ms",
               added <= 2, note=note),
        Figure("tools/call weather, one client: p99 gateway vs direct", p99["gateway"],
               p99["direct"], "ms", "≤ 1.3×", p99["gateway"] <= 1.3 * p99["direct"]),
        Figure("floor: GET /healthz on the same gunicorn, p50 (vs the upstream's whole call)",
               p50["floor"], p50["direct"], "ms"),
    ]  # fmt: skip


class _Floor:
    """``GET /healthz`` on the gateway's server with the same kind of client."""

    def __init__(self, gateway_url: str):
        self.url = gateway_url.split("/agents/")[0] + "/healthz"
        self.http = requests.Session()
        self.http.trust_env = False

    def get(self):
        self.http.get(self.url, timeout=30).raise_for_status()


def _gateway_call(client):
    return lambda: client.weather("peer__weather")


def _throughput(peer, server, gateway_url, key, calls) -> list[Figure]:
    """Calls per second both ways, and the CPU each process spent per call (what limits it:
    the 2 CPUs are shared by the clients, the gateway's workers and the peer)."""
    peer_pid = [peer.peer.process.pid]
    before = cpu_seconds(peer_pid)
    direct = concurrent_calls(lambda: Lean(peer.url), lambda c: c.weather(), calls)
    peer_direct = (cpu_seconds(peer_pid) - before) / calls * 1000
    before = cpu_seconds(peer_pid), cpu_seconds(server.worker_pids())
    gateway = concurrent_calls(lambda: Lean(gateway_url, key), _gateway_call_on, calls)
    peer_gateway = (cpu_seconds(peer_pid) - before[0]) / calls * 1000
    workers = (cpu_seconds(server.worker_pids()) - before[1]) / calls * 1000
    errors = direct[1] + gateway[1]
    note = (f"{calls} calls, gunicorn {WORKERS}×8 threads on 2 CPUs shared with the clients "
            f"and the peer; CPU per call: gateway workers {workers:.1f} ms, peer "
            f"{peer_gateway:.1f} ms (direct: {peer_direct:.1f} ms)")  # fmt: skip
    return [
        Figure(f"tools/call at {CONCURRENCY} clients: calls per second", gateway[0], direct[0],
               "/s", "≥ 0.7× direct", gateway[0] >= 0.7 * direct[0], note=note),
        Figure(f"tools/call at {CONCURRENCY} clients: errors (gateway + direct)", errors, None,
               "", "0", errors == 0),
    ]  # fmt: skip


def _gateway_call_on(client):
    return client.weather("peer__weather")


def _listing(peer_url, gateway_url, key, runs) -> list[Figure]:
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
    return [
        Figure("tools/list, 50 tools over 5 connectors vs one upstream of 50: median",
               gateway_ms, direct_ms, "ms", "≤ 0.5×", gateway_ms <= 0.5 * direct_ms,
               note=f"{runs} each, interleaved"),
    ]  # fmt: skip


def _sql_per_call(app, label, agents, tool, quick) -> list[Figure]:
    """Statements per call in process (the test client), after one warm call per agent (the
    first call of a connection writes its last-call time, once a minute at most)."""
    from mcpadmin.extensions import db

    client = app.test_client()
    with app.app_context():
        engine = db.engine

    def call(agent_id, key):
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": {"city": "Oslo"},
                           "_meta": {META + "protocolVersion": MODERN,
                                     META + "clientCapabilities": {}}}}  # fmt: skip
        headers = {"Authorization": f"Bearer {key}", "Mcp-Method": "tools/call",
                   "Mcp-Name": tool, "MCP-Protocol-Version": MODERN,
                   "Accept": "application/json, text/event-stream"}  # fmt: skip
        answer = client.post(f"/agents/{agent_id}/mcp", json=body, headers=headers)
        assert answer.status_code == 200 and not answer.json["result"]["isError"], answer.data

    warm = SqlCounter(engine)
    with warm:
        for agent_id, key in agents:
            call(agent_id, key)
    rounds = 20 if quick else 40
    sql = SqlCounter(engine)
    began = time.perf_counter()
    with sql:
        for i in range(rounds):
            call(*agents[i % len(agents)])
    per_call_ms = (time.perf_counter() - began) / rounds * 1000
    per_call = sql.count / rounds
    return [
        Figure(f"SQL statements per tools/call ({label})", per_call, None, "", "≤ 3",
               per_call <= 3,
               note=f"first call per agent: {warm.count / len(agents):.0f}; "
                    f"{per_call_ms:.1f} ms per call in process, upstream included"),
    ]  # fmt: skip


def _call_log_cost(app, agent_id, key, tool, calls) -> list[Figure]:
    """p50 of a call with the call log written vs not, alternating per call; the rows the
    "on" calls wrote are counted, so a log that silently wrote nothing cannot pass."""
    from sqlalchemy import func, select

    from mcpadmin.extensions import db
    from mcpadmin.models import CallRecord
    from mcpadmin.services import calllog

    client = app.test_client()
    meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
    params = {"name": tool, "arguments": {"city": "Oslo"}, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {"Authorization": f"Bearer {key}", "Mcp-Method": "tools/call", "Mcp-Name": tool,
               "MCP-Protocol-Version": MODERN,
               "Accept": "application/json, text/event-stream"}  # fmt: skip

    def timed(logged: bool) -> float:
        app.config["CALL_LOG"] = logged
        began = time.perf_counter()
        answer = client.post(f"/agents/{agent_id}/mcp", json=body, headers=headers)
        spent = (time.perf_counter() - began) * 1000
        assert answer.status_code == 200 and not answer.json["result"]["isError"], answer.data
        return spent

    calllog.flush(app)  # the rows of the figures before this one
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(CallRecord))
    for _ in range(20):
        timed(True), timed(False)
    times = {True: [], False: []}
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
    after_first = server.worker_rss_kib()
    concurrent_calls(lambda: Lean(gateway_url, key), _gateway_call_on, 9 * first)
    after_all = server.worker_rss_kib()
    return [
        Figure(f"gateway worker RSS after {10 * first} calls vs after {first}",
               after_all / 1024, after_first / 1024, "MiB", "≤ 1.1×",
               after_all <= 1.1 * after_first,
               note=f"gunicorn 1 worker, {CONCURRENCY} clients"),
    ]  # fmt: skip


# -- the app under gunicorn ---------------------------------------------------------------------


class Gunicorn:
    """The app on the bench's SQLite database under gunicorn (``workers``, 8 threads each), so
    agent keys made in this process (same SECRET_KEY) are valid there."""

    def __init__(self, directory: str, workers: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**cli_env(directory), "MCPADMIN_PUBLIC_BASE_URL": self.url}
        command = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers",
                   str(workers), "--threads", "8", "--timeout", "60", "wsgi:app"]  # fmt: skip
        self.log = open(os.path.join(directory, f"gunicorn-{self.port}.log"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=ROOT, env=env)  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with opener.open(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start on {self.url}")

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]

    def worker_rss_kib(self) -> int:
        workers = self.worker_pids()
        assert len(workers) == 1, workers
        with open(f"/proc/{workers[0]}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self):
        terminate(self.process)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # one benchmark alone: python -m bench.gateway [--quick]
    from bench.common import table

    print(table(run(quick="--quick" in sys.argv)))
