"""Rows for the call log and the audit trail, written straight to the tables (the pages only
read them): one factory per table, and a fast bulk insert for size tests."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from mcpadmin.extensions import db
from mcpadmin.models import AuditEvent, CallRecord

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def call(**values) -> CallRecord:
    """A call record with plausible values; ``values`` override them. Added, not committed."""
    row = CallRecord(**{**call_values(), **values})
    db.session.add(row)
    return row


def call_values(**values) -> dict:
    defaults = {
        "at": NOW,
        "request_id": "req0001",
        "agent_id": None,
        "agent_name": "Triage bot",
        "key_id": 1,
        "key_label": "laptop",
        "connector_id": None,
        "connector_name": "Weather",
        "tool": "weather__forecast",
        "upstream_tool": "forecast",
        "era": "modern",
        "outcome": "ok",
        "total_ms": 12.5,
        "upstream_ms": 10.0,
        "error": None,
        "request_bytes": 120,
        "response_bytes": 2048,
        "arguments": None,
    }
    return {**defaults, **values}


def event(**values) -> AuditEvent:
    """An audit event (a connector's URL changed); ``values`` override. Added, not committed."""
    defaults = {
        "at": NOW,
        "admin_name": "admin",
        "address": "127.0.0.1",
        "action": "connector.updated",
        "target_type": "connector",
        "target_id": 1,
        "target_name": "Weather",
        "details": {"url": ["https://old.example/mcp", "https://new.example/mcp"]},
    }
    row = AuditEvent(**{**defaults, **values})
    db.session.add(row)
    return row


def many_calls(count: int, start: datetime = NOW, **values):
    """Insert ``count`` call records a minute apart, oldest first, in batches (committed)."""
    batch = []
    for i in range(count):
        at = start - timedelta(minutes=count - i)
        batch.append(call_values(at=at, request_id=f"bulk{i}", **values))
        if len(batch) == 1000:
            db.session.execute(insert(CallRecord), batch)
            batch = []
    if batch:
        db.session.execute(insert(CallRecord), batch)
    db.session.commit()


def many_events(count: int, start: datetime = NOW, **values):
    """As ``many_calls``, for audit events."""
    rows = [
        {"at": start - timedelta(minutes=count - i), "admin_name": "admin", "address": "10.0.0.1",
         "action": "agent.updated", "target_type": "agent", "target_id": 1,
         "target_name": f"agent {i}", "details": None, **values}
        for i in range(count)
    ]  # fmt: skip
    for i in range(0, count, 1000):
        db.session.execute(insert(AuditEvent), rows[i : i + 1000])
    db.session.commit()
