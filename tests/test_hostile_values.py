"""Hostile values end as a readable sentence, never a 500, and nothing stored is lost: an
``expires_in`` of 10**12 at the callback, JSON nested thousands of levels deep in a listing or
an event stream, and tokens or keys with characters an HTTP header cannot carry (refused when
typed; when already stored, a failure of that one credential only)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector, Tool, utcnow
from mcpadmin.protocol import jsonbody
from mcpadmin.protocol.tokens import MAX_EXPIRES_IN
from mcpadmin.services import fanout
from tests import oauth_helpers
from tests.peers import hostile_server
from tests.test_sync import add_agent, add_connector

CURLY = "peer\u2019token"  # a typographic apostrophe: outside Latin-1
MODERN = {"protocol_era": "modern", "protocol_version": "2026-07-28"}


@pytest.fixture(scope="module")
def hostile():
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


# -- expires_in ----------------------------------------------------------------------------------


def test_an_expires_in_of_10_to_the_12_at_the_callback_connects_with_a_bounded_expiry(
    app, logged_in, start_oauth_peer
):
    peer = start_oauth_peer(access_ttl=10**12)
    connector_id = oauth_helpers.add_connector(app, peer.mcp_url)
    done = oauth_helpers.connect(logged_in, connector_id)
    assert done.status_code == 302
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert connector.access_token_enc is not None
        assert connector.token_expires_at <= utcnow() + timedelta(seconds=MAX_EXPIRES_IN + 60)


# -- JSON nesting --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deep-json?depth=5000", "deep-json?depth=5000&sse=1",
                                  "deep-json?depth=200"])  # fmt: skip
def test_json_nested_too_deep_in_a_listing_is_a_readable_sync_error(app, logged_in, hostile, mode):
    connector_id = add_connector(app, "Deep", f"{hostile.base_url}/{mode}", **MODERN)
    with app.app_context():
        db.session.add(Tool(connector_id=connector_id, name="kept"))
        db.session.commit()
    response = logged_in.hx_post(f"/connectors/{connector_id}/sync")
    assert response.status_code == 200
    assert "nested more than 64 levels deep" in response.get_data(as_text=True)
    with app.app_context():
        connector = db.session.get(Connector, connector_id)
        assert [t.name for t in connector.tools] == ["kept"]
        assert "nested more than 64 levels deep" in connector.last_error
    assert logged_in.get(f"/connectors/{connector_id}").status_code == 200


def test_json_at_the_depth_limit_is_read_and_one_level_more_is_refused():
    at_limit = "[" * jsonbody.MAX_JSON_DEPTH + "]" * jsonbody.MAX_JSON_DEPTH
    assert jsonbody.parse_json(at_limit.encode()) is not None
    with pytest.raises(jsonbody.TooDeep):
        jsonbody.parse_json("[" + at_limit + "]")
    with pytest.raises(jsonbody.TooDeep):
        jsonbody.parse_json('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(jsonbody.NotJson, match="not JSON"):
        jsonbody.parse_json(b"\xff")


# -- secrets an HTTP header cannot carry ---------------------------------------------------------


def test_a_stored_token_http_cannot_carry_fails_for_that_agent_only(app, bearer_peer):
    connector_id = add_connector(app, "Render", bearer_peer.url, auth_type="bearer",
                                 credential_mode="per_agent")  # fmt: skip
    curly = add_agent(app, "curly", connector_id, secret=CURLY)
    good = add_agent(app, "good", connector_id, secret="peer-token")
    with app.app_context():
        outcomes = fanout.sync_connector(db.session.get(Connector, connector_id))
        db.session.commit()
    assert [(o.agent, o.ok) for o in outcomes] == [("curly", False), ("good", True)]
    failed = outcomes[0].message
    assert "cannot be sent" in failed and "Re-enter it" in failed and CURLY not in failed
    with app.app_context():
        by_agent = {c.agent_id: c for c in db.session.scalars(select(AgentConnection))}
        assert by_agent[curly].status == "error" and "cannot be sent" in by_agent[curly].last_error
        assert by_agent[curly].secret_enc.reveal() == CURLY  # kept, for the operator to replace
        assert by_agent[good].status == "connected"


@pytest.mark.parametrize("secret", [CURLY, "tok\u00e9n", "tok\nen", "tok\x00en"])
def test_a_connector_token_http_cannot_carry_is_refused_when_saved(app, logged_in, secret):
    response = logged_in.post("/connectors/new", data={
        "name": "Render", "url": "https://mcp.render.example/mcp", "auth_type": "bearer",
        "credential_mode": "shared", "secret": secret})  # fmt: skip
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "only printable ASCII characters" in page and secret not in page
    with app.app_context():
        assert db.session.query(Connector).count() == 0


@pytest.mark.parametrize("field", ["oauth_client_id", "oauth_client_secret"])
def test_an_oauth_client_credential_outside_printable_ascii_is_refused(app, logged_in, field):
    response = logged_in.post("/connectors/new", data={
        "name": "Linear", "url": "https://mcp.linear.example/mcp", "auth_type": "oauth",
        "credential_mode": "shared", field: "cl\u00efent\u2019s"})  # fmt: skip
    assert response.status_code == 422
    assert "only printable ASCII characters" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(Connector).count() == 0


def test_an_agent_token_http_cannot_carry_is_refused_in_the_card(app, logged_in, bearer_peer):
    connector_id = add_connector(app, "Render", bearer_peer.url, auth_type="bearer",
                                 credential_mode="per_agent")  # fmt: skip
    agent_id = add_agent(app, "bot")
    url = f"/agents/{agent_id}/connectors/{connector_id}/secret"
    response = logged_in.hx_post(url, data={"secret": CURLY})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "only printable ASCII characters" in page and CURLY not in page
    with app.app_context():
        assert db.session.query(AgentConnection).count() == 0


def test_surrounding_spaces_of_a_pasted_connector_token_are_dropped(app, logged_in):
    logged_in.post("/connectors/new", data={
        "name": "Render", "url": "https://mcp.render.example/mcp", "auth_type": "bearer",
        "credential_mode": "shared", "secret": "  rnd_token \n"})  # fmt: skip
    with app.app_context():
        assert db.session.query(Connector).one().secret_enc.reveal() == "rnd_token"
