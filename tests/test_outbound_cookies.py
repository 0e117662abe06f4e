"""No cookie crosses from one principal to another: a ``Set-Cookie`` an upstream sends on
one call is never sent on a later one, by either client (``outbound``), nor through the
session each worker thread keeps for every agent's tool calls
(``services.outbound.http(keep_alive=True)``), where an attack run found agent A's cookie on
agent B's calls."""

import pytest
import requests

from mcpadmin.protocol.http import Http
from mcpadmin.services import outbound as outbound_service
from tests.peers import hostile_server


@pytest.fixture(scope="module")
def upstream():
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


def test_a_cookie_set_on_one_call_is_not_sent_on_the_next(outbound, upstream):
    http = outbound(allow_private=True)
    http.get(f"{upstream.base_url}/set-cookie?value=agent-a")
    http.get(f"{upstream.base_url}/ok")
    assert "cookie" not in upstream.last("/ok").headers


def test_a_session_passed_in_is_emptied_and_keeps_no_cookie(upstream):
    session = requests.Session()
    session.cookies.set("session", "left-over", domain="127.0.0.1", path="/")
    Http(allow_private=True, session=session).get(f"{upstream.base_url}/set-cookie")
    Http(allow_private=True, session=session).get(f"{upstream.base_url}/ok")
    assert "cookie" not in upstream.last("/ok").headers
    assert len(session.cookies) == 0


def test_the_kept_session_of_a_worker_thread_carries_no_cookie_between_agents(app, upstream):
    with app.app_context():
        outbound_service.http(keep_alive=True).get(f"{upstream.base_url}/set-cookie?value=a")
        outbound_service.http(keep_alive=True).get(f"{upstream.base_url}/ok")
    assert "cookie" not in upstream.last("/ok").headers
