"""The admin audit trail: one ``AuditEvent`` per thing an admin did (or tried: a failed
sign-in), with who, when, from where, to what, and what changed. The caller commits, so a
change and its record land in the same transaction.

Who and where come from the request when there is one (``g.admin``, and ``g.address``: the
client address as the login guard read it, through ``TRUSTED_PROXY_HOPS``), else the event is
the shell's: admin ``"shell"``, no address, the OS user in the details.

``details`` never holds a secret: secret fields are written as ``"set"``, ``"changed"`` or
``"cleared"`` (see ``changes``), and any other value under a secret-looking name is replaced
before it is stored. Every value is capped (``MAX_TEXT`` characters, ``MAX_ITEMS`` items).
"""

import getpass
from enum import StrEnum

from flask import g, has_app_context, has_request_context

from ..extensions import db
from ..models import AdminUser, Agent, AgentKey, AuditEvent, Connector, WebhookEndpoint
from . import lifecycle

SHELL = "shell"
MAX_TEXT = 200  # characters of one value
MAX_ITEMS = 50  # entries of one list or object
# What a secret field's change is written as; never its value.
SET, CHANGED, CLEARED = "set", "changed", "cleared"
SECRET_MARKERS = frozenset({SET, CHANGED, CLEARED})
# Detail names whose values could only be secrets (compared lower-case, exactly: a name
# such as ``oauth_token_endpoint`` holds a URL).
SECRET_NAMES = frozenset({
    "secret", "password", "token", "access_token", "refresh_token", "authorization", "api_key",
    "key_secret", "client_secret", "oauth_client_secret", "oauth_client_id", "credential",
})  # fmt: skip
REDACTED = "[redacted]"


class Action(StrEnum):
    """Every action the trail records (``AuditEvent.action``)."""

    SIGNED_IN = "auth.signed_in"
    SIGN_IN_FAILED = "auth.sign_in_failed"
    SIGNED_OUT = "auth.signed_out"
    SIGNED_OUT_EVERYWHERE = "auth.signed_out_everywhere"
    ADMIN_CREATED = "admin.created"
    PASSWORD_CHANGED = "admin.password_changed"  # noqa: S105 (an action name)
    CONNECTOR_CREATED = "connector.created"
    CONNECTOR_UPDATED = "connector.updated"
    CONNECTOR_DELETED = "connector.deleted"
    CONNECTOR_CONNECTED = "connector.connected"
    CONNECTOR_RECONNECTED = "connector.reconnected"
    CONNECTOR_DISCONNECTED = "connector.disconnected"
    # The operator's answer when a pasted secret's server moved to another origin.
    SECRETS_MOVED = "connector.secrets_moved"
    TOOLS_SYNCED = "connector.tools_synced"
    AGENT_CREATED = "agent.created"
    AGENT_UPDATED = "agent.updated"
    AGENT_DELETED = "agent.deleted"
    # An agent's own (per-agent) connection to a connector.
    AGENT_CONNECTED = "agent.connected"
    AGENT_RECONNECTED = "agent.reconnected"
    AGENT_DISCONNECTED = "agent.disconnected"
    TOOLS_CHOSEN = "agent.tools_chosen"
    TOOL_REVIEWED = "agent.tool_reviewed"
    PROMPTS_CHOSEN = "agent.prompts_chosen"
    RESOURCES_CHOSEN = "agent.resources_chosen"
    PROMPT_REVIEWED = "agent.prompt_reviewed"
    KEY_CREATED = "agent_key.created"
    KEY_REVOKED = "agent_key.revoked"
    KEYS_ROTATED = "encryption_keys.rotated"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_TESTED = "webhook.tested"
    # A request or command the actor's role does not allow (``roles``).
    ACCESS_REFUSED = "access.refused"
    PERSON_INVITED = "person.invited"
    INVITE_REVOKED = "person.invite_revoked"
    PERSON_JOINED = "person.joined"
    ROLE_CHANGED = "person.role_changed"
    PERSON_DEACTIVATED = "person.deactivated"
    PERSON_REACTIVATED = "person.reactivated"
    AGENT_REASSIGNED = "agent.reassigned"
    SSO_SETTINGS_CHANGED = "settings.sso_changed"


# Target kinds: (type name, the attribute that names one).
TARGETS = {
    Connector: ("connector", "name"),
    Agent: ("agent", "name"),
    AgentKey: ("agent_key", "label"),
    AdminUser: ("admin", "username"),
    WebhookEndpoint: ("webhook", "label"),
}


def record(action: Action, target=None, details: dict | None = None, admin_name=None):
    """Add one event to the session and return it; the caller commits.

    ``target`` is a ``Connector``, ``Agent``, ``AgentKey``, ``AdminUser`` or
    ``WebhookEndpoint`` (flushed first if it has no id yet, so an ``IntegrityError`` of a new
    row surfaces here, in the caller's transaction). ``admin_name`` names who acted when no
    admin is signed in (a failed sign-in's username, the admin a setup link creates).

    :raise ValueError: ``action`` is not an ``Action``, or the target is of another kind.
    """
    action = Action(action)
    details = dict(details or {})
    address = None
    # The person acting: signed in, or named by a shell command's ``--as``.
    admin = g.get("admin") if has_app_context() else None
    role = admin.role if admin is not None else None
    if has_request_context():
        address = g.get("address")
        admin_name = admin_name or (admin.username if admin is not None else None)
    else:
        admin_name = admin_name or (admin.username if admin is not None else SHELL)
        details.setdefault("os_user", _os_user())
    event = AuditEvent(
        action=action.value,
        admin_name=_text(admin_name, 80),
        actor_role=role,
        address=_text(address, 64),
        details=capped(details) or None,
    )
    if target is not None:
        kind, name = _target(target)
        if target.id is None:
            db.session.flush()
        event.target_type, event.target_id = kind, target.id
        event.target_name = _text(getattr(target, name), MAX_TEXT)
    db.session.add(event)
    return event


def needed_reconnect(connector: Connector, connection=None) -> bool:
    """Whether the pair's credential asked to be renewed (Needs reconnect, or no longer
    readable): a Connect now is a Reconnect. Ask before storing the new credential."""
    shown = lifecycle.present(connector, connection).shown
    return shown in (lifecycle.Shown.NEEDS_RECONNECT, lifecycle.Shown.UNREADABLE)


def connected(connector: Connector, agent: Agent | None, reconnect: bool, details: dict):
    """Record a Connect or Reconnect: of the connector's shared credential (``agent`` None),
    or of the agent's own connection to it."""
    if agent is None:
        action = Action.CONNECTOR_RECONNECTED if reconnect else Action.CONNECTOR_CONNECTED
        return record(action, connector, details)
    action = Action.AGENT_RECONNECTED if reconnect else Action.AGENT_CONNECTED
    return record(action, agent, {"connector": connector.name, **details})


def synced(connector: Connector, outcomes) -> AuditEvent:
    """Record a Sync started from a page: each sync's agent (None: the shared credential),
    whether it worked and its message (``fanout`` outcomes)."""
    results = [{"agent": o.agent, "ok": o.ok, "message": o.message} for o in outcomes]
    return record(Action.TOOLS_SYNCED, connector, {"results": results})


def snapshot(obj, fields) -> dict:
    """The current values of ``fields`` on ``obj``, for ``changes`` after an edit."""
    return {name: getattr(obj, name) for name in fields}


def changes(before: dict, obj, secret_fields=()) -> dict:
    """``{field: [before, after]}`` for each field of ``before`` whose value on ``obj`` is now
    different; a secret field (a sealed column) as ``"set"``, ``"changed"`` or ``"cleared"``
    instead, never its value. Empty when nothing changed."""
    found = {}
    for name, old in before.items():
        new = getattr(obj, name)
        if name in secret_fields:
            marker = secret_change(old, new)
            if marker:
                found[name.removesuffix("_enc")] = marker
        elif old != new:
            found[name] = [old, new]
    return found


def secret_change(old, new) -> str | None:
    """How a sealed value moved: set, changed, cleared, or None (kept as it was)."""
    if old is None and new is None or old is new:
        return None
    if old is None:
        return SET
    return CLEARED if new is None else CHANGED


def capped(value):
    """``value`` as plain JSON with every text cut to ``MAX_TEXT`` characters, lists and
    objects to ``MAX_ITEMS`` entries (a last entry says how many were left out), and values
    under secret-looking names (``SECRET_NAMES``) redacted unless they are a change marker."""
    if isinstance(value, dict):
        items = list(value.items())
        result = {}
        for key, item in items[:MAX_ITEMS]:
            key = _text(str(key), MAX_TEXT)
            secret = key.lower() in SECRET_NAMES and item not in SECRET_MARKERS
            result[key] = REDACTED if secret else capped(item)
        if len(items) > MAX_ITEMS:
            result["…"] = f"{len(items) - MAX_ITEMS} more"
        return result
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        result = [capped(item) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            result.append(f"… {len(items) - MAX_ITEMS} more")
        return result
    if value is None or isinstance(value, bool | int | float):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return _text(str(value), MAX_TEXT)


def _target(target) -> tuple[str, str]:
    for model, described in TARGETS.items():
        if isinstance(target, model):
            return described
    raise ValueError(f"An audit event cannot name a {type(target).__name__}.")


def _text(value, limit):
    if value is None:
        return None
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's arbitrary user)
        return None
