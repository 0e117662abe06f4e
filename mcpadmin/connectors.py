"""Connector pages: index, new/edit with htmx-swapped auth fields, details, delete, tool sync."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .crypto import secret_state
from .extensions import db
from .forms import AgentSecretForm, ConnectorForm
from .models import Agent, AgentConnection, Connector, Tool
from .services import agents as agents_service
from .services import connectors as service
from .services import name_taken
from .services import sync as sync_service
from .services.credentials import credential_state

bp = Blueprint("connectors", __name__, url_prefix="/connectors")


def get_connector(id) -> Connector:
    """:raise 404: no connector with this id."""
    connector = db.session.get(Connector, id)
    if connector is None:
        abort(404)
    return connector


@bp.get("/")
def index():
    connectors = db.session.scalars(select(Connector).order_by(func.lower(Connector.name))).all()
    return render_template("connectors/index.html", **_rows(connectors))


def _rows(connectors):
    """What ``connectors/_row.html`` needs besides the connector, in a fixed number of queries."""
    tool_counts = dict(
        db.session.execute(
            select(Tool.connector_id, func.count()).group_by(Tool.connector_id)
        ).all()
    )
    agent_counts = dict(
        db.session.execute(
            select(AgentConnection.connector_id, func.count())
            .where(AgentConnection.status == "connected")
            .group_by(AgentConnection.connector_id)
        ).all()
    )
    return {
        "connectors": connectors,
        "tool_counts": tool_counts,
        "agent_counts": agent_counts,
        "states": {c.id: credential_state(c) for c in connectors if not c.per_agent},
    }


@bp.route("/new", methods=["GET", "POST"])
def create():
    return _save(Connector(), "connectors/new.html")


@bp.get("/<int:id>")
def show(id):
    connector = get_connector(id)
    return render_template(
        "connectors/show.html",
        connector=connector,
        state=None if connector.per_agent else credential_state(connector),
    )


@bp.route("/<int:id>/edit", methods=["GET", "POST"])
def update(id):
    return _save(get_connector(id), "connectors/edit.html")


@bp.get("/fields")
def fields():
    """The auth-dependent part of the form, re-rendered when auth type or mode changes."""
    connector = db.session.get(Connector, request.args.get("id", type=int) or 0) or Connector()
    form = ConnectorForm(formdata=request.args, meta={"csrf": False})
    return render_template(
        "connectors/_auth_fields.html", form=form, connector=connector, **_secret_flags(connector)
    )


@bp.route("/<int:id>/delete", methods=["GET", "POST"])
def delete(id):
    """GET asks for confirmation; POST deletes the connector and its agent connections."""
    connector = get_connector(id)
    if request.method == "GET":
        return render_template("connectors/delete.html", connector=connector)
    name = connector.name
    db.session.delete(connector)
    db.session.commit()
    flash(f"Connector {name} deleted, with its tools and agent connections.", "success")
    return redirect(url_for("connectors.index"))


@bp.post("/<int:id>/sync")
def sync(id):
    """Fetch the server's tool list now: with the shared credential, or with each connected
    agent's (per-agent), or with the ``agent_id`` form field's only. htmx gets the row (or
    that agent's card) with the outcome inline; a plain post a redirect and a flash.

    :raise 404: no such connector or agent.
    """
    connector = get_connector(id)
    agent = _agent(request.form.get("agent_id", type=int))
    if agent is not None:
        outcomes = [sync_service.sync_outcome(connector, agent)]
    else:
        outcomes = sync_service.sync_connector(connector)
    db.session.commit()
    for outcome in outcomes:
        if outcome.ok:
            flash(f"Synced {outcome.label}: {outcome.message}.", "success")
        else:
            flash(f"Sync of {outcome.label} failed: {outcome.message}", "error")
    if agent is None and request.headers.get("HX-Request"):
        body = render_template("connectors/_row_response.html", connector=connector,
                               outcomes=outcomes, **_rows([connector]))  # fmt: skip
        return body, 200, {"Vary": "HX-Request"}
    if agent is None:
        return redirect(url_for("connectors.index"))
    return _card(agent, connector)


@bp.post("/<int:id>/agents/<int:agent_id>/reviewed")
def reviewed(id, agent_id):
    """Stop flagging the changed definition of the tool whose id is the ``tool`` form field
    for this agent.

    :raise 404: no such connector, agent, connection between them, or tool on the connector.
    """
    connector, agent = get_connector(id), _agent(agent_id)
    connection = agents_service.connection_for(agent, connector)
    wanted = request.form.get("tool", "")
    tool = next((t.name for t in connector.tools if str(t.id) == wanted), None)
    if connection is None or tool is None:
        abort(404)
    sync_service.mark_reviewed(connection, tool)
    db.session.commit()
    flash(f"{tool} marked reviewed for {agent.name}.", "success")
    return _card(agent, connector)


def _agent(agent_id):
    """:raise 404: an id was given and no agent has it."""
    if not agent_id:
        return None
    agent = db.session.get(Agent, agent_id)
    if agent is None:
        abort(404)
    return agent


def _card(agent, connector):
    """The agent's card for this connector (htmx, flashes out of band), else its page."""
    if not request.headers.get("HX-Request"):
        return redirect(url_for("agents.update", id=agent.id) + f"#connector-{connector.id}")
    card = agents_service.card(connector, agents_service.connection_for(agent, connector))
    body = render_template("agents/_card_response.html", agent=agent, card=card,
                           secret_form=AgentSecretForm(formdata=None))  # fmt: skip
    return body, 200, {"Vary": "HX-Request"}


def _save(connector, template):
    """Validate and store the form; re-render it with errors next to their fields."""
    form = ConnectorForm(obj=connector if request.method == "GET" else None)
    flags = _secret_flags(connector)
    if request.method == "GET" or request.form.get("refresh"):
        return render_template(template, form=form, connector=connector, **flags)
    valid = form.validate_on_submit()
    if valid and name_taken(Connector, form.name.data, connector.id):
        form.name.errors.append("Another connector already has this name.")
        valid = False
    if not valid:
        return _invalid(template, form, connector, flags)
    created = connector.id is None
    notices = service.apply_settings(connector, form.data)
    db.session.add(connector)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("Another connector already has this name.")
        return _invalid(template, form, connector, flags)
    flash(f"Connector {connector.name} {'created' if created else 'saved'}.", "success")
    for notice in notices:
        flash(notice, "info")
    return redirect(url_for("connectors.index"))


def _invalid(template, form, connector, flags):
    flash("The connector was not saved: correct the fields marked below.", "error")
    return render_template(template, form=form, connector=connector, **flags), 422


def _secret_flags(connector):
    """What the form may say about stored secrets: never the secrets themselves."""
    return {
        "secret_state": secret_state(connector.secret_enc),
        "client_state": secret_state(connector.oauth_client_id_enc),
    }
