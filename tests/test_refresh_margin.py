"""Exactly one refresh for short-lived tokens: four ``flask sync-tools NAME`` processes started
together against the real OAuth peer issuing 60 s and 320 s tokens. A token is refreshed in
the smaller of five minutes and a quarter of its lifetime before it expires, never right
after it was issued, and a worker that waited for another's refresh uses that new token."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from mcpadmin.extensions import db
from mcpadmin.models import Connector, refresh_margin, utcnow
from tests.oauth_helpers import add_connector, connect

PROCESSES = 4
BIN = os.path.dirname(sys.executable)


def refreshes(peer) -> int:
    return peer.stats()["token_requests"].get("refresh_token", 0)


def sync_together(app, database_uri, name) -> list[subprocess.CompletedProcess]:
    env = {
        **os.environ,
        "MCPADMIN_SQLALCHEMY_DATABASE_URI": database_uri,
        "MCPADMIN_AUTO_MIGRATE": "false",
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",
        "MCPADMIN_ALLOW_HTTP_LOOPBACK": "true",
    }
    factory = f"mcpadmin:create_app(instance_path={app.instance_path!r})"
    command = [os.path.join(BIN, "flask"), "--app", factory, "sync-tools", name]
    started = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for _ in range(PROCESSES)
    ]
    return [(p, *p.communicate(timeout=120)) for p in started]


@pytest.mark.parametrize("ttl", [60, 320])
def test_a_fresh_short_lived_token_is_never_refreshed_before_its_first_use(
    app, logged_in, database_uri, start_oauth_peer, ttl
):
    peer = start_oauth_peer(access_ttl=ttl)
    connector_id = add_connector(app, peer.mcp_url, name="Short")
    connect(logged_in, connector_id)  # the code exchange, then the first sync with that token
    assert refreshes(peer) == 0
    for process, out, err in sync_together(app, database_uri, "Short"):
        assert process.returncode == 0, out + err
    assert refreshes(peer) == 0


@pytest.mark.parametrize("ttl", [60, 320])
def test_four_processes_refresh_a_short_lived_token_exactly_once(
    app, logged_in, database_uri, start_oauth_peer, ttl
):
    peer = start_oauth_peer(access_ttl=ttl, token_delay=0.5)  # the others wait meanwhile
    connector_id = add_connector(app, peer.mcp_url, name="Short")
    connect(logged_in, connector_id)
    with app.app_context():  # the same token, now in the last tenth of its life
        connector = db.session.get(Connector, connector_id)
        connector.token_obtained_at = utcnow() - timedelta(seconds=ttl * 0.9)
        connector.token_expires_at = utcnow() + timedelta(seconds=ttl * 0.1)
        db.session.commit()
    peer.reset()
    for process, out, err in sync_together(app, database_uri, "Short"):
        assert process.returncode == 0, out + err
    assert refreshes(peer) == 1
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.token_expires_at > utcnow() + timedelta(seconds=ttl * 0.5)


def test_the_margin_is_five_minutes_or_a_quarter_of_the_lifetime():
    now = utcnow()
    assert refresh_margin(now, now + timedelta(seconds=60)) == timedelta(seconds=15)
    assert refresh_margin(now, now + timedelta(seconds=320)) == timedelta(seconds=80)
    assert refresh_margin(now, now + timedelta(hours=1)) == timedelta(minutes=5)
    assert refresh_margin(None, now) == timedelta(minutes=5)  # lifetime unknown
