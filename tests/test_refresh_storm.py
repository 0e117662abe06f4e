"""Many workers, one refresh: 4 processes x 8 threads ask for an expiring token at once and
the real authorization server counts exactly one refresh request (on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL)."""

import subprocess
import sys
import time
from datetime import timedelta

from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow
from tests.oauth_helpers import add_connector, connect

PROCESSES, THREADS = 4, 8


def test_refresh_storm_sends_exactly_one_token_request(
    app, logged_in, database_uri, start_oauth_peer
):
    peer = start_oauth_peer(token_delay=1.0)  # the refresh stays in flight while others ask
    connector_id = add_connector(app, peer.mcp_url)
    connect(logged_in, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connector.token_expires_at = utcnow() + timedelta(minutes=2)  # inside the margin
        db.session.commit()
    peer.reset()

    start_at = time.time() + 4  # every process imported and connected by then
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "tests/storm_worker.py",
                database_uri,
                app.instance_path,
                str(connector_id),
                str(THREADS),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(PROCESSES)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    got = [line for out, _ in outputs for line in out.splitlines() if line]

    assert peer.stats()["token_requests"].get("refresh_token") == 1
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        stored = connector.access_token_enc.reveal()
        assert connector.token_expires_at > utcnow() + timedelta(minutes=30)
    assert got == [stored] * (PROCESSES * THREADS)
