"""Connector pages: index, new/edit with htmx-swapped auth fields, details, delete."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .crypto import secret_state
from .extensions import db
from .forms import ConnectorForm
from .models import AgentConnection, Connector, Tool
from .services import connectors as service
from .services import name_taken
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
    return render_template(
        "connectors/index.html",
        connectors=connectors,
        tool_counts=tool_counts,
        agent_counts=agent_counts,
        states={c.id: credential_state(c) for c in connectors if not c.per_agent},
    )


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
    """Fetch the server's tool list (arrives with the tool-sync issue)."""
    connector = get_connector(id)
    flash(f"Tool sync for {connector.name} is not available in this version yet.", "error")
    return redirect(url_for("connectors.index"))


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
