"""The Calls and Audit pages, their exports, and usage on the agent and connector pages, on rows
written straight to the tables (``tests/records_helpers.py``)."""

import contextlib
import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AuditEvent, CallRecord, Connector
from mcpadmin.services import records, usage
from tests.records_helpers import NOW, call, event, many_calls, many_events


@pytest.fixture
def named(app):
    """An agent and a connector, and their ids."""
    with app.app_context():
        agent, connector = (
            Agent(name="Triage bot"),
            Connector(name="Weather", url="https://w.example/mcp"),
        )
        other = Agent(name="Reporter")
        db.session.add_all([agent, connector, other])
        db.session.commit()
        return {"agent": agent.id, "connector": connector.id, "other": other.id}


@contextlib.contextmanager
def counted(app):
    """Count the SQL statements run inside the block: ``with counted(app) as n: …; n[0]``."""
    with app.app_context():
        engine = db.engine
    seen = [0]

    def count(*args):
        seen[0] += 1

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)


def text(response) -> str:
    return response.get_data(as_text=True)


# --- access --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/calls/", "/audit/", "/calls/export.csv", "/audit/export.jsonl",
                                  "/agents/1/usage", "/connectors/1/usage"])  # fmt: skip
def test_records_pages_and_exports_need_the_login(client, admin, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_navigation_links_to_calls_and_audit(logged_in):
    page = text(logged_in.get("/connectors/"))
    assert 'href="/calls/"' in page and 'href="/audit/"' in page


# --- the Calls page ------------------------------------------------------------------------


def test_calls_page_without_calls_explains_where_they_come_from(logged_in):
    page = text(logged_in.get("/calls/"))
    assert "No calls yet" in page and "through the gateway" in page


def test_call_row_shows_every_fact_in_words(logged_in, app, named):
    with app.app_context():
        call(agent_id=named["agent"], connector_id=named["connector"], outcome="upstream_timeout",
             total_ms=1500, upstream_ms=1490, error="upstream took too long",
             request_id="abc123def", request_bytes=321, response_bytes=0)  # fmt: skip
        db.session.commit()
    page = text(logged_in.get("/calls/"))
    for fact in ("2026-11-20 12:00:00 UTC", "Triage bot", "key laptop", "weather__forecast",
                 "Weather", "Upstream timed out", "1.5 s", "upstream 1.49 s", "in 321 B",
                 "out 0 B", "upstream took too long", "abc123def"):  # fmt: skip
        assert fact in page, fact


def test_logged_arguments_are_shown_and_absent_ones_are_not(logged_in, app):
    with app.app_context():
        call(request_id="with", arguments={"city": "Oslo", "token": "[redacted]"})
        call(request_id="without")
        db.session.commit()
    page = text(logged_in.get("/calls/"))
    assert page.count("<summary>Arguments</summary>") == 1
    assert "Oslo" in page


@pytest.mark.parametrize(
    "query, expected",
    [
        ("agent={agent}", {"a-ok"}),
        ("connector={connector}", {"a-ok", "b-err"}),
        ("tool=other__tool", {"c-old"}),
        ("outcome=tool_error", {"b-err"}),
        ("from=2026-11-20T11:00&to=2026-11-20T12:30", {"a-ok", "b-err"}),
        ("to=2026-11-19", {"c-old"}),
        ("from=2026-11-20", {"a-ok", "b-err"}),
        ("connector={connector}&outcome=ok", {"a-ok"}),
    ],
)
def test_calls_filters(logged_in, app, named, query, expected):
    with app.app_context():
        call(request_id="a-ok", agent_id=named["agent"], connector_id=named["connector"])
        call(request_id="b-err", agent_id=named["other"], connector_id=named["connector"],
             outcome="tool_error", at=NOW - timedelta(minutes=30))  # fmt: skip
        call(request_id="c-old", tool="other__tool", at=NOW - timedelta(days=1))
        db.session.commit()
    page = text(logged_in.get("/calls/?" + query.format(**named)))
    shown = {rid for rid in ("a-ok", "b-err", "c-old") if rid in page}
    assert shown == expected


def test_filters_are_kept_in_the_form(logged_in, app, named):
    page = text(logged_in.get(f"/calls/?agent={named['agent']}&outcome=tool_error&tool=x__y"))
    assert f'<option value="{named["agent"]}" selected>Triage bot</option>' in page
    assert '<option value="tool_error" selected>Tool error</option>' in page
    assert 'value="x__y"' in page


def test_no_match_says_so_and_offers_every_call(logged_in, app):
    with app.app_context():
        call()
        db.session.commit()
    page = text(logged_in.get("/calls/?outcome=cancelled"))
    assert "None of the calls matches these filters" in page and "Show all calls" in page


@pytest.mark.parametrize(
    "query, sentence",
    [
        ("outcome=exploded", "is not an outcome"),
        ("from=yesterday", "is not a date and time"),
        ("to=2026-13-45", "is not a date and time"),
        ("from=2026-11-20T10:00%2B02:00", "is not a date and time"),
        ("to=9999-12-31", "is not a date and time"),
        ("from=2026-11-21&to=2026-11-20", "The range ends before it starts"),
        ("agent=99999999999999999999999", "is not one this page knows"),
        ("connector=-3", "is not one this page knows"),
        ("agent=%EF%BC%91", "is not one this page knows"),  # a fullwidth digit one
        ("before=99999999999999999999999", "is not one this page knows"),
        ("before=abc", "is not one this page knows"),
        ("before=5&after=2", "either before or after"),
        ("tool=" + "x" * 201, "too long"),
    ],
)
def test_bad_filter_values_get_a_sentence_not_an_error(logged_in, query, sentence):
    response = logged_in.get("/calls/?" + query)
    assert response.status_code == 400
    assert sentence in text(response)
    assert 'role="alert"' in text(response)


def test_bad_filter_on_the_audit_page_and_its_export(logged_in):
    for path in ("/audit/?to=not-a-date", "/audit/export.csv?to=not-a-date"):
        response = logged_in.get(path)
        assert response.status_code == 400
        assert "is not a date and time" in text(response)


# --- keyset pagination ---------------------------------------------------------------------


def test_pages_go_newest_first_and_back(logged_in, app):
    with app.app_context():
        many_calls(records.PAGE_SIZE * 2 + 5)
    first = text(logged_in.get("/calls/"))
    newest, size = records.PAGE_SIZE * 2 + 4, records.PAGE_SIZE
    assert f"bulk{newest}<" in first and f"bulk{newest - size + 1}<" in first
    assert f"bulk{newest - size}<" not in first
    assert "Newer" not in first
    older = _link(first, "Older")
    second = text(logged_in.get(older))
    assert f"bulk{newest - size}<" in second and f"bulk{newest}<" not in second
    third = text(logged_in.get(_link(second, "Older")))
    assert "bulk0<" in third and "Older" not in third
    back = text(logged_in.get(_link(third, "← Newer")))
    assert f"bulk{newest - size}<" in back and f"bulk{newest - size + 1}<" not in back
    assert "Older" in back


def test_pager_links_keep_the_filters(logged_in, app):
    with app.app_context():
        many_calls(records.PAGE_SIZE + 1, outcome="tool_error")
        many_calls(5)
    page = text(logged_in.get("/calls/?outcome=tool_error"))
    assert "outcome=tool_error" in _link(page, "Older")


def _link(page: str, label: str) -> str:
    marker = page.index(label)
    start = page.rindex('href="', 0, marker) + len('href="')
    return page[start : page.index('"', start)].replace("&amp;", "&")


@pytest.mark.parametrize(
    "path",
    ["/calls/", "/calls/?outcome=tool_error&tool=weather__forecast", "/calls/?before={deep}",
     "/audit/", "/audit/?admin=admin&action=agent.updated", "/audit/?before={deep}"],
)  # fmt: skip
def test_a_page_costs_the_same_statements_at_any_size(logged_in, app, path):
    def statements():
        with app.app_context():  # a page in the middle of the table, whatever its ids
            model = AuditEvent if path.startswith("/audit/") else CallRecord
            low, high = db.session.execute(select(func.min(model.id), func.max(model.id))).one()
        with counted(app) as seen:
            response = logged_in.get(path.format(deep=(low + high) // 2))
            assert response.status_code == 200 and "<tbody>" in text(response)
        return seen[0]

    with app.app_context():
        many_calls(5)
        many_calls(5, outcome="tool_error")
        many_events(5)
        many_events(5, action="connector.updated")
    small = statements()
    with app.app_context():
        many_calls(3000, outcome="tool_error")
        many_events(3000)
    assert statements() == small


# --- exports -------------------------------------------------------------------------------


def test_csv_export_has_the_filtered_rows_and_neutralises_formulas(logged_in, app):
    with app.app_context():
        call(request_id="r1", error="=HYPERLINK(\"http://evil.example\")", outcome="tool_error",
             tool="+cmd", key_label="@label")  # fmt: skip
        call(request_id="r2", error="-2+3")
        call(request_id="r3", outcome="ok", error=None)
        db.session.commit()
    response = logged_in.get("/calls/export.csv?outcome=tool_error")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="mcpadmin-calls-')
    assert disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert [r["request_id"] for r in rows] == ["r1"]
    assert rows[0]["error"] == '\'=HYPERLINK("http://evil.example")'
    assert rows[0]["tool"] == "'+cmd" and rows[0]["key_label"] == "'@label"
    assert rows[0]["total_ms"] == "12.5"


def test_jsonl_export_is_one_object_per_row_newest_first(logged_in, app):
    with app.app_context():
        call(request_id="old", at=NOW - timedelta(hours=1), arguments={"city": "Oslo"})
        call(request_id="new")
        db.session.commit()
    response = logged_in.get("/calls/export.jsonl")
    assert response.mimetype == "application/jsonl"
    assert response.headers["Content-Disposition"].endswith('.jsonl"')
    lines = [json.loads(line) for line in text(response).splitlines()]
    assert [r["request_id"] for r in lines] == ["new", "old"]
    assert lines[1]["arguments"] == {"city": "Oslo"}
    assert lines[0]["at"] == "2026-11-20T12:00:00+00:00"


def test_export_streams_every_row_in_batches(logged_in, app, monkeypatch):
    monkeypatch.setattr(records, "EXPORT_BATCH", 7)
    with app.app_context():
        many_calls(30)
    with counted(app) as seen:
        response = logged_in.client.get("/calls/export.csv", buffered=False)
        assert response.is_streamed
        body = text(response)
    assert len(list(csv.DictReader(io.StringIO(body)))) == 30
    assert seen[0] >= 5  # 30 rows in batches of 7: five selects at least


def forget_events(app):
    """Drop the audit trail so far (signing in is the first event of every test)."""
    with app.app_context():
        db.session.execute(db.delete(AuditEvent))
        db.session.commit()


def test_export_of_nothing_is_a_header_only(logged_in, app):
    forget_events(app)
    assert text(logged_in.get("/audit/export.csv")).strip().startswith("id,at,admin_name")
    assert text(logged_in.get("/audit/export.jsonl")) == ""


def test_export_buttons_carry_the_filters(logged_in):
    page = text(logged_in.get("/audit/?admin=root&from=2026-11-01"))
    assert "/audit/export.csv?admin=root&amp;from=2026-11-01" in page
    assert "/audit/export.jsonl?admin=root&amp;from=2026-11-01" in page


def test_unknown_export_format_is_not_found(logged_in):
    assert logged_in.get("/calls/export.xlsx").status_code == 404


# --- the Audit page ------------------------------------------------------------------------


def test_audit_page_without_events_says_what_it_will_show(logged_in, app):
    forget_events(app)
    assert "Nothing recorded yet" in text(logged_in.get("/audit/"))


def test_audit_row_shows_who_where_what_and_the_change(logged_in, app):
    with app.app_context():
        event(details={"url": ["https://old.example/mcp", "https://new.example/mcp"],
                       "tools": [["a"], ["a", "b"]], "label": "ci"})  # fmt: skip
        event(admin_name=None, action="keys.rotated", target_name=None, target_type=None,
              details=None)  # fmt: skip
        db.session.commit()
    page = text(logged_in.get("/audit/"))
    for fact in ("admin", "127.0.0.1", "connector.updated", "Weather", "connector #1",
                 "url: https://old.example/mcp → https://new.example/mcp", "tools: a → a, b",
                 "label: ci", "keys.rotated", "shell"):  # fmt: skip
        assert fact in page, fact


@pytest.mark.parametrize(
    "query, expected",
    [("admin=alice", {"e1"}), ("action=agent.deleted", {"e2"}), ("target=Weather", {"e1", "e3"}),
     ("from=2026-11-20T11:30", {"e1", "e2"})],
)  # fmt: skip
def test_audit_filters(logged_in, app, query, expected):
    with app.app_context():
        event(admin_name="alice", target_name="Weather", details={"marker": "e1"})
        event(action="agent.deleted", target_name="Bot", details={"marker": "e2"})
        event(at=NOW - timedelta(hours=1), target_name="Weather", details={"marker": "e3"})
        db.session.commit()
    page = text(logged_in.get("/audit/?" + query))
    assert {m for m in ("e1", "e2", "e3") if f"marker: {m}" in page} == expected


# --- usage ---------------------------------------------------------------------------------


def test_percentiles_come_from_bucket_counts():
    # bucket index → (calls, errors, longest call in ms)
    buckets = {2: (50, 0, 3.0), 9: (45, 0, 48.0), 15: (5, 5, 480.0)}
    assert usage.percentile(buckets, 0.5) == 3.0
    assert usage.percentile(buckets, 0.95) == 48.0
    assert usage.percentile({**buckets, 2: (49, 0, 3.0)}, 0.5) == 48.0
    assert usage.percentile({}, 0.5) is None


def test_usage_counts_errors_and_latency_per_day(app, named):
    today = NOW.replace(hour=9)
    with app.app_context():
        for ms in (8,) * 18 + (140, 900):  # today: 20 calls, 2 failed
            call(agent_id=named["agent"], at=today, total_ms=ms,
                 outcome="ok" if ms < 100 else "upstream_down")  # fmt: skip
        call(agent_id=named["agent"], at=today - timedelta(days=3), total_ms=40.0)
        call(agent_id=named["agent"], at=today - timedelta(days=14), total_ms=1.0)  # too old
        call(agent_id=named["other"], at=today, total_ms=5000.0)  # another agent
        db.session.commit()
        result = usage.usage(agent_id=named["agent"], now=NOW)
    assert len(result.days) == 14 and result.days[-1].day == NOW.date()
    day = result.days[-1]
    assert (day.calls, day.errors, day.error_rate) == (20, 2, 0.1)
    assert day.p50 == 8.0  # the bucket (7.5, 10] holds 18 calls, all 8 ms
    assert day.p95 == 140.0  # the 19th of 20 calls: the 140 ms one
    assert result.days[-4].calls == 1 and result.days[-4].p50 == 40.0
    assert sum(d.calls for d in result.days) == 21 == result.total.calls
    assert result.days[0].calls == 0 and result.days[0].p50 is None


def test_usage_of_a_connector(app, named):
    with app.app_context():
        call(connector_id=named["connector"], at=NOW, outcome="tool_error", total_ms=3000)
        db.session.commit()
        total = usage.usage(connector_id=named["connector"], now=NOW).total
    assert (total.calls, total.errors, total.p95) == (1, 1, 3000.0)


def test_agent_page_shows_charts_numbers_and_last_failures(logged_in, app, named):
    with app.app_context():
        for i in reversed(range(7)):  # oldest first, as the gateway writes them
            at = NOW.now(NOW.tzinfo) - timedelta(hours=i)
            call(agent_id=named["agent"], at=at, outcome="tool_error",
                 error=f"failure number {i}", request_id=f"fail{i}")  # fmt: skip
        db.session.commit()
    page = text(logged_in.get(f"/agents/{named['agent']}"))
    assert f'hx-get="/agents/{named["agent"]}/usage"' in page  # loaded once the page is shown
    assert "<svg" not in page
    page = text(logged_in.hx_get(f"/agents/{named['agent']}/usage"))
    assert page.count('<svg class="chart-svg"') == 3
    assert page.count('role="img"') >= 3
    assert "<title" in page and "<desc" in page
    assert "Calls per day" in page and "Error rate per day" in page and "p95" in page
    assert "The numbers, day by day" in page
    assert "failure number 0" in page and "fail4" in page and "fail5" not in page  # the last 5
    assert f'href="/calls/?agent={named["agent"]}"' in page
    assert "style=" not in page.split('<section class="usage"')[1]  # the CSP allows no inline style


def test_connector_page_shows_usage_and_links_to_its_calls(logged_in, named):
    page = text(logged_in.get(f"/connectors/{named['connector']}"))
    assert f'href="/calls/?connector={named["connector"]}"' in page
    page = text(logged_in.hx_get(f"/connectors/{named['connector']}/usage"))
    assert "No calls in the last 14 days" in page
    assert "No failed calls on record" in page
    assert f'href="/calls/?connector={named["connector"]}"' in page


def test_usage_without_javascript_is_a_page_of_its_own(logged_in, named):
    """The slot's link, followed without htmx, gets a whole page; an unknown id 404."""
    page = text(logged_in.get(f"/agents/{named['agent']}/usage"))
    assert "<h1>Calls of" in page and "Calls, last 14 days" in page
    assert logged_in.get("/agents/99999/usage").status_code == 404
    assert logged_in.get("/connectors/99999/usage").status_code == 404


def test_a_deleted_agent_stays_selectable_in_the_filter(logged_in, app):
    with app.app_context():
        call(agent_id=4242, agent_name="Gone bot", request_id="orphan")
        db.session.commit()
    page = text(logged_in.get("/calls/?agent=4242"))
    assert '<option value="4242" selected>Deleted agent #4242</option>' in page
    assert "orphan" in page and "Gone bot" in page
