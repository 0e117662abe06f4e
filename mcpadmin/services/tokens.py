"""Fresh OAuth access tokens for a (connector, agent) pair, refreshed once across threads and
processes; and what happens when a server refuses a token.

CONTRACT (implementation in progress; the names and signatures below are stable):
"""

from ..models import AgentConnection, Connector


class TokenError(Exception):
    """A token request failed; ``error`` is the OAuth error code (or "unavailable")."""

    def __init__(self, error: str, description: str = ""):
        super().__init__(description or error)
        self.error = error
        self.description = description


class NeedsReconnect(TokenError):
    """The grant is gone (``invalid_grant``, no refresh token, or the server keeps refusing
    the token): the operator must Connect again. The holder is already marked."""


def access_token(
    connector: Connector, connection: AgentConnection | None, force_refresh: bool = False
) -> str | None:
    """A usable access token for the pair, refreshing it first when it expires within five
    minutes (or always with ``force_refresh``, after a 401). ``None`` when nothing is stored.

    Commits its own refresh in a separate transaction; the caller's session is not committed.

    :raise NeedsReconnect: the refresh token is dead; :raise TokenError: the token endpoint is
        down or answered an error (the stored tokens are kept).
    """
    raise NotImplementedError


def needs_reconnect(connector: Connector, connection: AgentConnection | None, reason: str):
    """Mark the holder ``needs_reconnect`` with ``reason`` (a 401 after a refresh). The caller
    commits. Nothing is deleted."""
    raise NotImplementedError


def step_up(connector: Connector, connection: AgentConnection | None, www_authenticate: str):
    """Record the scope a ``403 insufficient_scope`` challenge asked for and mark the holder
    ``needs_reconnect``, so the next Connect asks for the union of scopes. The caller commits."""
    raise NotImplementedError
