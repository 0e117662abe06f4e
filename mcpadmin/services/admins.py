"""Admin accounts: creation, password checks and changes. The caller commits."""

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import AdminUser, Role
from . import sessions

MIN_PASSWORD_LENGTH = 10
# Checked against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AdminError(ValueError):
    """The account cannot be created as asked; the message says why."""


def any_admin() -> bool:
    return db.session.scalar(select(func.count()).select_from(AdminUser)) > 0


def create_admin(username: str, password: str, role: str = Role.OWNER) -> AdminUser:
    """Add an admin account.

    :raise AdminError: empty or taken username, or a password shorter than
        ``MIN_PASSWORD_LENGTH``.
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
    admin = AdminUser(username=username, password_hash=generate_password_hash(password), role=role)
    db.session.add(admin)
    return admin


def authenticate(username: str, password: str) -> AdminUser | None:
    """The active person with this username and local password, else None."""
    admin = db.session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))
    if admin is None or not admin.password_hash:  # no such person, or no local password
        check_password_hash(_DUMMY_HASH, password)
        return None
    matches = check_password_hash(admin.password_hash, password)
    return admin if matches and admin.active else None


def set_password(username: str, password: str) -> AdminUser:
    """Give an admin a new password and end every session it has open.

    :raise AdminError: no admin has this username, or the password is shorter than 10
        characters.
    """
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AdminError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    admin = db.session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))
    if admin is None:
        raise AdminError(f"There is no admin named {username!r}.")
    admin.password_hash = generate_password_hash(password)
    sessions.end_all(admin.id)
    return admin
