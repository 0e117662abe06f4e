"""Requests per sync and wall time of ``flask sync-tools`` beside the official SDK client
listing the same 50-tool server, measured in the same run (loopback only).

    .venv/bin/python bench/sync_vs_sdk.py [--runs 5] [--page-size 0]

Starts ``tests/peers/mcp_server.py`` (mcp 2.x, both eras) on 127.0.0.1 and a throwaway SQLite
database, then times, for each side, the cold command (a new process: interpreter, imports,
the listing) and the listing alone inside a warm process. Requests are counted by the peer.
Prints every figure and its ratio to the SDK baseline.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.peers import start  # noqa: E402

FLASK = os.path.join(ROOT, ".venv", "bin", "flask")
SDK_SCRIPT = """
import asyncio, sys
from mcp import Client
async def main():
    async with Client(sys.argv[1]) as client:
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if cursor is None:
                break
    print(len(tools))
asyncio.run(main())
"""


def peer_requests(base):
    return requests.get(base + "/_stats", timeout=5).json()["requests"]


def timed(fn, runs):
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def counted(peer, fn):
    before = len(peer_requests(peer.base_url))
    fn()
    return len(peer_requests(peer.base_url)) - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=0, help="0: one page")
    args = parser.parse_args()

    peer_args = ["--tools", "50"] + (["--page-size", str(args.page_size)] if args.page_size else [])
    peer = start("mcp_server.py", *peer_args)
    url = peer.base_url + "/mcp"
    workdir = tempfile.mkdtemp(prefix="mcpadmin-bench-")
    env = {
        **os.environ,
        "MCPADMIN_DATABASE_URL": "sqlite:///" + os.path.join(workdir, "bench.sqlite3"),
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",
        "MCPADMIN_SECRET_KEY": "bench-only",
        "MCPADMIN_ENCRYPTION_KEYS": "4U4pZOZcFE5hAY2yYc-8-cI4lLQH3xSnt3bGvnMZ3Rk=",
    }
    try:
        os.environ.update(env)
        from mcpadmin import create_app
        from mcpadmin.extensions import db
        from mcpadmin.models import Connector
        from mcpadmin.services import sync

        app = create_app(instance_path=workdir)
        with app.app_context():
            db.session.add(Connector(name="bench", url=url))
            db.session.commit()

        def cli():
            subprocess.run([FLASK, "--app", "wsgi", "sync-tools", "bench"], cwd=ROOT, env=env,
                           check=True, capture_output=True)  # fmt: skip

        def sdk_cli():
            out = subprocess.run([sys.executable, "-c", SDK_SCRIPT, url], env=env, check=True,
                                 capture_output=True, text=True)  # fmt: skip
            assert out.stdout.strip() == "50", out.stdout

        def forget_era():
            with app.app_context():
                connector = db.session.scalar(db.select(Connector))
                connector.protocol_era = connector.protocol_version = None
                db.session.commit()

        def in_process():
            with app.app_context():
                result = sync.sync_tools(db.session.scalar(db.select(Connector)))
                db.session.commit()
                assert result.tool_count == 50

        async def sdk_list():
            from mcp import Client

            async with Client(url) as client:
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    cursor = page.next_cursor
                    if cursor is None:
                        break

        sdk_in_process = lambda: asyncio.run(sdk_list())  # noqa: E731

        forget_era()
        first = counted(peer, cli)  # probe + pages
        cached = counted(peer, cli)  # era remembered: pages only
        sdk_requests = counted(peer, sdk_cli)
        figures = {
            "requests: flask sync-tools, first sync": first,
            "requests: flask sync-tools, era cached": cached,
            "requests: SDK Client (auto mode)": sdk_requests,
            "wall s: flask sync-tools (new process)": timed(cli, args.runs),
            "wall s: SDK client script (new process)": timed(sdk_cli, args.runs),
            "wall s: sync_tools() in a warm process": timed(in_process, args.runs),
            "wall s: SDK Client.list_tools() in a warm process": timed(sdk_in_process, args.runs),
        }
        baseline = {
            "requests": figures["requests: SDK Client (auto mode)"],
            "new process": figures["wall s: SDK client script (new process)"],
            "warm": figures["wall s: SDK Client.list_tools() in a warm process"],
        }
        print(f"50 tools, page size {args.page_size or 'all'}, median of {args.runs} runs")
        for name, value in figures.items():
            key = (
                "requests"
                if name.startswith("requests")
                else ("new process" if "new process" in name else "warm")
            )
            ratio = value / baseline[key] if baseline[key] else float("nan")
            shown = f"{value}" if isinstance(value, int) else f"{value:.3f}"
            print(f"  {name:<50} {shown:>8}   x{ratio:.2f} of the SDK")
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}))
    finally:
        peer.stop()


if __name__ == "__main__":
    main()
