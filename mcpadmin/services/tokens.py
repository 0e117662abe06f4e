"""Fresh OAuth access tokens for a (connector, agent) pair, refreshed once across threads and
processes; what happens when a server refuses a token; and revocation on disconnect.

A refresh runs in its own session and commits on its own, whatever the caller's transaction
does: a rotated refresh token that is not stored at once is a lost grant. Only one worker may
refresh a given holder at a time: PostgreSQL locks the row (``SELECT … FOR UPDATE``); SQLite,
where SQLAlchemy drops ``FOR UPDATE``, takes a lease by compare-and-swap. Either way the
worker re-reads after locking, so the others find the new token and send no request.
"""

import logging
import secrets
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..crypto import seal
from ..extensions import db
from ..models import AgentConnection, Connector, expires_soon, utcnow
from ..protocol import tokens as grants
from ..protocol.discovery import canonical_resource, parse_www_authenticate
from . import clients, outbound
from .credentials import holder as credential_holder

log = logging.getLogger(__name__)

TokenError = grants.TokenError
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires


class NeedsReconnect(TokenError):
    """The grant is gone (``invalid_grant``, no refresh token, or the server keeps refusing
    the token): the operator must Connect again. The holder is already marked."""


def access_token(
    connector: Connector, connection: AgentConnection | None, force_refresh: bool = False
) -> str | None:
    """A usable access token for the pair, refreshing it first when it expires within five
    minutes (or, with ``force_refresh`` after a 401, unless another worker already did).
    ``None`` when nothing is stored.

    A refresh commits in its own transaction; the caller's session is not committed, and its
    copy of the holder's token columns is reloaded.

    :raise NeedsReconnect: the refresh token is dead or missing (the holder is marked).
    :raise TokenError: the token endpoint is down or refused; the stored tokens are kept, and
        a token that has not actually expired yet is still returned instead of raising.
    """
    place = credential_holder(connector, connection)
    if place is None or place.access_token_enc is None:
        return None
    if force_refresh or expires_soon(place.token_expires_at, utcnow()):
        failed = place.access_token_enc.ciphertext if force_refresh else None
        try:
            _refresh(type(place), place.id, failed)
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


def store_tokens(place, tokens: grants.Tokens, requested_scope: str | None = None):
    """Put new tokens on a connector or agent connection (the caller commits). A response
    without a refresh token keeps the old one (RFC 6749 §6)."""
    place.access_token_enc = seal(tokens.access_token)
    if tokens.refresh_token:
        place.refresh_token_enc = seal(tokens.refresh_token)
    place.token_expires_at = (
        utcnow() + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
    )
    place.token_scope = tokens.scope or requested_scope or place.token_scope
    place.step_up_scope = None
    place.status = "connected"
    place.last_error = None


def needs_reconnect(connector: Connector, connection: AgentConnection | None, reason: str):
    """Mark the holder ``needs_reconnect`` with ``reason`` (e.g. a 401 after a refresh). The
    caller commits. Nothing is deleted."""
    place = credential_holder(connector, connection)
    if place is not None:
        place.status = "needs_reconnect"
        place.last_error = reason


def step_up(connector: Connector, connection: AgentConnection | None, www_authenticate: str):
    """Record the scope a ``403 insufficient_scope`` challenge asked for and mark the holder
    ``needs_reconnect``, so the next Connect asks for the union of scopes (MCP step-up
    authorization). The caller commits. A challenge naming no new scope changes nothing,
    so a server that keeps refusing cannot loop the operator through Connect."""
    place = credential_holder(connector, connection)
    wanted = parse_www_authenticate(www_authenticate).get("scope", "").split()
    held = set((place.token_scope or "").split()) if place is not None else set()
    if place is None or not wanted or set(wanted) <= held:
        if place is not None:
            place.last_error = "The server refused the request for lack of permission (403)."
        return
    place.step_up_scope = " ".join(dict.fromkeys((place.step_up_scope or "").split() + wanted))
    needs_reconnect(
        connector, connection, f"The server needs more permissions ({' '.join(wanted)}): Reconnect."
    )


def revoke(connector: Connector, place) -> str | None:
    """Revoke the holder's tokens at the revocation endpoint, when one is advertised (RFC
    7009); the caller then forgets them. Returns a warning for the operator, or None."""
    metadata = clients.server_metadata(connector)
    endpoint = metadata.get("revocation_endpoint")
    if not endpoint or place.access_token_enc is None:
        return None
    try:
        client = clients.resolve(connector, metadata)
        http = outbound.http()
        if place.refresh_token_enc is not None:
            grants.revoke(http, endpoint, client.auth, place.refresh_token_enc.reveal(),
                          "refresh_token")  # fmt: skip
        grants.revoke(http, endpoint, client.auth, place.access_token_enc.reveal(), "access_token")
    except (TokenError, clients.NoClient) as exc:
        return f"The tokens could not be revoked at the provider ({exc}); they were deleted here."
    return None


def _refresh(model, row_id: int, failed: str | None):
    if db.engine.dialect.name == "postgresql":
        _refresh_with_row_lock(model, row_id, failed)
    else:
        _refresh_with_lease(model, row_id, failed)


def _lock_seconds() -> float:
    return float(current_app.config["REFRESH_LOCK_SECONDS"])


def _refresh_with_row_lock(model, row_id, failed):
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
        error = _renew(session, row) if row is not None and _needed(row, failed) else None
    if error is not None:
        raise error


def _refresh_with_lease(model, row_id, failed):
    """SQLite: take the lease with a conditional UPDATE (only one worker's succeeds), re-read,
    refresh outside any transaction, then write the tokens and release in one transaction."""
    owner = secrets.token_hex(16)
    give_up = time.monotonic() + _lock_seconds()
    while True:
        with Session(db.engine) as session, session.begin():
            row = session.get(model, row_id)
            if row is None or not _needed(row, failed):
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
        try:
            error = _renew(session, row) if row is not None and _needed(row, failed) else None
        finally:
            if row is not None and row.refresh_lease_owner == owner:
                row.refresh_lease_until = row.refresh_lease_owner = None
    if error is not None:
        raise error


def _bounded_http():
    """The client for a token request made under the lock: each read and the whole exchange
    (a body dripped a byte at a time included) end within a third of the lock time, so the
    lock never lapses while the request is still in flight."""
    third = _lock_seconds() / 3
    return outbound.http(timeout=third, deadline=third)


def _needed(row, failed) -> bool:
    if row.access_token_enc is None or row.status == "needs_reconnect":
        return False
    if failed is not None:  # after a 401: only if nobody replaced the refused token yet
        return row.access_token_enc.ciphertext == failed
    return expires_soon(row.token_expires_at, utcnow())


def _renew(session, row) -> TokenError | None:
    """One refresh request for ``row`` (locked by the caller), its outcome written on the row
    in ``session``: new tokens, or the error recorded. The caller commits, then raises the
    returned error, so a failure is stored as surely as a success."""
    connector = row if isinstance(row, Connector) else row.connector
    if row.refresh_token_enc is None:
        _mark(row, "The access token expired and the server gave no refresh token: Reconnect.")
        return NeedsReconnect("no_refresh_token", row.last_error)
    metadata = clients.server_metadata(connector)
    sent = row.refresh_token_enc
    try:
        client = clients.resolve(connector, metadata, session=session)
        tokens = grants.refresh(
            _bounded_http(),
            metadata["token_endpoint"],
            client.auth,
            refresh_token=sent.reveal(),
            resource=canonical_resource(connector.url),
        )
    except clients.NoClient:
        _mark(row, "The OAuth client registration is gone: Reconnect.")
        return NeedsReconnect("invalid_client", row.last_error)
    except TokenError as exc:
        log.warning("token refresh for connector %s failed: %s", connector.id, exc.error)
        if exc.error == "invalid_grant":
            session.refresh(row)  # re-read once: someone may have rotated it meanwhile
            if row.refresh_token_enc and row.refresh_token_enc.ciphertext != sent.ciphertext:
                return None
            _mark(row, "The authorization was revoked or expired at the provider: Reconnect.")
            return NeedsReconnect(exc.error, row.last_error)
        if exc.error == "invalid_client":
            # The registration is dead, and the grant bound to it too.
            clients.forget(client.registration, session)
            _mark(row, "The provider no longer knows mcpadmin's client registration: Reconnect.")
            return NeedsReconnect(exc.error, row.last_error)
        row.last_error = f"Refreshing the access token failed: {exc}"
        return exc
    store_tokens(row, tokens)
    return None


def _mark(row, reason):
    row.status = "needs_reconnect"
    row.last_error = reason


def _reload(place):
    """Forget the caller's copy of the token columns so the next read sees the new values."""
    db.session.expire(
        place, ["access_token_enc", "refresh_token_enc", "token_expires_at", "token_scope",
                "status", "last_error"],
    )  # fmt: skip
