"""A token endpoint that never answers, or answers a byte at a time forever: the refresh gives
up with a clear error well within the lock time, releases the lock (or lease), never lets two
refreshes of one grant run at once, and leaves the stored tokens as they were. Also: a caller
that finds the lock held past the lock time gets a clear error, not a database exception."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, update

from mcpadmin.config import database_url
from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow
from mcpadmin.services import tokens
from tests.oauth_helpers import add_connector, connect
from tests.peers.drip_server import DripServer

LOCK = 6  # REFRESH_LOCK_SECONDS: each token request may take a third of it
SLACK = 10  # generous: two shared cores, other suites running


@pytest.fixture
def lock_app(make_app):
    return make_app(
        {"REFRESH_LOCK_SECONDS": LOCK, "ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True}
    )


def expired_connector(app, client, peer, token_endpoint=None) -> int:
    """A connector connected to ``peer`` whose access token has expired (so a failed refresh
    surfaces as an error instead of the old token); with ``token_endpoint``, its grant says
    the tokens were issued there (so the refresh goes there)."""
    connector_id = add_connector(app, peer.mcp_url)
    connect(client, connector_id)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        connector.token_expires_at = utcnow() - timedelta(minutes=1)
        if token_endpoint:
            connector.oauth_grant = {**connector.oauth_grant, "token_endpoint": token_endpoint}
        db.session.commit()
    return connector_id


def stored(app, connector_id) -> dict:
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        return {
            "access": connector.access_token_enc.ciphertext,
            "refresh": connector.refresh_token_enc.ciphertext,
            "expires": connector.token_expires_at,
            "status": connector.status,
            "lease": connector.refresh_lease_until,
        }


def ask(app, connector_id, into):
    """``access_token`` in a fresh app context; appends (token or error, seconds) to ``into``."""
    started = time.monotonic()
    with app.app_context():
        try:
            got = tokens.access_token(db.session.get(Connector, connector_id), None)
        except tokens.TokenError as exc:
            got = exc
        except Exception as exc:  # noqa: BLE001 - anything else is the failure to report
            got = exc
    into.append((got, time.monotonic() - started))


def two_callers(app, connector_id, first_sent):
    """A first caller, then a second once ``first_sent()`` says the first one's request is
    in flight; returns both (outcome, seconds)."""
    first, second = [], []
    thread = threading.Thread(target=ask, args=(app, connector_id, first))
    thread.start()
    deadline = time.monotonic() + SLACK
    while not first_sent() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first_sent(), first
    ask(app, connector_id, second)
    thread.join(LOCK + SLACK)
    return first[0], second[0]


def assert_gave_up(outcome, within):
    got, took = outcome
    assert isinstance(got, tokens.TokenError), got
    assert got.error == "unavailable"
    assert "did not" in str(got), str(got)  # "… did not answer …": a sentence for the operator
    assert took < within, took


def test_hanging_token_endpoint_gives_a_clear_error_and_lets_the_next_caller_in(
    app, lock_app, logged_in, start_oauth_peer
):
    peer = start_oauth_peer(hang_refresh=True)
    connector_id = expired_connector(app, logged_in, peer)
    before = stored(app, connector_id)

    def sent():
        return peer.stats()["token_requests"]["refresh_token"] >= 1

    first, second = two_callers(lock_app, connector_id, sent)

    assert_gave_up(first, within=LOCK)  # its request's timeout is LOCK / 3
    assert_gave_up(second, within=LOCK + SLACK)  # waited for the first, then its own timeout
    assert peer.stats()["token_requests"]["refresh_token"] == 2
    assert stored(app, connector_id) == before  # tokens, expiry and status as they were


def test_dripping_token_endpoint_is_cut_off_before_the_lock_lapses(
    app, lock_app, logged_in, fresh_oauth_peer
):
    with DripServer(interval=0.5) as drip:
        connector_id = expired_connector(app, logged_in, fresh_oauth_peer, token_endpoint=drip.url)
        before = stored(app, connector_id)

        first, second = two_callers(lock_app, connector_id, lambda: drip.requests >= 1)

        assert drip.most_in_flight == 1  # the lock held for as long as a request ran
        assert drip.requests == 2
    assert_gave_up(first, within=LOCK)
    assert_gave_up(second, within=LOCK + SLACK)
    assert stored(app, connector_id) == before


def test_caller_finding_the_lock_held_too_long_gets_a_clear_error(
    app, lock_app, logged_in, database_uri, fresh_oauth_peer
):
    connector_id = expired_connector(app, logged_in, fresh_oauth_peer)
    before = stored(app, connector_id)
    holder = create_engine(database_url(database_uri))
    try:
        with holder.begin() as conn:  # a live worker that keeps the right past the lock time
            if holder.dialect.name == "postgresql":
                conn.execute(select(Connector.id).where(Connector.id == connector_id)
                             .with_for_update())  # fmt: skip
            else:
                conn.execute(
                    update(Connector)
                    .where(Connector.id == connector_id)
                    .values(refresh_lease_until=utcnow() + timedelta(seconds=10 * LOCK),
                            refresh_lease_owner="elsewhere")
                )  # fmt: skip
            if holder.dialect.name == "postgresql":
                outcome = []
                ask(lock_app, connector_id, outcome)
        if holder.dialect.name != "postgresql":
            outcome = []
            ask(lock_app, connector_id, outcome)
    finally:
        holder.dispose()

    got, took = outcome[0]
    assert isinstance(got, tokens.TokenError), repr(got)
    assert got.error == "unavailable"
    assert took < LOCK + SLACK
    assert fresh_oauth_peer.stats()["token_requests"]["refresh_token"] == 0
    assert {**stored(app, connector_id), "lease": None} == {**before, "lease": None}
