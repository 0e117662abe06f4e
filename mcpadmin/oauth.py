"""OAuth Connect: starting the authorization flow and the callback.

The flow itself (discovery, registration, PKCE, token exchange) arrives with the OAuth issue;
until then Connect explains that instead of failing silently.
"""

from flask import Blueprint, flash, redirect, request, url_for

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


@bp.post("/connect/<int:connector_id>")
def connect(connector_id):
    """Start Connect for a connector (shared) or, with ``agent_id``, for one agent."""
    agent_id = request.form.get("agent_id", type=int)
    flash("OAuth Connect is not available in this version of mcpadmin yet.", "error")
    if agent_id:
        return redirect(url_for("agents.update", id=agent_id))
    return redirect(url_for("connectors.index"))
