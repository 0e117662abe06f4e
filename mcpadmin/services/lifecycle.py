"""The lifecycle of a credential, shared (on the connector) or per agent (on the agent
connection): its states, the events that move it, and what the operator sees and can do next.

This module is the only code that writes a holder's ``status`` and ``last_error``; pages
only render what ``present`` returns. The transitions are a table (``TRANSITIONS``) so every
state × event pair is decided in one place and tested as a table.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from ..crypto import secret_state
from ..models import AgentConnection, Connector


class Status(StrEnum):
    """What is stored in ``status``."""

    NOT_CONNECTED = "not_connected"
    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"
    ERROR = "error"


class Event(StrEnum):
    STORED = "stored"  # a credential was saved or obtained (Connect, pasted secret)
    SYNCED = "synced"  # the server accepted the credential (a listing worked)
    FAILED = "failed"  # a sync failed for a reason the credential may not cause
    UNAVAILABLE = "unavailable"  # the token endpoint is down: the credential is kept as it was
    GRANT_DEAD = "grant_dead"  # invalid_grant, no refresh token, 401 after a refresh
    SCOPE_NEEDED = "scope_needed"  # 403 insufficient_scope naming a scope not yet granted
    REFUSED = "refused"  # 403 for a scope already held: reconnecting would not help
    ISSUER_CHANGED = "issuer_changed"  # the connector now uses another authorization server
    FORGOTTEN = "forgotten"  # disconnect, auth change, origin change
    # An agent's tool call: the server answered it (the credential works), or it was down, did
    # not answer in time, or refused the stored token or key (401).
    CALL_ANSWERED = "call_answered"
    CALL_FAILED = "call_failed"
    # A per-agent server lists tools only with an agent's credential, and no agent has one yet:
    # expected, nothing is wrong.
    NO_AGENT_YET = "no_agent_yet"


S, E = Status, Event
TRANSITIONS: dict[tuple[Status, Event], Status] = {}
for _state in Status:
    TRANSITIONS[_state, E.STORED] = S.CONNECTED
    # A token that still works does not undo a dead grant: only new tokens do.
    TRANSITIONS[_state, E.SYNCED] = _state if _state == S.NEEDS_RECONNECT else S.CONNECTED
    TRANSITIONS[_state, E.GRANT_DEAD] = S.NEEDS_RECONNECT
    TRANSITIONS[_state, E.SCOPE_NEEDED] = S.NEEDS_RECONNECT
    TRANSITIONS[_state, E.FORGOTTEN] = S.NOT_CONNECTED
    TRANSITIONS[_state, E.UNAVAILABLE] = _state
    # A failure does not hide that the operator must reconnect; otherwise it is an error.
    TRANSITIONS[_state, E.FAILED] = S.NEEDS_RECONNECT if _state == S.NEEDS_RECONNECT else S.ERROR
    # Reconnecting would not help: never ask for it.
    TRANSITIONS[_state, E.REFUSED] = S.ERROR
    # Nothing to re-point when nothing was granted.
    TRANSITIONS[_state, E.ISSUER_CHANGED] = (
        S.NOT_CONNECTED if _state == S.NOT_CONNECTED else S.NEEDS_RECONNECT
    )
    # A call tells as much as a sync: an answer is a working credential (an error recovers; a
    # dead grant stays), a failure an error.
    TRANSITIONS[_state, E.CALL_ANSWERED] = TRANSITIONS[_state, E.SYNCED]
    TRANSITIONS[_state, E.CALL_FAILED] = TRANSITIONS[_state, E.FAILED]
    TRANSITIONS[_state, E.NO_AGENT_YET] = S.NOT_CONNECTED
del _state


def holder(connector: Connector, connection: AgentConnection | None):
    """Where the pair's credential lives: the connection in per-agent mode, else the
    connector (None: a per-agent connector and an agent with no connection row)."""
    return connection if connector.per_agent else connector


def apply(place, event: Event, message: str | None = None):
    """Move ``place`` (a connector or an agent connection) by ``event``; ``message`` is the
    sentence stored as ``last_error`` (cleared by the events that mean success or a reset).
    The caller commits."""
    place.status, place.last_error = moved((place.status, place.last_error), event, message)


def moved(state: tuple, event: Event, message: str | None = None) -> tuple[Status, str | None]:
    """The ``(status, last_error)`` that ``apply`` leaves from ``state`` (the same pair)."""
    status, last_error = state
    after = TRANSITIONS[Status(status or S.NOT_CONNECTED), event]
    if message is not None or after != S.NEEDS_RECONNECT:
        last_error = message  # a Needs reconnect keeps its reason until replaced
    return after, last_error


def forget(place, message: str | None = None):
    """Drop ``place``'s credential and grant (the caller captured its ``tokens.Revocation``
    first, to run once committed)."""
    place.forget_credentials()
    apply(place, E.FORGOTTEN, message)


class Action(StrEnum):
    CONNECT = "connect"
    RECONNECT = "reconnect"
    SYNC = "sync"
    ENTER_SECRET = "enter_secret"  # noqa: S105 (paste a token or key: card or connector form)
    DISCONNECT = "disconnect"


class Shown(StrEnum):
    """What the operator reads as the credential's state (a badge)."""

    NO_CREDENTIAL = "no_credential"  # nothing stored yet
    NOT_SYNCED = "not_synced"  # usable, never checked against the server
    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"
    ERROR = "error"
    UNREADABLE = "unreadable"  # stored, but no key here decrypts it
    PER_AGENT = "per_agent"  # a per-agent connector as a whole: see each agent


BADGES = {
    Shown.NO_CREDENTIAL: "Not connected",
    Shown.NOT_SYNCED: "Not synced yet",
    Shown.CONNECTED: "Connected",
    Shown.NEEDS_RECONNECT: "Needs reconnect",
    Shown.ERROR: "Error",
    Shown.UNREADABLE: "Credential must be re-entered",
    Shown.PER_AGENT: "Per-agent",
}


@dataclass
class Presentation:
    """Everything a page needs to show one credential: no secret, no decisions left."""

    shown: Shown
    badge: str
    message: str | None = None  # one sentence under the badge
    actions: list[Action] = field(default_factory=list)
    # "not_needed", "missing", "set" or "unreadable"; "hidden" in ``status_only``.
    credential: str = "missing"

    @property
    def ready(self) -> bool:
        """Whether tools can be chosen and called with this credential."""
        return self.shown in (Shown.CONNECTED, Shown.NOT_SYNCED, Shown.ERROR)

    def can(self, action: str) -> bool:
        return Action(action) in self.actions

    def status_only(self) -> "Presentation":
        """The badge alone: no message, no action, nothing said about the credential (what a
        member is shown of a shared credential, which is never theirs to see or change)."""
        return Presentation(self.shown, self.badge, credential="hidden")


def stored_value(connector: Connector, place):
    """The sealed value that authenticates requests for ``place`` (None when nothing is)."""
    if place is None or connector.auth_type == "none":
        return None
    return place.access_token_enc if connector.auth_type == "oauth" else place.secret_enc


def credential_state(connector: Connector, connection: AgentConnection | None = None) -> str:
    """``"not_needed"``, ``"missing"``, ``"set"`` or ``"unreadable"`` for the pair."""
    if connector.auth_type == "none":
        return "not_needed"
    return secret_state(stored_value(connector, holder(connector, connection)))


def for_connector(connector: Connector) -> Presentation:
    """The connector as a whole (index row, connector page): its shared credential, or, for a
    per-agent connector, a pointer to the agents' pages."""
    if connector.per_agent:
        return Presentation(Shown.PER_AGENT, BADGES[Shown.PER_AGENT], "See each agent's page.",
                            [Action.SYNC], credential="not_needed")  # fmt: skip
    return present(connector, None)


def present(connector: Connector, connection: AgentConnection | None) -> Presentation:
    """What the operator sees for the pair's credential and may do next: the connector's own
    in shared mode, ``connection``'s (None: not created yet) in per-agent mode."""
    place = holder(connector, connection)
    credential = credential_state(connector, connection)
    status = Status((place.status if place is not None else None) or S.NOT_CONNECTED)
    error = place.last_error if place is not None else None
    oauth = connector.auth_type == "oauth"
    disconnect = [Action.DISCONNECT] if oauth or connector.per_agent else []

    def shown(kind, message=None, actions=()):
        return Presentation(kind, BADGES[kind], message, list(actions), credential)

    if credential == "unreadable":
        what = "tokens" if oauth else "token or key"
        return shown(
            Shown.UNREADABLE,
            f"The stored {what} can no longer be decrypted and must be "
            + ("renewed: connect again." if oauth else "re-entered."),
            [Action.RECONNECT if oauth else Action.ENTER_SECRET],
        )
    if oauth and status == S.NEEDS_RECONNECT:
        return shown(
            Shown.NEEDS_RECONNECT,
            error or "The authorization expired: connect again.",
            [Action.RECONNECT, *([Action.DISCONNECT] if credential == "set" else [])],
        )
    if credential == "missing":
        if oauth:
            return shown(Shown.NO_CREDENTIAL, None, [Action.CONNECT])
        what = "token" if connector.auth_type == "bearer" else "API key"
        return shown(Shown.NO_CREDENTIAL, f"No {what} is stored yet.", [Action.ENTER_SECRET])
    if status == S.ERROR:
        return shown(Shown.ERROR, error, [Action.SYNC, *disconnect])
    last_synced = place.last_synced_at if place is not None else None
    if last_synced is None:
        message = (
            "The server has not been contacted yet."
            if credential == "not_needed"
            else "A credential is in place; the server has not been contacted yet."
        )
        return shown(Shown.NOT_SYNCED, message, [Action.SYNC, *disconnect])
    return shown(Shown.CONNECTED, None, [Action.SYNC, *disconnect])
