"""The sign-in throttle: every attempt is counted, atomically, before its password is checked.

Two keys count each attempt:

- ``pair:<address>|<username>`` allows ``LOGIN_MAX_FAILURES`` attempts per window, so guessing
  made-up usernames from one address locks out nobody who knows a real one;
- ``user:<username>`` allows ``LOGIN_USERNAME_MAX_FAILURES`` from all addresses together, a
  slower backstop against guessing one account's password from many addresses.

The count is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` per key in a transaction of its own
(``BEGIN IMMEDIATE`` on SQLite), so concurrent attempts each see a distinct count and at most
the limit are ever let through to the password check. A successful sign-in gives its own
attempt back, and only that. A key's window is ``LOGIN_LOCKOUT_SECONDS`` from its first
attempt, or from the attempt that reached the limit.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, null, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import LoginThrottle

# The longest username an account can have; longer ones are cut so a key fits its column.
USERNAME_KEY_LENGTH = 80
_INSERT = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


@dataclass(frozen=True)
class Limit:
    """A throttle key and how many attempts it allows per window."""

    key: str
    allowed: int


def limits(address: str | None, username: str, per_pair: int, per_username: int) -> list[Limit]:
    """The keys one sign-in attempt counts against; usernames compare case-insensitively."""
    name = username.strip().lower()[:USERNAME_KEY_LENGTH]
    return [Limit(f"pair:{address or '-'}|{name}", per_pair), Limit(f"user:{name}", per_username)]


def count_attempt(keys: list[Limit], now: datetime, window: timedelta) -> datetime | None:
    """Count one attempt against every key; the time the refusal ends if any key is over its
    limit (the password must then not be checked), else None.

    Commits the session before counting (the caller must have nothing pending) and after.
    """
    db.session.commit()  # so the write lock below is the transaction's first step
    conn = db.session.connection()
    if conn.dialect.name == "sqlite":
        # Take the write lock now (waiting up to busy_timeout), not halfway through.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    refused_until = None
    for limit in keys:
        count, first, locked = conn.execute(_upsert(conn.dialect.name, limit, now, window)).one()
        if count > limit.allowed:
            end = locked or first + window
            refused_until = max(end, refused_until or end)
    # Rows whose window is over count as nothing: drop them, so made-up usernames tried once
    # do not pile up.
    conn.execute(delete(LoginThrottle.__table__).where(_expired(now, window)))
    db.session.commit()
    return refused_until


def give_back(keys: list[Limit]):
    """A successful sign-in takes its own attempt off every count, so counts are wrong
    passwords (and attempts still in flight): a success does not reset the failures of a
    burst it is part of. The caller commits."""
    table = LoginThrottle.__table__
    for limit in keys:
        db.session.execute(
            update(table)
            .where(table.c.key == limit.key, table.c.failures > 0)
            .values(failures=table.c.failures - 1)
        )


def _expired(now: datetime, window: timedelta):
    """A key whose window is over (its next attempt counts as the first)."""
    c = LoginThrottle.__table__.c
    return or_(
        (c.locked_until.is_(None) & (c.first_failure_at <= now - window)),
        c.locked_until <= now,
    )


def _upsert(dialect: str, limit: Limit, now: datetime, window: timedelta):
    table = LoginThrottle.__table__
    c = table.c
    expired = _expired(now, window)
    count = case((expired, 1), else_=c.failures + 1)
    start, lock_end = (
        literal(now, c.first_failure_at.type),
        literal(now + window, c.locked_until.type),
    )
    statement = _INSERT[dialect](table).values(
        key=limit.key,
        failures=1,
        first_failure_at=now,
        locked_until=now + window if limit.allowed <= 1 else None,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[c.key],
        set_={
            "failures": count,
            "first_failure_at": case((expired, start), else_=c.first_failure_at),
            "locked_until": case(
                (count == limit.allowed, lock_end), (expired, null()), else_=c.locked_until
            ),
        },
    )
    return statement.returning(c.failures, c.first_failure_at, c.locked_until)
