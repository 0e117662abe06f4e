"""An agent's connections: per-agent credentials and its choices of tools, prompts and
resources. The caller commits."""

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload

from ..crypto import seal
from ..extensions import db
from ..models import (
    ALL_RESOURCES,
    AdminUser,
    Agent,
    AgentConnection,
    CatalogItem,
    Connector,
    ItemKind,
    Tool,
)
from . import lifecycle, tokens


class AgentConnectionError(ValueError):
    """The action does not apply to this connector; the message says why."""


@dataclass
class Card:
    """What the agent page shows for one connector. Holds no secret."""

    connector: Connector
    connection: AgentConnection | None
    # The credential this agent uses here: its own (per agent) or the connector's (shared).
    credential: lifecycle.Presentation
    tools: list[Tool] = field(default_factory=list)  # what this agent is offered
    enabled: set[str] = field(default_factory=set)
    # The connector's prompts, resources and resource templates (``CatalogItem`` rows), and
    # the prompt names and resource keys (``ALL_RESOURCES`` for all) the agent may use.
    prompts: list[CatalogItem] = field(default_factory=list)
    resources: list[CatalogItem] = field(default_factory=list)
    templates: list[CatalogItem] = field(default_factory=list)
    enabled_prompts: set[str] = field(default_factory=set)
    enabled_resources: set[str] = field(default_factory=set)

    @property
    def all_resources(self) -> bool:
        return ALL_RESOURCES in self.enabled_resources

    @property
    def synced_surface(self) -> bool:
        """Whether a sync has recorded what the server offers besides tools."""
        return self.connector.server_capabilities is not None


@dataclass
class Holdings:
    """What an agent holds on its connectors, by connector name (for the confirmation of its
    deletion). Holds no secret."""

    tools: list[tuple[str, int]]  # (connector, how many tools it may call there)
    credentials: list[str]  # connectors where it holds its own credential


def holdings(agent: Agent) -> Holdings:
    connections = sorted(agent.connections, key=lambda c: c.connector.name.lower())
    return Holdings(
        tools=[(c.connector.name, len(c.enabled_tools)) for c in connections if c.enabled_tools],
        credentials=[
            c.connector.name
            for c in connections
            if c.connector.per_agent
            and lifecycle.credential_state(c.connector, c) in ("set", "unreadable")
        ],
    )


def connection_for(agent: Agent, connector: Connector, create=False) -> AgentConnection | None:
    """The agent's row for this connector; a new, unsaved-until-commit one if ``create``."""
    connection = db.session.scalar(
        select(AgentConnection).filter_by(agent_id=agent.id, connector_id=connector.id)
    )
    if connection is None and create:
        connection = AgentConnection(agent=agent, connector=connector, enabled_tools=[])
        db.session.add(connection)
    return connection


def offered(connector: Connector, connection: AgentConnection | None) -> list[Tool]:
    """The connector's tools this agent may be given: for a per-agent connector those its own
    account was offered when last synced with it (the whole catalog before that)."""
    names = connection.offered_tools if connector.per_agent and connection else None
    if names is None:
        return list(connector.tools)
    return [t for t in connector.tools if t.name in set(names)]


def card(connector: Connector, connection: AgentConnection | None, items=None,
         members_only: bool = False) -> Card:  # fmt: skip
    """``items``: the connector's catalog items, if already loaded (else read from it);
    ``members_only`` (a member's page): of a shared credential, its status alone."""
    items = items_of(connector, items)
    credential = lifecycle.present(connector, connection)
    if members_only and not connector.per_agent:
        credential = credential.status_only()
    return Card(
        connector=connector,
        connection=connection,
        credential=credential,
        tools=offered(connector, connection),
        enabled=set(connection.enabled_tools or []) if connection else set(),
        prompts=items[ItemKind.PROMPT],
        resources=items[ItemKind.RESOURCE],
        templates=items[ItemKind.TEMPLATE],
        enabled_prompts=set(connection.enabled_prompts or []) if connection else set(),
        enabled_resources=set(connection.enabled_resources or []) if connection else set(),
    )


def items_of(connector: Connector, items=None) -> dict[str, list[CatalogItem]]:
    """The connector's catalog items (or ``items``, already loaded) by kind, in key order."""
    found = {kind: [] for kind in ItemKind.ALL}
    for item in connector.items if items is None else items:
        found.setdefault(item.kind, []).append(item)
    return found


def cards(agent: Agent, members_only: bool = False) -> list[Card]:
    """One card per connector, in name order, in a fixed number of queries. ``members_only``
    (a member's page): only the connectors made available to members, and of a shared
    credential its status alone."""
    # joinedload, not selectinload: that one batches 500 ids per query, so the count would grow.
    query = select(Connector).options(joinedload(Connector.tools))
    if members_only:
        query = query.where(Connector.members_may_use)
    connectors = db.session.scalars(query.order_by(func.lower(Connector.name))).unique().all()
    connections = {c.connector_id: c for c in agent.connections}
    # Every connector's items in one more statement: joined beside the tools, each connector
    # would come back as tools × items rows.
    items = defaultdict(list)
    for item in db.session.scalars(select(CatalogItem).order_by(CatalogItem.key)):
        items[item.connector_id].append(item)
    return [card(c, connections.get(c.id), items[c.id], members_only) for c in connectors]


def owner_choices(current: int | None = None) -> list[AdminUser]:
    """Who may own an agent, in name order: every active person, and ``current`` (the
    agent's owner, a person's id) even when deactivated, so a save keeps it."""
    query = select(AdminUser).where(or_(AdminUser.active, AdminUser.id == current))
    return db.session.scalars(query.order_by(func.lower(AdminUser.username))).all()


def owners_of_agents() -> list[AdminUser]:
    """The people who own at least one agent, in name order (the index's owner filter)."""
    owned = select(Agent.owner_id).where(Agent.owner_id.is_not(None))
    query = select(AdminUser).where(AdminUser.id.in_(owned))
    return db.session.scalars(query.order_by(func.lower(AdminUser.username))).all()


def save_secret(agent: Agent, connector: Connector, plaintext: str) -> AgentConnection:
    """Store the agent's own bearer token or API key for a per-agent connector.

    :raise AgentConnectionError: the connector is shared, or its credential is not pasted.
    """
    if not (connector.per_agent and connector.uses_pasted_secret):
        raise AgentConnectionError(f"{connector.name} does not take a per-agent token or key.")
    connection = connection_for(agent, connector, create=True)
    connection.secret_enc = seal(plaintext)
    lifecycle.apply(connection, lifecycle.Event.STORED)
    return connection


def disconnect(agent: Agent, connector: Connector) -> list[tokens.Revocation]:
    """Forget the agent's own credential for this connector; tool choices stay. Returns the
    revocation of its OAuth tokens to run once committed (where the grant offers one)."""
    connection = connection_for(agent, connector)
    if connection is None or not connector.per_agent:
        return []
    found = tokens.revocation(connector, connection, f"{agent.name} on {connector.name}")
    lifecycle.forget(connection)
    return [found] if found else []


def revocations(agent: Agent) -> list[tokens.Revocation]:
    """The revocations of every OAuth grant the agent holds (before it is deleted)."""
    found = []
    for connection in agent.connections:
        connector = connection.connector
        if connector.per_agent and connector.auth_type == "oauth":
            found.append(tokens.revocation(connector, connection,
                                           f"{agent.name} on {connector.name}"))  # fmt: skip
    return [r for r in found if r is not None]


# ``choose_tools``' ``select``: every tool the agent is offered, or none.
ALL, NONE = "all", "none"


def choose_tools(
    agent: Agent, connector: Connector, tool_ids: list[str], select: str | None = None
) -> list[str]:
    """Enable exactly the offered tools (see ``offered``) whose row ids are in ``tool_ids``
    (form values; other ids, and values that are not ids, are ignored) for the agent, or with
    ``select`` all of them (``ALL``) or none (``NONE``); return their names.

    Ids, not names, identify the ticked tools: a browser rewrites line breaks in form
    values, so two tools named ``a\r\nb`` and ``a\nb`` would share one value. A tool whose
    definition changed stays flagged when enabled this way too: calls to it are refused
    until the operator reviews it.
    """
    connection = connection_for(agent, connector, create=True)
    tools = offered(connector, connection)
    if select in (ALL, NONE):
        chosen = [t.name for t in tools] if select == ALL else []
    else:
        wanted = set(tool_ids)
        chosen = [t.name for t in tools if str(t.id) in wanted]
    connection.enabled_tools = chosen
    return chosen


# ``enabled_resources`` holding this alone: every resource and template of the connector,
# those it lists later included.


class ChoiceError(AgentConnectionError):
    """A choice names something the connector does not offer (a forged form, or a page
    loaded before a sync removed it); the message says so."""


def choose_prompts(
    agent: Agent, connector: Connector, item_ids: list[str], select: str | None = None
) -> list[str]:
    """Enable exactly the connector's prompts whose ``CatalogItem`` ids are in ``item_ids``
    for the agent, or with ``select`` all of them (``ALL``) or none (``NONE``); return their
    names. Ids, not names, as in ``choose_tools``. A prompt whose definition changed stays
    flagged when enabled this way too.

    :raise ChoiceError: an id that is not one of the connector's prompts; nothing is saved.
    """
    prompts = items_of(connector)[ItemKind.PROMPT]
    if select in (ALL, NONE):
        chosen = [p.key for p in prompts] if select == ALL else []
    else:
        chosen = [p.key for p in _picked(prompts, item_ids, connector, "prompt")]
    connection_for(agent, connector, create=True).enabled_prompts = chosen
    return chosen


def choose_resources(
    agent: Agent, connector: Connector, values: list[str], select: str | None = None
) -> list[str]:
    """Let the agent read exactly the resources and templates of the connector whose
    ``CatalogItem`` ids are in ``values``, or all of them with ``ALL_RESOURCES`` among the
    values or ``select`` set to ``ALL`` (stored as ``["*"]``: those listed later included), or
    none (``select`` ``NONE``); return what is stored (URIs and URI templates, or ``["*"]``).

    :raise ChoiceError: a value that is neither ``ALL_RESOURCES`` nor the id of one of the
        connector's resources or templates; nothing is saved.
    """
    items = items_of(connector)
    offered_items = items[ItemKind.RESOURCE] + items[ItemKind.TEMPLATE]
    picked = _picked(offered_items, values, connector, "resource", also=(ALL_RESOURCES,))
    if select == NONE:
        chosen = []
    elif select == ALL or ALL_RESOURCES in values:
        chosen = [ALL_RESOURCES]
    else:
        chosen = [item.key for item in picked]
    connection_for(agent, connector, create=True).enabled_resources = chosen
    return chosen


def _picked(items: list[CatalogItem], values: list[str], connector: Connector, what: str,
            also=()):  # fmt: skip
    """The items whose ids are ``values``, in key order.

    :raise ChoiceError: a value that is neither the id of one of ``items`` nor in ``also``.
    """
    by_id = {str(item.id): item for item in items}
    unknown = [v for v in values if v not in by_id and v not in also]
    if unknown:
        raise ChoiceError(
            f"{connector.name} does not offer that {what} (any more): nothing was changed; "
            "the list is up to date now."
        )
    wanted = set(values)
    return [item for item in items if str(item.id) in wanted]
