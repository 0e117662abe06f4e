"""The tool catalog: store a listing on the connector and keep every agent's choices within
what it is offered, flagging enabled tools whose definition changed.

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

from ..models import AgentConnection, Tool
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
            if listed_for_other and lifecycle.stored_value(connector, other) is not None:
                keep.update(other.offered_tools)
        if connection is not None and lifecycle.stored_value(connector, connection) is not None:
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
    output_schema = definition.get("outputSchema")
    tool.output_schema = _small_json(output_schema, MAX_SCHEMA_BYTES)
    if isinstance(output_schema, dict) and tool.output_schema is None:
        warnings.append(f"The output schema of {tool.name[:80]!r} is larger than "
                        f"{MAX_SCHEMA_BYTES // 1024} KB and was not stored.")  # fmt: skip
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
