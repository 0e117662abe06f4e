"""Fresh OAuth access tokens for a (connector, agent) pair, refreshed once across threads and
processes; what happens when a server refuses a token; and revocation.

A refresh runs in its own session and commits on its own, whatever the caller's transaction
does: a rotated refresh token that is not stored at once is a lost grant. Only one worker may
refresh a given holder at a time: PostgreSQL locks the row (``SELECT … FOR UPDATE``); SQLite,
where SQLAlchemy drops ``FOR UPDATE``, takes a lease by compare-and-swap. Either way the
worker re-reads after locking and compares with the token it saw before: a token another
worker replaced meanwhile is used as is, and no second request goes out.

A refresh and a revocation go to the grant's own token and revocation endpoints
(``grants.Grant``), never to whatever the connector's metadata says now.
"""

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..crypto import UnreadableSecret, seal
from ..extensions import db
from ..models import AgentConnection, Connector, expires_soon, utcnow
from ..protocol import tokens as protocol
from ..protocol.discovery import parse_www_authenticate
from . import clients, grants, lifecycle, metrics, outbound
from .lifecycle import Event

log = logging.getLogger(__name__)

TokenError = protocol.TokenError
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires


class NeedsReconnect(TokenError):
    """The grant is gone (``invalid_grant``, no refresh token, or the server keeps refusing
    the token): the operator must Connect again. The holder is already marked."""


def access_token(
    connector: Connector, connection: AgentConnection | None, force_refresh: bool = False
) -> str | None:
    """A usable access token for the pair, refreshing it first when it expires soon (see
    ``models.refresh_margin``) or, with ``force_refresh`` after a 401, unless another worker
    already replaced the refused token. ``None`` when nothing is stored.

    A refresh commits in its own transaction; the caller's session is not committed, and its
    copy of the holder's token columns is reloaded.

    :raise NeedsReconnect: the refresh token is dead or missing (the holder is marked).
    :raise TokenError: the token endpoint is down or refused; the stored tokens are kept, and
        a token that has not actually expired yet is still returned instead of raising.
    """
    place = lifecycle.holder(connector, connection)
    if place is None or place.access_token_enc is None:
        return None
    due = expires_soon(place.token_expires_at, utcnow(), place.token_obtained_at)
    if force_refresh or due:
        seen = place.access_token_enc.ciphertext
        try:
            _refresh(type(place), place.id, seen, force_refresh)
        except TokenError as exc:
            still_valid = place.token_expires_at and place.token_expires_at > utcnow()
            if isinstance(exc, NeedsReconnect) or force_refresh or not still_valid:
                _reload(place)
                raise
            return place.access_token_enc.reveal()
        _reload(place)
        if place.access_token_enc is None:
            return None
    return place.access_token_enc.reveal()


def store_tokens(place, tokens: protocol.Tokens, grant: grants.Grant | None = None,
                 requested_scope: str | None = None):  # fmt: skip
    """Put new tokens on a connector or agent connection (the caller commits), with the
    grant they were issued under when it is new. A response without a refresh token keeps
    the old one (RFC 6749 §6)."""
    now = utcnow()
    place.access_token_enc = seal(tokens.access_token)
    if tokens.refresh_token:
        place.refresh_token_enc = seal(tokens.refresh_token)
    place.token_obtained_at = now
    place.token_expires_at = (
        now + timedelta(seconds=tokens.expires_in) if tokens.expires_in is not None else None
    )
    place.token_scope = tokens.scope or requested_scope or place.token_scope
    if grant is not None:
        place.oauth_grant = grant.as_json()
    place.step_up_scope = None
    lifecycle.apply(place, Event.STORED)


def step_up(place, www_authenticate: str) -> Event:
    """Decide what a ``403 insufficient_scope`` means and record it (the caller commits).

    A challenge naming a scope not yet granted records it (the next Connect asks for the
    union, MCP step-up authorization) and asks for Reconnect. A challenge naming nothing new
    means the server refuses this account whatever it is granted: reconnecting would loop the
    operator, so the holder is marked as an error that says so.
    """
    wanted = parse_www_authenticate(www_authenticate).get("scope", "").split()
    held = set((place.token_scope or "").split())
    missing = [s for s in wanted if s not in held]
    if missing:
        place.step_up_scope = " ".join(dict.fromkeys((place.step_up_scope or "").split() + wanted))
        lifecycle.apply(
            place,
            Event.SCOPE_NEEDED,
            f"The server needs more permissions ({' '.join(missing)}): Reconnect.",
        )
        return Event.SCOPE_NEEDED
    named = f" for {' '.join(wanted)}" if wanted else ""
    lifecycle.apply(
        place,
        Event.REFUSED,
        f"The server refuses this account (403 insufficient_scope{named}) although the grant "
        "already holds that permission; reconnecting would not help. Check the account's "
        "permissions at the provider.",
    )
    return Event.REFUSED


@dataclass
class Revocation:
    """Tokens to revoke at the endpoint of the grant that issued them (RFC 7009), captured
    before they are deleted, so the request goes out after the caller's transaction ended."""

    what: str  # "Linear" or "Ada on Linear", for the warning
    endpoint: str
    client: protocol.ClientAuth
    tokens: list[tuple[str, str]]  # (token, token_type_hint), refresh token first

    def run(self) -> str | None:
        """Send the revocation requests; a warning for the operator, or None."""
        http = outbound.http()
        try:
            for token, hint in self.tokens:
                protocol.revoke(http, self.endpoint, self.client, token, hint)
        except TokenError as exc:
            return (f"The tokens of {self.what} could not be revoked at the provider ({exc}); "
                    "they were deleted here.")  # fmt: skip
        return None


def revocation(connector: Connector, place, what: str | None = None) -> Revocation | None:
    """The revocation of ``place``'s OAuth tokens, when its grant names a revocation endpoint
    and the tokens can be read; None otherwise (nothing to revoke, or nowhere to)."""
    grant = grants.of(place) if place is not None else None
    if grant is None or not grant.revocation_endpoint or place.access_token_enc is None:
        return None
    try:
        client = grants.client(grant, connector).auth
        sealed = [(place.refresh_token_enc, "refresh_token"),
                  (place.access_token_enc, "access_token")]  # fmt: skip
        plain = [(value.reveal(), hint) for value, hint in sealed if value is not None]
    except (clients.NoClient, UnreadableSecret):
        return None
    return Revocation(what or connector.name, grant.revocation_endpoint, client, plain)


def run_revocations(revocations) -> list[str]:
    """Run each (skipping None); the warnings, in order."""
    return [w for r in revocations if r is not None and (w := r.run()) is not None]


def _refresh(model, row_id: int, seen: str, force: bool):
    if db.engine.dialect.name == "postgresql":
        _refresh_with_row_lock(model, row_id, seen, force)
    else:
        _refresh_with_lease(model, row_id, seen, force)


def _lock_seconds() -> float:
    return float(current_app.config["REFRESH_LOCK_SECONDS"])


def _refresh_with_row_lock(model, row_id, seen, force):
    """PostgreSQL: hold the row lock across the token request and write in that transaction.
    Waiters give up after the lock's time; the request's timeout is a third of it. A dead
    worker's lock goes with its connection.

    :raise TokenError: ``unavailable`` when the lock stays taken past the lock time.
    """
    with Session(db.engine) as session, session.begin():
        wait_ms = int(_lock_seconds() * 1000)
        session.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
        try:
            row = session.scalar(select(model).where(model.id == row_id).with_for_update())
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise TokenError(
                "unavailable", "Another worker is still refreshing this token."
            ) from None
        renewing = row is not None and _needed(row, seen, force)
        error = _renew(session, row) if renewing else None
    if renewing:
        _count(error)
    if error is not None:
        raise error


def _refresh_with_lease(model, row_id, seen, force):
    """SQLite: take the lease with a conditional UPDATE (only one worker's succeeds), re-read,
    refresh outside any transaction, then write the tokens and release in one transaction."""
    owner = secrets.token_hex(16)
    give_up = time.monotonic() + _lock_seconds()
    while True:
        with Session(db.engine) as session, session.begin():
            row = session.get(model, row_id)
            if row is None or not _needed(row, seen, force):
                return
            now = utcnow()
            taken = session.execute(
                update(model)
                .where(model.id == row_id)
                .where(or_(model.refresh_lease_until.is_(None), model.refresh_lease_until < now))
                .values(
                    refresh_lease_until=now + timedelta(seconds=_lock_seconds()),
                    refresh_lease_owner=owner,
                )
            ).rowcount
        if taken:
            break
        if time.monotonic() > give_up:
            raise TokenError("unavailable", "Another worker is still refreshing this token.")
        time.sleep(0.05)
    with Session(db.engine) as session, session.begin():
        row = session.get(model, row_id)  # re-read: the previous holder may have refreshed
        renewing = row is not None and _needed(row, seen, force)
        try:
            error = _renew(session, row) if renewing else None
        finally:
            if row is not None and row.refresh_lease_owner == owner:
                row.refresh_lease_until = row.refresh_lease_owner = None
    if renewing:
        _count(error)
    if error is not None:
        raise error


def _count(error: TokenError | None):
    """Count one refresh that ran under the lock and whose outcome is committed (a worker that
    found the token already replaced counts nothing)."""
    if error is None:
        metrics.observe_refresh(metrics.Refresh.OK)
    elif isinstance(error, NeedsReconnect):
        metrics.observe_refresh(metrics.Refresh.DEAD_GRANT)
    else:
        metrics.observe_refresh(metrics.Refresh.FAILED)


def _bounded_http():
    """The client for a token request made under the lock: each read and the whole exchange
    (a body dripped a byte at a time included) end within a third of the lock time, so the
    lock never lapses while the request is still in flight."""
    third = _lock_seconds() / 3
    return outbound.http(timeout=third, deadline=third)


def _needed(row, seen: str, force: bool) -> bool:
    """Whether the locked ``row`` still needs the refresh its caller decided on: not when
    another worker replaced the token the caller saw (that one is fresh: use it as is)."""
    if row.access_token_enc is None or row.status == lifecycle.Status.NEEDS_RECONNECT:
        return False
    if row.access_token_enc.ciphertext != seen:
        return False
    return force or expires_soon(row.token_expires_at, utcnow(), row.token_obtained_at)


def _renew(session, row) -> TokenError | None:
    """One refresh request for ``row`` (locked by the caller) at its grant's token endpoint,
    its outcome written on the row in ``session``: new tokens, or the error recorded. The
    caller commits, then raises the returned error, so a failure is stored as surely as a
    success."""
    connector = row if isinstance(row, Connector) else row.connector
    grant = grants.of(row)
    if row.refresh_token_enc is None:
        return _dead(
            row,
            "no_refresh_token",
            "The access token expired and the server gave no refresh token: Reconnect.",
        )
    if grant is None:
        return _dead(row, "no_grant", "mcpadmin does not know which authorization server "
                     "issued these tokens: Reconnect.")  # fmt: skip
    sent = row.refresh_token_enc
    try:
        client = grants.client(grant, connector, session)
        tokens = protocol.refresh(
            _bounded_http(),
            grant.token_endpoint,
            client.auth,
            refresh_token=sent.reveal(),
            resource=grants.resource(grant, connector),
        )
    except clients.NoClient as exc:
        return _dead(row, "invalid_client", str(exc))
    except TokenError as exc:
        log.warning("token refresh for connector %s failed: %s", connector.id, exc.error)
        if exc.error == "invalid_grant":
            session.refresh(row)  # re-read once: someone may have rotated it meanwhile
            if row.refresh_token_enc and row.refresh_token_enc.ciphertext != sent.ciphertext:
                return None
            return _dead(
                row,
                exc.error,
                "The authorization was revoked or expired at the provider: Reconnect.",
            )
        if exc.error == "invalid_client":
            # The registration is dead, and the grant bound to it too.
            clients.forget(client.registration, session)
            return _dead(
                row,
                exc.error,
                "The provider no longer knows mcpadmin's client registration: Reconnect.",
            )
        lifecycle.apply(row, Event.UNAVAILABLE, f"Refreshing the access token failed: {exc}")
        return exc
    store_tokens(row, tokens)
    return None


def _dead(row, error: str, reason: str) -> "NeedsReconnect":
    lifecycle.apply(row, Event.GRANT_DEAD, reason)
    return NeedsReconnect(error, reason)


def _reload(place):
    """Forget the caller's copy of the token columns so the next read sees the new values."""
    db.session.expire(
        place, ["access_token_enc", "refresh_token_enc", "token_expires_at", "token_obtained_at",
                "token_scope", "oauth_grant", "status", "last_error"],
    )  # fmt: skip
