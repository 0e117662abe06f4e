"""Creating, changing and deleting connectors, with the rules that keep credentials coherent.

The caller commits. A change of authentication (type or mode) or of an OAuth server's URL
drops the credentials that no longer apply and says so, instead of keeping tokens that would
be sent to the wrong place.
"""

from ..crypto import seal
from ..models import Connector
from .credentials import credential_state

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


def apply_settings(connector: Connector, data: dict) -> list[str]:
    """Copy form ``data`` onto a new or existing connector; return notices for the operator.

    ``data`` holds every name in ``SETTINGS`` plus ``secret``, ``clear_secret``,
    ``oauth_client_id``, ``oauth_client_secret`` and ``clear_oauth_client``; a blank secret
    keeps the stored one.
    """
    notices = []
    existing = connector.id is not None
    mode = data["credential_mode"] if data["auth_type"] != "none" else "shared"
    auth_changed = existing and (
        (connector.auth_type, connector.credential_mode) != (data["auth_type"], mode)
    )
    url_changed = existing and connector.url != data["url"]
    for name in SETTINGS:
        setattr(connector, name, data.get(name) or None)
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
    if url_changed:
        connector.oauth_metadata = connector.discovery_log = None
        connector.protocol_era = connector.protocol_version = None

    if not connector.uses_pasted_secret or connector.per_agent or data.get("clear_secret"):
        if connector.secret_enc is not None and data.get("clear_secret"):
            notices.append("The stored token or key was removed.")
        connector.secret_enc = None
    elif data.get("secret"):
        connector.secret_enc = seal(data["secret"])

    if connector.auth_type == "oauth":
        if data.get("clear_oauth_client"):
            connector.oauth_client_id_enc = connector.oauth_client_secret_enc = None
        if data.get("oauth_client_id"):
            connector.oauth_client_id_enc = seal(data["oauth_client_id"])
        if data.get("oauth_client_secret"):
            connector.oauth_client_secret_enc = seal(data["oauth_client_secret"])

    connector.status = _status(connector)
    return notices


def _forget_all_credentials(connector):
    connector.forget_credentials()
    for connection in connector.connections:
        connection.forget_credentials()
        connection.status = "not_connected"


def _status(connector):
    """The status that follows from what is stored (sync and OAuth refine it later)."""
    if connector.per_agent:
        return "not_connected"
    state = credential_state(connector)
    if state in ("not_needed", "set"):
        keep = connector.status in ("needs_reconnect", "error") and connector.auth_type == "oauth"
        return connector.status if keep else "connected"
    return "not_connected"
