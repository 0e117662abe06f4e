"""Tool sync: list a server's tools with the right credential, update the connector's catalog
and every agent's choices, and record the outcome. The caller commits once, after a success
or a ``SyncError`` alike (the failure is recorded too).

Where the catalog lives: one ``Tool`` row per name per connector, so the connector page and
the agent cards read one list. The spec lets a list vary by credential, so for a per-agent
connector the catalog is the union of what each connected agent's account is offered, and
each agent connection remembers its own names (``offered_tools``): its card shows only those,
and a tool leaves the catalog when no connected account is offered it any more. A shared
connector remembers the digest of the listing its rows hold (``listing_hash``): a re-sync that
gets the same listing leaves the tool rows alone.
"""

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from ..crypto import UnreadableSecret
from ..extensions import db
from ..models import Agent, AgentConnection, Connector, Tool, utcnow
from ..protocol import mcp
from . import outbound, tokens
from .agents import connection_for
from .credentials import auth_headers, credential_state, stored_credential

log = logging.getLogger(__name__)

# Storage caps for what a server says about its tools (a hostile server may send megabytes).
# Text beyond a cap is cut and ends in "…"; a JSON object beyond its cap is not stored. The
# whole definition still counts for change detection (``definition_hash``).
MAX_TITLE = 256  # characters
MAX_DESCRIPTION = 4096  # characters
MAX_SCHEMA_BYTES = 64 * 1024
MAX_ANNOTATIONS_BYTES = 4 * 1024
# mcp.checked_tools' wording for a name listed twice (the first definition is kept).
_DUPLICATE = "is listed twice"


class SyncError(Exception):
    """The listing failed; ``str()`` is the sentence stored as the holder's ``last_error``.
    The previous tool list is kept. ``status`` is what the holder was marked."""

    def __init__(self, message: str, status: str = "error"):
        super().__init__(message)
        self.status = status


@dataclass
class SyncResult:
    connector: Connector
    agent: Agent | None
    tool_count: int
    era: str
    requests: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``"12 tools (2 new, 1 changed); 3 duplicate names skipped; 1 other warning (see
        the log)"``."""
        parts = [
            f"{len(names)} {label}"
            for names, label in (
                (self.added, "new"),
                (self.changed, "changed"),
                (self.removed, "removed"),
            )  # fmt: skip
            if names
        ]
        text = f"{self.tool_count} tool{'' if self.tool_count == 1 else 's'}"
        text += f" ({', '.join(parts)})" if parts else ""
        duplicates = sum(_DUPLICATE in w for w in self.warnings)
        if duplicates:
            text += f"; {duplicates} duplicate name{'' if duplicates == 1 else 's'} skipped"
        if len(self.warnings) > duplicates:
            others = len(self.warnings) - duplicates
            text += f"; {others} other warning{'' if others == 1 else 's'} (see the log)"
        return text


def sync_tools(connector: Connector, agent: Agent | None = None, now=None) -> SyncResult:
    """List the connector's tools and store them. A per-agent connector uses ``agent``'s own
    credential (without an agent, or with none stored, an unauthenticated listing is tried);
    a shared one its own credential, whatever ``agent`` is. Works on the session's objects
    and never commits.

    An OAuth 401 refreshes the token and retries once, then marks the holder
    ``needs_reconnect``; a 403 ``insufficient_scope`` records the step-up scope.

    :raise SyncError: the server could not be listed; the error is recorded on the connector
        (shared) or the agent connection (per-agent) and the previous tool list is kept.
    """
    now = now or utcnow()
    connection = connection_for(agent, connector) if agent and connector.per_agent else None
    try:
        listing = _list(connector, connection)
    except SyncError as exc:
        _record_failure(connector, connection, exc)
        raise
    added, changed, removed = _store(connector, connection, listing)
    _record_success(connector, connection, listing, now)
    return SyncResult(
        connector=connector,
        agent=agent if connection is not None else None,
        tool_count=len(listing.tools),
        era=listing.era,
        requests=listing.requests,
        added=added,
        changed=changed,
        removed=removed,
        warnings=listing.warnings,
    )


@dataclass
class Outcome:
    """One sync as the CLI and the index report it (plain values: no session needed)."""

    connector: str
    agent: str | None
    ok: bool
    message: str  # the summary, or the error sentence
    skipped: bool = False
    requests: int = 0

    @property
    def label(self) -> str:
        return self.connector + (f" (as {self.agent})" if self.agent else "")


def sync_connector(connector: Connector, now=None) -> list[Outcome]:
    """Sync with every credential the connector needs (see ``agents_to_sync``), in the
    caller's session; never commits, never raises ``SyncError``."""
    outcomes = []
    for agent in agents_to_sync(connector):
        outcomes.append(sync_outcome(connector, agent, now))
    return outcomes


def plan(connector_name: str | None = None, agent_name: str | None = None):
    """``(connector_id, agent_id or None)`` pairs for ``flask sync-tools``: every connector
    (or the one named), each per-agent connector once per agent with a credential; with
    ``agent_name`` only that agent's connections.

    :raise LookupError: no connector or agent by that name (case-insensitive).
    """
    query = select(Connector).order_by(func.lower(Connector.name))
    if connector_name is not None:
        query = query.where(func.lower(Connector.name) == connector_name.lower())
    connectors = db.session.scalars(query).all()
    if connector_name is not None and not connectors:
        raise LookupError(f"No connector is named {connector_name!r}.")
    agent = None
    if agent_name is not None:
        agent = db.session.scalar(select(Agent).where(func.lower(Agent.name) == agent_name.lower()))
        if agent is None:
            raise LookupError(f"No agent is named {agent_name!r}.")
    pairs = []
    for connector in connectors:
        for who in agents_to_sync(connector):
            if agent is not None:
                mine = connection_for(agent, connector) is not None
                if (connector.per_agent and who is not agent) or not mine:
                    continue
            pairs.append((connector.id, who.id if who else None))
    return pairs


def sync_many(pairs, workers: int = 4, stale_only: bool = False, on_done=None) -> list[Outcome]:
    """Run ``pairs`` (from ``plan``) on a bounded thread pool, each in its own app context and
    transaction (committed on success and on a recorded failure). ``on_done(outcome)`` is
    called in this thread as each finishes; the outcomes come back in ``pairs`` order."""
    app = current_app._get_current_object()

    def run(pair):
        with app.app_context():
            try:
                return _run_one(*pair, stale_only=stale_only)
            except Exception:  # a bug or a database failure: report it, keep the others going
                db.session.rollback()
                log.exception("sync of connector %s failed unexpectedly", pair[0])
                return Outcome(str(pair[0]), None, False, "Internal error; see the log.")

    results = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(run, pair): i for i, pair in enumerate(pairs)}
        for future in as_completed(futures):
            results[futures[future]] = outcome = future.result()
            if on_done:
                on_done(outcome)
    return [results[i] for i in range(len(pairs))]


def _run_one(connector_id, agent_id, stale_only=False) -> Outcome:
    connector = db.session.get(Connector, connector_id)
    agent = db.session.get(Agent, agent_id) if agent_id else None
    if connector is None:
        return Outcome(str(connector_id), None, False, "The connector was deleted meanwhile.")
    if stale_only and is_fresh(connector, agent, utcnow()):
        name = agent.name if agent else None
        return Outcome(connector.name, name, True, "still fresh; skipped", skipped=True)
    outcome = sync_outcome(connector, agent)
    db.session.commit()
    return outcome


def sync_outcome(connector: Connector, agent: Agent | None = None, now=None) -> Outcome:
    """``sync_tools`` reported as an ``Outcome`` (a ``SyncError`` becomes a failed one)."""
    name = agent.name if agent else None
    try:
        result = sync_tools(connector, agent, now)
    except SyncError as exc:
        return Outcome(connector.name, name, False, str(exc))
    return Outcome(connector.name, name, True, result.summary(), requests=result.requests)


def agents_to_sync(connector: Connector) -> list[Agent | None]:
    """Whose credential each sync of this connector uses: None for a shared connector; every
    agent with a stored credential for a per-agent one (None when there is none yet, for an
    unauthenticated listing)."""
    if not connector.per_agent:
        return [None]
    agents = [c.agent for c in connector.connections if stored_credential(connector, c)]
    return sorted(agents, key=lambda a: a.name.lower()) or [None]


def is_fresh(connector: Connector, agent: Agent | None, now: datetime) -> bool:
    """Whether the last listing for this credential is still fresh by the server's ``ttlMs``
    [26/cache §Cacheable Model]; a per-agent listing is shared across agents only when the
    server called it public (``tools_fresh_until`` on the connector)."""
    if connector.tools_fresh_until and connector.tools_fresh_until > now:
        return True
    connection = connection_for(agent, connector) if agent and connector.per_agent else None
    return bool(connection and connection.tools_fresh_until and connection.tools_fresh_until > now)


def mark_reviewed(connection: AgentConnection, name: str):
    """The operator looked at the changed definition of ``name``: stop flagging it."""
    connection.changed_tools = [n for n in connection.changed_tools or [] if n != name]


def definition_hash(tool: dict) -> str:
    """SHA-256 of the definition in canonical JSON (``_meta`` left out: it is not the contract)."""
    return _sha256(_contract(tool))


def listing_hash(definitions: list[dict]) -> str:
    """SHA-256 of a whole listing (names unique, as ``mcp.checked_tools`` leaves them) in
    canonical JSON, in name order, ``_meta`` left out as in ``definition_hash``: two listings
    with equal digests have the same names with equal definition hashes."""
    return _sha256(sorted((_contract(d) for d in definitions), key=lambda d: d["name"]))


def _contract(definition: dict) -> dict:
    if "_meta" not in definition:
        return definition
    return {k: v for k, v in definition.items() if k != "_meta"}


def _sha256(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# -- listing with the right credential -----------------------------------------------------------


def _list(connector, connection) -> mcp.Listing:
    headers = _headers(connector, connection)
    client = mcp.Client(
        outbound.http(),
        connector.url,
        headers,
        era=connector.protocol_era,
        version=connector.protocol_version,
    )
    try:
        try:
            return client.list_tools()
        except mcp.Unauthorized:
            if connector.auth_type != "oauth" or not headers:
                raise
            client.auth = _headers(connector, connection, force_refresh=True)
            return client.list_tools()
    except mcp.Unauthorized as exc:
        if connector.auth_type == "oauth" and headers:
            reason = "The server refused the access token even after a refresh: Reconnect."
            tokens.needs_reconnect(connector, connection, reason)
            raise SyncError(reason, "needs_reconnect") from exc
        raise SyncError(_unauthorized(connector, connection, bool(headers))) from exc
    except mcp.Forbidden as exc:
        if connector.auth_type == "oauth" and exc.insufficient_scope:
            tokens.step_up(connector, connection, exc.www_authenticate)
            raise SyncError(
                "The server needs more permissions for this (403 insufficient_scope): Reconnect.",
                "needs_reconnect",
            ) from exc
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
        raise SyncError(message, "needs_reconnect") from exc
    except tokens.TokenError as exc:
        raise SyncError(f"The access token could not be refreshed: {exc}") from exc


def _unauthorized(connector, connection, had_credential) -> str:
    if had_credential:
        what = "token" if connector.auth_type in ("bearer", "oauth") else "API key"
        return f"The server refused the {what} (401 Unauthorized): check or replace it."
    if connector.per_agent:
        return ("The server lists tools only with a credential (401 Unauthorized): an agent "
                "must connect first.")  # fmt: skip
    return ("The server requires authentication (401 Unauthorized): choose how the connector "
            "authenticates and enter the credential.")  # fmt: skip


# -- storing the outcome -------------------------------------------------------------------------


def _store(connector, connection, listing):
    """``_apply`` the listing; return (added, changed, removed). A shared connector whose
    listing has the digest of the one its tool rows hold (``listing_hash``) skips loading and
    comparing the tools: that comparison would find nothing added, changed or removed.

    The digest is trusted because only ``_apply`` writes tool rows, and it is kept equal to
    the rows on every shared sync and None on every per-agent one (a per-agent catalog is a
    union of listings, so no one listing describes it).
    """
    if connector.per_agent:
        connector.listing_hash = None
        return _apply(connector, connection, listing.tools, listing.warnings)
    digest = listing_hash(listing.tools)
    if digest == connector.listing_hash:
        _settle_choices(connector, {d["name"] for d in listing.tools}, [])
        return [], [], []
    found = _apply(connector, connection, listing.tools, listing.warnings)
    connector.listing_hash = digest
    return found


def _apply(connector, connection, definitions, warnings):
    """Update the catalog and every connection's choices; return (added, changed, removed).
    A warning is appended to ``warnings`` for each field cut to the storage caps."""
    listed = {d["name"]: d for d in definitions}
    existing = {t.name: t for t in connector.tools}
    keep = set(listed)
    if connector.per_agent:
        for other in connector.connections:
            listed_for_other = other is not connection and other.offered_tools is not None
            if listed_for_other and stored_credential(connector, other) is not None:
                keep.update(other.offered_tools)
        if connection is not None and stored_credential(connector, connection) is not None:
            connection.offered_tools = sorted(listed)

    added, changed, removed = [], [], []
    for name, definition in listed.items():
        digest = definition_hash(definition)
        tool = existing.get(name)
        if tool is None:
            tool = Tool(name=name)
            connector.tools.append(tool)
            added.append(name)
        elif tool.definition_hash == digest:
            continue
        else:
            changed.append(name)
        for warning in _copy(tool, definition, digest):
            log.warning("%s: %s", connector.url, warning)
            warnings.append(warning)
    for name, tool in existing.items():
        if name not in keep:
            connector.tools.remove(tool)
            removed.append(name)

    catalog = (set(existing) - set(removed)) | set(listed)
    _settle_choices(connector, catalog, changed)
    return sorted(added), sorted(changed), sorted(removed)


def _settle_choices(connector, catalog: set[str], changed: list[str]):
    """Keep each connection's enabled tools within what it is offered from ``catalog``, and
    flag the enabled ones among ``changed`` (unflagging those no longer enabled)."""
    for other in connector.connections:
        offered = catalog
        if connector.per_agent and other.offered_tools is not None:
            offered = catalog & set(other.offered_tools)
        enabled = [n for n in other.enabled_tools or [] if n in offered]
        flagged = sorted((set(other.changed_tools or []) | set(changed)) & set(enabled))
        if enabled != (other.enabled_tools or []):
            other.enabled_tools = enabled
        if flagged != (other.changed_tools or []):
            other.changed_tools = flagged


def _copy(tool: Tool, definition: dict, digest: str) -> list[str]:
    """Store one definition within the storage caps; return a warning per field cut or left
    out. (Names are never cut: a shortened name would call another tool, or none; the
    listing already skipped names longer than ``mcp.MAX_STORED_NAME``.)"""
    warnings = []
    title = definition.get("title")
    description = definition.get("description")
    schema, annotations = definition.get("inputSchema"), definition.get("annotations")
    tool.title = _capped(title, MAX_TITLE) if isinstance(title, str) else None
    tool.description = (
        _capped(description, MAX_DESCRIPTION) if isinstance(description, str) else None
    )
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        warnings.append(f"The description of {tool.name[:80]!r} was cut to {MAX_DESCRIPTION} "
                        "characters.")  # fmt: skip
    tool.input_schema = _small_json(schema, MAX_SCHEMA_BYTES)
    if isinstance(schema, dict) and tool.input_schema is None:
        warnings.append(f"The input schema of {tool.name[:80]!r} is larger than "
                        f"{MAX_SCHEMA_BYTES // 1024} KB and was not stored.")  # fmt: skip
    tool.annotations = _small_json(annotations, MAX_ANNOTATIONS_BYTES)
    tool.definition_hash = digest
    return warnings


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _small_json(value, limit: int) -> dict | None:
    """``value`` if it is a JSON object of at most ``limit`` bytes, else None."""
    if not isinstance(value, dict):
        return None
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    return value if size <= limit else None


def _record_success(connector, connection, listing, now):
    fresh = now + timedelta(milliseconds=listing.ttl_ms) if listing.ttl_ms else None
    connector.protocol_era, connector.protocol_version = listing.era, listing.version
    connector.last_synced_at = now
    connector.last_error = None
    if not connector.per_agent:
        connector.tools_fresh_until = fresh
        if credential_state(connector) in ("not_needed", "set"):
            connector.status = "connected"
        return
    connector.tools_fresh_until = fresh if listing.cache_scope == "public" else None
    if connection is not None and stored_credential(connector, connection) is not None:
        connection.last_synced_at = now
        connection.tools_fresh_until = fresh
        connection.last_error = None
        connection.status = "connected"


def _record_failure(connector, connection, error: SyncError):
    place = connection if connector.per_agent and connection is not None else connector
    place.last_error = str(error)
    if error.status == "needs_reconnect":
        place.status = "needs_reconnect"
    elif place is connection or not connector.per_agent:
        place.status = "error"
