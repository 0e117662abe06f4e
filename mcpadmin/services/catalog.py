"""The tool catalog: store a listing on the connector and keep every agent's choices within
what it is offered, flagging enabled tools whose definition changed.

Where the catalog lives: one ``Tool`` row per name per connector, so the connector page and
the agent cards read one list. The spec lets a list vary by credential, so for a per-agent
connector the catalog is the union of what each connected agent's account is offered, and
each agent connection remembers its own names (``offered_tools``): its card shows only those,
and a tool leaves the catalog when no connected account is offered it any more. A shared
connector remembers the digest of the listing its rows hold (``listing_hash``): a re-sync that
gets the same listing leaves the tool rows alone.

The catalog also keeps each tool's history: every definition it has had (``ToolDefinition``,
the newest ``MAX_VERSIONS``) and which one each agent accepted (``ToolReview``): the one an
admin marked reviewed for it, or the one it had enabled when a sync flagged a change. The
tool page compares the current definition with what an agent accepted (``baseline``).
Prompts (``CatalogItem`` rows, stored by ``services.surface``) keep the same history in
``CatalogItemDefinition`` / ``CatalogItemReview``: ``versions``, ``reviews``, ``baseline``
and ``record_versions`` take either a tool or a prompt.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, func, insert, select

from ..extensions import db
from ..models import (
    AgentConnection,
    CatalogItem,
    CatalogItemDefinition,
    CatalogItemReview,
    Tool,
    ToolDefinition,
    ToolReview,
)
from ..protocol import mcp
from . import lifecycle

log = logging.getLogger(__name__)

# Storage caps for what a server says about its tools (a hostile server may send megabytes).
# Text beyond a cap is cut and ends in "…"; a JSON object beyond its cap is not stored. The
# whole definition still counts for change detection (``definition_hash``).
MAX_TITLE = 256  # characters
MAX_DESCRIPTION = 4096  # characters
MAX_SCHEMA_BYTES = 64 * 1024
MAX_ANNOTATIONS_BYTES = 4 * 1024
# mcp.checked_tools' wording for a name listed twice (the first definition is kept).
DUPLICATE = "is listed twice"
# Definitions kept per tool, the newest; the older ones are deleted.
MAX_VERSIONS = 20
# Reviews listed on a tool's page at most, the newest.
MAX_REVIEWS_SHOWN = 100


class ReviewKind(StrEnum):
    REVIEWED = "reviewed"  # an admin marked the definition reviewed for the agent
    FLAGGED = "flagged"  # a sync changed a tool the agent had enabled: the one it had


def mark_reviewed(connection: AgentConnection, tool: Tool, admin_name: str):
    """The operator ``admin_name`` looked at the current definition of ``tool`` for the
    connection's agent: stop flagging it, and record which definition they reviewed."""
    connection.changed_tools = [n for n in connection.changed_tools or [] if n != tool.name]
    accept(connection, tool, ReviewKind.REVIEWED, tool.definition_hash, admin_name)


class Since(StrEnum):
    """Which definition the current one is compared with (``Baseline``)."""

    CHOSEN = "chosen"  # one the operator picked from the history
    REVIEWED = "reviewed"  # the one an admin last marked reviewed for the agent
    FLAGGED = "flagged"  # the one the agent had enabled when a sync changed it
    PREVIOUS = "previous"  # the one before the current
    NOTHING = "nothing"  # no earlier definition is kept


@dataclass(frozen=True)
class Baseline:
    version: ToolDefinition | CatalogItemDefinition | None
    since: Since
    # The agent's acceptance the version comes from, and whether that definition is still
    # kept (if not, ``version`` is the oldest kept).
    review: ToolReview | CatalogItemReview | None = None
    kept: bool = True


def _history(subject: Tool | CatalogItem):
    """(definition model, review model, their column naming the subject) for a tool or a
    catalog item."""
    if isinstance(subject, CatalogItem):
        return CatalogItemDefinition, CatalogItemReview, "item_id"
    return ToolDefinition, ToolReview, "tool_id"


def versions(subject: Tool | CatalogItem) -> list:
    """The subject's kept definitions, newest (the current one) first."""
    model, _, column = _history(subject)
    query = select(model).where(getattr(model, column) == subject.id)
    return list(db.session.scalars(query.order_by(model.id.desc())))


def reviews(subject: Tool | CatalogItem, agent_id: int | None = None,
            limit=MAX_REVIEWS_SHOWN) -> list:  # fmt: skip
    """Which definitions agents accepted (of one agent's, with ``agent_id``), newest first."""
    _, model, column = _history(subject)
    query = select(model).where(getattr(model, column) == subject.id)
    if agent_id is not None:
        query = query.where(model.agent_id == agent_id)
    return list(db.session.scalars(query.order_by(model.id.desc()).limit(limit)))


def baseline(subject: Tool | CatalogItem, kept: list, agent_id=None, chosen=None) -> Baseline:
    """What to compare the subject's current definition with: the kept version ``chosen``
    (an id), else the definition the agent ``agent_id`` last accepted, else the previous
    one. ``kept`` is ``versions(subject)``."""
    picked = next((v for v in kept if v.id == chosen), None) if chosen is not None else None
    if picked is not None:
        return Baseline(picked, Since.CHOSEN)
    accepted = reviews(subject, agent_id, limit=1) if agent_id is not None else []
    if accepted:
        review = accepted[0]
        match = next((v for v in kept if v.definition_hash == review.definition_hash), None)
        oldest = kept[-1] if kept else None
        return Baseline(match or oldest, Since(review.kind), review, kept=match is not None)
    if len(kept) > 1:
        return Baseline(kept[1], Since.PREVIOUS)
    return Baseline(None, Since.NOTHING)


def accept(connection, subject: Tool | CatalogItem, kind: ReviewKind, digest, admin_name=None):
    """Record that the connection's agent accepted the definition ``digest`` of a tool or a
    catalog item."""
    _, model, column = _history(subject)
    db.session.add(model(
        **{column: subject.id}, agent_id=connection.agent_id, agent_name=connection.agent.name,
        kind=kind, admin_name=admin_name, definition_hash=digest,
    ))  # fmt: skip


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


def store(connector, connection, listing: mcp.Listing):
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
        _settle_choices(connector, {d["name"] for d in listing.tools}, {})
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
            if listed_for_other and lifecycle.stored_value(connector, other) is not None:
                keep.update(other.offered_tools)
        if connection is not None and lifecycle.stored_value(connector, connection) is not None:
            connection.offered_tools = sorted(listed)

    added, removed, stored = [], [], []
    changed = {}  # name → (tool, the hash it had)
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
            changed[name] = (tool, tool.definition_hash)
        for warning in _copy(tool, definition, digest):
            log.warning("%s: %s", connector.url, warning)
            warnings.append(warning)
        stored.append(tool)
    for name, tool in existing.items():
        if name not in keep:
            connector.tools.remove(tool)
            removed.append(name)

    catalog = (set(existing) - set(removed)) | set(listed)
    _record_versions(connector, stored)
    _settle_choices(connector, catalog, changed)
    _prune_versions([tool.id for tool, _ in changed.values()])
    return sorted(added), sorted(changed), sorted(removed)


def _settle_choices(connector, catalog: set[str], changed: dict):
    """Keep each connection's enabled tools within what it is offered from ``catalog``, and
    flag the enabled ones among ``changed`` (unflagging those no longer enabled). A tool
    newly flagged for a connection records the definition its agent had (``FLAGGED``)."""
    for other in connector.connections:
        offered = catalog
        if connector.per_agent and other.offered_tools is not None:
            offered = catalog & set(other.offered_tools)
        enabled = [n for n in other.enabled_tools or [] if n in offered]
        flagged = sorted((set(other.changed_tools or []) | set(changed)) & set(enabled))
        for name in set(flagged) - set(other.changed_tools or []):
            tool, had = changed[name]
            accept(other, tool, ReviewKind.FLAGGED, had)
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
    output_schema = definition.get("outputSchema")
    tool.output_schema = _small_json(output_schema, MAX_SCHEMA_BYTES)
    if isinstance(output_schema, dict) and tool.output_schema is None:
        warnings.append(f"The output schema of {tool.name[:80]!r} is larger than "
                        f"{MAX_SCHEMA_BYTES // 1024} KB and was not stored.")  # fmt: skip
    tool.definition_hash = digest
    return warnings


def _record_versions(connector, tools: list[Tool]):
    """Add each tool's definition, as just stored, to its history: in one statement (a sync
    may store thousands), after a flush gives new tools their ids."""
    if not tools:
        return
    db.session.flush()
    db.session.execute(insert(ToolDefinition), [{
        "tool_id": t.id, "connector_id": connector.id, "definition_hash": t.definition_hash,
        "title": t.title, "description": t.description, "input_schema": t.input_schema,
        "output_schema": t.output_schema, "annotations": t.annotations,
    } for t in tools])  # fmt: skip


def record_item_versions(connector, items: list[CatalogItem]):
    """Add each catalog item's definition, as just stored, to its history (one statement,
    after a flush gives new items their ids), and prune each to the newest."""
    if not items:
        return
    db.session.flush()
    db.session.execute(insert(CatalogItemDefinition), [{
        "item_id": i.id, "connector_id": connector.id, "definition_hash": i.definition_hash,
        "title": i.title, "description": i.description, "definition": i.definition,
    } for i in items])  # fmt: skip
    _prune_versions([i.id for i in items], CatalogItemDefinition, "item_id")


def _prune_versions(ids: list[int], model=ToolDefinition, column="tool_id"):
    """Delete all but the newest ``MAX_VERSIONS`` definitions of these tools (or items)."""
    if not ids:
        return
    owner = getattr(model, column)
    newest_first = func.row_number().over(partition_by=owner, order_by=model.id.desc())
    ranked = select(model.id, newest_first.label("rank")).where(owner.in_(ids)).subquery()
    old = select(ranked.c.id).where(ranked.c.rank > MAX_VERSIONS)
    db.session.execute(
        delete(model).where(model.id.in_(old)),
        execution_options={"synchronize_session": False},
    )


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _small_json(value, limit: int) -> dict | None:
    """``value`` if it is a JSON object of at most ``limit`` bytes, else None."""
    if not isinstance(value, dict):
        return None
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    return value if size <= limit else None
