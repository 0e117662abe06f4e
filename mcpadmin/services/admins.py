"""Admin accounts and sign-in throttling. The caller commits."""

from datetime import datetime, timedelta

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import AdminUser, LoginThrottle

MIN_PASSWORD_LENGTH = 10
# Checked against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AdminError(ValueError):
    """The account cannot be created as asked; the message says why."""


def any_admin() -> bool:
    return db.session.scalar(select(func.count()).select_from(AdminUser)) > 0


def create_admin(username: str, password: str) -> AdminUser:
    """Add an admin account.

    :raise AdminError: empty or taken username, or a password shorter than 10 characters.
    """
    username = (username or "").strip()
    if not username:
        raise AdminError("Enter a username.")
    if len(username) > 80:
        raise AdminError("A username has at most 80 characters.")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AdminError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    taken = db.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if taken:
        raise AdminError(f"The username {username!r} is taken.")
    admin = AdminUser(username=username, password_hash=generate_password_hash(password))
    db.session.add(admin)
    return admin


def authenticate(username: str, password: str) -> AdminUser | None:
    """The admin with this username and password, else None."""
    admin = db.session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))
    if admin is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return admin if check_password_hash(admin.password_hash, password) else None


def locked_until(keys: list[str], now: datetime) -> datetime | None:
    """The latest lockout still running for any of ``keys``, else None."""
    rows = db.session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    ends = [r.locked_until for r in rows if r.locked_until and r.locked_until > now]
    return max(ends, default=None)


def record_failure(keys: list[str], now: datetime, max_failures: int, lockout: timedelta):
    """Count a failed sign-in against each key; lock a key after ``max_failures`` in a window."""
    for key in keys:
        row = db.session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, first_failure_at=now)
            db.session.add(row)
        if now - row.first_failure_at > lockout:
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= max_failures:
            row.locked_until = now + lockout


def clear_failures(keys: list[str]):
    for key in keys:
        row = db.session.get(LoginThrottle, key)
        if row is not None:
            db.session.delete(row)
