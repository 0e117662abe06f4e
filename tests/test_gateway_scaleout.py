"""Sessions live in the database: any instance and any worker answers any request of a
session, and a session outlives the process that opened it."""

import requests

from tests.browser.conftest import start_live_server
from tests.gateway_helpers import agent_with_tools, serving, synced_connector
from tests.test_gateway_wire import legacy_headers

INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}}}  # fmt: skip
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def test_a_session_opened_on_one_instance_is_used_on_another(app, make_app, json_peer):
    with app.app_context():
        connector = synced_connector(json_peer.url, "Peer")
        agent, key = agent_with_tools([connector])
        agent_id = agent.id
    other = make_app({"ALLOW_PRIVATE_NETWORKS": True, "ALLOW_HTTP_LOOPBACK": True})
    with serving(app) as first, serving(other) as second:
        path = f"/agents/{agent_id}/mcp"
        reply = requests.post(first.url + path, json=INITIALIZE, headers=legacy_headers(key),
                              timeout=10)  # fmt: skip
        session = reply.headers["Mcp-Session-Id"]
        reply = requests.post(second.url + path, json=LIST,
                              headers=legacy_headers(key, session), timeout=10)  # fmt: skip
    assert reply.status_code == 200
    assert [t["name"] for t in reply.json()["result"]["tools"]]


def test_sessions_work_on_every_gunicorn_worker_and_survive_a_restart(
    app, database_uri, tmp_path, json_peer
):
    with app.app_context():
        connector = synced_connector(json_peer.url, "Peer")
        agent, key = agent_with_tools([connector])
        agent_id = agent.id
    same_keys = {"MCPADMIN_SECRET_KEY": app.config["SECRET_KEY"]}  # agent keys are HMACed with it
    server = start_live_server(database_uri, str(tmp_path / "live"), workers=3, env=same_keys)
    path = f"{server.url}/agents/{agent_id}/mcp"
    try:
        reply = requests.post(path, json=INITIALIZE, headers=legacy_headers(key), timeout=10)
        session = reply.headers["Mcp-Session-Id"]
        for _ in range(12):  # a new connection each time: the workers share them out
            listed = requests.post(path, json=LIST, headers=legacy_headers(key, session),
                                   timeout=10)  # fmt: skip
            assert listed.status_code == 200, listed.text
    finally:
        server.stop()
    server = start_live_server(
        database_uri, str(tmp_path / "live"), port=server.port, env=same_keys
    )
    try:
        listed = requests.post(path, json=LIST, headers=legacy_headers(key, session), timeout=10)
    finally:
        server.stop()
    assert listed.status_code == 200
