"""The Calls page (the call log) and the Audit page (the admin audit trail): filters in the
query string, keyset pages (``?before=`` / ``?after=`` an id), and the filtered rows exported
as CSV or JSON Lines, streamed batch by batch.

A filter value the page cannot use is answered 400 with the page and a sentence saying what to
change; the export of such a filter likewise.
"""

from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import func, select

from . import charts
from .extensions import db
from .models import Agent, AuditEvent, CallRecord, Connector
from .roles import Access, agent_in_reach, allow
from .services import audit as audit_actions
from .services import exports, records, usage
from .services.records import KIND_WORDS, OUTCOME_WORDS, FilterError

bp = Blueprint("records", __name__)
bp.add_app_template_filter(records.outcome_words, "outcome_words")
bp.add_app_template_filter(records.outcome_kind, "outcome_kind")
bp.add_app_template_filter(records.kind_words, "kind_words")
bp.add_app_template_filter(records.changes, "changes")
bp.add_app_template_filter(charts.milliseconds, "milliseconds")
bp.add_app_template_filter(charts.percent, "percent")
bp.add_app_template_filter(charts.byte_size, "byte_size")


@bp.get("/calls/")
@allow(Access.READ)
def calls():
    """What agents asked through the gateway (tool calls, resource reads, prompt gets…),
    newest first, filtered by agent, connector, kind, name, outcome, time."""
    return _listing("records/calls.html", records.call_filters, records.call_page, _call_choices())


@bp.get("/audit/")
@allow(Access.READ)
def audit():
    """What admins did, newest first, filtered by admin, action, target, time."""
    return _listing(
        "records/audit.html", records.audit_filters, records.audit_page, _audit_choices()
    )


@bp.get("/calls/export.<fmt>")
@allow(Access.READ)
def export_calls(fmt):
    """:raise 404: a format other than csv or jsonl."""
    return _export(CallRecord, "calls", records.call_filters, fmt, _call_choices)


@bp.get("/audit/export.<fmt>")
@allow(Access.READ)
def export_audit(fmt):
    """:raise 404: a format other than csv or jsonl."""
    return _export(AuditEvent, "audit", records.audit_filters, fmt, _audit_choices)


def _listing(template, parse, page_of, choices):
    error, filters, page = None, records.Filters(), records.Page([], None, None)
    try:
        filters = parse(request.args)
        before, after = records.cursor(request.args)
        page = page_of(filters, before, after)
    except FilterError as exc:
        error = str(exc)
    context = {"filters": filters, "page": page, "error": error, "args": request.args, **choices}
    return render_template(template, **context), 400 if error else 200


def _export(model, name, parse, fmt, choices):
    try:
        fmt = exports.Format(fmt)
    except ValueError:
        abort(404)
    try:
        filters = parse(request.args)
    except FilterError as exc:
        context = {"filters": records.Filters(), "page": records.Page([], None, None),
                   "error": str(exc), "args": request.args, **choices()}  # fmt: skip
        return render_template(f"records/{name}.html", **context), 400
    body = exports.encode(records.batches(model, filters), model, fmt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="mcpadmin-{name}-{stamp}.{fmt}"'
    return Response(
        stream_with_context(body),
        mimetype=exports.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": disposition},
    )


def _call_choices() -> dict:
    """The agents and connectors the Calls filters offer, by name (two statements), and the
    kinds and outcomes."""
    agents = db.session.execute(select(Agent.id, Agent.name).order_by(func.lower(Agent.name)))
    connectors = db.session.execute(
        select(Connector.id, Connector.name).order_by(func.lower(Connector.name))
    )
    return {"agents": agents.all(), "connectors": connectors.all(), "kinds": KIND_WORDS,
            "outcomes": OUTCOME_WORDS}  # fmt: skip


def _audit_choices() -> dict:
    """The actions the Audit filter offers."""
    return {"actions": [action.value for action in audit_actions.Action]}


def usage_slot(agent: Agent | None = None, connector: Connector | None = None) -> dict:
    """What the agent page or the connector page needs to show its usage: where to load it
    from (``_usage_slot.html`` loads it once the page is shown; no statement here)."""
    if agent is not None:
        return {
            "usage_url": url_for("records.agent_usage", id=agent.id),
            "calls_url": url_for("records.calls", agent=agent.id),
            "subject": "this agent",
        }
    return {
        "usage_url": url_for("records.connector_usage", id=connector.id),
        "calls_url": url_for("records.calls", connector=connector.id),
        "subject": "this connector",
    }


@bp.get("/agents/<int:id>/usage")
@allow(Access.AGENT_READ)
def agent_usage(id):
    """The agent's last 14 days of calls and its last failures (the agent page loads it).

    :raise 404: no such agent. :raise 403: someone else's, for a member (audited).
    """
    agent = agent_in_reach(id)
    return _usage(agent.name, {"agent_id": agent.id}, usage_slot(agent=agent))


@bp.get("/connectors/<int:id>/usage")
@allow(Access.READ)
def connector_usage(id):
    """:raise 404: no such connector."""
    connector = db.get_or_404(Connector, id)
    return _usage(connector.name, {"connector_id": connector.id}, usage_slot(connector=connector))


def _usage(name, ids, slot):
    """The usage section (htmx), or a page holding it (a browser without JavaScript followed
    the slot's link). Two statements besides the lookup."""
    numbers = usage.usage(**ids)
    context = {
        **slot,
        "usage": numbers,
        "usage_charts": charts.usage_charts(numbers, slot["subject"]),
        "failures": usage.recent_failures(**ids),
        "name": name,
    }
    if request.headers.get("HX-Request"):
        return render_template("_usage.html", **context)
    return render_template("records/usage.html", **context)
