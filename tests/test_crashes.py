"""A worker killed with SIGKILL in the middle of a refresh (tests/crash_worker.py) loses no
credential, and its lock or lease does not outlive it by more than the lock time: before the
token request, after the server rotated the tokens but before they were stored, and after the
commit. On SQLite the dead worker's lease runs out; on PostgreSQL the server drops the dead
connection's row lock at once."""

import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow
from mcpadmin.services import tokens
from tests.oauth_helpers import add_connector, connect
from tests.peers.oauth_fixtures import start_peer
from tests.token_checks import accepted, newest_refresh_token

LOCK = 3  # REFRESH_LOCK_SECONDS for the dead worker and the next caller alike
SLACK = 10  # generous: two shared cores, other suites running


@pytest.fixture
def grace_peer():
    """An OAuth peer whose rotated refresh tokens keep working for 60 seconds."""
    peer = start_peer(refresh_grace=60)
    yield peer
    peer.stop()


@pytest.fixture
def next_app(make_app):
    """The app of the worker that comes after the crash: same database, keys, lock time."""
    return make_app(
        {"REFRESH_LOCK_SECONDS": LOCK, "ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True}
    )


def expiring_connector(app, client, peer) -> int:
    """A connector connected to ``peer`` whose access token is due for a refresh."""
    connector_id = add_connector(app, peer.mcp_url)
    connect(client, connector_id)
    with app.app_context():
        db.session.get(Connector, connector_id).token_expires_at = utcnow() + timedelta(minutes=2)
        db.session.get(Connector, connector_id).token_obtained_at = utcnow() - timedelta(hours=1)
        db.session.commit()
    peer.reset()
    return connector_id


def crash(app, database_uri, connector_id, point):
    worker = subprocess.run(
        [sys.executable, "tests/crash_worker.py", database_uri, app.instance_path,
         str(connector_id), point, str(LOCK)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert worker.returncode == -signal.SIGKILL, worker.stdout + worker.stderr


def stored(app, connector_id) -> dict:
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        return {
            "access": connector.access_token_enc and connector.access_token_enc.reveal(),
            "refresh": connector.refresh_token_enc and connector.refresh_token_enc.reveal(),
            "status": connector.status,
            "lease": connector.refresh_lease_until,
        }


def next_caller(app, connector_id):
    """``access_token`` in a fresh app context; returns (token or error, seconds taken)."""
    started = time.monotonic()
    with app.app_context():
        try:
            got = tokens.access_token(db.session.get(Connector, connector_id), None)
        except tokens.TokenError as exc:
            got = exc
    return got, time.monotonic() - started


def refreshes(peer) -> int:
    return peer.stats()["token_requests"]["refresh_token"]


def test_kill_before_the_token_request_leaves_the_grant_to_the_next_caller(
    app, logged_in, database_uri, fresh_oauth_peer, next_app
):
    connector_id = expiring_connector(app, logged_in, fresh_oauth_peer)
    before = stored(app, connector_id)

    crash(app, database_uri, connector_id, "before_token_call")
    assert refreshes(fresh_oauth_peer) == 0
    assert {**stored(app, connector_id), "lease": None} == {**before, "lease": None}
    got, took = next_caller(next_app, connector_id)

    assert took < LOCK + SLACK  # the dead worker's lease ran out, or its lock went with it
    assert refreshes(fresh_oauth_peer) == 1
    after = stored(app, connector_id)
    assert got == after["access"] != before["access"]
    assert after["refresh"] == newest_refresh_token(fresh_oauth_peer)
    assert after["lease"] is None
    assert accepted(fresh_oauth_peer, got)


def test_kill_after_the_reply_marks_reconnect_only_after_a_confirmed_invalid_grant(
    app, logged_in, database_uri, fresh_oauth_peer, next_app
):
    connector_id = expiring_connector(app, logged_in, fresh_oauth_peer)
    before = stored(app, connector_id)

    crash(app, database_uri, connector_id, "after_token_reply")
    assert refreshes(fresh_oauth_peer) == 1  # the peer rotated: the stored refresh token is dead
    assert {**stored(app, connector_id), "lease": None} == {**before, "lease": None}
    got, took = next_caller(next_app, connector_id)

    assert took < LOCK + SLACK
    assert refreshes(fresh_oauth_peer) == 2
    assert isinstance(got, tokens.NeedsReconnect)
    assert got.error == "invalid_grant"  # the peer's own answer, not a guess
    after = stored(app, connector_id)
    assert after == {**before, "status": "needs_reconnect", "lease": None}  # nothing deleted


def test_kill_after_the_reply_recovers_within_the_providers_grace_period(
    app, logged_in, database_uri, grace_peer, next_app
):
    connector_id = expiring_connector(app, logged_in, grace_peer)
    before = stored(app, connector_id)

    crash(app, database_uri, connector_id, "after_token_reply")
    got, took = next_caller(next_app, connector_id)

    assert took < LOCK + SLACK
    assert refreshes(grace_peer) == 2
    after = stored(app, connector_id)
    assert got == after["access"] != before["access"]
    assert after["status"] == "connected"
    assert after["refresh"] == newest_refresh_token(grace_peer)
    assert accepted(grace_peer, got)


def test_kill_after_the_commit_keeps_the_new_tokens(
    app, logged_in, database_uri, fresh_oauth_peer, next_app
):
    connector_id = expiring_connector(app, logged_in, fresh_oauth_peer)
    before = stored(app, connector_id)

    crash(app, database_uri, connector_id, "after_commit")
    got, _ = next_caller(next_app, connector_id)

    assert refreshes(fresh_oauth_peer) == 1  # the next caller found the new token stored
    after = stored(app, connector_id)
    assert got == after["access"] != before["access"]
    assert after["refresh"] == newest_refresh_token(fresh_oauth_peer)
    assert after["lease"] is None  # released in the same commit as the tokens
    assert accepted(fresh_oauth_peer, got)
