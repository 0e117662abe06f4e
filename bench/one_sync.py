"""One sync of a 50-tool server on 127.0.0.1, in four setups (modern/legacy era × JSON/SSE
answers): mcpadmin's ``sync_tools`` (listing and storing, committed, era cached) beside the
official ``mcp`` SDK client listing the same server, and beside the floor: a keep-alive
``requests`` loop that sends exactly the protocol's minimum requests and parses the answers.

The server lists the same tools every time, so each measured sync is a re-sync of an unchanged
listing: the common case, where a shared connector's listing digest matches the stored one
and the tool rows are not touched. The "compared tool by tool" row clears that digest before
each run: the path a changed listing takes (loading and hashing every tool), without writes.

Runs are interleaved (mcpadmin, SDK, floor, mcpadmin…) so load from other processes falls on
each side alike; requests are counted by the peer.

Then the UI's Sync request over HTTP (the connectors index's htmx ``POST
/connectors/<id>/sync`` of the modern JSON setup, with its CSRF header, answered with the
row): under the production recipe (``gunicorn -c gunicorn.conf.py asgi:app``: the Flask app
behind the WSGI adapter) vs the recipe before it (the same settings with gunicorn's gthread
worker and ``wsgi:app``), 2 workers each, on one database, each with a browser signed in
through its login form; and the first against the floor, interleaved.
"""

import asyncio
import json
import re
import statistics
import time

import requests

from bench.common import (
    MODERN,
    Figure,
    McpPeer,
    Server,
    add_served_admin,
    interleaved,
    make_app,
    repeat_for,
    top_frames,
    workdir,
)

TOOLS = 50
# (label, peer script, peer flags, runs under the mcp 1.x venv, era mcpadmin caches)
SETUPS = [
    ("modern, JSON", "mcp_server.py", ["--json"], False, "modern"),
    ("modern, SSE", "mcp_server.py", ["--notify"], False, "modern"),
    ("legacy, JSON", "mcp_legacy_server.py", ["--json"], True, "legacy"),
    ("legacy, SSE", "mcp_legacy_server.py", [], True, "legacy"),
]
ACCEPT = "application/json, text/event-stream"
META = "io.modelcontextprotocol/"


def run(quick: bool = False) -> list[Figure]:
    runs = 8 if quick else 20
    figures = []
    for label, script, flags, legacy, era in SETUPS:
        peer = McpPeer(script, "--tools", str(TOOLS), *flags, legacy=legacy)
        try:
            figures += _one_setup(label, peer, era, runs)
        finally:
            peer.stop()
    peer = McpPeer("mcp_server.py", "--tools", str(TOOLS), "--json")
    try:
        figures += ui_sync(peer, 40 if quick else 150)
    finally:
        peer.stop()
    return figures


def ui_sync(peer: McpPeer, runs: int) -> list[Figure]:
    """The UI's Sync request over HTTP: the ASGI stack vs gthread, and vs the floor."""
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector
    from mcpadmin.services import sync
    from tests.test_load import signed_in

    directory = workdir("ui-sync")
    app = make_app(directory)
    with app.app_context():
        connector = Connector(name="bench", url=peer.url)
        db.session.add(connector)
        db.session.commit()
        sync.sync_tools(connector)  # the era learnt, the listing stored: a re-sync follows
        db.session.commit()
        path = f"/connectors/{connector.id}/sync"
    admin = add_served_admin(app)
    floor = Floor(peer.url, "modern")
    with Server(directory, "asgi") as asgi, Server(directory, "gthread") as gthread:
        clicks = {name: _SyncButton(server.url, path, signed_in(server.url, admin))
                  for name, server in (("asgi", asgi), ("gthread", gthread))}  # fmt: skip
        sides = {"asgi": clicks["asgi"].click, "gthread": clicks["gthread"].click,
                 "floor": floor.list_tools}  # fmt: skip
        times = interleaved(sides, runs, warmup=3)
        ms = {name: seconds * 1000 for name, seconds in times.items()}
        ratio_met, floor_met = ms["asgi"] <= 1.1 * ms["gthread"], ms["asgi"] <= 4 * ms["floor"]
        profile = ""
        if not (ratio_met and floor_met):

            def load():
                repeat_for(4, clicks["asgi"].click)

            profile = "; " + top_frames(asgi.worker_pids(), 5, during=load)
    name = f"the UI's Sync request (htmx POST, {TOOLS} tools, modern JSON) over HTTP"
    note = f"median of {runs}, interleaved; 2 workers each"
    return [
        Figure(f"{name}: ASGI stack vs gunicorn gthread", ms["asgi"], ms["gthread"], "ms",
               "≤ 1.1×", ratio_met, note=note + (profile if not ratio_met else "")),
        Figure(f"{name}: ASGI stack vs the floor", ms["asgi"], ms["floor"], "ms", "≤ 4×",
               floor_met, note=profile.removeprefix("; ") if not floor_met else ""),
    ]  # fmt: skip


class _SyncButton:
    """The Sync button of a connector's row on the connectors index, as htmx sends it: the
    CSRF token in ``X-CSRFToken`` (from the page's ``hx-headers``) and in the form."""

    def __init__(self, base: str, path: str, browser: requests.Session):
        self.url, self.browser = base + path, browser
        page = browser.get(base + "/connectors/", timeout=30).text
        self.token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)

    def click(self):
        headers = {"HX-Request": "true", "X-CSRFToken": self.token}
        answer = self.browser.post(self.url, data={"csrf_token": self.token}, headers=headers,
                                   timeout=30)  # fmt: skip
        assert answer.status_code == 200 and "Synced" in answer.text, answer.status_code


def _one_setup(label, peer, era, runs) -> list[Figure]:
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector
    from mcpadmin.services import sync

    app = make_app(workdir("one-sync"))
    with app.app_context():
        db.session.add(Connector(name="bench", url=peer.url))
        db.session.commit()

    def mcpadmin_sync():
        with app.app_context():
            result = sync.sync_tools(db.session.scalar(db.select(Connector)))
            db.session.commit()
            assert result.tool_count == TOOLS, result.tool_count

    compared = []  # the "compared" runs' own times: the digest reset before each is not counted

    def compared_sync():
        with app.app_context():
            db.session.scalar(db.select(Connector)).listing_hash = None  # as if it had changed
            db.session.commit()
        began = time.perf_counter()
        mcpadmin_sync()
        compared.append(time.perf_counter() - began)

    floor = Floor(peer.url, era)
    first = peer.requests_during(mcpadmin_sync)  # era unknown: probe, then list
    with app.app_context():
        assert db.session.scalar(db.select(Connector)).protocol_era == era
    cached = peer.requests_during(mcpadmin_sync)
    sdk_requests = peer.requests_during(lambda: asyncio.run(sdk_list(peer.url)))
    floor_requests = peer.requests_during(floor.list_tools)
    times = interleaved(
        {
            "mcpadmin": mcpadmin_sync,
            "compared": compared_sync,
            "sdk": lambda: asyncio.run(sdk_list(peer.url)),
            "floor": floor.list_tools,
        },
        runs,
    )
    full = statistics.median(compared[-runs:])
    minimum = 1 if era == "modern" else 4
    name = f"one sync, {label}"
    return [
        Figure(f"{name}: wall time vs SDK client", times["mcpadmin"] * 1000, times["sdk"] * 1000,
               "ms", "ratio ≤ 0.25", times["mcpadmin"] <= 0.25 * times["sdk"],
               f"median of {runs}"),
        Figure(f"{name}: wall time vs floor", times["mcpadmin"] * 1000, times["floor"] * 1000,
               "ms", "ratio ≤ 2", times["mcpadmin"] <= 2 * times["floor"]),
        Figure(f"{name}: compared tool by tool, wall time vs floor", full * 1000,
               times["floor"] * 1000, "ms", "(info)", None,
               f"vs SDK: {full / times['sdk']:.2f}"),
        Figure(f"{name}: HTTP requests, era cached (baseline: SDK)", cached, sdk_requests, "",
               f"= {minimum} (floor: {floor_requests})", cached == minimum),
        Figure(f"{name}: HTTP requests, first sync (era probed)", first, sdk_requests, "",
               f"≤ {minimum + 1}", first <= minimum + 1),
    ]  # fmt: skip


async def sdk_list(url: str) -> int:
    """Every tool of the server through the official SDK client (its auto era detection)."""
    from mcp import Client

    count, cursor = 0, None
    async with Client(url) as client:
        while True:
            page = await client.list_tools(cursor=cursor)
            count += len(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return count


class Floor:
    """The least a client can do: one keep-alive session, the minimum requests of the era
    (modern: ``tools/list`` per page; legacy: ``initialize``, ``notifications/initialized``,
    ``tools/list`` per page, ``DELETE``), each answer parsed as JSON. No checks."""

    def __init__(self, url: str, era: str):
        self.url, self.era = url, era
        self.session = requests.Session()
        self.session.headers.update({"Accept": ACCEPT, "Content-Type": "application/json"})

    def list_tools(self) -> int:
        if self.era == "modern":
            meta = {
                META + "protocolVersion": MODERN,
                META + "clientInfo": {"name": "floor", "version": "1"},
                META + "clientCapabilities": {},
            }
            headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
            return self._pages(headers, {"_meta": meta})
        params = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "floor", "version": "1"},
        }
        answer = self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
        headers = {
            "MCP-Protocol-Version": answer["result"]["protocolVersion"],
            "Mcp-Session-Id": self.last.headers["mcp-session-id"],
        }
        self.session.post(
            self.url, data=b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
            headers=headers, timeout=10,
        ).close()  # fmt: skip
        count = self._pages(headers, {})
        self.session.delete(self.url, headers=headers, timeout=10).close()
        return count

    def _pages(self, headers, params) -> int:
        count, cursor = 0, None
        while True:
            page = dict(params, **({"cursor": cursor} if cursor else {}))
            message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": page}
            result = self._post(message, headers)["result"]
            count += len(result["tools"])
            cursor = result.get("nextCursor")
            if not cursor:
                return count

    def _post(self, message, headers=None) -> dict:
        self.last = self.session.post(
            self.url, data=json.dumps(message), headers=headers, timeout=10
        )
        body = self.last.content
        if self.last.headers.get("content-type", "").startswith("text/event-stream"):
            for line in body.decode().splitlines():  # the answer is the last data line
                if line.startswith("data:") and '"id"' in line:
                    body = line[5:]
        return json.loads(body)
