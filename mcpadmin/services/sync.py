"""One tool sync: list a server's tools, resources, resource templates and prompts with the
pair's credential (``listing``), store them (``catalog``, ``surface``) and record the outcome
on the holder (``lifecycle``). The caller commits once, after a success or a ``SyncError``
alike (the failure is recorded too)."""

from dataclasses import dataclass, field
from datetime import timedelta

from ..models import Agent, Connector, ItemKind, utcnow
from . import catalog, lifecycle, metrics, surface
from .agents import connection_for
from .lifecycle import Event
from .listing import SyncError, list_tools

__all__ = ["SyncError", "SyncResult", "sync_tools"]


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
    # What the sync stored besides tools, by ``ItemKind`` (a kind not listed is absent).
    items: dict[str, surface.Stored] = field(default_factory=dict)

    def summary(self) -> str:
        """``"12 tools (2 new), 3 resources, 1 template, 2 prompts (1 changed); 3 duplicate
        names skipped; 1 other warning (see the log)"``. A kind of which nothing is listed
        or removed is left out."""
        text = _counted(self.tool_count, "tool", self.added, self.changed, self.removed)
        for kind, noun in ((ItemKind.RESOURCE, "resource"), (ItemKind.TEMPLATE, "template"),
                           (ItemKind.PROMPT, "prompt")):  # fmt: skip
            done = self.items.get(kind)
            if done and (done.listed or done.removed):
                text += ", " + _counted(done.listed, noun, done.added, done.changed,
                                        done.removed)  # fmt: skip
        duplicates = sum(catalog.DUPLICATE in w for w in self.warnings)
        if duplicates:
            text += f"; {duplicates} duplicate name{'' if duplicates == 1 else 's'} skipped"
        if len(self.warnings) > duplicates:
            others = len(self.warnings) - duplicates
            text += f"; {others} other warning{'' if others == 1 else 's'} (see the log)"
        return text


def _counted(count, noun, added, changed, removed) -> str:
    """``"12 tools (2 new, 1 changed)"``."""
    parts = [
        f"{len(names)} {label}"
        for names, label in ((added, "new"), (changed, "changed"), (removed, "removed"))
        if names
    ]
    text = f"{count} {noun}{'' if count == 1 else 's'}"
    return text + (f" ({', '.join(parts)})" if parts else "")


def sync_tools(connector: Connector, agent: Agent | None = None, now=None) -> SyncResult:
    """List the connector's tools (and resources, templates, prompts) and store them. A
    per-agent connector uses ``agent``'s own credential (without an agent, or with none
    stored, an unauthenticated listing is tried); a shared one its own credential, whatever
    ``agent`` is. Works on the session's objects and never commits.

    An OAuth 401 refreshes the token and retries once, then marks the holder
    ``needs_reconnect``; a 403 ``insufficient_scope`` records the step-up scope.

    :raise SyncError: the server could not be listed; the error is recorded on the connector
        (shared) or the agent connection (per-agent) and the previous tool list is kept.
    """
    now = now or utcnow()
    connection = connection_for(agent, connector) if agent and connector.per_agent else None
    try:
        listing = list_tools(connector, connection)
    except SyncError as exc:
        _record_failure(connector, connection, exc)
        metrics.observe_sync(metrics.Sync.FAILED)
        raise
    added, changed, removed = catalog.store(connector, connection, listing)
    items = surface.store(connector, connection, listing)
    _record_success(connector, connection, listing, now)
    metrics.observe_sync(metrics.Sync.OK)
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
        items=items,
    )


def _record_success(connector, connection, listing, now):
    fresh = now + timedelta(milliseconds=listing.ttl_ms) if listing.ttl_ms else None
    connector.protocol_era, connector.protocol_version = listing.era, listing.version
    connector.last_synced_at = now
    lifecycle.apply(connector, Event.SYNCED)
    if not connector.per_agent:
        connector.tools_fresh_until = fresh
        return
    connector.tools_fresh_until = fresh if listing.cache_scope == "public" else None
    if connection is not None and lifecycle.stored_value(connector, connection) is not None:
        connection.last_synced_at = now
        connection.tools_fresh_until = fresh
        lifecycle.apply(connection, Event.SYNCED)


def _record_failure(connector, connection, error: SyncError):
    place = connection if connector.per_agent and connection is not None else connector
    lifecycle.apply(place, error.event, None if error.expected else str(error))
