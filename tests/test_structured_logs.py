"""Structured logs (``LOG_FORMAT = "json"``) and the request id: one JSON object per line, a
line per request and per outbound exchange carrying the request's id, and never a query
string, a header, a key or a token. Text stays the default. Also: the connector form's
"Keep call arguments" checkbox."""

import io
import json
import logging
import re

import pytest
from sqlalchemy import select

from mcpadmin import create_app
from mcpadmin.config import ConfigError
from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import CallRecord, Connector
from mcpadmin.protocol.http import HttpError
from mcpadmin.services import calllog, outbound
from tests.gateway_helpers import AgentClient, agent_with_tools, serving, synced_connector
from tests.test_call_log import TOKEN, call
from tests.test_gateway_calls import bearer_tools as bearer_tools
from tests.test_upstream_calls import wait_for


@pytest.fixture
def json_log(make_app):
    """An app logging JSON, and the stream its lines go to."""
    app = make_app({"LOG_FORMAT": "json", "ALLOW_PRIVATE_NETWORKS": True})
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "mcpadmin_json", False))
    stream = io.StringIO()
    handler.setStream(stream)
    yield app, stream
    logging.getLogger().removeHandler(handler)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_every_response_names_its_request_id(client):
    first, second = client.get("/login"), client.get("/healthz")
    ids = first.headers["X-Request-Id"], second.headers["X-Request-Id"]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]


def test_a_page_request_is_one_json_line_without_its_query(json_log):
    app, stream = json_log
    reply = app.test_client().get("/login?next=/x&code=secret-code-123")
    request_id = reply.headers["X-Request-Id"]
    assert wait_for(lambda: any(x.get("request_id") == request_id for x in lines(stream)))
    line = next(x for x in lines(stream) if x["logger"] == "mcpadmin.requests")
    assert line["path"] == "/login" and line["method"] == "GET" and line["status"] == 200
    assert line["endpoint"] == "auth.login" and line["duration_ms"] >= 0
    assert {"time", "level", "message"} <= set(line)
    assert "secret-code-123" not in stream.getvalue() and "next=" not in stream.getvalue()


def test_a_gateway_call_is_followed_by_its_request_id(json_log, bearer_tools):  # noqa: F811
    """The request line, the outbound line and the call's row share the id; no key, no
    upstream token, no query anywhere."""
    app, stream = json_log
    with app.app_context():
        connector = synced_connector(bearer_tools.url, "Weather", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        agent_id = agent.id
    stream.seek(0), stream.truncate()
    with serving(app) as served:
        reply = call(f"{served.url}/agents/{agent_id}/mcp?probe=q-value", key,
                     "weather__weather", {"city": "Oslo"})  # fmt: skip
        request_id = reply.headers["X-Request-Id"]
        assert wait_for(lambda: any(x["logger"] == "mcpadmin.requests" for x in lines(stream)))
    mine = [x for x in lines(stream) if x.get("request_id") == request_id]
    request_line = next(x for x in mine if x["logger"] == "mcpadmin.requests")
    assert request_line["path"] == f"/agents/{agent_id}/mcp"
    assert request_line["agent_id"] == agent_id and request_line["status"] == 200
    outbound = [x for x in mine if x["logger"] == "mcpadmin.outbound"]
    assert outbound and outbound[-1]["method"] == "POST" and outbound[-1]["status"] == 200
    assert outbound[-1]["host"] == "127.0.0.1" and outbound[-1]["path"] == "/mcp"
    assert outbound[-1]["response_bytes"] > 0
    written = stream.getvalue()
    for secret in (key, TOKEN, "q-value", "probe="):
        assert secret not in written
    calllog.flush(app)
    with app.app_context():
        assert db.session.scalars(select(CallRecord.request_id)).one() == request_id


def test_an_outbound_failure_names_its_error_kind(json_log):
    app, stream = json_log
    with app.test_request_context(), pytest.raises(HttpError):
        outbound.http(timeout=1).get("http://127.0.0.1:9/nothing?token=abc")
    line = next(x for x in lines(stream) if x["logger"] == "mcpadmin.outbound")
    assert line["status"] is None and line["error"] == "Unreachable"
    assert line["path"] == "/nothing" and "abc" not in stream.getvalue()


def test_other_log_lines_are_json_too_with_the_request_id(json_log):
    app, stream = json_log
    with app.test_request_context():
        app.preprocess_request()  # gives the request its id
        logging.getLogger("mcpadmin.anything").warning("a\nforged line")
    line = next(x for x in lines(stream) if x["logger"] == "mcpadmin.anything")
    assert line["level"] == "WARNING" and line["message"] == "a\\x0aforged line"
    assert len(line["request_id"]) == 16


def test_text_stays_the_default(app):
    assert app.config["LOG_FORMAT"] == "text"
    assert not any(getattr(h, "mcpadmin_json", False) for h in logging.getLogger().handlers)


def test_an_unknown_log_format_is_refused_with_a_sentence(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"MCPADMIN_LOG_FORMAT \(or LOG_FORMAT in instance/config.py\) must be one of "
        "text, json",
    ):
        create_app({"LOG_FORMAT": "xml", "AUTO_MIGRATE": False}, instance_path=str(tmp_path))


# -- the connector form's setting ----------------------------------------------------------------


def test_the_connector_form_saves_keep_call_arguments(app, logged_in):
    data = {"name": "Render", "url": "https://mcp.render.example/mcp", "auth_type": "none",
            "credential_mode": "shared", "log_arguments": "y"}  # fmt: skip
    assert logged_in.post("/connectors/new", data=data).status_code == 302
    with app.app_context():
        connector = db.session.scalars(select(Connector)).one()
        assert connector.log_arguments is True
        connector_id = connector.id
    page = logged_in.get(f"/connectors/{connector_id}/edit").get_data(as_text=True)
    assert "Keep call arguments in the call log" in page and "[redacted]" in page
    assert re.search(r'<input[^>]*\bchecked\b[^>]*name="log_arguments"', page)
    del data["log_arguments"]
    assert logged_in.post(f"/connectors/{connector_id}/edit", data=data).status_code == 302
    with app.app_context():
        assert db.session.get(Connector, connector_id).log_arguments is False


def test_the_request_id_header_is_on_refusals_too(app):
    with AgentClient(app) as client:
        answer = client.post("/agents/1/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    request_id = answer.headers["X-Request-Id"]
    assert answer.status_code == 401
    assert answer.json["error"]["message"].endswith(f"(request {request_id})")
