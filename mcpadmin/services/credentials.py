"""Which credential a (connector, agent) pair uses, what state it is in, and how it is sent.

Credential kinds dispatch through small tables keyed by ``auth_type``, so adding a kind is one
entry per table rather than a branch in every view.
"""

from ..crypto import Sealed, secret_state
from ..models import AgentConnection, Connector


def _no_secret(holder):
    return None


def _pasted_secret(holder):
    return holder.secret_enc


def _oauth_access_token(holder):
    return holder.access_token_enc


# The stored value that authenticates requests, read from a connector (shared mode) or an
# agent connection (per-agent mode).
STORED_CREDENTIAL = {
    "none": _no_secret,
    "bearer": _pasted_secret,
    "api_key_header": _pasted_secret,
    "oauth": _oauth_access_token,
}


def _no_headers(connector, value):
    return {}


def _bearer_headers(connector, value):
    return {"Authorization": f"Bearer {value}"}


def _api_key_headers(connector, value):
    return {connector.api_key_header_name: value}


# How a plaintext credential travels on an MCP request.
HEADERS = {
    "none": _no_headers,
    "bearer": _bearer_headers,
    "api_key_header": _api_key_headers,
    "oauth": _bearer_headers,
}


def holder(connector: Connector, connection: AgentConnection | None):
    """Where the credential lives: the connection in per-agent mode, else the connector."""
    return connection if connector.per_agent else connector


def stored_credential(connector: Connector, connection: AgentConnection | None) -> Sealed | None:
    place = holder(connector, connection)
    return None if place is None else STORED_CREDENTIAL[connector.auth_type](place)


def credential_state(connector: Connector, connection: AgentConnection | None = None) -> str:
    """``"not_needed"``, ``"missing"``, ``"set"`` or ``"unreadable"`` for the pair."""
    if connector.auth_type == "none":
        return "not_needed"
    return secret_state(stored_credential(connector, connection))


def auth_headers(
    connector: Connector, connection: AgentConnection | None = None, force_refresh: bool = False
) -> dict:
    """The headers that authenticate an MCP request; ``{}`` when nothing is stored.

    OAuth tokens are refreshed first when they expire soon, or always with ``force_refresh``
    (after a 401).

    :raise crypto.UnreadableSecret: the stored credential cannot be decrypted.
    :raise tokens.NeedsReconnect, tokens.TokenError: an OAuth refresh failed.
    """
    if connector.auth_type == "oauth":
        from .tokens import access_token  # tokens builds on this module

        token = access_token(connector, connection, force_refresh)
        return _bearer_headers(connector, token) if token else {}
    sealed = stored_credential(connector, connection)
    if sealed is None:
        return {}
    return HEADERS[connector.auth_type](connector, sealed.reveal())
