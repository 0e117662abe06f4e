"""Syncing many: every credential a connector needs, every connector for ``flask
sync-tools`` on a bounded thread pool, and the outcomes as plain values to report.

Each (connector, agent) sync commits on its own: a request or command never holds a write
transaction while the next sync refreshes a token or waits for a server.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import Agent, Connector, utcnow
from . import lifecycle
from .agents import connection_for
from .sync import SyncError, sync_tools

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """One sync as the CLI and the index report it (plain values: no session needed)."""

    connector: str
    agent: str | None
    ok: bool
    message: str  # the summary, or the error sentence
    skipped: bool = False
    requests: int = 0
    # Not a failure: a per-agent server lists tools only once an agent has connected.
    waiting: bool = False

    @property
    def label(self) -> str:
        return self.connector + (f" (as {self.agent})" if self.agent else "")


def sync_connector(connector: Connector, now=None) -> list[Outcome]:
    """Sync with every credential the connector needs (see ``agents_to_sync``) in the
    caller's session, committing after each (so no write is held across the next one's
    refresh or listing); never raises ``SyncError``."""
    outcomes = []
    for agent in agents_to_sync(connector):
        outcomes.append(sync_outcome(connector, agent, now))
        db.session.commit()
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


def sync_many(pairs, workers: int = 4, stale_only: bool = False) -> list[Outcome]:
    """Run ``pairs`` (from ``plan``) on a bounded thread pool, each in its own app context and
    transaction (committed on success and on a recorded failure); the outcomes come back in
    ``pairs`` order."""
    app = current_app._get_current_object()

    def run(pair):
        with app.app_context():
            try:
                return _run_one(*pair, stale_only=stale_only)
            except Exception:  # a bug or a database failure: report it, keep the others going
                db.session.rollback()
                log.exception("sync of connector %s failed unexpectedly", pair[0])
                return Outcome(str(pair[0]), None, False, "Internal error; see the log.")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(run, pairs))


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
        return Outcome(connector.name, name, exc.expected, str(exc), waiting=exc.expected)
    return Outcome(connector.name, name, True, result.summary(), requests=result.requests)


def agents_to_sync(connector: Connector) -> list[Agent | None]:
    """Whose credential each sync of this connector uses: None for a shared connector; every
    agent with a stored credential for a per-agent one (None when there is none yet, for an
    unauthenticated listing)."""
    if not connector.per_agent:
        return [None]
    agents = [c.agent for c in connector.connections if lifecycle.stored_value(connector, c)]
    return sorted(agents, key=lambda a: a.name.lower()) or [None]


def is_fresh(connector: Connector, agent: Agent | None, now: datetime) -> bool:
    """Whether the last listing for this credential is still fresh by the server's ``ttlMs``
    [26/cache §Cacheable Model]; a per-agent listing is shared across agents only when the
    server called it public (``tools_fresh_until`` on the connector)."""
    if connector.tools_fresh_until and connector.tools_fresh_until > now:
        return True
    connection = connection_for(agent, connector) if agent and connector.per_agent else None
    return bool(connection and connection.tools_fresh_until and connection.tools_fresh_until > now)
