"""Narrowing the connectors and agents indexes: part of a name, a credential's badge
(``lifecycle.Shown``) and an auth type, read from a query string.

The indexes load every row anyway (a handful to a few hundred); this says which to keep, and
what each agent's connectors show, so the agents index can be narrowed like the connectors
one. Nothing here touches Flask.
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..models import AUTH_TYPES, AgentConnection, Connector, slug_base
from . import lifecycle
from .lifecycle import BADGES, Shown

# The longest name a filter keeps (names are at most 100 characters).
MAX_NAME = 100


@dataclass(frozen=True)
class IndexFilter:
    """What an index was asked to show; a value the page does not offer counts as unset."""

    name: str = ""
    status: str = ""
    auth: str = ""

    @classmethod
    def parse(cls, args: Mapping) -> "IndexFilter":
        status = (args.get("status") or "").strip()
        auth = (args.get("auth") or "").strip()
        return cls(
            name=(args.get("q") or "").strip()[:MAX_NAME],
            status=status if status in set(Shown) else "",
            auth=auth if auth in AUTH_TYPES else "",
        )

    def __bool__(self):
        return bool(self.name or self.status or self.auth)

    @property
    def values(self) -> dict:
        """The query string that asks for this again (``url_for(..., **values)``)."""
        found = {"q": self.name, "status": self.status, "auth": self.auth}
        return {key: value for key, value in found.items() if value}

    def keeps(self, name: str, credentials: Iterable[tuple]) -> bool:
        """Whether a row named ``name`` is one asked for; ``credentials`` are its
        ``(Connector, lifecycle.Presentation)`` pairs (any of them may match)."""
        credentials = list(credentials)
        return (
            (not self.name or self.name.casefold() in name.casefold())
            and (not self.status or any(p.shown == self.status for _, p in credentials))
            and (not self.auth or any(c.auth_type == self.auth for c, _ in credentials))
        )


# ``AgentFilter.owner``: the signed-in person's agents, and agents nobody owns.
ME, NO_OWNER = "me", "none"


@dataclass(frozen=True)
class AgentFilter(IndexFilter):
    """The agents index's filters, with ``owner``: "" (everyone), ``ME``, ``NO_OWNER``, or a
    person's id (as text). Only roles that see every agent are offered it."""

    owner: str = ""

    @classmethod
    def parse(cls, args: Mapping, owners: bool = True) -> "AgentFilter":
        """``owners``: whether the page offers the owner filter (else it counts as unset)."""
        owner = (args.get("owner") or "").strip()
        valid = owner in (ME, NO_OWNER) or (owner.isdigit() and owner.isascii())
        base = IndexFilter.parse(args)
        return cls(base.name, base.status, base.auth, owner if owners and valid else "")

    def __bool__(self):
        return super().__bool__() or bool(self.owner)

    @property
    def values(self) -> dict:
        return {**super().values, **({"owner": self.owner} if self.owner else {})}

    def keeps_owner(self, owner_id: int | None, my_id: int) -> bool:
        """Whether an agent owned by ``owner_id`` is one asked for (``my_id``: who asks)."""
        if self.owner == ME:
            return owner_id == my_id
        if self.owner == NO_OWNER:
            return owner_id is None
        return not self.owner or str(owner_id) == self.owner


def owner_choices(people: Iterable) -> dict[str, str]:
    """The owner filter's choices, value → words: everyone, me, no owner, then each of
    ``people`` (those who own agents: ``AdminUser`` rows)."""
    named = {str(p.id): p.shown_name + ("" if p.active else " (deactivated)") for p in people}
    return {"": "Everyone", ME: "Me", NO_OWNER: "No owner", **named}


def status_choices(per_agent: bool = True) -> dict[str, str]:
    """The badges a status filter offers, value → words (``per_agent``: with the one a
    per-agent connector shows as a whole)."""
    return {k.value: v for k, v in BADGES.items() if per_agent or k != Shown.PER_AGENT}


def agents_connectors(connections: Iterable[AgentConnection]) -> dict[int, list[tuple]]:
    """Each agent's connectors (agent id → ``(Connector, lifecycle.Presentation)`` pairs in
    connector name order): those it has tools, prompts or resources enabled on or its own
    credential for, with the credential its card shows (its own on a per-agent connector,
    else the shared one)."""
    found = defaultdict(list)
    for connection in connections:
        connector: Connector = connection.connector
        presented = lifecycle.present(connector, connection)
        own = connector.per_agent and presented.shown != Shown.NO_CREDENTIAL
        chosen = (connection.enabled_tools or connection.enabled_prompts
                  or connection.enabled_resources)  # fmt: skip
        if chosen or own:
            found[connection.agent_id].append((connector, presented))
    for pairs in found.values():
        pairs.sort(key=lambda pair: pair[0].name.casefold())
    return found


def prefix_kept(name: str, slug: str) -> bool:
    """Whether a connector's tool prefix (``slug``) comes from a name before ``name``: a
    rename keeps the prefix, so agents' tool names stay put (``models.Connector.slug``)."""
    base = slug_base(name or "")
    return slug != base and not re.fullmatch(re.escape(base) + r"_\d+", slug or "")
