"""Listing a server's tools (then its resources, templates and prompts, in the same
session) with the right credential: the pair's headers, one retry with a
refreshed OAuth token after a 401, and every refusal turned into a ``SyncError`` whose
sentence the operator reads (the holder is moved through ``lifecycle`` where the credential
is at fault)."""

from ..crypto import UnreadableSecret
from ..models import AgentConnection, Connector
from ..protocol import mcp
from . import lifecycle, outbound, tokens
from .credentials import auth_headers
from .lifecycle import Event


class SyncError(Exception):
    """The listing failed; ``str()`` is the sentence stored as the holder's ``last_error``.
    The previous tool list is kept. ``event`` is how the holder's lifecycle moves."""

    def __init__(self, message: str, event: Event = Event.FAILED):
        super().__init__(message)
        self.event = event

    @property
    def expected(self) -> bool:
        """Nothing is wrong: a per-agent server waits for an agent's credential."""
        return self.event == Event.NO_AGENT_YET


NO_AGENT_YET = ("No agent has connected yet: the server lists its tools only with an agent's "
                "credential, so they are listed once an agent connects.")  # fmt: skip


def list_tools(connector: Connector, connection: AgentConnection | None) -> mcp.Listing:
    """The server's listing, tools and the rest it declared, with the pair's credential
    (none when nothing is stored). The capabilities stored at the last sync spare a
    remembered modern server the ``server/discover``.

    :raise SyncError: the listing failed; a dead grant or a step-up was already recorded on
        the holder.
    """
    headers = _headers(connector, connection)
    client = mcp.Client(
        outbound.http(),
        connector.url,
        headers,
        era=connector.protocol_era,
        version=connector.protocol_version,
        capabilities=connector.server_capabilities,
    )
    try:
        try:
            return client.list_tools(surface=True)
        except mcp.Unauthorized:
            if connector.auth_type != "oauth" or not headers:
                raise
            client.auth = _headers(connector, connection, force_refresh=True)
            return client.list_tools(surface=True)
    except mcp.Unauthorized as exc:
        if connector.auth_type == "oauth" and headers:
            reason = "The server refused the access token even after a refresh: Reconnect."
            raise SyncError(reason, Event.GRANT_DEAD) from exc
        if connector.per_agent and connection is None and not headers:
            raise SyncError(NO_AGENT_YET, Event.NO_AGENT_YET) from exc
        raise SyncError(_unauthorized(connector, connection, bool(headers))) from exc
    except mcp.Forbidden as exc:
        place = lifecycle.holder(connector, connection)
        if connector.auth_type == "oauth" and exc.insufficient_scope and place is not None:
            event = tokens.step_up(place, exc.www_authenticate)
            raise SyncError(place.last_error, event) from exc
        raise SyncError(f"{exc} The credential is valid but not allowed to list tools.") from exc
    except mcp.McpError as exc:
        raise SyncError(str(exc)) from exc


def _headers(connector, connection, force_refresh=False) -> dict:
    try:
        return auth_headers(connector, connection, force_refresh=force_refresh)
    except UnreadableSecret:
        raise SyncError("The stored credential can no longer be decrypted: re-enter it.") from None
    except tokens.NeedsReconnect as exc:
        message = str(exc) or "The authorization expired: Reconnect."
        raise SyncError(message, Event.GRANT_DEAD) from exc
    except tokens.TokenError as exc:
        raise SyncError(f"The access token could not be refreshed: {exc}") from exc


def _unauthorized(connector, connection, had_credential) -> str:
    if had_credential:
        what = "token" if connector.auth_type in ("bearer", "oauth") else "API key"
        return f"The server refused the {what} (401 Unauthorized): check or replace it."
    if connector.per_agent:
        return ("The server lists tools only with a credential (401 Unauthorized): this agent "
                "must connect first.")  # fmt: skip
    return ("The server requires authentication (401 Unauthorized): choose how the connector "
            "authenticates and enter the credential.")  # fmt: skip
