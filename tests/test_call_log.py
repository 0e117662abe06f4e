"""The call log: one row per agent ``tools/call`` that reached dispatch, whatever its ending,
written by real calls through the agent endpoint to real upstream peers; no key or credential
in a row; arguments only with the connector's setting, redacted; a row that cannot be written
never costs the call its answer; the request id in the row, the header and the agent's error.
"""

import contextlib
import json
import logging

import pytest
import requests
from sqlalchemy import func, select, text

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, CallRecord, Connector, Tool
from mcpadmin.services import calllog
from mcpadmin.services.calllog import REDACTED, Outcome, redact
from mcpadmin.services.scrub import RUN
from tests import test_gateway_calls as shared
from tests.gateway_helpers import agent_with_tools, synced_connector
from tests.peers import free_port
from tests.test_gateway_calls import TOKEN, cancel_a_slow_call
from tests.test_scrub import longest_piece
from tests.test_upstream_calls import wait_for

MODERN = "2026-07-28"
META = "io.modelcontextprotocol/"
# The peers and the fresh session pool of the gateway's call tests.
bearer_tools, legacy_key_tools, fresh_pool = (shared.bearer_tools, shared.legacy_key_tools,
                                              shared.fresh_pool)  # fmt: skip


@pytest.fixture
def weather(app, served, bearer_tools):
    """Agent "Ada" with the shared-bearer "Weather" connector: (endpoint URL, agent key)."""
    with app.app_context():
        connector = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        return served.endpoint(agent), key


def call(url, key, name, arguments=None, stream=False, meta=None):
    """One modern tools/call as a lean client sends it; the HTTP response."""
    params = {"name": name, "arguments": {} if arguments is None else arguments,
              "_meta": {META + "protocolVersion": MODERN, META + "clientCapabilities": {},
                        **(meta or {})}}  # fmt: skip
    accept = "application/json, text/event-stream" if stream else "application/json"
    headers = {"Authorization": f"Bearer {key}", "Accept": accept, "Mcp-Method": "tools/call",
               "MCP-Protocol-Version": MODERN}  # fmt: skip
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    return requests.post(url, json=body, headers=headers, timeout=30)


def rows(app) -> list[CallRecord]:
    """The rows written, once what waits in the writer is written."""
    calllog.flush(app)
    with app.app_context():
        found = db.session.scalars(select(CallRecord).order_by(CallRecord.id)).all()
        db.session.expunge_all()
        return found


def only_row(app) -> CallRecord:
    found = rows(app)
    assert len(found) == 1, [(r.tool, r.outcome) for r in found]
    return found[0]


def row_text(row: CallRecord) -> str:
    return json.dumps({c.name: getattr(row, c.name) for c in row.__table__.columns}, default=str)


def assert_no_secrets(row, *secrets):
    written = row_text(row)
    for secret in secrets:
        assert secret not in written


def result_text(reply) -> str:
    return reply.json()["result"]["content"][0]["text"]


# -- one row per outcome ------------------------------------------------------------------------


def test_an_ok_call_writes_one_row_with_its_fields(app, weather):
    url, key = weather
    reply = call(url, key, "weather__weather", {"city": "Oslo"})
    assert reply.status_code == 200 and not reply.json()["result"]["isError"]
    row = only_row(app)
    assert (row.outcome, row.tool, row.upstream_tool) == ("ok", "weather__weather", "weather")
    assert (row.agent_name, row.connector_name, row.key_label) == ("Ada", "Weather", "test key")
    assert row.agent_id and row.connector_id and row.key_id
    assert row.era == "modern" and row.error is None
    assert row.total_ms >= row.upstream_ms > 0
    assert row.request_bytes == len(reply.request.body)
    assert row.response_bytes == len(reply.content)
    assert row.request_id == reply.headers["X-Request-Id"]
    assert row.arguments is None  # not kept by default
    assert_no_secrets(row, key, TOKEN)


def test_an_upstream_tool_error_passes_through_unchanged_and_is_a_tool_error(app, weather):
    url, key = weather
    reply = call(url, key, "weather__fail", {"text": "boom"})
    assert reply.json()["result"]["isError"] is True
    assert "(request " not in result_text(reply)  # the upstream's own words, as they were
    row = only_row(app)
    assert row.outcome == Outcome.TOOL_ERROR and "boom" in row.error
    assert row.request_id == reply.headers["X-Request-Id"]


def test_invalid_params_are_a_protocol_error(app, weather):
    url, key = weather
    reply = call(url, key, "weather__weather", ["not", "an", "object"])
    request_id = reply.headers["X-Request-Id"]
    assert reply.json()["error"]["message"].endswith(f"(request {request_id})")
    row = only_row(app)
    assert row.outcome == Outcome.PROTOCOL and row.tool == "weather__weather"
    assert row.connector_id is None and "Invalid params" in row.error
    assert row.request_id == request_id and row.response_bytes == len(reply.content)


def test_an_upstream_error_that_repeats_the_credential_leaves_it_out_of_the_row(app, weather):
    url, key = weather
    reply = call(url, key, "weather__refuse", {"text": "no"})
    assert reply.json()["result"]["isError"] is True
    row = only_row(app)
    assert row.outcome == Outcome.PROTOCOL and "[credential]" in row.error
    assert_no_secrets(row, key, TOKEN)


def test_a_cut_credential_in_an_upstream_error_leaves_no_run_of_it_in_the_row(app, weather):
    url, key = weather
    # The peer's fail tool repeats its text: here, an upstream quoting a token cut short.
    said = "x" * 200 + f" token {TOKEN[:20]} is not valid " + "y" * 200
    reply = call(url, key, "weather__fail", {"text": said})
    assert longest_piece(result_text(reply), TOKEN) < RUN
    row = only_row(app)
    assert row.outcome == Outcome.TOOL_ERROR and "token [credential] is" in row.error
    assert longest_piece(row_text(row), TOKEN) < RUN, row.error


def test_an_unknown_tool_is_refused_not_allowed(app, weather):
    url, key = weather
    reply = call(url, key, "weather__nope", {})
    request_id = reply.headers["X-Request-Id"]
    assert f"(request {request_id})" in reply.json()["error"]["message"]
    row = only_row(app)
    assert (row.outcome, row.tool, row.connector_name) == ("refused_not_allowed",
                                                           "weather__nope", None)  # fmt: skip
    assert row.agent_name == "Ada" and row.key_label == "test key"


def test_a_changed_definition_is_refused_and_recorded(app, weather):
    url, key = weather
    with app.app_context():
        connection = db.session.scalars(select(AgentConnection)).one()
        connection.changed_tools = ["weather"]
        db.session.commit()
    reply = call(url, key, "weather__weather", {"city": "Oslo"})
    request_id = reply.headers["X-Request-Id"]
    assert result_text(reply).endswith(f"again. (request {request_id})")
    row = only_row(app)
    assert row.outcome == Outcome.DEFINITION_CHANGED and row.connector_name == "Weather"
    assert "(request" not in row.error  # the row has the id in its own column
    with app.app_context():  # the connection's last error reads the same without the id
        assert db.session.scalars(select(AgentConnection)).one().last_call_error == row.error


def test_an_agent_without_its_credential_is_refused_no_credential(app, served, legacy_key_tools):
    with app.app_context():
        connector = ledger(legacy_key_tools.url)
        db.session.add(connector)
        agent, key = agent_with_tools([connector], name="Bo")
        url = served.endpoint(agent)
    reply = call(url, key, "ledger__weather", {"city": "x"})
    request_id = reply.headers["X-Request-Id"]
    assert result_text(reply).endswith(f"on its page. (request {request_id})")
    row = only_row(app)
    assert row.outcome == Outcome.NO_CREDENTIAL and row.connector_name == "Ledger"


def test_a_refused_stored_token_needs_reconnect(app, served, bearer_tools):
    with app.app_context():
        connector = Connector(name="Weather", url=bearer_tools.url, auth_type="bearer",
                              secret_enc=seal("wrong-token-abcdefgh"),
                              tools=[Tool(name="weather", definition_hash="w")])  # fmt: skip
        db.session.add(connector)
        agent, key = agent_with_tools([connector])
        url = served.endpoint(agent)
    reply = call(url, key, "weather__weather", {"city": "Oslo"})
    assert "401" in result_text(reply)
    row = only_row(app)
    assert row.outcome == Outcome.NEEDS_RECONNECT
    assert_no_secrets(row, key, "wrong-token-abcdefgh")


def test_an_upstream_that_is_down_is_recorded_down(app, served):
    with app.app_context():
        connector = Connector(name="Gone", url=f"http://127.0.0.1:{free_port()}/mcp",
                              tools=[Tool(name="weather", definition_hash="w")])  # fmt: skip
        db.session.add(connector)
        agent, key = agent_with_tools([connector])
        url = served.endpoint(agent)
    reply = call(url, key, "gone__weather", {"city": "Oslo"})
    assert reply.json()["result"]["isError"] is True
    row = only_row(app)
    assert row.outcome == Outcome.DOWN and row.upstream_ms is not None


def test_an_upstream_that_takes_too_long_is_a_timeout(app, weather):
    url, key = weather
    app.config["CALL_TIMEOUT"] = 0.5
    reply = call(url, key, "weather__count", {"steps": 20, "delay": 0.2})
    assert "in time" in result_text(reply)
    row = only_row(app)
    assert row.outcome == Outcome.TIMEOUT and row.upstream_ms >= 400


def test_a_relayed_call_counts_the_events_it_sent(app, weather):
    url, key = weather
    reply = call(url, key, "weather__count", {"steps": 2, "delay": 0.05}, stream=True,
                 meta={"progressToken": "p1"})  # fmt: skip
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.text.count("event: message") == 3  # two progress events, then the result
    row = only_row(app)
    assert row.outcome == Outcome.OK and row.response_bytes == len(reply.content)
    assert row.request_id == reply.headers["X-Request-Id"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_call_the_agent_cancels_is_recorded_cancelled(app, weather, mode):
    """auto: the modern client closes the stream; legacy: notifications/cancelled."""
    url, key = weather
    cancel_a_slow_call(url, key, mode)
    assert wait_for(lambda: any(r.outcome == Outcome.CANCELLED for r in rows(app)))
    row = next(r for r in rows(app) if r.tool == "weather__count")
    assert row.outcome == Outcome.CANCELLED and row.response_bytes > 0


# -- what a row may hold -------------------------------------------------------------------------


def test_arguments_are_kept_redacted_when_the_connector_says_so(app, weather):
    url, key = weather
    with app.app_context():
        db.session.scalars(select(Connector)).one().log_arguments = True
        db.session.commit()
    arguments = {"city": "Oslo", "auth": {"api_key": "s3cret-api-value", "region": "eu"},
                 "headers": [{"X-Session-Token": "tok-abcdef-123"}, {"Password": "pw-9876"}],
                 "refresh_token": "rt-zyxw-5555"}  # fmt: skip
    call(url, key, "weather__weather", arguments)
    row = only_row(app)
    assert row.arguments == {
        "city": "Oslo",
        "auth": REDACTED,
        "headers": [{"X-Session-Token": REDACTED}, {"Password": REDACTED}],
        "refresh_token": REDACTED,
    }
    assert_no_secrets(row, "s3cret-api-value", "tok-abcdef-123", "pw-9876", "rt-zyxw-5555")


def test_redaction_reaches_every_nesting_and_spelling():
    value = {"a": [{"b": {"ApiKey": "x", "client-secret": "y", "COOKIE": "z", "name": "n"}}],
             "api_keys": ["k"], "Authorization": "Bearer q", "count": 3}  # fmt: skip
    assert redact(value) == {
        "a": [{"b": {"ApiKey": REDACTED, "client-secret": REDACTED, "COOKIE": REDACTED,
                     "name": "n"}}],
        "api_keys": REDACTED, "Authorization": REDACTED, "count": 3,
    }  # fmt: skip


def test_arguments_too_large_are_replaced_by_a_note():
    kept = redact({"text": "x" * (calllog.MAX_ARGUMENTS_BYTES + 1)})
    assert list(kept) == ["_cut"] and "bytes of arguments" in kept["_cut"]


def test_a_long_error_is_kept_as_one_short_line():
    line = calllog.one_line("first\nsecond " + "y" * 400)
    assert "\n" not in line and len(line) == calllog.MAX_ERROR and line.startswith("first second")


def test_no_row_when_the_call_log_is_off(app, weather):
    url, key = weather
    app.config["CALL_LOG"] = False
    reply = call(url, key, "weather__weather", {"city": "Oslo"})
    assert not reply.json()["result"]["isError"]
    assert rows(app) == []


# -- a log that cannot be written ----------------------------------------------------------------


@contextlib.contextmanager
def broken_log(app):
    """The call_log table renamed away while the block runs: every insert into it fails."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE call_log RENAME TO call_log_away"))
    try:
        yield
    finally:
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE call_log_away RENAME TO call_log"))


def test_a_failing_log_write_still_answers_and_is_tried_again(app, weather, caplog, monkeypatch):
    url, key = weather
    monkeypatch.setattr(calllog, "ATTEMPTS", 100)  # the writer's own tries never drop it
    with broken_log(app):
        reply = call(url, key, "weather__weather", {"city": "Oslo"})
        assert reply.status_code == 200
        assert reply.json()["result"]["structuredContent"]["city"] == "Oslo"
        with caplog.at_level(logging.WARNING, logger="mcpadmin.services.calllog"):
            calllog.flush(app)
    assert "1 call log rows could not be written (" in caplog.text
    assert key not in caplog.text and TOKEN not in caplog.text and "Oslo" not in caplog.text
    assert [r.outcome for r in rows(app)] == ["ok"]  # written once the table was back


def test_a_batch_refused_too_often_is_dropped_with_a_warning(app, weather, caplog, monkeypatch):
    url, key = weather
    monkeypatch.setattr(calllog, "ATTEMPTS", 1)
    with broken_log(app):
        call(url, key, "weather__weather", {"city": "Oslo"})
        with caplog.at_level(logging.WARNING, logger="mcpadmin.services.calllog"):
            calllog.flush(app)
    assert "could not be written" in caplog.text and "dropped" in caplog.text
    assert rows(app) == []


def test_a_failing_log_write_still_relays_the_stream(app, weather):
    url, key = weather
    with broken_log(app):
        reply = call(url, key, "weather__count", {"steps": 1, "delay": 0.05}, stream=True,
                     meta={"progressToken": "p1"})  # fmt: skip
        calllog.flush(app)
    assert "counted 1" in reply.text


def test_rows_are_written_without_being_asked(app, weather):
    """The writer's thread writes a row within ``FLUSH_SECONDS`` of the call."""
    url, key = weather
    call(url, key, "weather__weather", {"city": "Oslo"})
    with app.app_context():
        count = select(func.count()).select_from(CallRecord)
        assert wait_for(lambda: db.session.scalar(count) == 1 or db.session.rollback())


def ledger(url) -> Connector:
    """A per-agent API-key connector for the legacy peer, its tools known."""
    return Connector(name="Ledger", url=url, auth_type="api_key_header",
                     api_key_header_name="X-Api-Key", credential_mode="per_agent",
                     tools=[Tool(name="weather", definition_hash="w")])  # fmt: skip
