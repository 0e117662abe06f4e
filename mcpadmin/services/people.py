"""People: invites, joining through one, roles, deactivation and reactivation. The caller
commits, and records each change in the audit trail.

An invite link carries a random token; the row keeps only its SHA-256, so a copy of the
database opens no invite. A link works once, until it expires or is revoked.

The last active owner can neither be demoted nor deactivated: someone must be able to manage
people. Deactivating a person ends their sessions at once, and the gateway refuses their
agents' keys (``services.gateway``) until they are reactivated; their agents and keys stay.
"""

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from ..crypto import token_digest
from ..extensions import db
from ..models import AdminUser, Agent, Invite, Role, SsoSettings, utcnow
from . import admins, sessions

DEFAULT_INVITE_DAYS = 7
MAX_INVITE_DAYS = 30
TOKEN_BYTES = 32
# Where an invite link points (``people.join``), under ``PUBLIC_BASE_URL``.
INVITE_PATH = "/invite/"


class PeopleError(ValueError):
    """The change cannot be made as asked; the message says why, as a sentence."""


def invite(role: str, email: str | None, days: int | None,
           created_by: str | None) -> tuple[Invite, str]:  # fmt: skip
    """A new invite (added to the session) and its token, for the link only: not stored.

    :raise PeopleError: an unknown role, days outside 1..``MAX_INVITE_DAYS``, or an email
        without ``@``.
    """
    if role not in Role.ALL:
        raise PeopleError(f"Choose a role: {', '.join(Role.LABELS.values())}.")
    days = DEFAULT_INVITE_DAYS if days is None else days
    if not 1 <= days <= MAX_INVITE_DAYS:
        raise PeopleError(f"An invite lasts 1 to {MAX_INVITE_DAYS} days.")
    email = (email or "").strip() or None
    if email is not None and ("@" not in email or len(email) > 320):
        raise PeopleError("Enter an email address such as ada@example.com, or leave it empty.")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = Invite(token_sha256=token_digest(token), role=role, email=email, created_by=created_by,
                 expires_at=utcnow() + timedelta(days=days))  # fmt: skip
    db.session.add(row)
    return row, token


def link(token: str) -> str:
    """The invite link: built from ``PUBLIC_BASE_URL``, never from a request's Host header."""
    return f"{current_app.config['PUBLIC_BASE_URL']}{INVITE_PATH}{token}"


def described(row: Invite) -> dict:
    """What the audit trail says of an invite (flushed: it has an id); never its token."""
    return {"invite_id": row.id, "role": row.role, "email": row.email,
            "expires_at": row.expires_at.isoformat()}  # fmt: skip


def find_invite(token: str | None, lock: bool = False) -> Invite | None:
    """The invite a link's token names, usable or not; None for an unknown token. ``lock``:
    hold its row until the caller commits, so two people cannot join through one link."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    query = select(Invite).where(Invite.token_sha256 == token_digest(token))
    return db.session.scalar(query.with_for_update() if lock else query)


def usable_invite(token: str | None, now: datetime | None = None) -> Invite | None:
    """The invite ``token`` names while it is unused, unrevoked and unexpired, else None."""
    row = find_invite(token)
    return row if row is not None and row.usable(now or utcnow()) else None


def why_unusable(row: Invite | None, now: datetime | None = None) -> str:
    """A sentence for a link that does not work (unknown, used, revoked or expired)."""
    ask = "Ask an owner for a new one."
    if row is None:
        return f"This invite link is not known here. {ask}"
    if row.used_at is not None:
        return f"This invite link has been used. {ask}"
    if row.revoked_at is not None:
        return f"This invite link was revoked. {ask}"
    if row.expires_at <= (now or utcnow()):
        return f"This invite link has expired. {ask}"
    return "This invite link works."


def pending_invites(now: datetime | None = None) -> list[Invite]:
    """Invites still usable, the soonest to expire first."""
    now = now or utcnow()
    query = (
        select(Invite)
        .where(Invite.used_at.is_(None), Invite.revoked_at.is_(None), Invite.expires_at > now)
        .order_by(Invite.expires_at, Invite.id)
    )
    return list(db.session.scalars(query))


def revoke_invite(row: Invite, now: datetime | None = None):
    """The link stops working (nothing if it already did)."""
    if row.revoked_at is None and row.used_at is None:
        row.revoked_at = now or utcnow()


def redeem(row: Invite, username: str, now: datetime | None = None):
    """Mark the invite used by ``username``: the link works no more. One guarded statement,
    so of two sign-ins or joins through one link at once only one succeeds.

    :raise PeopleError: it was used, revoked or expired in the meantime.
    """
    now = now or utcnow()
    used = db.session.execute(
        update(Invite)
        .where(
            Invite.id == row.id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )  # fmt: skip
        .values(used_at=now, used_by=username)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if used != 1:
        db.session.refresh(row)
        raise PeopleError(why_unusable(row, now))


def local_passwords_allowed(role: str) -> bool:
    """Whether a person of ``role`` may sign in with a local password: owners always (break
    glass), the others unless an owner turned local passwords off in the SSO settings."""
    settings = db.session.get(SsoSettings, 1)
    return role == Role.OWNER or settings is None or settings.local_passwords


def join_with_password(row: Invite, username: str, password: str) -> AdminUser:
    """A new person with the invite's role and a local password; the invite is used.

    :raise PeopleError: local passwords are off for that role, the invite no longer works,
        or the username or password breaks ``services.admins``'s rules.
    """
    if not local_passwords_allowed(row.role):
        raise PeopleError("Local passwords are turned off: join with single sign-on instead.")
    if not row.usable(utcnow()):
        raise PeopleError(why_unusable(row))
    try:
        person = admins.create_admin(username, password, row.role)
    except admins.AdminError as exc:
        raise PeopleError(str(exc)) from exc
    person.email = row.email
    db.session.flush()
    redeem(row, person.username)
    return person


def change_role(person: AdminUser, role: str):
    """Give ``person`` another role.

    :raise PeopleError: an unknown role, or it would leave no active owner.
    """
    if role not in Role.ALL:
        raise PeopleError(f"Choose a role: {', '.join(Role.LABELS.values())}.")
    if person.role == Role.OWNER and role != Role.OWNER and _last_active_owner(person):
        raise PeopleError(f"{person.username} is the last active owner; make someone else an "
                          "owner first.")  # fmt: skip
    person.role = role


def deactivate(person: AdminUser, actor: AdminUser | None, now: datetime | None = None):
    """Deactivate ``person``: their sessions end now, they cannot sign in, and their agents'
    keys are refused until they are reactivated. Nothing if they already are.

    :raise PeopleError: ``actor`` is ``person``, or ``person`` is the last active owner.
    """
    if actor is not None and actor.id == person.id:
        raise PeopleError("You cannot deactivate yourself; ask another owner.")
    if not person.active:
        return
    if person.role == Role.OWNER and _last_active_owner(person):
        raise PeopleError(f"{person.username} is the last active owner and cannot be "
                          "deactivated.")  # fmt: skip
    person.active = False
    person.deactivated_at = now or utcnow()
    sessions.end_all(person.id)


def reactivate(person: AdminUser):
    """``person`` may sign in again and their agents' keys work again."""
    person.active = True
    person.deactivated_at = None


def find_person(name: str) -> AdminUser:
    """The person with this username, compared ignoring case.

    :raise PeopleError: no one has it.
    """
    name = (name or "").strip()
    person = db.session.scalar(
        select(AdminUser).where(func.lower(AdminUser.username) == name.lower())
    )
    if person is None:
        raise PeopleError(f"No person named {name!r}.")
    return person


def everyone() -> list[AdminUser]:
    """Every person, active ones first, then by username."""
    query = select(AdminUser).order_by(AdminUser.active.desc(), func.lower(AdminUser.username))
    return list(db.session.scalars(query))


def agents_of(person: AdminUser) -> list[Agent]:
    """The agents ``person`` owns, by name."""
    query = select(Agent).where(Agent.owner_id == person.id).order_by(func.lower(Agent.name))
    return list(db.session.scalars(query))


def agent_counts() -> dict[int, int]:
    """Person id → how many agents they own."""
    query = select(Agent.owner_id, func.count()).where(Agent.owner_id.is_not(None))
    return dict(db.session.execute(query.group_by(Agent.owner_id)).all())


def sign_in_kind(person: AdminUser) -> str:
    """How ``person`` signs in: "password", "single sign-on" or "both"."""
    password, sso = bool(person.password_hash), person.oidc_subject is not None
    if password and sso:
        return "both"
    return "single sign-on" if sso else "password"


def _last_active_owner(person: AdminUser) -> bool:
    """Whether no other active owner exists. The active owners' rows are locked in id order
    until the caller commits, so two owners demoting each other at once cannot both succeed
    (the second reads the first's change and is refused)."""
    owners = (
        select(AdminUser.id)
        .where(AdminUser.role == Role.OWNER, AdminUser.active.is_(True))
        .order_by(AdminUser.id)
        .with_for_update()
    )
    return person.active and all(i == person.id for i in db.session.scalars(owners))
