"""Retention: delete call log rows older than ``CALL_LOG_DAYS`` and audit events older than
``AUDIT_LOG_DAYS``; legacy agent sessions unused for ``SESSION_IDLE_DAYS`` (their client
initializes again on the 404 it gets) and cancellations kept longer than any call runs.

Rows go in batches of ``BATCH`` ids, each batch its own short transaction (committed here),
so neither SQLite's single writer nor a PostgreSQL table waits on one long DELETE, and a
request that records a call or an event meanwhile is held up for one batch at most. A row
exactly ``days`` old stays; one a moment older goes.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from ..extensions import db
from ..models import AuditEvent, CallRecord, GatewayCancellation, GatewaySession, utcnow

BATCH = 2000  # ids per DELETE
SESSION_IDLE_DAYS = 30
CANCELLATION_DAYS = 1  # a legacy client's notifications/cancelled outlives its call by far


@dataclass
class Pruned:
    calls: int = 0
    audit_events: int = 0
    call_days: int = 0
    audit_days: int = 0
    sessions: int = 0


def prune(now: datetime | None = None, batch: int = BATCH) -> Pruned:
    """Delete what is older than the settings allow; how many rows of each went. Commits
    after each batch (the session must have nothing pending)."""
    cfg, now = current_app.config, now or utcnow()
    result = Pruned(call_days=cfg["CALL_LOG_DAYS"], audit_days=cfg["AUDIT_LOG_DAYS"])
    result.calls = prune_older(CallRecord, now - timedelta(days=result.call_days), batch)
    result.audit_events = prune_older(AuditEvent, now - timedelta(days=result.audit_days), batch)
    idle = now - timedelta(days=SESSION_IDLE_DAYS)
    result.sessions = db.session.execute(
        delete(GatewaySession).where(GatewaySession.last_seen_at < idle)
    ).rowcount
    old = now - timedelta(days=CANCELLATION_DAYS)
    db.session.execute(delete(GatewayCancellation).where(GatewayCancellation.created_at < old))
    db.session.commit()
    return result


def prune_older(model, cutoff: datetime, batch: int = BATCH) -> int:
    """Delete ``model`` rows (``CallRecord`` or ``AuditEvent``) whose ``at`` is before
    ``cutoff``, oldest ids first, ``batch`` at a time; the number deleted."""
    total = 0
    while True:
        # Ids first, then a DELETE by primary key: both dialects, and the lock covers only
        # the rows of this batch.
        ids = db.session.scalars(
            select(model.id).where(model.at < cutoff).order_by(model.id).limit(batch)
        ).all()
        if not ids:
            return total
        db.session.execute(delete(model).where(model.id.in_(ids)))
        db.session.commit()
        total += len(ids)
        if len(ids) < batch:
            return total
