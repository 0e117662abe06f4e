"""Resources and prompts through the agent gateway cost what a tool call costs: each figure
beside ``tools/call``'s own, measured in the same run on the same agent and upstream.

1. SQL statements per ``resources/read`` and per ``prompts/get`` on the request's path, in
   process (the ASGI application through ``tests.gateway_helpers.AgentClient``, counted at the
   engine), against the same count for ``tools/call`` (target: equal). The call log writer's
   batched inserts are counted apart, as in the gateway benchmark.
2. Added p50 over the upstream of ``resources/read`` and ``prompts/get`` through the gateway
   (``gunicorn -c gunicorn.conf.py asgi:app``, 2 uvicorn workers) against the added p50 of
   ``tools/call`` (target: at most 1.25×, or within 0.3 ms). Each side is the same lean
   client (modern JSON-RPC posts on one ``requests.Session``) calling the gateway and the
   upstream directly, all six interleaved call by call.

The upstream is the SDK peer (``tests/peers/mcp_server.py --json --stateless``), which serves
the surface fixtures (``tests/peers/surface.py``) beside the call tools.
"""

import statistics
import time

from bench.common import (
    Figure,
    Lean,
    McpPeer,
    Server,
    SqlCounter,
    interleaved_times,
    make_app,
    workdir,
)

WORKERS = 2
WRITER = "call-log"
README = "peer://static/readme"
PROMPT = "greeting"


def run(quick: bool = False) -> list[Figure]:
    from mcpadmin.extensions import db
    from tests.gateway_helpers import agent_with_tools, synced_connector

    calls = 100 if quick else 400
    peer = McpPeer("mcp_server.py", "--call-tools", "--tools", "0", "--json", "--stateless")
    directory = workdir("surface")
    app = make_app(directory)
    try:
        with app.app_context():
            connector = synced_connector(peer.url, "Peer")
            agent, key = agent_with_tools([connector], enabled={"Peer": ["weather"]})
            connection = agent.connections[0]
            connection.enabled_prompts = [PROMPT]
            connection.enabled_resources = ["*"]
            db.session.commit()
            slug, agent_id = connector.slug, agent.id
        requests_ = _requests(slug)
        figures = _sql(app, agent_id, key, requests_, 20 if quick else 60)
        with Server(directory, workers=WORKERS) as server:
            gateway = Lean(f"{server.url}/agents/{agent_id}/mcp", key)
            figures += _latency(Lean(peer.url), gateway, requests_, calls)
    finally:
        peer.stop()
    return figures


def _requests(slug: str) -> dict:
    """Each method's params at the gateway and at the upstream."""
    return {
        "tools/call": ({"name": f"{slug}__weather", "arguments": {"city": "Oslo"}},
                       {"name": "weather", "arguments": {"city": "Oslo"}}),
        "resources/read": ({"uri": README}, {"uri": README}),
        "prompts/get": ({"name": f"{slug}__{PROMPT}", "arguments": {"name": "Ada"}},
                        {"name": PROMPT, "arguments": {"name": "Ada"}}),
    }  # fmt: skip


def _sql(app, agent_id, key, requests_, rounds) -> list[Figure]:
    from mcpadmin.extensions import db
    from mcpadmin.services import calllog
    from tests.gateway_helpers import AgentClient

    with app.app_context():
        engine = db.engine
    counts = {}
    with AgentClient(app) as client:
        for method, (params, _upstream) in requests_.items():
            body, headers = _message(method, params, key)

            def send(body=body, headers=headers, method=method):
                answer = client.post(f"/agents/{agent_id}/mcp", json=body, headers=headers)
                result = answer.json.get("result") if answer.status_code == 200 else None
                assert result is not None and not result.get("isError"), (method, answer.text)

            send()  # warm: the connection's last-call time is written once a minute at most
            calllog.flush(app)
            sql = SqlCounter(engine, apart=WRITER)
            with sql:
                for _ in range(rounds):
                    send()
            calllog.flush(app)
            counts[method] = sql.count / rounds
    tool = counts["tools/call"]
    return [
        Figure(f"SQL statements per {method} vs per tools/call", counts[method], tool, "",
               "= tools/call", counts[method] <= tool,
               note=f"{rounds} requests each, in process; the call log writer counted apart")
        for method in ("resources/read", "prompts/get")
    ]  # fmt: skip


def _message(method, params, key) -> tuple[dict, dict]:
    from bench.common import META, MODERN

    meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    headers = {"Mcp-Method": method, "MCP-Protocol-Version": MODERN,
               "Mcp-Name": params.get("name") or params.get("uri"),
               "Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {key}"}  # fmt: skip
    return body, headers


def _latency(direct: Lean, gateway: Lean, requests_, calls) -> list[Figure]:
    sides = {}
    for method, (params, upstream) in requests_.items():
        sides[f"gateway {method}"] = _rpc(gateway, method, params)
        sides[f"direct {method}"] = _rpc(direct, method, upstream)
    began = time.perf_counter()
    times = interleaved_times(sides, calls, warmup=20)
    seconds = time.perf_counter() - began
    p50 = {side: statistics.median(values) for side, values in times.items()}
    added = {m: p50[f"gateway {m}"] - p50[f"direct {m}"] for m in requests_}
    tool = added["tools/call"]
    figures = []
    for method in ("resources/read", "prompts/get"):
        met = added[method] <= max(1.25 * tool, tool + 0.3)
        figures.append(Figure(
            f"{method} through the gateway: added p50 vs tools/call's", added[method], tool,
            "ms", "≤ 1.25× (or +0.3 ms)", met,
            note=f"{calls} of each, all six interleaved ({seconds:.0f} s); upstream p50 "
                 f"{p50[f'direct {method}']:.2f} ms, gateway p50 "
                 f"{p50[f'gateway {method}']:.2f} ms; {WORKERS} uvicorn workers",
        ))  # fmt: skip
    return figures


def _rpc(client: Lean, method: str, params: dict):
    """One request as ``Lean.rpc`` sends it, with ``Mcp-Name`` for a URI too [26/http
    §Standard Request Headers] (``Lean`` sets it from ``name`` only)."""
    from bench.common import META, MODERN

    meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
    headers = {"Accept": "application/json, text/event-stream", "Mcp-Method": method,
               "MCP-Protocol-Version": MODERN,
               "Mcp-Name": params.get("name") or params.get("uri")}  # fmt: skip

    def send():
        client.next_id += 1
        body = {"jsonrpc": "2.0", "id": client.next_id, "method": method,
                "params": {**params, "_meta": meta}}  # fmt: skip
        answer = client.http.post(client.url, json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        result = answer.json().get("result")
        if result is None or result.get("isError"):
            raise RuntimeError(f"{method} failed: {answer.text[:300]}")

    return send
