"""An agent's or a connector's calls over the last days: calls, errors and p50/p95 latency per
day, and its latest failures.

Percentiles come from one ``GROUP BY (day, latency bucket)`` over the window, on SQLite and
PostgreSQL alike: each call falls in one of ``BOUNDS``' fixed buckets, and the pN of a day is the
longest call in the bucket where the day's cumulative count reaches N % (nearest rank). So a
figure is never below the true one and at most one bucket step (≤ 1.5×) above it, and a
bucket of calls that all took the same time gives it exactly. The query reads the agent's (or
connector's) rows through the ``(agent_id, id)`` / ``(connector_id, id)`` index: its cost follows
that agent's calls in the log, which retention (``CALL_LOG_DAYS``) bounds, not the whole log.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import case, func, select

from ..extensions import db
from ..models import CallRecord
from .calllog import Outcome

DAYS = 14
FAILURES = 5
# Upper bounds of the latency buckets, in milliseconds; a last bucket holds everything longer.
BOUNDS = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000,
    3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000, 120000,
)  # fmt: skip
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class DayUsage:
    """One day (or the whole window): calls, calls that did not end ``ok``, and latency
    percentiles in milliseconds (None with no calls)."""

    day: date | None
    calls: int
    errors: int
    p50: float | None
    p95: float | None

    @property
    def error_rate(self) -> float | None:
        """Share of calls that did not end ``ok`` (0–1); None with no calls."""
        return self.errors / self.calls if self.calls else None


@dataclass(frozen=True)
class Usage:
    days: list[DayUsage]  # oldest first, one per day, days without calls included
    total: DayUsage  # the whole window


def usage(agent_id: int | None = None, connector_id: int | None = None, now=None, days=DAYS):
    """Usage of one agent or one connector (exactly one id given) over the ``days`` UTC days
    ending today. One statement."""
    owner = _owner(agent_id, connector_id)
    today = (now or datetime.now(UTC)).date()
    first = datetime.combine(today - timedelta(days=days - 1), time(), UTC)
    end = first + timedelta(days=days)
    day = case(
        *((CallRecord.at < first + timedelta(days=i + 1), i) for i in range(days - 1)),
        else_=days - 1,
    )
    bucket = case(
        *((CallRecord.total_ms <= bound, i) for i, bound in enumerate(BOUNDS)), else_=len(BOUNDS)
    )
    failed = case((CallRecord.outcome == Outcome.OK, 0), else_=1)
    calls = (
        select(
            day.label("day"),
            bucket.label("bucket"),
            failed.label("failed"),
            CallRecord.total_ms.label("ms"),
        )
        .where(owner, CallRecord.at >= first, CallRecord.at < end)
        .subquery()
    )
    grouped = select(
        calls.c.day, calls.c.bucket, func.count(), func.sum(calls.c.failed), func.max(calls.c.ms)
    ).group_by(calls.c.day, calls.c.bucket)
    counts = {}  # day → {bucket: (calls, errors, longest)}
    for day_index, bucket_index, n, errors, longest in db.session.execute(grouped):
        counts.setdefault(day_index, {})[bucket_index] = (n, int(errors or 0), longest)
    per_day = [_summary(first.date() + timedelta(days=i), counts.get(i, {})) for i in range(days)]
    merged = {}
    for buckets in counts.values():
        for index, (n, errors, longest) in buckets.items():
            before = merged.get(index, (0, 0, 0.0))
            merged[index] = (before[0] + n, before[1] + errors, max(before[2], longest))
    return Usage(per_day, _summary(None, merged))


def _summary(day, buckets: dict) -> DayUsage:
    calls = sum(n for n, _, _ in buckets.values())
    errors = sum(e for _, e, _ in buckets.values())
    p50, p95 = (percentile(buckets, q) for q in QUANTILES)
    return DayUsage(day, calls, errors, p50, p95)


def percentile(buckets: dict, q: float) -> float | None:
    """The ``q`` quantile (0–1) from ``{bucket index: (count, errors, longest ms)}``: the
    longest call of the bucket holding the nearest-rank ``ceil(q·n)``-th call."""
    total = sum(n for n, _, _ in buckets.values())
    if not total:
        return None
    rank = max(1, math.ceil(round(q * total, 9)))  # rounded: 0.95 × 20 must be 19, not 19.0…1
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index][0]
        if seen >= rank:
            return float(buckets[index][2])
    return None  # unreachable: the counts add up to total


def recent_failures(agent_id: int | None = None, connector_id: int | None = None, limit=FAILURES):
    """The latest calls of one agent or connector that did not end ``ok``, newest first."""
    owner = _owner(agent_id, connector_id)
    query = (
        select(CallRecord)
        .where(owner, CallRecord.outcome != Outcome.OK)
        .order_by(CallRecord.id.desc())
        .limit(limit)
    )
    return db.session.scalars(query).all()


def _owner(agent_id, connector_id):
    if (agent_id is None) == (connector_id is None):
        raise ValueError("usage of one agent or one connector: give exactly one id")
    if agent_id is not None:
        return CallRecord.agent_id == agent_id
    return CallRecord.connector_id == connector_id
