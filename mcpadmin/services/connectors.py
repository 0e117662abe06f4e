"""Creating, changing, disconnecting and deleting connectors, with the rules that keep
credentials where they belong.

The caller commits, then runs the returned revocations (they are outbound requests, made
after the transaction so none is held across them). A change of authentication (type or
mode) or of an OAuth server's URL drops the credentials that no longer apply and says so;
a pasted secret follows a URL to another origin only when the operator chose so.
"""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import func, select

from ..crypto import seal
from ..extensions import db
from ..models import Agent, AgentConnection, Connector
from . import lifecycle, tokens

SETTINGS = (
    "name",
    "url",
    "auth_type",
    "credential_mode",
    "api_key_header_name",
    "oauth_scopes",
    "oauth_authorization_endpoint",
    "oauth_token_endpoint",
    "oauth_registration_endpoint",
    "oauth_revocation_endpoint",
)
OAUTH_SETTINGS = tuple(s for s in SETTINGS if s.startswith("oauth_"))
# The form field asked when the origin moves while pasted secrets are stored, and its answers.
MOVED, KEEP, FORGET = "moved_secrets", "keep", "forget"


class ConnectorSecretError(ValueError):
    """The connector takes no shared token or key; the message says why."""


@dataclass
class AgentAccess:
    """One agent's use of a connector, as the connector page and the confirmations name it.
    Holds no secret."""

    agent: Agent
    connection: AgentConnection | None
    # The credential the agent uses here: its own (per agent) or the connector's (shared).
    credential: lifecycle.Presentation
    enabled: list[str]  # the tools it may call here, in catalog order

    @property
    def own_credential(self) -> bool:
        """Whether the agent holds its own credential here (deleted with the connector)."""
        return self.connection is not None and self.credential.credential in ("set", "unreadable")


@dataclass
class Saved:
    notices: list[str] = field(default_factory=list)
    revocations: list[tokens.Revocation] = field(default_factory=list)
    # The operator's answer (``KEEP`` or ``FORGET``) when pasted secrets' origin moved.
    moved_secrets: str | None = None


def origin(url: str | None) -> str:
    """``scheme://host:port`` of a URL: what a pasted secret is bound to."""
    parts = urlsplit(url or "")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def moved_secret_question(connector: Connector, data: dict) -> str | None:
    """When the URL moves to another origin while pasted secrets are stored for the old one
    (and will still be used), the question the operator must answer in ``moved_secrets``
    (``KEEP`` or ``FORGET``) before the change is saved; None when there is nothing to ask
    (no move, a new secret entered, or a choice already made)."""
    if connector.id is None or origin(connector.url) == origin(data["url"]):
        return None
    mode = data["credential_mode"] if data["auth_type"] != "none" else "shared"
    if (connector.auth_type, connector.credential_mode) != (data["auth_type"], mode):
        return None  # the credentials go anyway (see apply_settings)
    if not connector.uses_pasted_secret or data.get(MOVED) in (KEEP, FORGET):
        return None
    if connector.per_agent:
        held = sum(c.secret_enc is not None for c in connector.connections)
        if not held:
            return None
        whose = f"{held} agent{'s have' if held > 1 else ' has'} a token or key"
    else:
        if connector.secret_enc is None or data.get("secret") or data.get("clear_secret"):
            return None
        whose = "A token or key is"
    new = "" if connector.per_agent else " (or enter a new one below)"
    return (
        f"{whose} stored for {origin(connector.url)}, and the server moves to "
        f"{origin(data['url'])}. Send the stored secrets to the new host, or forget them{new}?"
    )


def apply_settings(connector: Connector, data: dict) -> Saved:
    """Copy form ``data`` onto a new or existing connector; return notices for the operator
    and the revocations of the OAuth tokens it dropped.

    ``data`` holds every name in ``SETTINGS`` plus ``secret``, ``clear_secret``,
    ``oauth_client_id``, ``oauth_client_secret``, ``clear_oauth_client`` and ``moved_secrets``
    (see ``moved_secret_question``, asked first), ``log_arguments`` (the call log keeps
    the arguments of calls, redacted) and ``members_may_use`` (members may give their agents
    its tools); a blank secret keeps the stored one.
    """
    saved = Saved()
    notices = saved.notices
    existing = connector.id is not None
    mode = data["credential_mode"] if data["auth_type"] != "none" else "shared"
    auth_changed = existing and (
        (connector.auth_type, connector.credential_mode) != (data["auth_type"], mode)
    )
    url_changed = existing and connector.url != data["url"]
    origin_moved = existing and origin(connector.url) != origin(data["url"])
    if auth_changed or (url_changed and connector.auth_type == "oauth"):
        saved.revocations = revocations(connector)
    for name in SETTINGS:
        setattr(connector, name, data.get(name) or None)
    connector.log_arguments = bool(data.get("log_arguments"))
    connector.members_may_use = bool(data.get("members_may_use"))
    if connector.auth_type == "none":
        connector.credential_mode = "shared"
    if connector.auth_type != "api_key_header":
        connector.api_key_header_name = None
    if connector.auth_type != "oauth":
        for name in OAUTH_SETTINGS:
            setattr(connector, name, None)
        connector.oauth_client_id_enc = connector.oauth_client_secret_enc = None
        connector.oauth_metadata = connector.discovery_log = None

    if auth_changed:
        _forget_all_credentials(connector)
        notices.append("Stored credentials were removed because the authentication changed.")
    elif url_changed and connector.auth_type == "oauth":
        _forget_all_credentials(connector)
        notices.append("OAuth tokens were removed because the server URL changed: connect again.")
    elif origin_moved and connector.uses_pasted_secret and data.get(MOVED) == FORGET:
        _forget_all_credentials(connector)
        notices.append(f"The stored tokens and keys were removed: enter them again for "
                       f"{origin(connector.url)}.")  # fmt: skip
        saved.moved_secrets = FORGET
    elif origin_moved and connector.uses_pasted_secret and data.get(MOVED) == KEEP:
        notices.append(f"The stored tokens and keys are now sent to {origin(connector.url)}.")
        saved.moved_secrets = KEEP
    if url_changed:
        connector.oauth_metadata = connector.discovery_log = None
        connector.protocol_era = connector.protocol_version = None

    if not connector.uses_pasted_secret or connector.per_agent or data.get("clear_secret"):
        if connector.secret_enc is not None and data.get("clear_secret"):
            notices.append("The stored token or key was removed.")
            lifecycle.apply(connector, lifecycle.Event.FORGOTTEN)
        connector.secret_enc = None
    elif data.get("secret"):
        save_secret(connector, data["secret"])

    if connector.auth_type == "oauth":
        if data.get("clear_oauth_client"):
            connector.oauth_client_id_enc = connector.oauth_client_secret_enc = None
        if data.get("oauth_client_id"):
            connector.oauth_client_id_enc = seal(data["oauth_client_id"])
        if data.get("oauth_client_secret"):
            connector.oauth_client_secret_enc = seal(data["oauth_client_secret"])

    return saved


def save_secret(connector: Connector, plaintext: str):
    """Store the shared bearer token or API key, replacing the stored one.

    :raise ConnectorSecretError: the connector is per agent, or its credential is not pasted.
    """
    if connector.per_agent or not connector.uses_pasted_secret:
        raise ConnectorSecretError(f"{connector.name} does not take a shared token or key.")
    connector.secret_enc = seal(plaintext)
    lifecycle.apply(connector, lifecycle.Event.STORED)


def agent_access(connector: Connector) -> list[AgentAccess]:
    """Every agent, in name order, with its credential state here and its enabled tools."""
    agents = db.session.scalars(select(Agent).order_by(func.lower(Agent.name), Agent.id)).all()
    connections = {c.agent_id: c for c in connector.connections}
    catalog = [t.name for t in connector.tools]
    found = []
    for agent in agents:
        connection = connections.get(agent.id)
        enabled = set(connection.enabled_tools or []) if connection else set()
        found.append(AgentAccess(agent, connection, lifecycle.present(connector, connection),
                                 [n for n in catalog if n in enabled]))  # fmt: skip
    return found


def revocations(connector: Connector) -> list[tokens.Revocation]:
    """The revocations of every OAuth grant the connector holds, shared and per agent."""
    if connector.auth_type != "oauth":
        return []
    found = [tokens.revocation(connector, connector)]
    for connection in connector.connections:
        what = f"{connection.agent.name} on {connector.name}"
        found.append(tokens.revocation(connector, connection, what))
    return [r for r in found if r is not None]


def disconnect(connector: Connector) -> list[tokens.Revocation]:
    """Forget the shared OAuth tokens (the registration and the tool list stay); return the
    revocation to run once committed."""
    found = [r for r in [tokens.revocation(connector, connector)] if r is not None]
    lifecycle.forget(connector)
    return found


def _forget_all_credentials(connector):
    lifecycle.forget(connector)
    for connection in connector.connections:
        lifecycle.forget(connection)
