"""Retention: ``flask prune-logs`` (and ``flask sync-tools`` after its syncs) deletes call log
rows older than ``CALL_LOG_DAYS`` and audit events older than ``AUDIT_LOG_DAYS``, in batches,
and the settings must be whole numbers of days, 1 or more."""

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from mcpadmin import create_app
from mcpadmin.config import ConfigError
from mcpadmin.extensions import db
from mcpadmin.models import (
    AuditEvent,
    CallRecord,
    Connector,
    GatewayCancellation,
    GatewaySession,
    utcnow,
)
from mcpadmin.services import retention
from tests.gateway_helpers import agent_with_tools

SECOND = timedelta(seconds=1)


def add_calls(app, *ages: timedelta, now=None) -> None:
    """One call log row per age (how long before ``now`` it was written), ``r0``, ``r1``…"""
    now = now or utcnow()
    with app.app_context():
        db.session.add_all(
            CallRecord(
                at=now - age,
                request_id=f"r{i}",
                agent_name="Ada",
                tool="docs__search",
                outcome="ok",
                total_ms=1.0,
            )  # fmt: skip
            for i, age in enumerate(ages)
        )
        db.session.commit()


def add_events(app, *ages: timedelta) -> None:
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            AuditEvent(at=now - age, action="auth.signed_in", admin_name="admin") for age in ages
        )
        db.session.commit()


def ages_left(app, model) -> list[float]:
    """The rows still there, as their age in days (rounded), oldest first."""
    now = utcnow()
    with app.app_context():
        stamps = db.session.scalars(select(model.at).order_by(model.at)).all()
        return [round((now - at).total_seconds() / 86400, 1) for at in stamps]


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_rows_older_than_the_settings_go_and_newer_ones_stay(app):
    add_calls(app, days(45), days(31), days(29), days(1))
    add_events(app, days(400), days(366), days(364), days(1))
    with app.app_context():
        pruned = retention.prune()
    assert (pruned.calls, pruned.audit_events) == (2, 2)
    assert ages_left(app, CallRecord) == [29.0, 1.0]
    assert ages_left(app, AuditEvent) == [364.0, 1.0]


def test_a_row_exactly_at_the_limit_stays_and_one_a_second_older_goes(app):
    now = utcnow()
    add_calls(app, days(30) + SECOND, days(30), now=now)
    with app.app_context():
        assert retention.prune(now=now).calls == 1
        assert db.session.scalars(select(CallRecord.request_id)).all() == ["r1"]


def test_the_settings_decide_the_limits(make_app):
    short = make_app({"CALL_LOG_DAYS": 7, "AUDIT_LOG_DAYS": 90})
    add_calls(short, days(8), days(6))
    add_events(short, days(91), days(89))
    with short.app_context():
        pruned = retention.prune()
    assert (pruned.calls, pruned.audit_events, pruned.call_days, pruned.audit_days) == (
        1, 1, 7, 90
    )  # fmt: skip


def test_many_rows_go_in_several_small_batches(app):
    add_calls(app, *[days(40)] * 25, days(1))
    statements = []
    with app.app_context():

        def seen(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("DELETE FROM CALL_LOG"):
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            deleted = retention.prune_older(CallRecord, utcnow() - days(30), batch=10)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
    assert deleted == 25
    assert len(statements) == 3  # 10 + 10 + 5, each committed on its own
    assert count(app, CallRecord) == 1


def test_a_batch_that_fills_exactly_looks_once_more_and_stops(app):
    add_calls(app, *[days(40)] * 4)
    with app.app_context():
        assert retention.prune_older(CallRecord, utcnow() - days(30), batch=2) == 4
    assert count(app, CallRecord) == 0


def test_prune_logs_says_how_many_rows_went(app, runner):
    add_calls(app, days(31), days(32), days(2))
    add_events(app, days(366))
    result = runner.invoke(args=["prune-logs"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Pruned logs: 2 calls older than 30 days, 1 audit event older than 365 days.\n"
    )
    assert (count(app, CallRecord), count(app, AuditEvent)) == (1, 0)


def test_prune_logs_with_nothing_to_delete(runner):
    result = runner.invoke(args=["prune-logs"])
    assert result.output == (
        "Pruned logs: 0 calls older than 30 days, 0 audit events older than 365 days.\n"
    )


def test_sync_tools_prunes_after_syncing(app, runner, json_peer):
    with app.app_context():
        db.session.add(Connector(name="Docs", url=json_peer.url, auth_type="none"))
        db.session.commit()
    add_calls(app, days(31), days(1))
    result = runner.invoke(args=["sync-tools"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-2] == "1 synced, 0 skipped (fresh), 0 failed."
    assert (
        lines[-1] == "Pruned logs: 1 call older than 30 days, 0 audit events older than 365 days."
    )
    assert count(app, CallRecord) == 1


def test_sync_tools_prunes_even_with_nothing_to_sync(app, runner):
    add_events(app, days(400))
    result = runner.invoke(args=["sync-tools"])
    assert result.output.splitlines() == [
        "Nothing to sync.",
        "Pruned logs: 0 calls older than 30 days, 1 audit event older than 365 days.",
    ]


CALL_DAYS = "MCPADMIN_CALL_LOG_DAYS (or CALL_LOG_DAYS in instance/config.py)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", f"{CALL_DAYS} must be a whole number of days, 1 or more; it is 0."),
        ("-3", f"{CALL_DAYS} must be a whole number of days, 1 or more; it is -3."),
        ("thirty", f"{CALL_DAYS} must be a whole number, not 'thirty'."),
        ("2.5", f"{CALL_DAYS} must be a whole number, not 2.5."),
    ],
)
def test_a_bad_retention_setting_stops_the_start_with_a_clear_message(
    monkeypatch, tmp_path, value, message
):
    monkeypatch.setenv("MCPADMIN_CALL_LOG_DAYS", value)
    with pytest.raises(ConfigError) as raised:
        create_app({"AUTO_MIGRATE": False}, instance_path=str(tmp_path / "instance"))
    assert str(raised.value) == message


def test_the_audit_days_setting_is_checked_too(monkeypatch, tmp_path):
    monkeypatch.setenv("MCPADMIN_AUDIT_LOG_DAYS", "0")
    with pytest.raises(
        ConfigError,
        match=r"MCPADMIN_AUDIT_LOG_DAYS \(or AUDIT_LOG_DAYS in instance/config.py\) must be a "
        "whole number of days",
    ):
        create_app({"AUTO_MIGRATE": False}, instance_path=str(tmp_path / "instance"))


def test_a_retention_setting_from_the_environment_is_used(monkeypatch, make_app):
    monkeypatch.setenv("MCPADMIN_CALL_LOG_DAYS", "7")
    configured = make_app()
    assert configured.config["CALL_LOG_DAYS"] == 7


def test_idle_agent_sessions_and_old_cancellations_go_with_the_logs(app, runner):
    """A legacy session unused for 30 days goes (its client gets 404 and initializes again);
    one in use stays. Cancellations are needed only while their call runs."""
    now = utcnow()
    with app.app_context():
        agent, _ = agent_with_tools([])
        key_id = agent.keys[0].id
        db.session.add_all([
            GatewaySession(id_sha256="a" * 64, key_id=key_id, protocol_version="2025-11-25",
                           last_seen_at=now - days(31)),
            GatewaySession(id_sha256="b" * 64, key_id=key_id, protocol_version="2025-11-25",
                           last_seen_at=now - days(29)),
            GatewayCancellation(session_sha256="b" * 64, request_id="1", created_at=now - days(2)),
            GatewayCancellation(session_sha256="b" * 64, request_id="2", created_at=now),
        ])  # fmt: skip
        db.session.commit()
    result = runner.invoke(args=["prune-logs"])
    assert result.output.endswith("older than 365 days, 1 idle agent session.\n"), result.output
    with app.app_context():
        assert db.session.scalars(select(GatewaySession.id_sha256)).all() == ["b" * 64]
        assert db.session.scalars(select(GatewayCancellation.request_id)).all() == ["2"]
