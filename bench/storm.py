"""Refresh storm: processes × threads ask for the same connector's token as it nears expiry,
against the real OAuth peer (``oauth_server.py --token-delay``, so the first refresh is still in
flight while the others ask). Figures: refresh requests the token endpoint counted (target
exactly 1) and the p99 wait of the callers, beside one caller refreshing alone.

The connector is connected through the app itself (Connect, the peer's consent, the callback);
the workers are ``bench/storm_worker.py`` on the same SQLite database.
"""

import json
import subprocess
import sys
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests

from bench.common import ROOT, Figure, log_in, make_app, percentile, workdir
from tests.peers import start

PROCESSES, THREADS = 4, 8
TOKEN_DELAY = 0.5
WORKER = "bench/storm_worker.py"


def run(quick: bool = False) -> list[Figure]:
    peer = start("oauth_server.py", "--token-delay", str(TOKEN_DELAY))
    try:
        directory = workdir("storm")
        app = make_app(directory)
        connector_id = _connected(app, peer.base_url + "/mcp")
        alone = _storm(app, peer.base_url, directory, connector_id, 1, 1)
        storm = _storm(app, peer.base_url, directory, connector_id, PROCESSES, THREADS)
    finally:
        peer.stop()
    callers = PROCESSES * THREADS
    p99 = percentile(storm["waits"], 99)
    return [
        Figure(f"refresh storm, {PROCESSES} processes × {THREADS} threads: token requests",
               storm["refreshes"], alone["refreshes"], "", "exactly 1",
               storm["refreshes"] == 1 and storm["errors"] == 0,
               f"{storm['errors']} errors, {len(set(storm['tokens']))} distinct token(s)"),
        Figure(f"refresh storm: p99 wait of {callers} callers vs one caller alone", p99 * 1000,
               max(alone["waits"]) * 1000, "ms", f"(info; token endpoint takes {TOKEN_DELAY} s)"),
    ]  # fmt: skip


def _connected(app, mcp_url) -> int:
    """An OAuth connector, connected through Connect as an operator would."""
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector

    with app.app_context():
        connector = Connector(name="storm", url=mcp_url, auth_type="oauth")
        db.session.add(connector)
        db.session.commit()
        connector_id = connector.id
    client = log_in(app)
    started = client.post(f"/oauth/connect/{connector_id}")
    assert started.status_code == 302, started.data
    consent = requests.get(started.headers["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(consent.headers["Location"])
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302, done.data
    with app.app_context():
        assert db.session.get(Connector, connector_id).access_token_enc is not None
    return connector_id


def _storm(app, base_url, directory, connector_id, processes, threads) -> dict:
    """Put the token inside the refresh margin, zero the peer's counters, let every thread ask
    at once; the refreshes counted, each caller's wait, the tokens and the errors."""
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector, utcnow

    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connector.token_expires_at = utcnow() + timedelta(minutes=2)  # inside the 5 min margin
        connector.token_obtained_at = utcnow() - timedelta(hours=1)
        db.session.commit()
    requests.post(base_url + "/_peer/reset", timeout=10)
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, directory, str(connector_id), str(threads)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(processes)
    ]
    for worker in workers:
        line = worker.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"storm worker failed: {line}{worker.stderr.read()}")
    start_at = f"{time.time() + 0.2}\n"
    for worker in workers:
        worker.stdin.write(start_at)
        worker.stdin.flush()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        if worker.returncode != 0:
            raise RuntimeError(f"storm worker failed:\n{err}")
        results += json.loads(out.strip().splitlines()[-1])
    stats = requests.get(base_url + "/_peer/stats", timeout=10).json()
    tokens = [r["token"] for r in results]
    return {
        "refreshes": stats["token_requests"].get("refresh_token", 0),
        "waits": [r["wait"] for r in results],
        "tokens": tokens,
        "errors": sum(t is None or t.startswith("ERROR") for t in tokens),
    }
