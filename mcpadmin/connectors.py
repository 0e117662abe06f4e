"""Connector pages: index, new/edit with htmx-swapped auth fields, details (with the tools,
resources, resource templates and prompts the server offers), delete, tool sync."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from . import flashes, records
from .crypto import secret_state
from .extensions import db
from .forms import ConnectorForm, SecretForm
from .models import AgentConnection, Connector, Tool
from .roles import Access, allow
from .services import agents as agent_service
from .services import audit, clients, fanout, find, lifecycle, name_taken
from .services import connectors as service
from .services.audit import Action
from .services.lifecycle import Status

bp = Blueprint("connectors", __name__, url_prefix="/connectors")

# What the audit trail compares before and after a save: the settings, and the sealed columns
# (recorded as set / changed / cleared only).
SECRET_FIELDS = ("secret_enc", "oauth_client_id_enc", "oauth_client_secret_enc",
                 "access_token_enc", "refresh_token_enc")  # fmt: skip
AUDITED = (*service.SETTINGS, "members_may_use", *SECRET_FIELDS)


def get_connector(id) -> Connector:
    """:raise 404: no connector with this id."""
    return db.get_or_404(Connector, id)


@bp.get("/")
@allow(Access.READ)
def index():
    """Every connector in name order, or those the filters ask for: ``q`` (part of the
    name), ``status`` (a badge, ``lifecycle.Shown``), ``auth`` (an auth type)."""
    chosen = find.IndexFilter.parse(request.args)
    connectors = db.session.scalars(select(Connector).order_by(func.lower(Connector.name))).all()
    context = _rows(connectors)
    shown = context["credentials"]
    context["connectors"] = [c for c in connectors if chosen.keeps(c.name, [(c, shown[c.id])])]
    return render_template("connectors/index.html", **context, chosen=chosen,
                           total=len(connectors), statuses=find.status_choices())  # fmt: skip


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
            .where(AgentConnection.status == Status.CONNECTED)
            .group_by(AgentConnection.connector_id)
        ).all()
    )
    return {
        "connectors": connectors,
        "tool_counts": tool_counts,
        "agent_counts": agent_counts,
        "credentials": {c.id: lifecycle.for_connector(c) for c in connectors},
    }


@bp.route("/new", methods=["GET", "POST"])
@allow(Access.OPERATE)
def create():
    return _save(Connector(), "connectors/new.html")


@bp.get("/<int:id>")
@allow(Access.READ)
def show(id):
    """The connector's details, its credential (the shared one with a form to enter or
    replace a token or key; per agent, each agent's), its tools and usage."""
    connector = get_connector(id)
    return _show(connector)


def _show(connector, secret_form=None, status=200):
    return render_template(
        "connectors/show.html",
        connector=connector,
        items=agent_service.items_of(connector),
        credential=lifecycle.for_connector(connector),
        access=service.agent_access(connector),
        secret_form=secret_form or SecretForm(formdata=None),
        redirect_uri=clients.redirect_uri(),
        **records.usage_slot(connector=connector),
    ), status


@bp.app_template_filter("prompt_arguments")
def prompt_arguments(definition) -> list[tuple[str, bool, str | None]]:
    """A prompt definition's ``arguments`` as ``(name, required, description)``, what is not
    an argument object with a string name left out: the definition is the server's, as it
    sent it [26/prompts §Data Types]."""
    found = definition.get("arguments") if isinstance(definition, dict) else None
    if not isinstance(found, list):
        return []
    return [
        (a["name"], a.get("required") is True,
         a["description"] if isinstance(a.get("description"), str) else None)
        for a in found
        if isinstance(a, dict) and isinstance(a.get("name"), str)
    ]  # fmt: skip


@bp.post("/<int:id>/secret")
@allow(Access.OPERATE)
def save_secret(id):
    """Store the shared token or key, or replace the stored one (a blank field changes
    nothing), then check it with a sync; back to the connector's page with the outcome.

    :raise 404: no such connector.
    """
    connector = get_connector(id)
    form = SecretForm()
    if not form.validate_on_submit():
        if not form.secret.data:
            form.secret.errors = ["Enter the token or key before saving."]
        return _show(connector, form, 422)
    replaced = lifecycle.credential_state(connector) != "missing"
    reconnect = audit.needed_reconnect(connector)
    try:
        service.save_secret(connector, form.secret.data)
    except service.ConnectorSecretError as exc:
        flash(str(exc), "error")
        return redirect(url_for("connectors.show", id=connector.id))
    how = "token replaced" if replaced else "token pasted"
    audit.connected(connector, None, reconnect or replaced, {"how": how})
    db.session.commit()
    outcome = fanout.sync_outcome(connector)  # check the new credential at once
    audit.synced(connector, [outcome])
    db.session.commit()
    saved = f"Token {'replaced' if replaced else 'saved'} for {connector.name}"
    flashes.checked(saved, outcome)
    return redirect(url_for("connectors.show", id=connector.id))


@bp.route("/<int:id>/edit", methods=["GET", "POST"])
@allow(Access.OPERATE)
def update(id):
    return _save(get_connector(id), "connectors/edit.html")


@bp.get("/fields")
@allow(Access.OPERATE)
def fields():
    """The auth-dependent part of the form, re-rendered when auth type or mode changes."""
    connector = db.session.get(Connector, request.args.get("id", type=int) or 0) or Connector()
    form = ConnectorForm(formdata=request.args, meta={"csrf": False})
    return render_template(
        "connectors/_auth_fields.html", form=form, connector=connector, **_secret_flags(connector)
    )


@bp.route("/<int:id>/delete", methods=["GET", "POST"])
@allow(Access.OPERATE)
def delete(id):
    """GET asks for confirmation; POST deletes the connector and its agent connections, then
    revokes its OAuth tokens at the provider where the grant offers revocation."""
    connector = get_connector(id)
    if request.method == "GET":
        return render_template(
            "connectors/delete.html",
            connector=connector,
            access=service.agent_access(connector),
            revoked=[r.what for r in service.revocations(connector)],
        )
    name = connector.name
    revocations = service.revocations(connector)
    audit.record(Action.CONNECTOR_DELETED, connector, {
        "url": connector.url, "auth_type": connector.auth_type,
        "credential_mode": connector.credential_mode, "grants_to_revoke": len(revocations),
    })  # fmt: skip
    db.session.delete(connector)
    db.session.commit()
    all_revoked = flashes.revoke(revocations)
    revoked = ""
    if revocations and all_revoked:
        revoked = " Its OAuth tokens were revoked at the provider."
    flash(f"Connector {name} deleted, with its tools and agent connections.{revoked}", "success")
    return redirect(url_for("connectors.index"))


@bp.post("/<int:id>/sync")
@allow(Access.OPERATE)
def sync(id):
    """Fetch the server's tool list now: with the shared credential, or with each connected
    agent's (per-agent). htmx gets the row with the outcome inline; a plain post a redirect
    (to the connector's page when the ``back`` field says ``show``, else the index) and a
    flash.

    :raise 404: no such connector.
    """
    connector = get_connector(id)
    outcomes = fanout.sync_connector(connector)
    audit.synced(connector, outcomes)
    db.session.commit()
    for outcome in outcomes:
        flashes.synced(outcome)
    if request.headers.get("HX-Request"):
        body = render_template("connectors/_row_response.html", connector=connector,
                               outcomes=outcomes, **_rows([connector]))  # fmt: skip
        return body, 200, {"Vary": "HX-Request"}
    if request.form.get("back") == "show":
        return redirect(url_for("connectors.show", id=connector.id))
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
    question = valid and service.moved_secret_question(connector, form.data)
    if question:
        form.moved_secrets.errors = [question]
        valid = False
    if not valid:
        return _invalid(template, form, connector, flags)
    created = connector.id is None
    before = audit.snapshot(connector, AUDITED)
    reconnect = not created and audit.needed_reconnect(connector)
    saved = service.apply_settings(connector, form.data)
    db.session.add(connector)
    try:
        _record_saved(connector, created, before, saved, reconnect)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("Another connector already has this name.")
        return _invalid(template, form, connector, flags)
    flash(f"Connector {connector.name} {'created' if created else 'saved'}.", "success")
    for notice in saved.notices:
        flash(notice, "info")
    flashes.revoke(saved.revocations)
    if created:
        _first_sync(connector)
    return redirect(url_for("connectors.index"))


def _first_sync(connector):
    """List a new connector's tools at once when its credential allows (no authentication, or
    a shared token or key pasted in the form), and flash the outcome; otherwise flash what
    comes first. The connector is committed already: a failed sync is recorded on it, never
    undoes it."""
    if connector.per_agent:
        flash("Nothing to sync yet: its tools are listed when an agent connects, on the "
              "agent's page, with that agent's own credential.", "info")  # fmt: skip
        return
    if not lifecycle.for_connector(connector).can(lifecycle.Action.SYNC):
        what = "Connect it" if connector.auth_type == "oauth" else "Enter its token or key"
        flash(f"{what} to list its tools.", "info")
        return
    outcomes = fanout.sync_connector(connector)
    audit.synced(connector, outcomes)
    db.session.commit()
    for outcome in outcomes:
        flashes.synced(outcome)


def _record_saved(connector, created, before, saved, reconnect):
    """The audit events of one save: created or changed (field → [before, after]), a pasted
    token (a Connect, or a Reconnect when it replaced one that needed it), and the answer to
    the moved-secrets question. An edit that changed nothing is not recorded."""
    changed = audit.changes(before, connector, SECRET_FIELDS)
    if created or changed:
        notices = {"notices": saved.notices} if saved.notices else {}
        action = Action.CONNECTOR_CREATED if created else Action.CONNECTOR_UPDATED
        audit.record(action, connector, {**changed, **notices})
    if changed.get("secret") in (audit.SET, audit.CHANGED):
        audit.connected(connector, None, reconnect, {"how": "token pasted"})
    if saved.moved_secrets:
        audit.record(Action.SECRETS_MOVED, connector, {
            "choice": saved.moved_secrets, "from": service.origin(before["url"]),
            "to": service.origin(connector.url),
        })  # fmt: skip


def _invalid(template, form, connector, flags):
    flash("The connector was not saved: correct the fields marked below.", "error")
    return render_template(template, form=form, connector=connector, **flags), 422


def _secret_flags(connector):
    """What the form may say about stored secrets (never the secrets themselves), and the
    redirect URI to register at a provider for a pre-registered client."""
    return {
        "secret_state": secret_state(connector.secret_enc),
        "client_state": secret_state(connector.oauth_client_id_enc),
        "redirect_uri": clients.redirect_uri(),
    }


# ``{% if connector.name|prefix_kept(connector.slug) %}``: the prefix is an earlier name's.
bp.add_app_template_filter(find.prefix_kept, "prefix_kept")


@bp.post("/sync")
@allow(Access.OPERATE)
def sync_selected():
    """Sync each connector ticked on the index (``ids``) as its own Sync button would, and
    go back to the index as it was filtered (``q``, ``status``, ``auth``). One flash per
    outcome; one that cannot be synced yet (no credential) says so."""
    ids = request.form.getlist("ids", type=int)
    query = select(Connector).where(Connector.id.in_(ids)).order_by(func.lower(Connector.name))
    chosen = db.session.scalars(query).all() if ids else []
    if not chosen:
        flash("Tick the connectors to sync first.", "error")
    for connector in chosen:
        if not lifecycle.for_connector(connector).can("sync"):
            flash(f"{connector.name} was not synced: it has no usable credential yet.", "error")
            continue
        outcomes = fanout.sync_connector(connector)
        audit.synced(connector, outcomes)
        for outcome in outcomes:
            flashes.synced(outcome)
    db.session.commit()
    return redirect(url_for("connectors.index", **find.IndexFilter.parse(request.form).values))
