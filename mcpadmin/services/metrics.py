"""Prometheus metrics: what the app counts as it works, and the text a scrape returns.

The counters live in this process, or, when ``PROMETHEUS_MULTIPROC_DIR`` names a directory
before this module is imported (``gunicorn.conf.py`` sees to it), in files there that every
worker writes and a scrape sums. The credentials needing reconnect are read from the database
at scrape time instead, so every process gives the same answer. Recording never raises: a
metric that cannot be written must not fail the call, refresh or sync it describes.
"""

import logging
import os
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from sqlalchemy import func, select

from ..extensions import db
from ..models import AgentConnection, Connector
from .lifecycle import Status

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format ``generate_latest`` writes, which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a cached local tool (5 ms) to CALL_TIMEOUT's default (300 s).
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# Created unregistered: each scrape builds its own registry (see ``exposition``).
TOOL_CALLS = Counter(
    "mcpadmin_tool_calls",
    "Agent tool calls through the gateway, by agent, connector and outcome.",
    ["agent", "connector", "outcome"],
    registry=None,
)
# No agent label: agents times connectors times buckets grows too fast.
TOOL_CALL_SECONDS = Histogram(
    "mcpadmin_tool_call_duration_seconds",
    "Time from the agent's request to the answer, by connector and outcome.",
    ["connector", "outcome"],
    buckets=CALL_BUCKETS,
    registry=None,
)
TOKEN_REFRESHES = Counter(
    "mcpadmin_token_refreshes",
    "OAuth token refreshes that ran, by outcome (ok, dead_grant, failed).",
    ["outcome"],
    registry=None,
)
TOOL_SYNCS = Counter(
    "mcpadmin_tool_syncs",
    "Tool list syncs, by outcome (ok, failed).",
    ["outcome"],
    registry=None,
)
IN_PROCESS = (TOOL_CALLS, TOOL_CALL_SECONDS, TOKEN_REFRESHES, TOOL_SYNCS)


class Refresh(StrEnum):
    """How a token refresh ended (the ``outcome`` label)."""

    OK = "ok"
    DEAD_GRANT = "dead_grant"  # the holder needs reconnect now
    FAILED = "failed"  # the token endpoint was down or refused; the tokens are kept


class Sync(StrEnum):
    """How a tool sync ended (the ``outcome`` label)."""

    OK = "ok"
    FAILED = "failed"


def observe_call(agent: str, connector: str | None, outcome: str, seconds: float):
    """One agent tool call ended with ``outcome`` (``calllog.Outcome``) after ``seconds``;
    ``connector`` is None when the call named no connector this agent may use (the label is
    then empty)."""
    try:
        TOOL_CALLS.labels(agent, connector or "", outcome).inc()
        TOOL_CALL_SECONDS.labels(connector or "", outcome).observe(seconds)
    except Exception:
        log.exception("could not record a tool call metric")


def observe_refresh(outcome: str):
    """One OAuth token refresh ended: "ok", "dead_grant" or "failed" (``Refresh``)."""
    try:
        TOKEN_REFRESHES.labels(outcome).inc()
    except Exception:
        log.exception("could not record a token refresh metric")


def observe_sync(outcome: str):
    """One tool sync ended: "ok" or "failed" (``Sync``)."""
    try:
        TOOL_SYNCS.labels(outcome).inc()
    except Exception:
        log.exception("could not record a sync metric")


def needing_reconnect() -> dict[str, int]:
    """Every connector's name with how many of its credentials (its own, and its agents'
    connections) need the operator to Connect again; 0 for the others.

    :raise sqlalchemy.exc.SQLAlchemyError: the database did not answer.
    """
    counts = dict.fromkeys(db.session.scalars(select(Connector.name)), 0)
    shared = (
        select(Connector.name, func.count())
        .where(Connector.status == Status.NEEDS_RECONNECT)
        .group_by(Connector.name)
    )
    per_agent = (
        select(Connector.name, func.count())
        .join(AgentConnection, AgentConnection.connector_id == Connector.id)
        .where(AgentConnection.status == Status.NEEDS_RECONNECT)
        .group_by(Connector.name)
    )
    for query in (shared, per_agent):
        for name, count in db.session.execute(query):
            counts[name] += count
    return counts


class _Scrape:
    """The values read at scrape time rather than counted: the app's version and the
    credentials needing reconnect (from ``needing_reconnect``)."""

    def __init__(self, reconnect: dict[str, int]):
        self.reconnect = reconnect

    def collect(self):
        info = InfoMetricFamily("mcpadmin", "The running mcpadmin.")
        info.add_metric([], {"version": app_version()})
        yield info
        gauge = GaugeMetricFamily(
            "mcpadmin_credentials_needing_reconnect",
            "Credentials (a connector's own, or an agent's connection) the operator must "
            "Connect again, by connector.",
            labels=["connector"],
        )
        for name, count in sorted(self.reconnect.items()):
            gauge.add_metric([name], count)
        yield gauge


def exposition(reconnect: dict[str, int]) -> bytes:
    """The Prometheus text format of every metric: the counters of all processes (summed from
    ``PROMETHEUS_MULTIPROC_DIR`` when it is set) and ``reconnect`` (``needing_reconnect()``)."""
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in IN_PROCESS:
            registry.register(metric)
    registry.register(_Scrape(reconnect))
    return generate_latest(registry)


def app_version() -> str:
    """The installed mcpadmin's version ("unknown" when run from a tree not installed)."""
    try:
        return version("mcpadmin")
    except PackageNotFoundError:
        return "unknown"
