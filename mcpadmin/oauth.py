"""OAuth Connect: start the flow (shared from the connectors index, per agent from the agent
page), the provider's callback, disconnect, and mcpadmin's client ID metadata document.

Who may: an agent's own account, whoever reaches the agent and the connector
(``roles.agent_in_reach``, ``roles.connector_in_reach``); the shared credential, owners and
operators. The callback checks again, before anything is stored: the person finishing must
still reach what the flow was started for.
"""

from flask import Blueprint, abort, flash, g, jsonify, redirect, request, url_for

from . import flashes
from .agents import card_url
from .extensions import db
from .filters import plural
from .models import Agent, Connector
from .protocol.registration import metadata_document
from .roles import Access, agent_in_reach, allow, connector_in_reach, permits, refusal
from .services import audit, clients, connect
from .services import connectors as connectors_service

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


@bp.post("/connect/<int:connector_id>")
@allow(Access.AGENT_CHANGE)
def start(connector_id):
    """Discover, register and send the browser to the provider's consent page; with
    ``agent_id`` in the form, for that agent's own account."""
    connector = db.get_or_404(Connector, connector_id)
    agent_id = request.form.get("agent_id", type=int)
    agent = db.get_or_404(Agent, agent_id) if agent_id else None
    _check_reach(connector, agent)
    try:
        url = connect.start(connector, agent, g.admin.id)
    except connect.ConnectError as exc:
        db.session.commit()  # keep the discovery log, so the connector page shows the attempts
        flash(f"Could not connect {connector.name}: {exc}", "error")
        return _leave(_back(exc.agent_id, connector.id))
    db.session.commit()
    return _leave(url)


@bp.get("/callback")
@allow(Access.SIGNED_IN)
def callback():
    """Where the provider sends the browser back: check, redeem, store, sync, return to the
    page the flow started from (the agent page when it carried an agent) with a message.

    :raise 403: the person no longer reaches the agent or connector, or (shared) no longer
        operates (audited; nothing stored, the pending authorization used up).
    """
    try:
        finished = connect.finish(request.args, g.admin.id, check=_check_reach)
    except connect.ConnectError as exc:
        db.session.commit()  # the pending authorization stays used up
        flash(str(exc), "error")
        return redirect(_back(exc.agent_id))
    if finished.restart:
        db.session.commit()
        try:
            url = connect.start(finished.connector, finished.agent, g.admin.id, retried=True)
        except connect.ConnectError as exc:
            db.session.commit()
            flash(f"Could not connect {finished.connector.name}: {exc}", "error")
            return redirect(_back(exc.agent_id, finished.connector.id))
        db.session.commit()
        return redirect(url)
    db.session.commit()
    connector, agent = finished.connector, finished.agent
    sync_error = connect.first_sync(finished)
    db.session.commit()
    who = f"{agent.name} on {connector.name}" if agent else connector.name
    if sync_error:
        flash(f"Connected {who}, but the tool sync failed: {sync_error}", "error")
    else:
        tools = plural(len(connector.tools), "tool")
        flash(f"Connected {who}: {tools} available.", "success")
    return redirect(_back(agent.id if agent else None, connector.id))


@bp.post("/disconnect/<int:connector_id>")
@allow(Access.OPERATE)
def disconnect(connector_id):
    """Revoke (where the provider offers it) and delete the shared OAuth tokens; the client
    registration and the tool list stay."""
    connector = db.get_or_404(Connector, connector_id)
    if connector.auth_type != "oauth" or connector.per_agent:
        abort(404)
    revocations = connectors_service.disconnect(connector)
    audit.record(audit.Action.CONNECTOR_DISCONNECTED, connector,
                 {"grants_to_revoke": len(revocations)})  # fmt: skip
    db.session.commit()
    if flashes.revoke(revocations):
        revoked = "; its tokens were revoked" if revocations else ""
        flash(f"{connector.name} disconnected{revoked}.", "info")
    return _leave(url_for("connectors.index"))


@bp.get("/client-metadata.json")
@allow(Access.PUBLIC)
def client_metadata():
    """mcpadmin's client ID metadata document (public), when served over https."""
    client_id = clients.metadata_document_url()
    if client_id is None:
        abort(404)
    response = jsonify(metadata_document(client_id, clients.redirect_uri()))
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


def _check_reach(connector, agent):
    """Refuse (403, audited) unless the signed-in person may connect ``agent``'s own account
    on ``connector`` or, without an agent, the connector's shared credential."""
    if agent is not None:
        agent_in_reach(agent.id)
        connector_in_reach(connector)
    elif not permits(g.admin, Access.OPERATE):
        abort(refusal("Only owners and operators can connect a shared credential."))


def _back(agent_id, connector_id=None) -> str:
    """The page the flow started from: the agent's (if it still exists; at the connector's
    card, which shows the message, when known), else the connectors index, or for those who
    do not see connectors (members) their agents."""
    if agent_id and db.session.get(Agent, agent_id):
        if connector_id:
            return card_url(agent_id, connector_id)
        return url_for("agents.update", id=agent_id)
    return url_for("connectors.index" if permits(g.admin, Access.READ) else "agents.index")


def _leave(url):
    """Leave the page: ``HX-Redirect`` for htmx (a cross-origin 302 inside an XHR is followed
    invisibly and the click seems to do nothing), a plain redirect otherwise."""
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": url}
    return redirect(url)
