"""What an agent sees besides tools: the prompts, resources and resource templates its
connections ticked, under agent-side names, from the stored catalog (``CatalogItem`` rows).

Pure: rows in, entries and rendered pages out (``services.gateway`` reads the rows and keeps
the result per catalog version). The rules (README, "Agents connect here"):

- A prompt is named like a tool (``toolnames``): ``<connector slug>__<prompt name>``, or its
  own name when the agent keeps names and no other enabled prompt of the agent has it.
- A resource URI and a URI template are the upstream's own. When two of the agent's
  connectors expose the same one, the one whose connector comes later in slug order is
  namespaced as ``mcpadmin://<slug>/<original>`` (a scheme mcpadmin owns), and un-namespaced
  when relayed upstream.
- ``enabled_resources`` is ``["*"]`` (all of the connector's resources and templates) or a
  list of URIs and URI templates; a ticked template admits every URI it matches. Nothing not
  ticked is listed or served.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from ..models import ALL_RESOURCES, ItemKind
from ..protocol import uritemplate
from . import toolnames

SCHEME = "mcpadmin://"


@dataclass
class Item:
    """One prompt, resource or template as the agent sees it: plain values, no ORM objects.
    ``name`` is the agent-side prompt name, URI or URI template; ``key`` the upstream's."""

    kind: str
    name: str
    key: str
    definition: dict
    definition_hash: str | None
    connector_name: str
    slug: str
    connection: object  # a row: id, connector_id, changed_prompts

    @property
    def changed(self) -> bool:
        """A prompt whose definition changed since the operator ticked or last reviewed it:
        listed, but held back until reviewed (definitions are pinned)."""
        return self.kind == ItemKind.PROMPT and self.key in (self.connection.changed_prompts or [])

    def held_back(self, agent_name: str) -> str:
        """What a prompts/get of a ``changed`` prompt answers."""
        return (f"The definition of the prompt {self.key} on {self.connector_name} changed "
                f"since it was enabled for agent {agent_name}; an operator must review it on "
                "the agent's page before it can be used again.")  # fmt: skip

    def listed(self) -> dict:
        """The definition as listed to the agent: the upstream's, under the agent-side name."""
        member = {ItemKind.PROMPT: "name", ItemKind.RESOURCE: "uri"}.get(self.kind, "uriTemplate")
        return {**self.definition, member: self.name}


@dataclass
class Route:
    """Where an agent's request about one prompt or URI goes: the item it falls under (its
    connection and connector), the agent-side name and the upstream's own."""

    item: Item
    name: str
    upstream: str


class Pages:
    """One list (prompts, resources or templates) in name order, paged by ``size``, each page
    rendered once (the object is shared between requests: never changed once built)."""

    def __init__(self, items: dict, member: str, size: int):
        self.items, self.member, self.size = items, member, size
        self._pages: dict = {}

    def page(self, cursor: str | None) -> tuple[str, str | None]:
        """One page after ``cursor`` as a JSON array, and the next cursor.

        :raise ValueError: a cursor this server did not write.
        """
        page = self._pages.get(cursor)
        if page is None:
            after = cursor_name(cursor) if cursor is not None else None
            names = [n for n in self.items if after is None or n > after]
            chosen = names[: self.size]
            listed = [self.items[n].listed() for n in chosen]
            encoded = json.dumps(listed, separators=(",", ":"), ensure_ascii=False)
            more = len(names) > self.size
            page = self._pages[cursor] = (encoded, cursor_for(chosen[-1]) if more else None)
        return page


class Surface:
    """An agent's prompts, resources and templates from its ``rows`` (one per catalog item of
    each connection: see ``services.gateway._ITEM_ROWS``)."""

    def __init__(self, keep_names: bool, rows, page_size: int):
        prompts = [r for r in rows
                   if r.kind == ItemKind.PROMPT and r.key in (r.enabled_prompts or ())]  # fmt: skip
        names = toolnames.exposed_names([(r.slug, r.key) for r in prompts], keep_names)
        self.prompts = _by_name(_item(r, names[(r.slug, r.key)]) for r in prompts)
        resources = [r for r in rows if r.kind == ItemKind.RESOURCE and _admitted(r)]
        templates = [r for r in rows if r.kind == ItemKind.TEMPLATE and _ticked(r)]
        self.resources = _by_name(_namespaced(resources))
        self.templates = _by_name(_namespaced(templates))
        self.connectors = {r.slug: r.connector_name for r in rows}  # slug → name
        self.lists = {
            "prompts": Pages(self.prompts, "prompts", page_size),
            "resources": Pages(self.resources, "resources", page_size),
            "resourceTemplates": Pages(self.templates, "resourceTemplates", page_size),
        }

    def resource(self, uri: str) -> Route | None:
        """Where a read of (or subscription to) ``uri`` goes: a listed resource, else the
        first ticked template (in name order) that matches it; None when nothing ticked
        serves it."""
        item = self.resources.get(uri)
        if item is not None:
            return Route(item, uri, item.key)
        for template in self.templates.values():
            if uritemplate.matches(template.name, uri):
                return Route(template, uri, _upstream(template, uri))
        return None

    def template(self, uri_template: str) -> Route | None:
        """The template (or resource) a ``ref/resource`` completion names."""
        item = self.templates.get(uri_template) or self.resources.get(uri_template)
        return Route(item, uri_template, item.key) if item is not None else None

    def fingerprints(self) -> tuple[str, str]:
        """(resources, prompts): each changes whenever its list or a definition in it does
        (list_changed)."""
        resources = [*self.resources.values(), *self.templates.values()]
        return _fingerprint(resources), _fingerprint(self.prompts.values())


def _ticked(row) -> bool:
    enabled = row.enabled_resources or ()
    return ALL_RESOURCES in enabled or row.key in enabled


def _admitted(row) -> bool:
    """A resource is served when all resources, its URI or a template matching it is ticked."""
    enabled = row.enabled_resources or ()
    return ALL_RESOURCES in enabled or row.key in enabled or any(
        uritemplate.matches(t, row.key) for t in enabled if "{" in t)  # fmt: skip


def _namespaced(rows) -> list[Item]:
    """Each row's item; of those sharing a key, the first connector in slug order keeps it and
    the others are ``mcpadmin://<slug>/<key>``."""
    taken, items, first = set(), [], {}
    for row in sorted(rows, key=lambda r: (r.slug, r.key)):
        first.setdefault(row.key, row.slug)
    for row in sorted(rows, key=lambda r: (r.slug, r.key)):
        name = row.key if first[row.key] == row.slug else f"{SCHEME}{row.slug}/{row.key}"
        if name not in taken:
            taken.add(name)
            items.append(_item(row, name))
    return items


def _upstream(item: Item, name: str) -> str:
    """The upstream's own URI for an agent-side one under ``item``."""
    prefix = f"{SCHEME}{item.slug}/"
    if item.name != item.key and name.startswith(prefix):
        return name[len(prefix) :]
    return name


def _item(row, name: str) -> Item:
    return Item(row.kind, name, row.key, row.definition or {}, row.definition_hash,
                row.connector_name, row.slug, row)  # fmt: skip


def _by_name(items) -> dict:
    return {i.name: i for i in sorted(items, key=lambda i: i.name)}


def _fingerprint(items) -> str:
    text = "\n".join(f"{i.kind} {i.name} {i.definition_hash}" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()


def cursor_for(name: str) -> str:
    """An opaque cursor: the last name of the page before."""
    return base64.urlsafe_b64encode(name.encode()).decode()


def cursor_name(cursor) -> str:
    """:raise ValueError: not a cursor this server wrote."""
    if not isinstance(cursor, str):
        raise ValueError("cursor")
    try:
        name = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError("cursor") from None
    if cursor_for(name) != cursor:  # the decoder skips what is not base64: "%%%" reads as ""
        raise ValueError("cursor")
    return name
