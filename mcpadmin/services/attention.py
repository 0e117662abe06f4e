"""Needs attention: everything that waits for a person, each with a sentence and its fix.

Four kinds, read in four statements whatever the number of connectors, agents or calls
(cheap enough for the navigation badge on every page):

- **credentials** whose state (``lifecycle.present``: the one owner of that state) is Needs
  reconnect, Error or Unreadable: a connector's shared credential, or an agent's own
  connection to a per-agent connector;
- **failing connectors**: more than ``ATTENTION_ERROR_RATE`` of a connector's calls in the
  last hour failed, counted from ``ATTENTION_MIN_CALLS`` calls on (``FAILED`` below says
  which outcomes are the connector's failure, ``NOT_COUNTED`` which say nothing about it);
- **definitions to review**: enabled tools whose definition changed (``changed_tools``);
- **keys expiring** within ``ATTENTION_KEY_DAYS`` days (not revoked, not yet expired).

Each item has a stable ``key``: the same condition gives the same key on every worker and
every run, so a webhook sends it once (``services.webhooks``); a new state gives a new key.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import case, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import AgentConnection, AgentKey, CallRecord, Connector, utcnow
from . import lifecycle
from .calllog import Outcome
from .lifecycle import Action, Shown

WINDOW = timedelta(hours=1)
# Outcomes that say the connector (or its credential) failed the call.
FAILED = (Outcome.PROTOCOL, Outcome.NO_CREDENTIAL, Outcome.NEEDS_RECONNECT, Outcome.TIMEOUT,
          Outcome.DOWN)  # fmt: skip
# Outcomes that say nothing of the connector: the agent asked for a tool it may not use or
# gave up, or an operator holds the tool for review (its own item). ``ok`` and
# ``tool_error`` (the tool answered, with an error of its own) count as answered.
NOT_COUNTED = (Outcome.NOT_ALLOWED, Outcome.DEFINITION_CHANGED, Outcome.CANCELLED)
# The credential states a person must act on.
BROKEN = (Shown.NEEDS_RECONNECT, Shown.ERROR, Shown.UNREADABLE)
MAX_KEY = 200  # characters of a key (``WebhookDelivery.event_key``)


class Kind(StrEnum):
    CREDENTIAL = "credential"
    ERROR_RATE = "error_rate"
    REVIEW = "review"
    KEY_EXPIRING = "key_expiring"


# Headings, in the order the page shows the kinds.
HEADINGS = {
    Kind.CREDENTIAL: "Credentials to renew or check",
    Kind.ERROR_RATE: "Connectors failing calls",
    Kind.REVIEW: "Tool definitions to review",
    Kind.KEY_EXPIRING: "Agent keys expiring soon",
}


class Severity(StrEnum):
    ERROR = "error"  # agents' calls fail now
    WARNING = "warning"  # they will, or are held, until someone acts


@dataclass(frozen=True)
class Fix:
    """Where the fix is: a page (endpoint and its values, ``url_for``'s arguments) and the
    part of it (``anchor``), with the words of the link."""

    label: str
    endpoint: str
    values: dict = field(default_factory=dict)
    anchor: str | None = None


@dataclass(frozen=True)
class Item:
    key: str
    kind: Kind
    severity: Severity
    text: str
    fix: Fix

    def event(self, url: str, at: datetime) -> dict:
        """The item as a webhook sends it (``url``: the fix's absolute address)."""
        return {"key": self.key, "kind": str(self.kind), "severity": str(self.severity),
                "text": self.text, "url": url, "fix": self.fix.label,
                "at": at.isoformat()}  # fmt: skip


def items(now: datetime | None = None) -> list[Item]:
    """Everything that needs a person at ``now``, grouped by kind (``HEADINGS``' order), then
    errors before warnings, then by text. Four statements; flushes nothing."""
    now = now or utcnow()
    config = current_app.config
    with db.session.no_autoflush:
        connectors = {c.id: c for c in db.session.scalars(select(Connector))}
        connections = db.session.scalars(
            select(AgentConnection).options(joinedload(AgentConnection.agent))
        ).all()
        found = [
            *_credentials(connectors.values(), connections),
            *_error_rates(
                connectors, now, config["ATTENTION_ERROR_RATE"], config["ATTENTION_MIN_CALLS"]
            ),
            *_reviews(connections),
            *_expiring_keys(now, timedelta(days=config["ATTENTION_KEY_DAYS"])),
        ]
    order = list(HEADINGS)
    found.sort(key=lambda i: (order.index(i.kind), i.severity != Severity.ERROR, i.text))
    return found


def grouped(found: list[Item]) -> list[tuple[str, list[Item]]]:
    """``(heading, items)`` for each kind that has items, in ``HEADINGS``' order."""
    groups = [(heading, [i for i in found if i.kind == kind]) for kind, heading in HEADINGS.items()]
    return [(heading, members) for heading, members in groups if members]


def _credentials(connectors, connections):
    for connector in connectors:
        if not connector.per_agent:
            shown = lifecycle.present(connector, None)
            if shown.shown in BROKEN:
                yield _credential_item(connector, None, shown)
    for connection in connections:
        connector = connection.connector
        if connector.per_agent and connector.auth_type != "none":
            shown = lifecycle.present(connector, connection)
            if shown.shown in BROKEN:
                yield _credential_item(connector, connection, shown)


def _credential_item(connector, connection, shown: lifecycle.Presentation) -> Item:
    message = f" {shown.message}" if shown.message else ""
    if connection is None:
        shared = " (shared credential)" if connector.auth_type != "none" else ""
        whose = f"{connector.name}{shared}"
        key = f"credential/{connector.id}/{shown.shown}"
        endpoint, values, anchor = "connectors.show", {"id": connector.id}, None
        if shown.can(Action.ENTER_SECRET):
            endpoint = "connectors.update"
    else:
        agent = connection.agent
        whose = f"{agent.name}'s credential for {connector.name}"
        key = f"credential/{connector.id}/agent/{agent.id}/{shown.shown}"
        endpoint, values = "agents.update", {"id": agent.id}
        anchor = f"connector-{connector.id}"
    label = _FIX_WORDS.get(next(iter(shown.actions), None), "Open")
    return Item(
        key,
        Kind.CREDENTIAL,
        Severity.ERROR,
        f"{whose}: {shown.badge}.{message}",
        Fix(label, endpoint, values, anchor),
    )


_FIX_WORDS = {
    Action.RECONNECT: "Reconnect",
    Action.CONNECT: "Connect",
    Action.ENTER_SECRET: "Enter the token or key",
    Action.SYNC: "Check and sync",
}


def _error_rates(connectors, now, threshold, minimum):
    """One aggregate over the last hour's calls (the ``at`` index), per connector."""
    failed = func.sum(case((CallRecord.outcome.in_([str(o) for o in FAILED]), 1), else_=0))
    rows = db.session.execute(
        select(CallRecord.connector_id, func.count(), failed)
        .where(
            CallRecord.at >= now - WINDOW,
            CallRecord.connector_id.is_not(None),
            CallRecord.outcome.not_in([str(o) for o in NOT_COUNTED]),
        )
        .group_by(CallRecord.connector_id)
        .having(func.count() >= minimum)
    )
    for connector_id, total, failures in rows:
        connector = connectors.get(connector_id)
        if connector is None or not failures or failures / total <= threshold:
            continue
        yield Item(
            f"error-rate/{connector_id}",
            Kind.ERROR_RATE,
            Severity.ERROR,
            f"{connector.name}: {failures} of {total} calls in the last hour failed "
            f"({round(100 * failures / total)} %).",
            Fix("See the failed calls", "records.calls", {"connector": connector_id}),
        )


def _reviews(connections):
    for connection in connections:
        enabled = set(connection.enabled_tools or [])
        for tool in sorted(set(connection.changed_tools or []) & enabled):
            connector, agent = connection.connector, connection.agent
            yield Item(
                _key(f"review/{connector.id}/agent/{agent.id}/", tool),
                Kind.REVIEW,
                Severity.WARNING,
                f"{tool} on {connector.name} changed since it was enabled for {agent.name}; "
                "agents cannot call it until it is reviewed.",
                Fix("Review", "agents.update", {"id": agent.id}, f"connector-{connector.id}"),
            )


def _expiring_keys(now, within):
    keys = db.session.scalars(
        select(AgentKey)
        .options(joinedload(AgentKey.agent))
        .where(
            AgentKey.revoked_at.is_(None),
            AgentKey.expires_at > now,
            AgentKey.expires_at <= now + within,
        )
    )
    for key in keys:
        days = (key.expires_at - now).days
        when = "within a day" if days < 1 else f"in {days} day{'s' if days > 1 else ''}"
        yield Item(
            f"key-expiring/{key.id}",
            Kind.KEY_EXPIRING,
            Severity.WARNING,
            f"Key “{key.label}” of {key.agent.name} expires {when} "
            f"({key.expires_at:%Y-%m-%d %H:%M} UTC): create its successor and move the clients.",
            Fix("Open the agent's keys", "agents.update", {"id": key.agent.id}, "keys"),
        )


def _key(prefix: str, name: str) -> str:
    """``prefix + name``, within ``MAX_KEY`` characters (a long name is replaced by its
    digest: still stable, still distinct)."""
    key = prefix + name
    if len(key) <= MAX_KEY:
        return key
    return prefix + hashlib.sha256(name.encode()).hexdigest()
