"""The agent gateway's decisions: who is calling (key and legacy session), which tools the
agent sees and under which names, and whether a call may go upstream.

Hot-path budget (DESIGN §8): one indexed read for the key with its agent, its legacy session
and the catalog version (``authenticate``); the agent's catalog (enabled tools with their
connections and connectors, named and rendered) from this process's cache while that version
holds, else two reads, tools and the other items (``catalog``); one read for a call's
connection (``call_target``, ``forward_target``); writes only where something changed
(``touch``, ``record_call``). ``tools/list``, ``prompts/list``, ``resources/list`` and
``resources/templates/list`` answer from the stored catalog; no upstream is asked.
"""

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import Row, bindparam, delete, select, update
from sqlalchemy.orm import contains_eager, joinedload

from ..crypto import token_digest
from ..extensions import db
from ..models import (
    AdminUser,
    Agent,
    AgentConnection,
    AgentKey,
    CatalogItem,
    CatalogState,
    Connector,
    GatewayCancellation,
    GatewaySession,
    ResourceSubscription,
    Role,
    Tool,
    utcnow,
)
from . import agent_keys, calls, toolnames
from .agent_surface import SCHEME, Surface, cursor_for, cursor_name

# Tools (prompts, resources, templates) per list page.
PAGE_SIZE = 100
# A connection's last call is written when its outcome changed, or at most this often.
LAST_CALL_INTERVAL = 60  # seconds
# A legacy session's last use is written at most this often (it only has to outlive the
# days an idle session is kept).
SESSION_TOUCH_INTERVAL = 3600  # seconds
# Agents whose rendered catalog a process keeps (all are dropped when there would be more).
CACHED_CATALOGS = 1000


@dataclass(frozen=True)
class AgentView:
    """What the gateway needs of the calling agent."""

    id: int
    name: str
    keep_tool_names: bool
    # The catalog version read with the key (``CatalogState``); None: do not cache.
    catalog_version: int | None = None


@dataclass(frozen=True)
class SessionView:
    """The legacy session a request named, when it belongs to the request's key."""

    id_sha256: str
    protocol_version: str
    log_level: str | None
    last_seen_at: datetime | None = None


@dataclass
class Caller:
    """An authenticated request: its key, the key's agent and the named legacy session."""

    key_id: int
    last_used_at: datetime | None
    agent: AgentView
    session: SessionView | None
    key_label: str | None = None


# The hot path's statements, built once (building one costs more than running it on SQLite).
_VERSION_ONLY = select(CatalogState.version).where(CatalogState.id == 1)
_VERSION = _VERSION_ONLY.scalar_subquery()
# The agent's owner is outer-joined: an agent may have none, and a deactivated owner's
# agents' keys are refused (``owner_active`` False) until the owner is reactivated.
_KEY = (
    select(AgentKey.id, AgentKey.agent_id, AgentKey.key_hmac, AgentKey.expires_at,
           AgentKey.revoked_at, AgentKey.last_used_at, AgentKey.label, Agent.name,
           Agent.keep_tool_names, _VERSION.label("catalog_version"),
           AdminUser.active.label("owner_active"))
    .join(Agent, Agent.id == AgentKey.agent_id)
    .outerjoin(AdminUser, AdminUser.id == Agent.owner_id)
    .where(AgentKey.lookup == bindparam("lookup"))
)  # fmt: skip
_KEY_AND_SESSION = _KEY.add_columns(
    GatewaySession.id_sha256,
    GatewaySession.protocol_version,
    GatewaySession.log_level,
    GatewaySession.last_seen_at,
).outerjoin(
    GatewaySession,
    (GatewaySession.key_id == AgentKey.id)
    & (GatewaySession.id_sha256 == bindparam("session_sha256")),
)


def authenticate(agent_id: int, presented: str | None, session_id: str | None, now: datetime):
    """The caller, or None when the key is missing, malformed, unknown, someone else's
    (another agent's URL), expired or revoked, or its agent's owner is deactivated. One query
    (the key, its agent and owner, the named session and the catalog version), of plain
    columns: the hot path builds no ORM objects here.
    """
    lookup = agent_keys.lookup_of(presented or "")
    if lookup is None:
        agent_keys.matches(None, presented or "")  # the same work as a wrong key
        return None
    if session_id:
        values = {"lookup": lookup, "session_sha256": token_digest(session_id)}
        row = db.session.execute(_KEY_AND_SESSION, values).first()
    else:
        row = db.session.execute(_KEY, {"lookup": lookup}).first()
    key = AgentKey(key_hmac=row.key_hmac, expires_at=row.expires_at,
                   revoked_at=row.revoked_at) if row else None  # fmt: skip
    if not agent_keys.matches(key, presented) or row.agent_id != agent_id:
        return None
    if not _lets_in(key, row.owner_active, now):
        return None
    session = None
    if session_id and row.id_sha256 is not None:
        session = SessionView(row.id_sha256, row.protocol_version, row.log_level,
                              row.last_seen_at)  # fmt: skip
    agent = AgentView(row.agent_id, row.name, row.keep_tool_names, row.catalog_version)
    return Caller(row.id, row.last_used_at, agent, session, row.label)


def _lets_in(key: AgentKey, owner_active: bool | None, now: datetime) -> bool:
    """Whether a key still lets its clients in: unexpired, unrevoked, and its agent's owner
    active (an agent with no owner, ``owner_active`` None, is the operators')."""
    return key.usable(now) and owner_active is not False


def open_session(caller: Caller, version: str, client_info, capabilities=None) -> str:
    """A new legacy session for this key; its id (visible ASCII, 256 random bits [25N/http
    §Session Management]). The row keeps only the id's digest, and of the client's declared
    ``capabilities`` the ones that say which server requests it answers (``gateway.asks``)."""
    session_id = secrets.token_urlsafe(32)
    info = client_info if isinstance(client_info, dict) else None
    db.session.add(
        GatewaySession(
            id_sha256=token_digest(session_id),
            key_id=caller.key_id,
            protocol_version=version,
            client_info=_small(info),
            client_capabilities=_asked(capabilities),
        )
    )
    return session_id


def end_session(session: SessionView):
    db.session.execute(
        delete(GatewayCancellation).where(GatewayCancellation.session_sha256 == session.id_sha256)
    )
    db.session.execute(delete(GatewaySession).where(GatewaySession.id_sha256 == session.id_sha256))


def set_log_level(session: SessionView, level: str):
    db.session.execute(
        update(GatewaySession)
        .where(GatewaySession.id_sha256 == session.id_sha256)
        .values(log_level=level)
    )


def touch(caller: Caller, now: datetime):
    """Record the key's use (at most once a ``TOUCH_INTERVAL``) and the legacy session's (at
    most once a ``SESSION_TOUCH_INTERVAL``: idle sessions are pruned, ``services.retention``)."""
    if agent_keys.needs_touch(caller, now):
        db.session.execute(
            update(AgentKey).where(AgentKey.id == caller.key_id).values(last_used_at=now)
        )
        caller.last_used_at = now
    if _session_due(caller.session, now):
        db.session.execute(
            update(GatewaySession)
            .where(GatewaySession.id_sha256 == caller.session.id_sha256)
            .values(last_seen_at=now)
        )


def _session_due(session: SessionView | None, now: datetime) -> bool:
    """Whether the legacy session's last use is to be written now."""
    return session is not None and (
        session.last_seen_at is None
        or (now - session.last_seen_at).total_seconds() >= SESSION_TOUCH_INTERVAL
    )


@dataclass
class Entry:
    """One tool as the agent sees it: plain values from one query, no ORM objects."""

    name: str
    tool: Row  # name, title, description, schemas, annotations, definition_hash
    connector_name: str
    connection: Row  # id, connector_id, changed_tools

    @property
    def changed(self) -> bool:
        """Its definition changed since the operator enabled or last reviewed it: held back
        until reviewed (definitions are pinned)."""
        return self.tool.name in (self.connection.changed_tools or [])

    def held_back(self, agent_name: str) -> str:
        """What a call to it answers while it is held back (``changed``)."""
        return (f"The definition of {self.tool.name} on {self.connector_name} changed since it "
                f"was enabled for agent {agent_name}; an operator must review it on the agent's "
                "page before it can be called again.")  # fmt: skip

    def definition(self) -> dict:
        tool = self.tool
        definition = {"name": self.name, "inputSchema": tool.input_schema or {"type": "object"}}
        if tool.title:
            definition["title"] = tool.title
        if tool.description:
            definition["description"] = tool.description
        if tool.output_schema:
            definition["outputSchema"] = tool.output_schema
        if tool.annotations:
            definition["annotations"] = tool.annotations
        return definition


def unknown_tool(name: str, agent_name: str) -> str:
    """What a call to a tool the agent does not have answers."""
    return f"Unknown tool: {name[:100]} is not one of agent {agent_name}'s tools."


class Catalog:
    """The agent's enabled tools across its connectors, by exposed name, in name order, and
    its prompts, resources and templates (``surface``: ``agent_surface``). Never changed once
    built (a process shares it between requests): pages are rendered once."""

    def __init__(self, agent: AgentView, rows, items=()):
        found = [r for r in rows if r.name in (r.enabled_tools or ())]
        names = toolnames.exposed_names([(r.slug, r.name) for r in found], agent.keep_tool_names)
        entries = [Entry(names[(r.slug, r.name)], r, r.connector_name, r) for r in found]
        self.entries = {e.name: e for e in sorted(entries, key=lambda e: e.name)}
        self.surface = Surface(agent.keep_tool_names, items, PAGE_SIZE)
        self._pages: dict = {}

    def listed(self) -> list[Entry]:
        """What ``tools/list`` shows: every entry but those held back."""
        return [e for e in self.entries.values() if not e.changed]

    def page(self, cursor: str | None) -> tuple[str, str | None]:
        """One page of definitions after ``cursor`` (the last name of the previous page,
        opaque to the client) as a JSON array, and the next cursor; rendered once.

        :raise ValueError: a cursor this server did not write.
        """
        page = self._pages.get(cursor)
        if page is None:
            tools, next_cursor = self._page(cursor)
            encoded = json.dumps(tools, separators=(",", ":"), ensure_ascii=False)
            page = self._pages[cursor] = (encoded, next_cursor)
        return page

    def _page(self, cursor) -> tuple[list[dict], str | None]:
        after = cursor_name(cursor) if cursor is not None else None
        listed = [e for e in self.listed() if after is None or e.name > after]
        page = listed[:PAGE_SIZE]
        more = len(listed) > PAGE_SIZE
        return [e.definition() for e in page], cursor_for(page[-1].name) if more else None

    def fingerprint(self) -> str:
        """``<tools> <resources> <prompts>``: each part changes whenever that list or a
        definition in it does (``streams`` sends the matching list_changed)."""
        text = "\n".join(f"{e.name} {e.tool.definition_hash}" for e in self.listed())
        tools = hashlib.sha256(text.encode()).hexdigest()
        return " ".join((tools, *self.surface.fingerprints()))


# Each enabled tool's naming, checks and definition, with its connection and connector.
# A member's agent uses only connectors made available to members (ticked choices on others
# are kept, and come back if the connector is made available again or the agent changes hands).
_MEMBER_OWNED = (
    select(AdminUser.id)
    .join(Agent, Agent.owner_id == AdminUser.id)
    .where(Agent.id == AgentConnection.agent_id, AdminUser.role == Role.MEMBER)
    .exists()
)
_MEMBERS_MAY_USE = Connector.members_may_use | ~_MEMBER_OWNED
_CATALOG_ROWS = (
    select(AgentConnection.id, AgentConnection.connector_id, AgentConnection.enabled_tools,
           AgentConnection.changed_tools, Connector.slug, Connector.name.label("connector_name"),
           Tool.name, Tool.definition_hash, Tool.title, Tool.description, Tool.input_schema,
           Tool.output_schema, Tool.annotations)
    .join(Connector, Connector.id == AgentConnection.connector_id)
    .join(Tool, Tool.connector_id == Connector.id)
    .where(_MEMBERS_MAY_USE)
)  # fmt: skip
_CATALOG = _CATALOG_ROWS.where(AgentConnection.agent_id == bindparam("agent_id"))
# Each prompt, resource and template of the agent's connectors, with the connection's choices.
_ITEM_ROWS = (
    select(AgentConnection.id, AgentConnection.connector_id, AgentConnection.enabled_prompts,
           AgentConnection.enabled_resources, AgentConnection.changed_prompts, Connector.slug,
           Connector.name.label("connector_name"), CatalogItem.kind, CatalogItem.key,
           CatalogItem.definition, CatalogItem.definition_hash)
    .join(Connector, Connector.id == AgentConnection.connector_id)
    .join(CatalogItem, CatalogItem.connector_id == Connector.id)
    .where(_MEMBERS_MAY_USE)
)  # fmt: skip
_ITEMS = _ITEM_ROWS.where(AgentConnection.agent_id == bindparam("agent_id"))
_TARGET = (
    select(AgentConnection, Tool.input_schema)
    .join(AgentConnection.connector)
    .join(Tool, (Tool.connector_id == Connector.id) & (Tool.name == bindparam("tool")))
    .where(AgentConnection.id == bindparam("connection_id"))
    .options(contains_eager(AgentConnection.connector))
)


@dataclass
class _Cache:
    """Each agent's catalog with its definitions, as built at a catalog version."""

    catalogs: dict = field(default_factory=dict)  # agent id → (version, keep names, Catalog)
    # What this process last knew of each connection's last call: (when, error).
    last_calls: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _cache(app=None) -> _Cache:
    """This app's cache (an app, and so its database, has its own); ``app``: default the
    current one."""
    extensions = (app or current_app).extensions
    cache = extensions.get(_Cache.__name__)
    if cache is None:
        cache = extensions.setdefault(_Cache.__name__, _Cache())
    return cache


def catalog(agent: AgentView) -> Catalog:
    """The agent's catalog: this process's copy when it was built at the version the caller's
    key was read with, else one query of plain columns (kept for the next request unless no
    version was read: a stream's look)."""
    key = (agent.catalog_version, agent.keep_tool_names)
    cache = _cache()
    cached = cache.catalogs.get(agent.id)
    if agent.catalog_version is not None and cached is not None and cached[:2] == key:
        return cached[2]
    values = {"agent_id": agent.id}
    rows = db.session.execute(_CATALOG, values).all()
    items = db.session.execute(_ITEMS, values).all()
    return _keep(cache, agent, Catalog(agent, rows, items))


def call_target(entry: Entry) -> tuple[Connector, AgentConnection, dict | None]:
    """The connector and connection an entry's call runs with (session objects: the call may
    move their credential's state), and the tool's stored input schema. One query."""
    values = {"tool": entry.tool.name, "connection_id": entry.connection.id}
    connection, input_schema = db.session.execute(_TARGET, values).one()
    _cache().last_calls[connection.id] = (connection.last_called_at, connection.last_call_error)
    return connection.connector, connection, input_schema


_CONNECTION = (
    select(AgentConnection)
    .join(AgentConnection.connector)
    .where(AgentConnection.id == bindparam("connection_id"))
    .options(contains_eager(AgentConnection.connector))
)


def forward_target(item) -> tuple[Connector, AgentConnection]:
    """The connector and connection a forwarded request (a prompt, a resource, a completion)
    runs with, as ``call_target``. One query."""
    connection = db.session.execute(_CONNECTION, {"connection_id": item.connection.id}).scalar_one()
    _cache().last_calls[connection.id] = (connection.last_called_at, connection.last_call_error)
    return connection.connector, connection


def remember_subscription(session: SessionView, connector_id: int, uri: str, on: bool):
    """A legacy session's resources/subscribe (``on``) or unsubscribe of an upstream URI,
    recorded for the session's GET stream; committed."""
    key = {"session_sha256": session.id_sha256, "connector_id": connector_id, "uri": uri[:1024]}
    found = db.session.get(ResourceSubscription, key)
    if on and found is None:
        db.session.add(ResourceSubscription(**key))
    elif not on and found is not None:
        db.session.delete(found)
    db.session.commit()


def feed_target(agent: AgentView, connector_id: int, uris) -> tuple | None:
    """What a held legacy stream needs to hear an upstream's resource updates: the call's
    ``calls.Target`` (the agent's connection to the connector, its credential read and
    refreshed when due) and each subscribed upstream URI's agent-side one; None when the
    connection is gone, the upstream's era is unknown (a legacy one is subscribed in a
    session, a modern one listened to: ``upstream.AsyncClient.updates``) or its credential
    cannot be used. Committed."""
    connection = db.session.scalar(
        select(AgentConnection)
        .where(AgentConnection.agent_id == agent.id, AgentConnection.connector_id == connector_id)
        .options(joinedload(AgentConnection.connector))
    )
    if connection is None or connection.connector.protocol_era not in ("legacy", "modern"):
        db.session.commit()
        return None
    connector = connection.connector
    target = calls.prepare(connector, connection, agent.name, "resources/subscribe", None, None)
    surface = catalog(agent).surface
    names = {}
    for uri in uris:
        route = surface.resource(uri)
        mine = route is not None and route.item.connection.connector_id == connector_id
        names[uri] = uri if mine else f"{SCHEME}{connector.slug}/{uri}"
    db.session.commit()
    return (target, names) if isinstance(target, calls.Target) else None


@dataclass
class WatchState:
    """What the stream watcher reads in one look (``watch_state``)."""

    version: int | None
    usable_keys: set
    sessions: set
    fingerprints: dict  # agent id → catalog fingerprint (only when the version moved)
    # session digest → frozenset of (connector id, upstream URI) it subscribed to
    subscriptions: dict = field(default_factory=dict)


# Statements of the watcher's look, built once; ids go in chunks (bound parameters are capped).
_KEYS = (
    select(AgentKey.id, AgentKey.expires_at, AgentKey.revoked_at,
           AdminUser.active.label("owner_active"))
    .join(Agent, Agent.id == AgentKey.agent_id)
    .outerjoin(AdminUser, AdminUser.id == Agent.owner_id)
    .where(AgentKey.id.in_(bindparam("ids", expanding=True)))
)  # fmt: skip
_SESSIONS = select(GatewaySession.id_sha256).where(
    GatewaySession.id_sha256.in_(bindparam("ids", expanding=True))
)
_SUBSCRIPTIONS = select(
    ResourceSubscription.session_sha256, ResourceSubscription.connector_id, ResourceSubscription.uri
).where(ResourceSubscription.session_sha256.in_(bindparam("ids", expanding=True)))
# The same rows for several agents at once (the stream watcher), each with its agent.
_CATALOGS = _CATALOG_ROWS.add_columns(AgentConnection.agent_id.label("for_agent")).where(
    AgentConnection.agent_id.in_(bindparam("agent_ids", expanding=True))
)
_ITEMS_OF = _ITEM_ROWS.add_columns(AgentConnection.agent_id.label("for_agent")).where(
    AgentConnection.agent_id.in_(bindparam("agent_ids", expanding=True))
)
_AGENTS = select(Agent.id, Agent.name, Agent.keep_tool_names).where(
    Agent.id.in_(bindparam("ids", expanding=True))
)
_CHUNK = 500


def watch_state(key_ids, session_digests, agents: dict, seen_version: int | None) -> WatchState:
    """For the held streams of a process: the catalog version, which of ``key_ids`` are still
    usable, which of ``session_digests`` still exist, and, when the version is not
    ``seen_version``, the fingerprint of each of ``agents`` (id → ``AgentView``) catalog.
    A key is usable as ``_lets_in`` says.
    A few statements whatever the number of streams: one for the version, one per 500 keys,
    two per 500 sessions (they exist; their resource subscriptions), and two for the
    catalogs this process has not built at that version."""
    now = utcnow()
    version = db.session.scalar(_VERSION_ONLY)
    usable = set()
    for ids in _chunks(sorted(key_ids)):
        for row in db.session.execute(_KEYS, {"ids": ids}):
            key = AgentKey(expires_at=row.expires_at, revoked_at=row.revoked_at)
            if _lets_in(key, row.owner_active, now):
                usable.add(row.id)
    live = set()
    subscriptions: dict = {}
    for ids in _chunks(sorted(session_digests)):
        live.update(db.session.scalars(_SESSIONS, {"ids": ids}))
        for row in db.session.execute(_SUBSCRIPTIONS, {"ids": ids}):
            subscriptions.setdefault(row.session_sha256, set()).add((row.connector_id, row.uri))
    fingerprints = {}
    if version != seen_version:
        views = []
        for ids in _chunks(sorted(agents)):
            views += [AgentView(row.id, row.name, row.keep_tool_names, version)
                      for row in db.session.execute(_AGENTS, {"ids": ids})]  # fmt: skip
        fingerprints = {c_id: c.fingerprint() for c_id, c in catalogs(views).items()}
    db.session.commit()
    subscriptions = {digest: frozenset(pairs) for digest, pairs in subscriptions.items()}
    return WatchState(version, usable, live, fingerprints, subscriptions)


def catalogs(agents: list[AgentView]) -> dict:
    """Each agent's catalog (id → ``Catalog``): this process's copies built at the agents'
    version, and one query for all the others."""
    cache = _cache()
    found, missing = {}, []
    for agent in agents:
        cached = cache.catalogs.get(agent.id)
        key = (agent.catalog_version, agent.keep_tool_names)
        if agent.catalog_version is not None and cached is not None and cached[:2] == key:
            found[agent.id] = cached[2]
        else:
            missing.append(agent)
    for chunk in _chunks(missing):
        rows: dict[int, list] = {agent.id: [] for agent in chunk}
        items: dict[int, list] = {agent.id: [] for agent in chunk}
        values = {"agent_ids": list(rows)}
        for row in db.session.execute(_CATALOGS, values):
            rows[row.for_agent].append(row)
        for row in db.session.execute(_ITEMS_OF, values):
            items[row.for_agent].append(row)
        for agent in chunk:
            found[agent.id] = _keep(cache, agent, Catalog(agent, rows[agent.id], items[agent.id]))
    return found


def _keep(cache, agent: AgentView, built: "Catalog") -> "Catalog":
    if agent.catalog_version is not None:
        with cache.lock:
            if len(cache.catalogs) >= CACHED_CATALOGS:
                cache.catalogs.clear()
            cache.catalogs[agent.id] = (agent.catalog_version, agent.keep_tool_names, built)
    return built


def _chunks(items: list):
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def pending_writes(caller: Caller, entry: "Entry", error: str | None, now: datetime,
                   app) -> bool:  # fmt: skip
    """Whether ending a call writes anything (``record_call`` or ``touch`` would): most calls
    write nothing, and then need no trip to a pool thread. Needs no app context."""
    return (
        _call_due(_cache(app).last_calls, entry.connection.id, error, now)
        or agent_keys.needs_touch(caller, now)
        or _session_due(caller.session, now)
    )


def cancelled(session: SessionView, request_id) -> bool:
    """Whether the legacy client sent ``notifications/cancelled`` for this request."""
    found = db.session.scalar(
        select(GatewayCancellation.request_id).where(
            GatewayCancellation.session_sha256 == session.id_sha256,
            GatewayCancellation.request_id == str(request_id)[:200],
        )
    )
    return found is not None


def cancel(session: SessionView, request_id):
    """Record a legacy client's cancellation for whichever worker runs the call."""
    key = {"session_sha256": session.id_sha256, "request_id": str(request_id)[:200]}
    if db.session.get(GatewayCancellation, key) is None:
        db.session.add(GatewayCancellation(**key))


def record_call(entry: Entry, error: str | None, now: datetime):
    """The connection's last call, written when its outcome changed or a minute went by (as
    this process last read or wrote it; always, when it knows nothing)."""
    connection_id = entry.connection.id
    last_calls = _cache().last_calls
    if _call_due(last_calls, connection_id, error, now):
        db.session.execute(
            update(AgentConnection)
            .where(AgentConnection.id == connection_id)
            .values(last_called_at=now, last_call_error=error)
        )
        last_calls[connection_id] = (now, error)


def _call_due(last_calls: dict, connection_id: int, error: str | None, now: datetime) -> bool:
    """Whether the connection's last call is to be written: its outcome changed, a minute
    went by, or this process knows nothing of it."""
    last, last_error = last_calls.get(connection_id, (None, None))
    stale = last is None or (now - last).total_seconds() >= LAST_CALL_INTERVAL
    return stale or error != last_error


# The client capabilities a legacy session keeps: those naming server requests it answers
# [25N/client/elicitation, sampling, roots], each with its flags (a few booleans and objects).
KEPT_CAPABILITIES = ("elicitation", "sampling", "roots")


def _asked(capabilities) -> dict | None:
    """The kept capabilities, each a small object (``{}`` when the client sent something
    else there), or None when it declared none of them."""
    if not isinstance(capabilities, dict):
        return None
    kept = {}
    for name in KEPT_CAPABILITIES:
        if name in capabilities:
            value = capabilities[name]
            small = isinstance(value, dict) and len(json.dumps(value, default=str)) <= 1000
            kept[name] = value if small else {}
    return kept or None


def _small(info: dict | None) -> dict | None:
    """Client info as stored: a few short strings, not whatever a client sends."""
    if not info:
        return None
    return {k: str(info[k])[:100] for k in ("name", "version", "title") if k in info}
