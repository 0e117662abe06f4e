"""Many workers, one refresh: 16 processes x 2 threads ask for an expiring token at the same
instant and the real authorization server counts exactly one refresh request (on SQLite and,
with TEST_DATABASE_URL, on PostgreSQL). Run with ``-s`` to see the figures."""

import statistics
import subprocess
import sys
from datetime import timedelta

from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow
from tests.oauth_helpers import add_connector, connect
from tests.token_checks import accepted, newest_refresh_token

PROCESSES, THREADS = 16, 2


def start_storm(app, database_uri, connector_id):
    """The storm's processes, each started, connected and waiting for the go."""
    storm = subprocess.Popen(
        [sys.executable, "tests/storm_worker.py", database_uri, app.instance_path,
         str(connector_id), str(PROCESSES), str(THREADS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    ready = storm.stdout.readline()
    assert ready == "ready\n", ready + storm.stderr.read()
    return storm


def test_refresh_storm_sends_exactly_one_token_request(
    app, logged_in, database_uri, start_oauth_peer
):
    peer = start_oauth_peer(token_delay=1.0)  # the refresh stays in flight while others ask
    connector_id = add_connector(app, peer.mcp_url)
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connector.token_expires_at = utcnow() + timedelta(minutes=2)  # inside the margin
        connector.token_obtained_at = utcnow() - timedelta(hours=1)
        db.session.commit()
    peer.reset()
    storm = start_storm(app, database_uri, connector_id)

    out, err = storm.communicate("go\n", timeout=120)
    assert storm.returncode == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    got = [token for token, _ in lines]
    waits = sorted(float(seconds) for _, seconds in lines)
    requests_seen = peer.stats()["token_requests"].get("refresh_token")
    figures = (
        f"refresh storm on {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}: "
        f"{requests_seen} refresh request(s) for {len(got)} callers "
        f"({PROCESSES} processes x {THREADS} threads); wait p50 "
        f"{statistics.median(waits):.2f} s, p99 {waits[int(0.99 * (len(waits) - 1))]:.2f} s, "
        f"max {waits[-1]:.2f} s"
    )
    print("\n" + figures)

    assert requests_seen == 1, figures
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        stored = connector.access_token_enc.reveal()
        assert connector.token_expires_at > utcnow() + timedelta(minutes=30)
        assert connector.refresh_token_enc.reveal() == newest_refresh_token(peer)
    assert got == [stored] * (PROCESSES * THREADS), figures
    assert accepted(peer, stored)
