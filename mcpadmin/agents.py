"""Agent pages: index, new, the agent page (details, endpoint, keys, one card per
connector), delete; creating and revoking agent keys.

Card and key actions answer an htmx request with their partial plus the flash area out of
band, and a plain form post with a redirect — except creating a key, whose answer is the one
place the key is ever shown (a page, not a redirect: it is stored nowhere to show later).

Every route names its agent through ``roles.agent_in_reach`` (a member reaches only their
own agents: another's is refused 403, audited) and a connector through
``roles.connector_in_reach`` (a member only those made available to members). Members see
only those connectors' cards, and of a shared credential its status alone.
"""

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from . import flashes, records
from .extensions import db
from .filters import plural
from .forms import AgentForm, AgentKeyForm, SecretForm
from .models import (
    ALL_RESOURCES,
    AdminUser,
    Agent,
    AgentConnection,
    AgentKey,
    Connector,
    ItemKind,
    utcnow,
)
from .roles import (
    Access,
    agent_in_reach,
    agents_in_reach,
    allow,
    connector_in_reach,
    permits,
    refusal,
    sees_every_agent,
)
from .services import (
    agent_keys,
    audit,
    catalog,
    fanout,
    find,
    gateway,
    lifecycle,
    name_taken,
    surface,
)
from .services import agents as service
from .services.audit import Action

bp = Blueprint("agents", __name__, url_prefix="/agents")

# What the audit trail compares before and after the agent form is saved.
AUDITED = ("name", "description", "keep_tool_names")


def get_pair(id, connector_id) -> tuple[Agent, Connector]:
    """:raise 404: no such agent or connector. :raise 403: someone else's agent, or a
    connector not available to members, for a member (audited)."""
    agent, connector = agent_in_reach(id), db.get_or_404(Connector, connector_id)
    connector_in_reach(connector)
    return agent, connector


def get_key(id, key_id) -> tuple[Agent, AgentKey]:
    """:raise 404: no such agent, or the key is not one of its keys. :raise 403: someone
    else's agent, for a member (audited)."""
    agent, key = agent_in_reach(id), db.get_or_404(AgentKey, key_id)
    if key.agent_id != agent.id:
        abort(404)
    return agent, key


@bp.get("/")
@allow(Access.AGENT_READ)
def index():
    """Every agent the signed-in person reaches (``roles.agents_in_reach``) in name order with
    its connectors' credentials, or those the filters ask for: ``q`` (part of the name),
    ``status`` (a badge one of its connectors shows), ``auth`` (an auth type one of its
    connectors uses), and for roles that see every agent ``owner`` (``find.AgentFilter``).
    A member's agents show only the connectors available to members. Three statements (a
    fourth for the owner filter's choices)."""
    everyone = sees_every_agent()
    chosen = find.AgentFilter.parse(request.args, owners=everyone)
    query = select(Agent).options(joinedload(Agent.owner)).order_by(func.lower(Agent.name))
    agents = db.session.scalars(agents_in_reach(query)).all()
    connections = agents_in_reach(select(AgentConnection).join(AgentConnection.agent)).options(
        joinedload(AgentConnection.connector)
    )
    found = db.session.scalars(connections).all()
    used = find.agents_connectors(c for c in found if everyone or c.connector.members_may_use)
    kept = [
        a
        for a in agents
        if chosen.keeps(a.name, used[a.id]) and chosen.keeps_owner(a.owner_id, g.admin.id)
    ]
    return render_template(
        "agents/index.html",
        agents=kept,
        used=used,
        chosen=chosen,
        total=len(agents),
        statuses=find.status_choices(per_agent=False),
        owners=find.owner_choices(service.owners_of_agents()) if everyone else None,
    )


def _agent_form(agent=None, **kwargs) -> AgentForm:
    """The agent form; with the Owner field (choices filled) for owners and operators, who
    may give an agent to someone else, without it for anyone else. A new agent's owner is
    who creates it unless the field says otherwise."""
    form = AgentForm(obj=agent, owner_id=None if agent else g.admin.id, **kwargs)
    if not permits(g.admin, Access.OPERATE):
        del form.owner_id
        return form
    people = service.owner_choices(agent.owner_id if agent else g.admin.id)
    form.owner_id.choices = [("", "No owner")] + [
        (p.id, p.shown_name if p.active else f"{p.shown_name} (deactivated)") for p in people
    ]
    return form


def _chosen_owner(form, agent=None) -> tuple[bool, int | None]:
    """``(valid, owner id)``: the Owner field's choice (a person not offered gets an error
    under it), or without the field who creates the agent, or its owner as it is.

    :raise 403: a post without the field (a member's) that names another owner (audited).
    """
    if "owner_id" not in form:
        owner_id = agent.owner_id if agent else g.admin.id
        if request.form.get("owner_id", str(owner_id)) != str(owner_id):
            abort(refusal("Only owners and operators can give an agent to someone else."))
        return True, owner_id
    picked = form.owner_id.data
    if picked is not None and picked not in {value for value, _ in form.owner_id.choices}:
        form.owner_id.errors.append("Choose an active person as the owner, or No owner.")
        return False, None
    return True, picked


@bp.route("/new", methods=["GET", "POST"])
@allow(Access.AGENT_CHANGE)
def create():
    """The new agent belongs to who creates it; owners and operators may pick another
    active person on the form."""
    form = _agent_form()
    valid = _valid(form, None)
    owner_ok, owner_id = _chosen_owner(form)
    if not (valid and owner_ok):
        return render_template("agents/new.html", form=form), 422 if form.errors else 200
    agent = Agent(name=form.name.data, description=form.description.data or None,
                  owner_id=owner_id)  # fmt: skip
    before = audit.snapshot(Agent(), AUDITED)
    db.session.add(agent)
    if not _commit(form, Action.AGENT_CREATED, agent, before):
        return render_template("agents/new.html", form=form), 422
    flash(f"Agent {agent.name} created. Give it credentials and choose its tools below.", "success")
    return redirect(url_for("agents.update", id=agent.id))


@bp.route("/<int:id>", methods=["GET", "POST"])
@allow(get=Access.AGENT_READ, post=Access.AGENT_CHANGE)
def update(id):
    """The agent page: its details form and one card per connector. Owners and operators
    may give the agent to another person (``agent.reassigned``, with the owners' names
    before and after); its per-agent credentials stay with the agent."""
    agent = agent_in_reach(id)
    form = _agent_form(agent)
    status = 200
    if request.method == "POST":
        valid = _valid(form, agent.id)
        owner_ok, owner_id = _chosen_owner(form, agent)
        if valid and owner_ok:
            before = audit.snapshot(agent, AUDITED)
            agent.name, agent.description = form.name.data, form.description.data or None
            agent.keep_tool_names = form.keep_tool_names.data
            _reassign(agent, owner_id)
            if _commit(form, Action.AGENT_UPDATED, agent, before):
                flash(f"Agent {agent.name} saved.", "success")
                return redirect(url_for("agents.update", id=agent.id))
        status = 422
    return _agent_page(agent, form, flashed=request.args.get("card", type=int)), status


def _reassign(agent, owner_id):
    """Give the agent to ``owner_id`` (None: nobody), audited when it changes."""
    if owner_id == agent.owner_id:
        return
    people = [db.session.get(AdminUser, i) if i else None for i in (agent.owner_id, owner_id)]
    names = [p.username if p else None for p in people]
    agent.owner_id = owner_id
    audit.record(Action.AGENT_REASSIGNED, agent, {"owner": names})


def card_url(agent_id, connector_id) -> str:
    """The agent page scrolled to one connector's card, the messages flashed for it shown
    in the card (the page's own message area is then out of view)."""
    url = url_for("agents.update", id=agent_id, card=connector_id)
    return f"{url}#connector-{connector_id}"


def _agent_page(agent, form=None, key_form=None, new_key=None, flashed=None):
    """The whole agent page; ``new_key`` (the key just created) only in the answer that
    creates it; ``flashed``: the id of the connector whose card also shows the messages."""
    return render_template(
        "agents/edit.html",
        agent=agent,
        form=form or _agent_form(agent, formdata=None),
        cards=service.cards(agent, members_only=not sees_every_agent()),
        secret_form=SecretForm(formdata=None),
        flashed=flashed,
        **_keys_context(agent, key_form, new_key),
        **records.usage_slot(agent=agent),
    )


def _keys_context(agent, key_form=None, new_key=None):
    now = utcnow()
    return {
        "keys": [
            (k, agent_keys.status(k, now), agent_keys.display(k))
            for k in agent_keys.newest_first(agent)
        ],
        "key_form": key_form or AgentKeyForm(formdata=None),
        "new_key": new_key,
        "client_config": agent_keys.client_config(agent),
    }


@bp.route("/<int:id>/delete", methods=["GET", "POST"])
@allow(Access.AGENT_CHANGE)
def delete(id):
    """GET asks for confirmation; POST deletes the agent and its connections, then revokes
    its OAuth tokens at the provider where the grant offers revocation."""
    agent = agent_in_reach(id)
    if request.method == "GET":
        return render_template(
            "agents/delete.html",
            agent=agent,
            holdings=service.holdings(agent),
            keys=[k.label for k in agent_keys.active(agent)],
            revoked=[r.what for r in service.revocations(agent)],
        )
    name = agent.name
    revocations = _deleted(agent)
    db.session.commit()
    all_revoked = flashes.revoke(revocations)
    revoked = ""
    if revocations and all_revoked:
        revoked = " Its OAuth tokens were revoked at the provider."
    flash(f"Agent {name} deleted, with its credentials and tool choices.{revoked}", "success")
    return redirect(url_for("agents.index"))


@bp.post("/<int:id>/connectors/<int:connector_id>/secret")
@allow(Access.AGENT_CHANGE)
def save_secret(id, connector_id):
    """Store the agent's own token or key for a per-agent bearer/API-key connector, or
    replace the stored one (a blank field changes nothing), then check it with a sync."""
    agent, connector = get_pair(id, connector_id)
    form = SecretForm()
    if not form.validate_on_submit():
        missing = "Enter the token or key before saving."
        flash(form.secret.errors[0] if form.secret.data else missing, "error")
        return _card_response(agent, connector, form)
    connection = service.connection_for(agent, connector)
    replaced = lifecycle.credential_state(connector, connection) != "missing"
    reconnect = audit.needed_reconnect(connector, connection)
    try:
        service.save_secret(agent, connector, form.secret.data.strip())
    except service.AgentConnectionError as exc:
        flash(str(exc), "error")
        return _card_response(agent, connector, form)
    how = "token replaced" if replaced else "token pasted"
    audit.connected(connector, agent, reconnect or replaced, {"how": how})
    db.session.commit()
    # Check the new credential at once, and list what this account may use.
    outcome = fanout.sync_outcome(connector, agent)
    db.session.commit()
    saved = f"Token {'replaced' if replaced else 'saved'} for {agent.name} on {connector.name}"
    flashes.checked(saved, outcome)
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/tools")
@allow(Access.AGENT_CHANGE)
def choose_tools(id, connector_id):
    """Enable the ticked tools (the ``tools`` field: tool ids) for the agent, the others
    disabled; or, with ``select`` set to ``all`` or ``none`` (the card's Enable all and
    Disable all buttons), every tool the agent is offered or none."""
    agent, connector = get_pair(id, connector_id)
    connection = service.connection_for(agent, connector)
    before = set(connection.enabled_tools or []) if connection else set()
    select = request.form.get("select")
    chosen = service.choose_tools(agent, connector, request.form.getlist("tools"), select)
    _audit_choice(Action.TOOLS_CHOSEN, agent, connector, before, set(chosen), select)
    db.session.commit()
    offered = len(service.offered(connector, service.connection_for(agent, connector)))
    flash(f"{len(chosen)} of {plural(offered, 'tool')} enabled on {connector.name}.", "success")
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/prompts")
@allow(Access.AGENT_CHANGE)
def choose_prompts(id, connector_id):
    """Enable the ticked prompts (the ``prompts`` field: catalog item ids) for the agent, the
    others disabled; or, with ``select`` set to ``all`` or ``none``, every prompt of the
    connector or none. A value that is not one of its prompts changes nothing and gets a
    sentence on the card."""
    agent, connector = get_pair(id, connector_id)
    connection = service.connection_for(agent, connector)
    before = set(connection.enabled_prompts or []) if connection else set()
    select = request.form.get("select")
    try:
        chosen = service.choose_prompts(agent, connector, request.form.getlist("prompts"), select)
    except service.ChoiceError as exc:
        flash(str(exc), "error")
        return _card_response(agent, connector)
    _audit_choice(Action.PROMPTS_CHOSEN, agent, connector, before, set(chosen), select)
    db.session.commit()
    offered = len(service.items_of(connector)[ItemKind.PROMPT])
    flash(f"{len(chosen)} of {plural(offered, 'prompt')} enabled on {connector.name}.", "success")
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/resources")
@allow(Access.AGENT_CHANGE)
def choose_resources(id, connector_id):
    """Let the agent read the ticked resources and URI templates (the ``resources`` field:
    catalog item ids), or all of the connector's (the value ``*``, or ``select`` set to
    ``all``), or none (``select`` set to ``none``). A value that is not one of the
    connector's changes nothing and gets a sentence on the card."""
    agent, connector = get_pair(id, connector_id)
    connection = service.connection_for(agent, connector)
    before = set(connection.enabled_resources or []) if connection else set()
    select = request.form.get("select")
    values = request.form.getlist("resources")
    try:
        chosen = service.choose_resources(agent, connector, values, select)
    except service.ChoiceError as exc:
        flash(str(exc), "error")
        return _card_response(agent, connector)
    _audit_choice(Action.RESOURCES_CHOSEN, agent, connector, before, set(chosen), select)
    db.session.commit()
    if chosen == [ALL_RESOURCES]:
        flash(f"All resources of {connector.name} enabled, those it adds later too.", "success")
    else:
        items = service.items_of(connector)
        offered = len(items[ItemKind.RESOURCE]) + len(items[ItemKind.TEMPLATE])
        flash(f"{len(chosen)} of {plural(offered, 'resource')} enabled on {connector.name}.",
              "success")  # fmt: skip
    return _card_response(agent, connector)


def _audit_choice(action, agent, connector, before: set, after: set, select):
    """Record a changed choice of tools, prompts or resources (nothing when none changed)."""
    if after == before:
        return
    changed = {"enabled": after - before, "disabled": before - after}
    how = {"selected": select} if select in (service.ALL, service.NONE) else {}
    audit.record(action, agent, {"connector": connector.name, **changed, **how})


@bp.post("/<int:id>/connectors/<int:connector_id>/sync")
@allow(Access.AGENT_CHANGE)
def sync(id, connector_id):
    """List the connector's tools with this agent's own credential now."""
    agent, connector = get_pair(id, connector_id)
    outcome = fanout.sync_outcome(connector, agent)
    audit.synced(connector, [outcome])
    db.session.commit()
    flashes.synced(outcome)
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/reviewed")
@allow(Access.OPERATE)
def reviewed(id, connector_id):
    """Stop flagging the changed definition of the tool whose id is the ``tool`` form field
    for this agent, and record who reviewed which definition. A plain post from the tool's
    page (``back=tool``) returns there.

    :raise 404: no such agent, connector, or connection between them. A tool the connector
        no longer has gets the current card and a message.
    """
    agent, connector = get_pair(id, connector_id)
    connection = service.connection_for(agent, connector)
    if connection is None:
        abort(404)
    wanted = request.form.get("tool", "")
    tool = next((t for t in connector.tools if str(t.id) == wanted), None)
    if tool is None:  # a sync removed it since the page was loaded: show the current card
        flash(f"That tool is no longer offered by {connector.name}; the list is up to date now.",
              "info")  # fmt: skip
        return _card_response(agent, connector)
    catalog.mark_reviewed(connection, tool, g.admin.username)
    audit.record(Action.TOOL_REVIEWED, agent, {"connector": connector.name, "tool": tool.name})
    db.session.commit()
    flash(f"{tool.name} marked reviewed for {agent.name}.", "success")
    if request.form.get("back") == "tool" and not request.headers.get("HX-Request"):
        return redirect(url_for("tools.show", connector_id=connector.id, tool_id=tool.id,
                                agent=agent.id))  # fmt: skip
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/prompt-reviewed")
@allow(Access.OPERATE)
def prompt_reviewed(id, connector_id):
    """Stop flagging the changed definition of the prompt whose catalog item id is the
    ``prompt`` form field for this agent: ``prompts/get`` serves it again. Who reviewed which
    definition is recorded; a plain post from the prompt's page (``back=prompt``) returns
    there.

    :raise 404: no such agent, connector, or connection between them. A prompt the connector
        no longer has gets the current card and a message.
    """
    agent, connector = get_pair(id, connector_id)
    connection = service.connection_for(agent, connector)
    if connection is None:
        abort(404)
    wanted = request.form.get("prompt", "")
    prompts = service.items_of(connector)[ItemKind.PROMPT]
    item = next((p for p in prompts if str(p.id) == wanted), None)
    if item is None:  # a sync removed it since the page was loaded: show the current card
        flash(f"That prompt is no longer offered by {connector.name}; the list is up to date "
              "now.", "info")  # fmt: skip
        return _card_response(agent, connector)
    surface.mark_prompt_reviewed(connection, item, g.admin.username)
    audit.record(Action.PROMPT_REVIEWED, agent, {"connector": connector.name, "prompt": item.key})
    db.session.commit()
    flash(f"Prompt {item.key} marked reviewed for {agent.name}.", "success")
    if request.form.get("back") == "prompt" and not request.headers.get("HX-Request"):
        return redirect(url_for("tools.prompt", connector_id=connector.id, item_id=item.id,
                                agent=agent.id))  # fmt: skip
    return _card_response(agent, connector)


@bp.post("/<int:id>/connectors/<int:connector_id>/disconnect")
@allow(Access.AGENT_CHANGE)
def disconnect(id, connector_id):
    """Forget the agent's own credential for the connector (revoking OAuth tokens at the
    provider once committed); tool choices are kept."""
    agent, connector = get_pair(id, connector_id)
    revocations = service.disconnect(agent, connector)
    audit.record(Action.AGENT_DISCONNECTED, agent,
                 {"connector": connector.name, "grants_to_revoke": len(revocations)})  # fmt: skip
    db.session.commit()
    if flashes.revoke(revocations):
        flash(f"{agent.name} disconnected from {connector.name}.", "success")
    return _card_response(agent, connector)


@bp.post("/<int:id>/keys")
@allow(Access.AGENT_CHANGE)
def create_key(id):
    """Create a key for the agent and show it, this once: an htmx request gets the keys
    partial with the key's panel, a plain post the whole page with it."""
    agent = agent_in_reach(id)
    form = AgentKeyForm()
    new_key = None
    if form.validate_on_submit():
        row, key = agent_keys.create(agent, form.label.data, form.expires_at(utcnow()))
        db.session.flush()  # the key's id, for its audit event
        audit.record(Action.KEY_CREATED, agent, agent_keys.described(row))
        db.session.commit()
        new_key = {"row": row, "key": key, "config": agent_keys.client_config(agent, key)}
        form = None  # an empty form for the next key
    if not request.headers.get("HX-Request"):
        return _agent_page(agent, key_form=form, new_key=new_key), 200 if new_key else 422
    # Errors are answered 200 too: htmx swaps only 2xx by default, and the form shows them.
    return _keys_response(agent, form, new_key)


@bp.route("/<int:id>/keys/<int:key_id>/revoke", methods=["GET", "POST"])
@allow(Access.AGENT_CHANGE)
def revoke_key(id, key_id):
    """GET asks for confirmation (htmx asks with ``hx-confirm`` instead); POST revokes: the
    key stops working at once and stays listed, greyed."""
    agent, key = get_key(id, key_id)
    if request.method == "GET":
        shown = agent_keys.display(key)
        others = [k.label for k in agent_keys.active(agent) if k.id != key.id]
        return render_template(
            "agents/revoke_key.html", agent=agent, key=key, shown=shown, others=others
        )
    if key.revoked_at is None:
        audit.record(Action.KEY_REVOKED, agent, agent_keys.described(key))
    agent_keys.revoke(key)
    db.session.commit()
    flash(f"Key {key.label} of {agent.name} revoked: clients using it are refused now.", "success")
    if not request.headers.get("HX-Request"):
        return redirect(url_for("agents.update", id=agent.id) + "#keys")
    return _keys_response(agent)


def _keys_response(agent, key_form=None, new_key=None):
    body = render_template(
        "agents/_keys_response.html", agent=agent, **_keys_context(agent, key_form, new_key)
    )
    return body, 200, {"Vary": "HX-Request"}


def _card_response(agent, connector, secret_form=None):
    """The card partial (+ flashes out of band) for htmx, else back to the agent page.

    Errors are answered 200 too: htmx swaps only 2xx by default, and the card shows them.
    """
    if not request.headers.get("HX-Request"):
        return redirect(card_url(agent.id, connector.id))
    connection = service.connection_for(agent, connector)
    body = render_template(
        "agents/_card_response.html",
        agent=agent,
        card=service.card(connector, connection, members_only=not sees_every_agent()),
        secret_form=secret_form or SecretForm(formdata=None),
    )
    return body, 200, {"Vary": "HX-Request"}


def _valid(form, agent_id):
    if not form.validate_on_submit():
        return False
    if name_taken(Agent, form.name.data, agent_id):
        form.name.errors.append("Another agent already has this name.")
        return False
    return True


def _commit(form, action, agent, before):
    """Record what the form changed (nothing recorded when nothing did) and commit; False
    when the name was taken meanwhile."""
    try:
        changed = audit.changes(before, agent)
        if changed or action == Action.AGENT_CREATED:
            audit.record(action, agent, changed)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("Another agent already has this name.")
        return False
    return True


@bp.route("/delete", methods=["GET", "POST"])
@allow(Access.AGENT_CHANGE)
def delete_selected():
    """GET asks to confirm deleting the agents ticked on the index (``ids``), naming each;
    POST deletes them as ``delete`` deletes one, then revokes their OAuth grants at the
    provider where the grant offers revocation. No agent ticked: back to the index.

    :raise 403: one of them is someone else's, for a member (audited; nothing deleted).
    """
    ids = request.values.getlist("ids", type=int)
    query = select(Agent).where(Agent.id.in_(ids)).order_by(func.lower(Agent.name))
    agents = db.session.scalars(query).all() if ids else []
    for agent in agents:
        agent_in_reach(agent.id)
    if not agents:
        flash("Tick the agents to delete first.", "error")
        return redirect(url_for("agents.index"))
    if request.method == "GET":
        grants = sum(len(service.revocations(agent)) for agent in agents)
        return render_template("agents/delete_selected.html", agents=agents, grants=grants)
    names, revocations = [agent.name for agent in agents], []
    for agent in agents:
        revocations += _deleted(agent)
    db.session.commit()
    all_revoked = flashes.revoke(revocations)
    revoked = ""
    if revocations and all_revoked:
        revoked = " Their OAuth tokens were revoked at the provider."
    flash(f"Deleted {plural(len(names), 'agent')}, with their credentials and tool choices: "
          f"{', '.join(names)}.{revoked}", "success")  # fmt: skip
    return redirect(url_for("agents.index"))


def _deleted(agent) -> list:
    """Record the agent's deletion and delete it (with its keys and connections); the
    revocations of its OAuth grants, to run once committed."""
    revocations = service.revocations(agent)
    audit.record(Action.AGENT_DELETED, agent, {
        "keys": len(agent.keys), "connections": len(agent.connections),
        "grants_to_revoke": len(revocations),
    })  # fmt: skip
    db.session.delete(agent)
    return revocations


@bp.get("/<int:id>/seen")
@allow(Access.AGENT_READ)
def seen(id):
    """The section "What this agent's client sees" (the agent page refreshes it with htmx
    after a card changes).

    :raise 404: no such agent. :raise 403: someone else's, for a member (audited).
    """
    return render_template("agents/_seen.html", agent=agent_in_reach(id))


@bp.context_processor
def _seen_context():
    return {"seen_by": seen_by}


def seen_by(agent) -> dict:
    """What the agent's MCP client sees: ``listed``, the entries of its ``tools/list`` in
    order, named and chosen by the code the gateway answers with (``gateway.catalog``);
    ``held``, enabled tools held back until their changed definition is reviewed; ``prompts``
    and ``resources`` (templates after them), as its prompts/list and resources/list (and
    resources/templates/list) give them (``agent_surface.Item``); ``renamed``,
    (connector name, prefix) for each connector whose prefix is an earlier name's. One
    statement."""
    built = gateway.catalog(gateway.AgentView(agent.id, agent.name, agent.keep_tool_names))
    entries = list(built.entries.values())
    renamed = {(e.connector_name, e.tool.slug) for e in entries
               if find.prefix_kept(e.connector_name, e.tool.slug)}  # fmt: skip
    surface = built.surface
    return {"listed": built.listed(), "held": [e for e in entries if e.changed],
            "renamed": sorted(renamed), "prompts": list(surface.prompts.values()),
            "resources": [*surface.resources.values(), *surface.templates.values()]}  # fmt: skip
