"""The try-it console: an operator picks one of an agent's tools, fills a form generated from
its input schema (``services.console``) and calls it as the agent (``services.trycall``).

The page works with plain form posts (no script): GET shows the picker and the chosen tool's
form; POST reads the form back into arguments and, when they read, makes the call and shows
its result under the form, the values kept for the next try. A form that does not read is
answered 422 with one sentence per field.
"""

from flask import Blueprint, g, render_template, request

from .extensions import db
from .models import Connector
from .roles import Access, agent_in_reach, allow, connector_in_reach
from .services import console, trycall
from .services.gateway import unknown_tool

bp = Blueprint("console", __name__, url_prefix="/agents")


@bp.route("/<int:id>/try", methods=["GET", "POST"])
@allow(Access.AGENT_CHANGE)
def call(id):
    """GET ``?tool=<name>``: the tool's form; POST: call it.

    :raise 404: no such agent. :raise 403: for a member, someone else's agent, or a tool of a
        connector not available to members (audited).
    """
    agent = agent_in_reach(id)
    catalog = trycall.catalog(agent)
    name = request.values.get("tool", "")
    entry = catalog.entries.get(name)
    if entry is not None:
        connector_in_reach(db.session.get(Connector, entry.connection.connector_id))
    form = console.form_for(entry.tool.input_schema if entry else {"type": "object"})
    context = {"agent": agent, "catalog": catalog, "name": name, "entry": entry, "form": form}
    if request.method == "GET":
        unknown = unknown_tool(name, agent.name) if name and not entry else None
        page = render_template("console/call.html", values=console.initial(form),
                               errors={}, unknown=unknown, **context)  # fmt: skip
        return page, 404 if unknown else 200
    values = request.form.to_dict()
    arguments, errors = console.arguments(form, values)
    if errors:
        return render_template("console/call.html", values=values, errors=errors, **context), 422
    trial = trycall.call(agent, name, arguments, g.admin.username)
    db.session.commit()
    if not values.get(console.RAW_ON):  # "Edit as JSON" starts from what the form sent
        values[console.RAW] = trial.sent
    return render_template("console/call.html", values=values, errors={}, trial=trial, **context)
