"""Sync-all scaling: ``flask sync-tools`` (a new process, as cron runs it) over 10, 50 and 200
connectors whose server answers ``tools/list`` after 100 ms, divided by the same command over
one connector. Peak memory and threads come from ``bench/flask_probe.py``.

Each database is synced twice: the first run stores every tool (a new install), the second
finds every listing unchanged (the steady state of a periodic job). Both carry the target.

One peer (``mcp_server.py --slow 0.1``: the wait is asynchronous, so it serves every connector
at once) stands behind every connector; each connector has the modern era cached, so a sync is
exactly one ``tools/list`` request.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import MODERN, ROOT, Figure, McpPeer, cli_env, make_app, workdir
from mcpadmin.cli import sync_tools_command

TOOLS = 20
LATENCY = 0.1
PROBE = os.path.join(ROOT, "bench", "flask_probe.py")
# What ``flask sync-tools`` runs without ``--workers``, read from the command itself.
DEFAULT_WORKERS = next(p.default for p in sync_tools_command.params if p.name == "workers")
WIDE = 2 * DEFAULT_WORKERS  # one extra row: does a wider pool still help at 200?
RUNS = {"again": "listing unchanged", "first": "first sync, every tool new"}


def run(quick: bool = False) -> list[Figure]:
    peer = McpPeer("mcp_server.py", "--json", "--tools", str(TOOLS), "--slow", str(LATENCY))
    try:
        # One connector before every measured run (interleaved: noise falls on both alike).
        one = [_sync_all(peer, 1) for _ in range(1 if quick else 2)]

        def measured(n, **kwargs):
            one.append(_sync_all(peer, 1))
            return _sync_all(peer, n, **kwargs)

        results = {n: measured(n) for n in (10, 50, 200)}
        wide = measured(200, workers=WIDE)
        base = {which: statistics.median(r[which]["wall"] for r in one) for which in RUNS}
        figures = []
        for which, what in RUNS.items():
            for n, result in results.items():
                if which == "first" and n != 200:
                    continue
                wall, at_200 = result[which]["wall"], n == 200
                figures.append(
                    Figure(f"sync-all, {n} connectors, {what}: wall time vs one connector",
                           wall, base[which], "s", "ratio ≤ 3 at 200" if at_200 else "—",
                           wall <= 3 * base[which] if at_200 else None,
                           f"{DEFAULT_WORKERS} workers")
                )  # fmt: skip
        figures.append(
            Figure(f"sync-all, 200 connectors, {RUNS['again']}, --workers {WIDE}: wall time vs "
                   "one connector", wide["again"]["wall"], base["again"], "s", "(info)", None,
                   f"peak threads {wide['again']['peak_threads']}")
        )  # fmt: skip
        rss = max(results[200][w]["max_rss_kib"] for w in RUNS)
        figures.append(
            Figure("sync-all, 200 connectors: peak RSS vs one connector", rss / 1024,
                   one[0]["first"]["max_rss_kib"] / 1024, "MiB", "ratio ≤ 1.5",
                   rss <= 1.5 * one[0]["first"]["max_rss_kib"])
        )  # fmt: skip
        threads = max(results[200][w]["peak_threads"] for w in RUNS)
        figures.append(
            Figure("sync-all, 200 connectors: peak threads vs one connector", threads,
                   one[0]["first"]["peak_threads"], "", f"≤ {DEFAULT_WORKERS + 1} (workers + main)",
                   threads <= DEFAULT_WORKERS + 1)
        )  # fmt: skip
        return figures
    finally:
        peer.stop()


def _sync_all(peer, connectors: int, workers: int | None = None) -> dict:
    """Seed ``connectors`` connectors on a fresh database and run the command twice on it:
    wall time, peak RSS and threads of each run (``first``, ``again``).

    :raise RuntimeError: a run failed or missed a server.
    """
    directory = workdir("sync-all")
    _seed(directory, peer.url, connectors)
    command = [sys.executable, PROBE, "sync-tools"]
    if workers:
        command += ["--workers", str(workers)]
    runs = {}
    for which in ("first", "again"):
        before = peer.request_count()
        began = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=cli_env(directory), capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        wall = time.perf_counter() - began
        sent = peer.request_count() - before
        if done.returncode != 0 or sent != connectors:
            raise RuntimeError(
                f"sync-tools failed ({sent} requests):\n{done.stdout}\n{done.stderr}"
            )
        runs[which] = {"wall": wall, **json.loads(done.stderr.strip().splitlines()[-1])}
    if "(20 new)" in done.stdout:
        raise RuntimeError("the second run stored the tools again:\n" + done.stdout[:500])
    return runs


def _seed(directory, url, count):
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector

    app = make_app(directory)
    with app.app_context():
        for i in range(count):
            db.session.add(
                Connector(
                    name=f"server {i:04d}", url=url, protocol_era="modern", protocol_version=MODERN
                )
            )
        db.session.commit()
        db.engine.dispose()
