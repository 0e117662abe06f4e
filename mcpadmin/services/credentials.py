"""How a (connector, agent) pair's credential travels on an MCP request.

Credential kinds dispatch through a table keyed by ``auth_type``, so adding a kind is one
entry rather than a branch in every caller. Which holder has the credential and what state
it is in is ``lifecycle``'s business.
"""

from ..models import AgentConnection, Connector
from . import lifecycle, tokens


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


def auth_headers(
    connector: Connector, connection: AgentConnection | None = None, force_refresh: bool = False
) -> dict:
    """The headers that authenticate an MCP request; ``{}`` when nothing is stored.

    OAuth tokens are refreshed first when they expire soon, or with ``force_refresh`` (after
    a 401) unless another worker already replaced the refused one.

    :raise crypto.UnreadableSecret: the stored credential cannot be decrypted.
    :raise tokens.NeedsReconnect, tokens.TokenError: an OAuth refresh failed.
    """
    if connector.auth_type == "oauth":
        token = tokens.access_token(connector, connection, force_refresh)
        return _bearer_headers(connector, token) if token else {}
    sealed = lifecycle.stored_value(connector, lifecycle.holder(connector, connection))
    if sealed is None:
        return {}
    return HEADERS[connector.auth_type](connector, sealed.reveal())
