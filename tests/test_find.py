"""Finding things: a call on the Calls page by the request id the agent was told (whole, its
first digits, or the agent's error pasted whole), by words of its tool, agent, connector or
error, by either name of its tool, with the exports filtered alike; the connectors and agents
indexes filtered by name, status and auth type, with Sync selected and Delete selected.

Calls are real: made through the agent endpoint to the real bearer peer (the fixtures of
``tests/test_call_log.py``).
"""

import csv
import io
import json
import re

import pytest
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, AuditEvent, Connector
from mcpadmin.services import records
from mcpadmin.services.records import FilterError
from tests import test_gateway_calls as shared
from tests.gateway_helpers import agent_with_tools
from tests.test_call_log import call, rows
from tests.test_call_log import weather as weather  # a fixture
from tests.test_gateway_calls import TOKEN

bearer_tools, fresh_pool = shared.bearer_tools, shared.fresh_pool
SAID = "disk 100%_full at Bergen"


@pytest.fixture
def made(app, weather):
    """Three real calls by agent Ada through Weather: one that works, a tool error that says
    ``SAID``, a refused unknown tool; each one's request id and the refusal's message."""
    url, key = weather
    worked = call(url, key, "weather__weather", {"city": "Oslo"})
    failed = call(url, key, "weather__fail", {"text": SAID})
    refused = call(url, key, "weather__nope", {})
    rows(app)  # written
    return {
        "worked": worked.headers["X-Request-Id"],
        "failed": failed.headers["X-Request-Id"],
        "refused": refused.headers["X-Request-Id"],
        "message": refused.json()["error"]["message"],
    }


def listed(response) -> list[str]:
    """The request ids of the Calls page's rows, in order."""
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    page = response.get_data(as_text=True)
    return re.findall(r'<code class="small">([0-9a-f]{16})</code>', page)


# --- request ids ---------------------------------------------------------------------------


def test_the_request_id_filter_finds_the_call_by_its_whole_id(logged_in, made):
    assert listed(logged_in.get(f"/calls/?request={made['failed']}")) == [made["failed"]]


def test_the_request_id_filter_finds_the_call_by_its_first_digits(logged_in, made):
    found = listed(logged_in.get(f"/calls/?request={made['worked'][:6].upper()}"))
    assert made["worked"] in found
    assert all(r.startswith(made["worked"][:6]) for r in found)


def test_pasting_the_agents_error_whole_finds_its_call(logged_in, made):
    assert made["message"].endswith(f"(request {made['refused']})")
    response = logged_in.get("/calls/", query_string={"request": made["message"]})
    assert listed(response) == [made["refused"]]
    page = response.get_data(as_text=True)
    assert f'value="{made["refused"]}"' in page  # the id the filter took, shown back


def test_a_pasted_id_cut_short_with_an_ellipsis_still_finds_it(logged_in, made):
    pasted = f"(request {made['refused'][:4]}…)"
    assert made["refused"] in listed(logged_in.get("/calls/", query_string={"request": pasted}))


@pytest.mark.parametrize("text", ["abc", "not an id", "(request zz12)", "9" * 17])
def test_text_that_holds_no_request_id_is_refused_with_a_sentence(text):
    with pytest.raises(FilterError, match="is not a request id"):
        records.call_filters({"request": text})


def test_a_found_call_links_to_itself_among_all_calls(logged_in, app, made):
    page = logged_in.get(f"/calls/?request={made['failed']}").get_data(as_text=True)
    link = re.search(r'href="(/calls/\?before=(\d+)#call-(\d+))"', page)
    assert link and int(link.group(2)) == int(link.group(3)) + 1
    around = logged_in.get(link.group(1).split("#")[0])
    assert listed(around)[0] == made["failed"]  # the page starts at it, older ones below
    assert f'id="call-{link.group(3)}"' in around.get_data(as_text=True)


# --- search and the tool filter ------------------------------------------------------------


def test_search_finds_words_of_the_error_in_any_case(logged_in, made):
    assert listed(logged_in.get("/calls/?q=bERGEN")) == [made["failed"]]


def test_search_finds_the_agent_the_connector_and_either_tool_name(logged_in, made):
    everything = {made["worked"], made["failed"], made["refused"]}
    assert set(listed(logged_in.get("/calls/?q=ada"))) == everything
    assert set(listed(logged_in.get("/calls/?q=nope"))) == {made["refused"]}
    # The refused call never reached a connector: only two carry its name.
    assert set(listed(logged_in.get("/calls/?q=Weather"))) == everything  # the tool names
    assert set(listed(logged_in.get("/calls/?q=fail"))) == {made["failed"]}


@pytest.mark.parametrize("name", ["weather__weather", "weather"])
def test_the_tool_filter_takes_the_agents_name_or_the_servers(logged_in, made, name):
    assert listed(logged_in.get(f"/calls/?tool={name}")) == [made["worked"]]


@pytest.mark.parametrize(("words", "found"), [("100%_f", "failed"), ("%", "failed"),
                                              ("1%0", None), ("h_r", None)])  # fmt: skip
def test_like_wildcards_in_the_search_are_plain_characters(logged_in, made, words, found):
    response = logged_in.get("/calls/", query_string={"q": words})
    assert listed(response) == ([made[found]] if found else [])


def test_an_overlong_search_is_refused_with_a_sentence(logged_in, made):
    response = logged_in.get("/calls/", query_string={"q": "x" * 201})
    assert response.status_code == 400
    assert "Search is too long: at most 200 characters." in response.get_data(as_text=True)


def test_nothing_found_says_what_was_searched_and_how_to_widen_it(logged_in, app, made):
    with app.app_context():
        agent = db.session.scalar(select(Agent.id).where(Agent.name == "Ada"))
    response = logged_in.get(f"/calls/?q=bergen&tool=weather__weather&agent={agent}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "No calls match" in page
    assert "Search “bergen”" in page and "Tool “weather__weather”" in page
    assert "Agent “Ada”" in page  # the name, not the id
    # Each filter can be dropped alone; the search without the tool finds the call.
    widen = re.search(r'<li>Tool “weather__weather” — <a href="([^"]+)"', page).group(1)
    assert listed(logged_in.get(widen.replace("&amp;", "&"))) == [made["failed"]]


# --- exports -------------------------------------------------------------------------------


def test_the_csv_export_holds_only_the_searched_calls(logged_in, made):
    response = logged_in.get("/calls/export.csv?q=bergen")
    found = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["request_id"] for r in found] == [made["failed"]]


def test_the_jsonl_export_follows_the_request_id_and_tool_filters(logged_in, made):
    body = logged_in.get("/calls/export.jsonl", query_string={"request": made["message"]})
    assert ids_in(body.get_data(as_text=True)) == [made["refused"]]
    body = logged_in.get("/calls/export.jsonl?tool=weather").get_data(as_text=True)
    assert ids_in(body) == [made["worked"]]


def ids_in(jsonl: str) -> list[str]:
    return [json.loads(line)["request_id"] for line in jsonl.splitlines()]


def test_the_export_links_carry_the_search(logged_in, made):
    page = logged_in.get(f"/calls/?q=bergen&request={made['failed'][:5]}").get_data(as_text=True)
    link = re.search(r'href="(/calls/export\.csv\?[^"]+)"', page).group(1)
    assert "q=bergen" in link and f"request={made['failed'][:5]}" in link


# --- the connectors and agents indexes -----------------------------------------------------


@pytest.fixture
def fleet(app, bearer_tools):
    """Three connectors never synced: two shared-bearer ones for the bearer peer, one per-agent
    API-key one; agent Ada using Weather, agent Bo with tools of Ledger and no key for it."""
    with app.app_context():
        weather = Connector(name="Weather", url=bearer_tools.url, auth_type="bearer",
                            secret_enc=seal(TOKEN))  # fmt: skip
        tides = Connector(name="Tides", url=bearer_tools.url, auth_type="bearer",
                          secret_enc=seal(TOKEN))  # fmt: skip
        ledger = Connector(name="Ledger", url=bearer_tools.url, auth_type="api_key_header",
                           api_key_header_name="X-Api-Key",
                           credential_mode="per_agent")  # fmt: skip
        db.session.add_all([weather, tides, ledger])
        db.session.commit()
        agent_with_tools([weather], name="Ada", enabled={"Weather": ["weather"]})
        agent_with_tools([ledger], name="Bo", enabled={"Ledger": ["weather"]})
        return {c.name: c.id for c in (weather, tides, ledger)}


def names_in(response, kind="connectors") -> list[str]:
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    return re.findall(rf'<a href="/{kind}/\d+">([^<]+)</a>', page)


def test_the_connectors_index_filters_by_part_of_the_name(logged_in, fleet):
    assert names_in(logged_in.get("/connectors/?q=ER")) == ["Ledger", "Weather"]


def test_the_connectors_index_filters_by_status_and_auth_type(logged_in, fleet):
    assert names_in(logged_in.get("/connectors/?status=not_synced")) == ["Tides", "Weather"]
    assert names_in(logged_in.get("/connectors/?status=per_agent")) == ["Ledger"]
    assert names_in(logged_in.get("/connectors/?auth=api_key_header")) == ["Ledger"]
    assert names_in(logged_in.get("/connectors/?auth=bearer&q=tid")) == ["Tides"]


def test_a_connectors_filter_matching_nothing_says_so_and_offers_to_clear(logged_in, fleet):
    page = logged_in.get("/connectors/?q=zebra&auth=oauth").get_data(as_text=True)
    assert "No connectors match" in page and "None of the 3 connectors" in page
    assert "name contains “zebra”" in page and "<li>OAuth</li>" in page
    assert 'href="/connectors/">Clear filters</a>' in page


def test_the_connectors_index_shows_each_prefix(logged_in, fleet):
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert '<code class="prefix">weather__…</code>' in page


def test_sync_selected_syncs_each_ticked_connector_and_records_it(logged_in, app, fleet):
    ids = [fleet["Weather"], fleet["Tides"]]
    response = logged_in.post("/connectors/sync", data={"ids": ids, "q": "e"},
                              follow_redirects=False)  # fmt: skip
    assert response.status_code == 302 and response.headers["Location"] == "/connectors/?q=e"
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert "Synced Tides:" in page and "Synced Weather:" in page
    with app.app_context():
        synced = {c.name: c.last_synced_at for c in db.session.scalars(select(Connector))}
        events = db.session.scalars(
            select(AuditEvent.target_name).where(AuditEvent.action == "connector.tools_synced")
        ).all()
    assert synced["Weather"] and synced["Tides"] and synced["Ledger"] is None
    assert sorted(events) == ["Tides", "Weather"]


def test_sync_selected_needs_the_csrf_token(logged_in, fleet):
    response = logged_in.post("/connectors/sync", data={"ids": [fleet["Tides"]]}, csrf=False)
    assert response.status_code == 403


def test_sync_selected_with_nothing_ticked_says_so(logged_in, fleet):
    response = logged_in.post("/connectors/sync", data={}, follow_redirects=True)
    assert "Tick the connectors to sync first." in response.get_data(as_text=True)


def test_the_agents_index_filters_by_name_status_and_auth_type(logged_in, fleet):
    assert names_in(logged_in.get("/agents/?q=a"), "agents") == ["Ada"]
    # Bo has tools of Ledger but no key for it yet; Ada's Weather was never synced.
    assert names_in(logged_in.get("/agents/?status=no_credential"), "agents") == ["Bo"]
    assert names_in(logged_in.get("/agents/?status=not_synced"), "agents") == ["Ada"]
    assert names_in(logged_in.get("/agents/?auth=bearer"), "agents") == ["Ada"]
    page = logged_in.get("/agents/?auth=oauth").get_data(as_text=True)
    assert "No agents match" in page and "uses a connector with OAuth" in page


def test_delete_selected_names_the_agents_before_deleting_them(logged_in, app, fleet):
    with app.app_context():
        ids = db.session.scalars(select(Agent.id)).all()
    confirm = logged_in.get("/agents/delete", query_string={"ids": ids})
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Delete 2 agents?" in page
    assert "<strong>Ada</strong>" in page and "<strong>Bo</strong>" in page
    with app.app_context():
        assert db.session.scalar(select(Agent.id).where(Agent.name == "Ada"))  # nothing yet
    done = logged_in.post("/agents/delete", data={"ids": ids}, follow_redirects=True)
    assert "Deleted 2 agents, with their credentials and tool choices: Ada, Bo." in done.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.scalars(select(Agent)).all() == []
        assert db.session.scalars(select(AgentConnection)).all() == []
        deleted = db.session.scalars(
            select(AuditEvent.target_name).where(AuditEvent.action == "agent.deleted")
        ).all()
    assert sorted(deleted) == ["Ada", "Bo"]


def test_delete_selected_needs_the_csrf_token(logged_in, app, fleet):
    with app.app_context():
        ids = db.session.scalars(select(Agent.id)).all()
    assert logged_in.post("/agents/delete", data={"ids": ids}, csrf=False).status_code == 403
    with app.app_context():
        assert len(db.session.scalars(select(Agent)).all()) == 2


def test_delete_selected_with_nothing_ticked_goes_back_with_a_sentence(logged_in, fleet):
    response = logged_in.get("/agents/delete", follow_redirects=True)
    assert "Tick the agents to delete first." in response.get_data(as_text=True)
