"""``/metrics``: off without a token, refused without the right one, and with it every metric in
the Prometheus text format, counted from real refreshes and syncs against real peers, the
reconnect gauge read from the database, and the counters of two gunicorn workers summed."""

import os
import re
from datetime import timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mcpadmin import create_app
from mcpadmin.config import ConfigError
from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, utcnow
from mcpadmin.services import metrics, sync, tokens
from mcpadmin.services.lifecycle import Status
from tests.browser.conftest import start_live_server
from tests.gateway_helpers import synced_connector
from tests.oauth_helpers import add_connector, connect
from tests.peers import terminate
from tests.test_load import signed_in

SCRAPE_TOKEN = "metrics-token-0123456789abcdef"  # noqa: S105 (the test scraper's token)
NAMES = (
    "mcpadmin_tool_calls_total",
    "mcpadmin_tool_call_duration_seconds_bucket",
    "mcpadmin_tool_call_duration_seconds_count",
    "mcpadmin_tool_call_duration_seconds_sum",
    "mcpadmin_token_refreshes_total",
    "mcpadmin_tool_syncs_total",
    "mcpadmin_credentials_needing_reconnect",
    "mcpadmin_info",
)
CLOSED_PORT_URL = "http://127.0.0.1:9/mcp"  # discard: nothing listens there


@pytest.fixture
def scraper(app):
    """The test client, with metrics on; ``scraper()`` returns the current samples as
    ``{(name, frozenset(labels.items())): value}``."""
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    client = app.test_client()

    def scrape():
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert answer.status_code == 200, answer.data
        return samples(answer.get_data(as_text=True))

    return scrape


def samples(text: str) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_off_without_a_token(client):
    assert client.get("/metrics").status_code == 404


def test_metrics_refuse_a_missing_token_with_a_challenge(app, client):
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    answer = client.get("/metrics")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="mcpadmin metrics"'
    assert "mcpadmin_" not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token-0123456789abcdef", f"Basic {SCRAPE_TOKEN}", f"Bearer {SCRAPE_TOKEN}x",
     "Bearer", "Bearer é-not-ascii"],
)  # fmt: skip
def test_metrics_refuse_a_wrong_token(app, client, authorization):
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    answer = client.get("/metrics", headers={"Authorization": authorization})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="mcpadmin metrics"')
    assert "mcpadmin_" not in answer.get_data(as_text=True)


def test_the_right_token_gets_every_metric_and_never_the_token(app, client):
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    with app.app_context():
        db.session.add(Connector(name="Weather", url="https://weather.example/mcp"))
        db.session.commit()
    metrics.observe_call("Ada", "Weather", "ok", 0.2)
    metrics.observe_refresh(metrics.Refresh.OK)
    metrics.observe_sync(metrics.Sync.OK)
    answer = client.get("/metrics", headers={"Authorization": f"bearer  {SCRAPE_TOKEN} "})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = answer.get_data(as_text=True)
    names = {name for name, _ in samples(text)}
    assert set(NAMES) <= names, sorted(names)
    assert SCRAPE_TOKEN not in text
    assert value(samples(text), "mcpadmin_info", version=metrics.app_version()) == 1


def test_metrics_are_not_served_to_a_post(app, client):
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    answer = client.post("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert answer.status_code != 200
    assert "mcpadmin_" not in answer.get_data(as_text=True)


def test_metrics_need_no_admin_sign_in(app, client, admin):
    app.config["METRICS_TOKEN"] = SCRAPE_TOKEN
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert answer.status_code == 200  # not the login page's redirect


def test_a_call_is_counted_by_agent_connector_and_outcome(scraper):
    before = scraper()
    metrics.observe_call("Ada", "Weather", "tool_error", 0.03)
    metrics.observe_call("Ada", None, "not_allowed", 0.001)
    after = scraper()
    calls, seconds = "mcpadmin_tool_calls_total", "mcpadmin_tool_call_duration_seconds"
    for agent, connector, outcome in (("Ada", "Weather", "tool_error"),
                                      ("Ada", "", "not_allowed")):  # fmt: skip
        labels = {"agent": agent, "connector": connector, "outcome": outcome}
        assert value(after, calls, **labels) - value(before, calls, **labels) == 1
    timing = {"connector": "Weather", "outcome": "tool_error"}
    count = seconds + "_count"
    assert value(after, count, **timing) - value(before, count, **timing) == 1
    bucket = seconds + "_bucket"
    assert value(after, bucket, le="0.05", **timing) - value(before, bucket, le="0.05", **timing)
    assert not value(after, bucket, le="0.025", **timing) - value(
        before, bucket, le="0.025", **timing
    )
    assert "agent" not in {k for (name, labels) in after if name == bucket for k, _ in labels}


def test_a_refresh_and_its_sync_are_counted_once(app, logged_in, scraper, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    before = scraper()
    fresh_oauth_peer.expire_tokens()  # the next listing gets a 401: one refresh, then a retry
    with app.app_context():
        sync.sync_tools(db.session.get(Connector, connector_id))
        db.session.commit()
    after = scraper()
    assert fresh_oauth_peer.stats()["token_requests"].get("refresh_token") == 1
    refreshes, syncs = "mcpadmin_token_refreshes_total", "mcpadmin_tool_syncs_total"
    assert value(after, refreshes, outcome="ok") - value(before, refreshes, outcome="ok") == 1
    assert value(after, syncs, outcome="ok") - value(before, syncs, outcome="ok") == 1


def test_a_refresh_another_worker_already_made_is_not_counted(
    app, logged_in, scraper, fresh_oauth_peer
):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    before = scraper()
    with app.app_context():
        stale = db.session.get(Connector, connector_id)
        stale.access_token_enc.reveal()  # this worker's copy of the token, soon replaced
        with app.app_context():  # another worker, with a session of its own, refreshes first
            tokens.access_token(db.session.get(Connector, connector_id), None, True)
        tokens.access_token(stale, None, force_refresh=True)  # finds it replaced: no request
    after = scraper()
    assert fresh_oauth_peer.stats()["token_requests"].get("refresh_token") == 1
    name = "mcpadmin_token_refreshes_total"
    assert value(after, name, outcome="ok") - value(before, name, outcome="ok") == 1


def test_a_dead_grant_and_a_failed_sync_are_counted(app, logged_in, scraper, fresh_oauth_peer):
    connector_id = add_connector(app, fresh_oauth_peer.mcp_url)
    connect(logged_in, connector_id)
    before = scraper()
    fresh_oauth_peer.expire_tokens()
    fresh_oauth_peer.revoke_grants()
    logged_in.post(f"/connectors/{connector_id}/sync")
    after = scraper()
    refreshes, syncs = "mcpadmin_token_refreshes_total", "mcpadmin_tool_syncs_total"
    dead = value(after, refreshes, outcome="dead_grant") - value(
        before, refreshes, outcome="dead_grant"
    )
    assert dead == 1
    assert value(after, syncs, outcome="failed") - value(before, syncs, outcome="failed") == 1
    assert value(after, "mcpadmin_credentials_needing_reconnect", connector="Peer") == 1


def test_a_token_endpoint_that_is_down_counts_a_failed_refresh(
    app, logged_in, scraper, start_oauth_peer
):
    peer = start_oauth_peer()
    connector_id = add_connector(app, peer.mcp_url)
    connect(logged_in, connector_id)
    terminate(peer.peer.process)  # the token endpoint is down (the fixture cleans up after)
    before = scraper()
    with app.app_context(), pytest.raises(tokens.TokenError) as raised:
        tokens.access_token(db.session.get(Connector, connector_id), None, force_refresh=True)
    assert not isinstance(raised.value, tokens.NeedsReconnect)
    after = scraper()
    name = "mcpadmin_token_refreshes_total"
    assert value(after, name, outcome="failed") - value(before, name, outcome="failed") == 1


def test_a_sync_that_cannot_reach_the_server_counts_failed(app, scraper, modern_peer):
    before = scraper()
    with app.app_context():
        synced_connector(modern_peer.url, "Open")
        down = Connector(name="Down", url=CLOSED_PORT_URL)
        db.session.add(down)
        with pytest.raises(sync.SyncError):
            sync.sync_tools(down)
    after = scraper()
    name = "mcpadmin_tool_syncs_total"
    assert value(after, name, outcome="ok") - value(before, name, outcome="ok") == 1
    assert value(after, name, outcome="failed") - value(before, name, outcome="failed") == 1


def test_the_reconnect_gauge_counts_connectors_and_agent_connections(app, scraper):
    with app.app_context():
        shared = Connector(name="Linear", url="https://linear.example/mcp", auth_type="oauth",
                           status=Status.NEEDS_RECONNECT)  # fmt: skip
        per_agent = Connector(name="Notion", url="https://notion.example/mcp", auth_type="oauth",
                              credential_mode="per_agent", status=Status.CONNECTED)  # fmt: skip
        fine = Connector(name="Open", url="https://open.example/mcp", status=Status.CONNECTED)
        for name, status in (("Ada", Status.NEEDS_RECONNECT), ("Grace", Status.NEEDS_RECONNECT),
                             ("Hedy", Status.CONNECTED)):  # fmt: skip
            db.session.add(
                AgentConnection(agent=Agent(name=name), connector=per_agent, status=status)
            )
        db.session.add_all([shared, per_agent, fine])
        db.session.commit()
    scraped = scraper()
    gauge = "mcpadmin_credentials_needing_reconnect"
    assert value(scraped, gauge, connector="Linear") == 1
    assert value(scraped, gauge, connector="Notion") == 2
    assert (gauge, frozenset({"connector": "Open"}.items())) in scraped  # present, at 0
    assert value(scraped, gauge, connector="Open") == 0


@pytest.mark.parametrize("token", ["short", "fifteen-chars-x", 1234567890123456789])
def test_a_weak_metrics_token_is_refused_at_start(database_uri, tmp_path, token):
    with pytest.raises(
        ConfigError,
        match=r"MCPADMIN_METRICS_TOKEN \(or METRICS_TOKEN in instance/config.py\) is too short: "
        "it needs at least 16",
    ):
        create_app({"SQLALCHEMY_DATABASE_URI": database_uri, "METRICS_TOKEN": token},
                   instance_path=str(tmp_path / "instance"))  # fmt: skip


def test_an_empty_metrics_token_leaves_metrics_off(make_app):
    other = make_app({"METRICS_TOKEN": ""})
    assert other.test_client().get("/metrics").status_code == 404


def test_two_gunicorn_workers_are_summed_in_one_scrape(app, admin, database_uri, tmp_path,
                                                       json_peer):  # fmt: skip
    with app.app_context():
        connector = Connector(name="Open", url=json_peer.url)
        db.session.add(connector)
        db.session.commit()
        connector_id = connector.id
    counted = tmp_path / "prometheus"
    counted.mkdir()
    (counted / "counter_1.db").write_bytes(b"left over from an earlier run")
    env = {"MCPADMIN_METRICS_TOKEN": SCRAPE_TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(counted)}
    server = start_live_server(database_uri, str(tmp_path / "live"), workers=2, env=env)
    try:
        browser = signed_in(server.url, admin)
        page = browser.get(server.url + "/connectors/", timeout=30).text
        csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
        syncs = 0
        # A new connection each time: the workers share them out. Sync until both have counted
        # (each worker writes its own counter file), or give up after many.
        while len(list(counted.glob("counter_*.db"))) < 2 and syncs < 60:
            answer = browser.post(f"{server.url}/connectors/{connector_id}/sync",
                                  headers={"X-CSRFToken": csrf, "Connection": "close"},
                                  allow_redirects=False, timeout=30)  # fmt: skip
            assert answer.status_code == 302, answer.text
            syncs += 1
        assert not (counted / "counter_1.db").exists()  # emptied when gunicorn started
        assert len(list(counted.glob("counter_*.db"))) == 2, os.listdir(counted)
        scrapes = [
            requests.get(server.url + "/metrics", timeout=30, headers={
                "Authorization": f"Bearer {SCRAPE_TOKEN}", "Connection": "close"})
            for _ in range(4)
        ]  # fmt: skip
    finally:
        server.stop()
    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        assert SCRAPE_TOKEN not in scrape.text
        assert value(samples(scrape.text), "mcpadmin_tool_syncs_total", outcome="ok") == syncs


def test_the_reconnect_gauge_is_fresh_without_a_restart(app, scraper):
    with app.app_context():
        connector = Connector(name="Linear", url="https://linear.example/mcp", auth_type="oauth",
                              status=Status.CONNECTED, access_token_enc=seal("a"),
                              token_expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
        db.session.add(connector)
        db.session.commit()
        gauge = "mcpadmin_credentials_needing_reconnect"
        assert value(scraper(), gauge, connector="Linear") == 0
        connector.status = Status.NEEDS_RECONNECT
        db.session.commit()
        assert value(scraper(), gauge, connector="Linear") == 1
