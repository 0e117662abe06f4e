"""Admin sessions held server-side: the cookie carries a random token, the database its
SHA-256. A session lives until it is ended (sign out, sign out everywhere, a password change)
or until ``lifetime`` after sign-in, whichever comes first. The caller commits."""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import joinedload

from ..crypto import token_digest
from ..extensions import db
from ..models import AdminSession, AdminUser


def start(admin: AdminUser, now: datetime, lifetime: timedelta) -> str:
    """Open a session for ``admin`` and return its token (for the cookie only); sessions of
    every admin that have outlived ``lifetime`` are removed on the way."""
    db.session.execute(delete(AdminSession).where(AdminSession.created_at <= now - lifetime))
    token = secrets.token_urlsafe(32)
    db.session.add(AdminSession(token_sha256=token_digest(token), admin=admin, created_at=now))
    return token


def admin_for(token: str | None, now: datetime, lifetime: timedelta) -> AdminUser | None:
    """The person whose live session ``token`` names, else None (unknown, ended or expired,
    or the person is deactivated)."""
    if not isinstance(token, str) or not token:
        return None
    row = db.session.scalar(
        select(AdminSession)
        .where(
            AdminSession.token_sha256 == token_digest(token),
            AdminSession.created_at > now - lifetime,
        )
        .options(joinedload(AdminSession.admin))  # one statement on every page
    )
    return row.admin if row and row.admin.active else None


def end(token: str | None):
    """End the session ``token`` names (nothing if there is none)."""
    if isinstance(token, str) and token:
        db.session.execute(
            delete(AdminSession).where(AdminSession.token_sha256 == token_digest(token))
        )


def end_all(admin_id: int):
    """End every session of one admin, on every browser."""
    db.session.execute(delete(AdminSession).where(AdminSession.admin_id == admin_id))
