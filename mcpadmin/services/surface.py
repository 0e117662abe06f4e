"""What a server offers besides tools: store a listing's resources, resource templates and
prompts as ``CatalogItem`` rows, keep every agent's choices within what exists, and flag
enabled prompts whose definition changed.

One row per (connector, kind, key): a resource's URI, a template's URI template, a prompt's
name. A list the server did not answer (``None`` on the listing: a failure, already a
warning) leaves that kind's rows alone; a capability it does not declare lists nothing, so a
shared connector's rows of that kind go. A per-agent connector keeps the union of what its
accounts were offered: each sync adds and updates, none removes (unlike tools, no account
remembers its own items; a per-agent server rarely varies these by account).

Prompts get the tools' changed-definition treatment: a sync that changes the definition of
a prompt a connection has enabled adds it to ``changed_prompts``, and the gateway holds it
until an operator marks it reviewed (``mark_prompt_reviewed``). Like a tool, a prompt keeps
its history (``catalog.versions`` / ``catalog.reviews``): each definition it has had, the one
an agent had enabled when a sync flagged it, and the one an operator marked reviewed.

Hostile listings: an item without a key, a key longer than the column, a duplicate, or a
definition too large to store even with its text cut is skipped; text beyond the caps of
``catalog`` is cut. Each is one warning in the sync's result, never an error.
"""

import json
import logging
from dataclasses import dataclass, field

from ..models import ALL_RESOURCES, AgentConnection, CatalogItem, ItemKind
from ..protocol import mcp
from . import catalog
from .catalog import MAX_DESCRIPTION, MAX_TITLE, ReviewKind, definition_hash

log = logging.getLogger(__name__)

MAX_KEY = 1024  # CatalogItem.key: a longer URI or name cannot be stored, so it is skipped
MAX_NAME = 255  # CatalogItem.name and mime_type
MAX_DEFINITION_BYTES = 64 * 1024  # a whole definition, text already cut
MAX_CAPABILITIES_BYTES = 16 * 1024

# kind → (Listing field, the definition field that is its key, what it is called)
KINDS = {
    ItemKind.RESOURCE: ("resources", "uri", "resource"),
    ItemKind.TEMPLATE: ("templates", "uriTemplate", "resource template"),
    ItemKind.PROMPT: ("prompts", "name", "prompt"),
}
# The capabilities kept when the server's whole object is too large to store.
KNOWN_CAPABILITIES = ("tools", "resources", "prompts", "completions", "logging")


@dataclass
class Stored:
    """What one sync did to one kind: the keys now listed, and those new, changed, removed."""

    listed: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def store(connector, connection: AgentConnection | None, listing: mcp.Listing) -> dict:
    """Store the listing's capabilities and items on ``connector``; return ``{kind: Stored}``
    for each kind the listing answered. Warnings go to ``listing.warnings``. ``connection``
    is the per-agent connection the listing was made with (None for a shared connector)."""
    if listing.capabilities is not None:
        connector.server_capabilities = _capabilities(listing.capabilities)
    existing = {(item.kind, item.key): item for item in connector.items}
    results, warned = {}, len(listing.warnings)
    changed_prompts, stored_prompts = {}, []  # name → (item, the hash it had); items stored
    for kind, (attribute, key_field, noun) in KINDS.items():
        definitions = getattr(listing, attribute)
        if definitions is None:
            continue
        kept = _checked(definitions, key_field, noun, listing.warnings)
        results[kind] = done = Stored(listed=len(kept))
        for key, definition in kept.items():
            digest = definition_hash(definition)
            item = existing.get((kind, key))
            if item is None:
                item = CatalogItem(kind=kind, key=key)
                connector.items.append(item)
                done.added.append(key)
            elif item.definition_hash == digest:
                continue
            else:
                done.changed.append(key)
                if kind == ItemKind.PROMPT:
                    changed_prompts[key] = (item, item.definition_hash)
            _copy(item, definition, digest)
            if kind == ItemKind.PROMPT:
                stored_prompts.append(item)
        if not connector.per_agent:
            for (other_kind, key), item in existing.items():
                if other_kind == kind and key not in kept:
                    connector.items.remove(item)
                    done.removed.append(key)
    for done in results.values():
        for keys in (done.added, done.changed, done.removed):
            keys.sort()
    catalog.record_item_versions(connector, stored_prompts)
    _settle_choices(connector, changed_prompts)
    for warning in listing.warnings[warned:]:
        log.warning("%s: %s", connector.url, warning)
    return results


def mark_prompt_reviewed(connection: AgentConnection, item: CatalogItem, admin_name=None):
    """An operator (``admin_name``) looked at the current definition of the prompt ``item``
    for the connection's agent: stop holding it, and record which definition they reviewed."""
    connection.changed_prompts = [n for n in connection.changed_prompts or [] if n != item.key]
    catalog.accept(connection, item, ReviewKind.REVIEWED, item.definition_hash, admin_name)


def _settle_choices(connector, changed_prompts: dict):
    """Keep each connection's enabled prompts and resources within the connector's items
    (``"*"`` stays), and flag the enabled prompts among ``changed_prompts`` (name → (item,
    the hash it had)): one newly flagged records the definition its agent had (``FLAGGED``)."""
    keys = {kind: set() for kind in KINDS}
    for item in connector.items:
        keys.setdefault(item.kind, set()).add(item.key)
    resources = keys[ItemKind.RESOURCE] | keys[ItemKind.TEMPLATE] | {ALL_RESOURCES}
    for connection in connector.connections:
        prompts = [n for n in connection.enabled_prompts or [] if n in keys[ItemKind.PROMPT]]
        flagged = sorted((set(connection.changed_prompts or []) | set(changed_prompts))
                         & set(prompts))  # fmt: skip
        for name in set(flagged) - set(connection.changed_prompts or []):
            item, had = changed_prompts[name]
            catalog.accept(connection, item, ReviewKind.FLAGGED, had)
        chosen = [k for k in connection.enabled_resources or [] if k in resources]
        if prompts != (connection.enabled_prompts or []):
            connection.enabled_prompts = prompts
        if flagged != (connection.changed_prompts or []):
            connection.changed_prompts = flagged
        if chosen != (connection.enabled_resources or []):
            connection.enabled_resources = chosen


def _checked(definitions: list, key_field: str, noun: str, warnings: list) -> dict:
    """The definitions fit to store, by key (the first of duplicates); a warning per skip."""
    kept = {}
    for definition in definitions:
        key = definition.get(key_field) if isinstance(definition, dict) else None
        problem = None
        if not isinstance(key, str) or not key:
            problem = f"A {noun} without a {key_field} was skipped."
        elif len(key) > MAX_KEY:
            problem = f"The {noun} {key[:80]!r}… is longer than {MAX_KEY} characters; skipped."
        elif key_field == "name" and len(key) > MAX_NAME:
            problem = f"The {noun} {key[:80]!r}… has a name longer than {MAX_NAME}; skipped."
        elif key in kept:
            problem = f"The {noun} {key[:80]!r} is listed twice; the first definition is kept."
        else:
            definition = _within_caps(definition, warnings, noun, key)
            if definition is None:
                problem = (f"The {noun} {key[:80]!r} has a definition larger than "
                           f"{MAX_DEFINITION_BYTES // 1024} KB; skipped.")  # fmt: skip
        if problem:
            warnings.append(problem)
            continue
        kept[key] = definition
    return kept


def _within_caps(definition: dict, warnings: list, noun: str, key: str) -> dict | None:
    """The definition with its title and description cut to the caps (a warning when the
    description is), or None when it is still too large to store."""
    capped = dict(definition)
    for name, limit in (("title", MAX_TITLE), ("description", MAX_DESCRIPTION)):
        text = capped.get(name)
        if isinstance(text, str) and len(text) > limit:
            capped[name] = _cut(text, limit)
            warnings.append(f"The {name} of the {noun} {key[:80]!r} was cut to {limit} "
                            "characters.")  # fmt: skip
    if _size(capped) > MAX_DEFINITION_BYTES:
        return None
    return capped


def _copy(item: CatalogItem, definition: dict, digest: str):
    """The columns are read from the (capped) definition: short text only, else None."""
    item.name = _text(definition.get("name"), MAX_NAME)
    item.title = _text(definition.get("title"), MAX_TITLE)
    item.description = _text(definition.get("description"), MAX_DESCRIPTION)
    mime_type = definition.get("mimeType")
    item.mime_type = mime_type if isinstance(mime_type, str) and len(mime_type) <= 255 else None
    item.definition = definition
    item.definition_hash = digest


def _capabilities(capabilities: dict) -> dict:
    if _size(capabilities) <= MAX_CAPABILITIES_BYTES:
        return capabilities
    log.warning("a server declared %d bytes of capabilities; only the known ones are kept",
                _size(capabilities))  # fmt: skip
    return {
        name: value
        for name in KNOWN_CAPABILITIES
        if isinstance(value := capabilities.get(name), dict) and _size(value) <= 1024
    }


def _text(value, limit: int) -> str | None:
    return _cut(value, limit) if isinstance(value, str) else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
