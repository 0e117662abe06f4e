"""OAuth Connect, for a connector (shared) or one agent (per agent): discovery, client
registration and the authorization request (``start``); the callback's checks, the code
exchange and the first tool sync (``finish``). The caller commits."""

import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete

from ..crypto import seal
from ..extensions import db
from ..models import Agent, Connector, PendingAuthorization, utcnow
from ..protocol import discovery, pkce
from ..protocol import tokens as protocol
from ..protocol.endpoints import ENDPOINTS, InsecureEndpoint, check_endpoint
from . import audit, clients, grants, lifecycle, outbound, sync
from .agents import connection_for
from .lifecycle import Event
from .tokens import store_tokens

STATE_SALT = "mcpadmin.oauth.state"
STATE_MAX_AGE = 600  # seconds: a consent not finished in ten minutes starts over


class ConnectError(Exception):
    """Connect cannot go on; ``str()`` is the operator's message, ``agent_id`` says where the
    flow started (the agent page) when known."""

    def __init__(self, message: str, agent_id: int | None = None):
        super().__init__(message)
        self.agent_id = agent_id


@dataclass
class Finished:
    connector: Connector
    agent: Agent | None
    # invalid_client at the code exchange: the registration was dropped; Connect again once.
    restart: bool = False


def start(connector: Connector, agent: Agent | None, admin_id: int, retried=False) -> str:
    """Discover, register and record a pending authorization; return the URL to send the
    browser to.

    :raise ConnectError: wrong kind of connector, nothing discovered (the attempts are stored
        in ``connector.discovery_log``), no S256, no usable client, an unsafe endpoint.
    """
    agent_id = agent.id if agent else None
    if connector.auth_type != "oauth":
        raise ConnectError(f"{connector.name} does not use OAuth.", agent_id)
    if connector.per_agent != (agent is not None):
        where = "on an agent's page" if connector.per_agent else "on the connectors page"
        raise ConnectError(f"{connector.name} is connected {where}.", agent_id)
    http = outbound.http()
    # No write reaches the database before the discovery and registration requests are done:
    # a write transaction held across a remote call would block every other writer.
    with db.session.no_autoflush:
        metadata = _server_metadata(connector, http, agent_id)
        holder = connection_for(agent, connector) if agent else connector
        scope = _scope(connector, metadata, holder)
        try:
            client = clients.resolve(connector, metadata, http, scope)
            authorize = check_endpoint(metadata["authorization_endpoint"], _http_loopback())
        except (clients.NoClient, InsecureEndpoint) as exc:
            raise ConnectError(str(exc), agent_id) from None
        except clients.registration.RegistrationError as exc:
            raise ConnectError(str(exc), agent_id) from None

    _purge_expired()
    verifier, nonce = pkce.make_verifier(), secrets.token_urlsafe(24)
    resource = discovery.canonical_resource(connector.url)
    db.session.add(
        PendingAuthorization(
            nonce=nonce,
            connector_id=connector.id,
            agent_id=agent_id,
            admin_id=admin_id,
            code_verifier_enc=seal(verifier),
            issuer=metadata.get("issuer"),
            iss_required=bool(metadata.get("authorization_response_iss_parameter_supported")),
            token_endpoint=metadata["token_endpoint"],
            resource=resource,
            redirect_uri=clients.redirect_uri(),
            scope=scope,
            client_method=client.method,
            oauth_client_id=client.registration.id if client.registration else None,
            server_metadata=metadata,
            expected_connector=_snapshot(connector),
        )
    )
    params = {
        "response_type": "code",
        "client_id": client.auth.client_id,
        "redirect_uri": clients.redirect_uri(),
        "state": write_state(connector.id, agent_id, nonce, retried),
        "code_challenge": pkce.challenge(verifier),
        "code_challenge_method": "S256",
        "resource": resource,  # RFC 8707, MCP authorization: resource parameter
    }
    if scope:
        params["scope"] = scope
    return authorize + ("&" if "?" in authorize else "?") + urlencode(params)


def finish(args: dict, admin_id: int, check=None) -> Finished:
    """Check the provider's answer, redeem the code and store the tokens. ``check(connector,
    agent)``, when given, is called once the pending authorization is used up and before
    anything is asked or stored: it raises to refuse (the caller's access rules).

    The tokens are stored with the grant they were issued under (``grants.Grant``), the
    flow's metadata becomes the connector's, and other holders whose grant came from another
    issuer turn Needs reconnect (they are never re-pointed).

    :raise ConnectError: bad/expired/replayed/foreign state, an ``error`` answer, an ``iss``
        mismatch, a connector changed since the flow started, or a failed token request.
        Nothing stored is changed then.
    """
    payload = read_state(args.get("state", ""))
    agent_id = payload.get(AGENT)
    pending = db.session.scalar(
        db.select(PendingAuthorization).filter_by(nonce=str(payload.get(NONCE)))
    )
    if (
        pending is None
        or pending.connector_id != payload.get(CONNECTOR)
        or pending.agent_id != agent_id
        or pending.created_at < utcnow() - timedelta(seconds=STATE_MAX_AGE)
    ):
        raise ConnectError(
            "This sign-in link was already used or has expired: Connect again.", agent_id
        )
    if pending.admin_id != admin_id:
        raise ConnectError("This sign-in was started by another admin: Connect again.", agent_id)
    connector, agent, _ = pending.connector, pending.agent, pending.oauth_client  # load now
    # Single use: whoever deletes the row owns the flow; a replay finds nothing to delete.
    if db.session.execute(delete(PendingAuthorization).filter_by(id=pending.id)).rowcount != 1:
        raise ConnectError("This sign-in link was already used: Connect again.", agent_id)
    if check is not None:
        check(connector, agent)

    _check_issuer(args.get("iss"), pending, agent_id)
    if pending.expected_connector != _snapshot(connector):
        raise ConnectError(
            f"{connector.name} was changed (its URL, authentication or endpoints) while you "
            "were signing in; nothing was stored. Connect again.",
            agent_id,
        )
    if args.get("error") == "invalid_scope" and pending.oauth_client and not payload.get(RETRIED):
        # A registration made for fewer scopes than a step-up now asks: register anew, once.
        clients.forget(pending.oauth_client)
        return Finished(connector, agent, restart=True)
    if args.get("error"):
        described = args.get("error_description")
        detail = f"{args['error']}" + (f": {described}" if described else "")
        advice = "Connect again to retry." if args["error"] == "access_denied" else ""
        raise ConnectError(
            f"{connector.name} did not grant access ({detail[:300].rstrip('.')}). {advice}".strip(),
            agent_id,
        )
    if not args.get("code"):
        raise ConnectError("The provider sent no authorization code: Connect again.", agent_id)

    metadata = pending.server_metadata or {}
    client = _pending_client(connector, pending, metadata)
    try:
        tokens = protocol.exchange_code(
            outbound.http(),
            pending.token_endpoint,
            client.auth,
            code=args["code"],
            verifier=pending.code_verifier_enc.reveal(),
            redirect_uri=pending.redirect_uri,
            resource=pending.resource,
        )
    except protocol.TokenError as exc:
        if exc.error == "invalid_client" and client.registration is not None:
            clients.forget(client.registration)
            if not payload.get(RETRIED):
                return Finished(connector, agent, restart=True)
        raise ConnectError(f"Signing in to {connector.name} failed: {exc}", agent_id) from None

    place = connection_for(agent, connector, create=True) if agent else connector
    reconnect = audit.needed_reconnect(connector, place if agent else None)
    grant = grants.issued(metadata, client, pending.resource)
    store_tokens(place, tokens, grant, requested_scope=pending.scope)
    audit.connected(connector, agent, reconnect, {"how": "oauth", "issuer": grant.issuer,
                                                  "scope": place.token_scope})  # fmt: skip
    if not _entered_by_hand(connector):
        connector.oauth_metadata = metadata
    _retire_other_issuers(connector, place, grant)
    return Finished(connector, agent)


def first_sync(finished: Finished) -> str | None:
    """After the tokens are committed: sync the tool list (per agent only while the connector
    has none yet). The error message, or None. The caller commits.

    The tokens are committed first on purpose: a credential just obtained must never be lost
    to a failed sync, and a refresh during the sync runs in its own transaction, which on
    SQLite must not wait for ours.
    """
    connector, agent = finished.connector, finished.agent
    if connector.per_agent and connector.tools:
        return None
    try:
        sync.sync_tools(connector, agent)
    except sync.SyncError as exc:
        return str(exc)
    return None


# The signed state's keys (short: the state travels in two URLs).
CONNECTOR, AGENT, NONCE, RETRIED = "c", "a", "n", "r"


def write_state(connector_id: int, agent_id: int | None, nonce: str, retried=False) -> str:
    """The signed ``state``: which connector and agent, the pending row's nonce, and whether
    this flow is the one automatic retry after a dropped registration."""
    payload = {CONNECTOR: connector_id, AGENT: agent_id, NONCE: nonce}
    if retried:
        payload[RETRIED] = 1
    return _serializer().dumps(payload)


def read_state(state: str) -> dict:
    """The payload ``write_state`` signed.

    :raise ConnectError: tampered, foreign or older than ten minutes (then ``agent_id`` is
        still filled in from the expired payload, so the operator lands where they started).
    """
    try:
        payload = _serializer().loads(state, max_age=STATE_MAX_AGE)
    except SignatureExpired as exc:
        expired = _serializer().load_payload(exc.payload) if exc.payload else {}
        agent_id = expired.get(AGENT) if isinstance(expired, dict) else None
        raise ConnectError("The sign-in took longer than ten minutes: Connect again.",
                           agent_id if isinstance(agent_id, int) else None) from None  # fmt: skip
    except BadSignature:
        raise ConnectError("The sign-in answer could not be verified: Connect again.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get(CONNECTOR), int):
        raise ConnectError("The sign-in answer could not be verified: Connect again.")
    if payload.get(AGENT) is not None and not isinstance(payload.get(AGENT), int):
        raise ConnectError("The sign-in answer could not be verified: Connect again.")
    return payload


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=STATE_SALT)


def _http_loopback() -> bool:
    return current_app.config["ALLOW_HTTP_LOOPBACK"]


def _entered_by_hand(connector) -> bool:
    return bool(connector.oauth_authorization_endpoint and connector.oauth_token_endpoint)


def _snapshot(connector) -> dict:
    """What a flow's tokens are for: the callback stores them only on a connector that still
    matches (another server, auth or mode would get tokens it never asked for)."""
    snapshot = {"url": connector.url, "auth_type": connector.auth_type,
                "credential_mode": connector.credential_mode}  # fmt: skip
    for name in ENDPOINTS:
        snapshot[name] = getattr(connector, "oauth_" + name)
    return snapshot


def _retire_other_issuers(connector, place, grant):
    """Holders whose tokens another authorization server issued turn Needs reconnect: the
    connector now signs in elsewhere, and their grants are never re-pointed there."""
    for other in [connector, *connector.connections]:
        issued = grants.of(other)
        if other is place or issued is None or other.access_token_enc is None:
            continue
        if issued.issuer != grant.issuer:
            lifecycle.apply(
                other,
                Event.ISSUER_CHANGED,
                f"{connector.name} now signs in at {grant.issuer}; this authorization came "
                f"from {issued.issuer}: Reconnect.",
            )


def _server_metadata(connector, http, agent_id) -> dict:
    """Hand-entered endpoints skip discovery; otherwise discover afresh. Only the log of
    attempts is stored on the connector now; the metadata is stored when the flow completes.

    :raise ConnectError: nothing found, or no PKCE S256.
    """
    if _entered_by_hand(connector):
        connector.discovery_log = [{"step": "skipped", "url": connector.url,
                                    "outcome": "endpoints entered by hand"}]  # fmt: skip
        metadata = clients.server_metadata(connector)
        for name in ENDPOINTS:  # the same rules as discovered endpoints
            if metadata.get(name):
                try:
                    check_endpoint(metadata[name], _http_loopback())
                except InsecureEndpoint as exc:
                    raise ConnectError(str(exc), agent_id) from None
        return metadata
    try:
        found = discovery.discover(http, connector.url, _http_loopback())
    except discovery.DiscoveryError as exc:
        connector.discovery_log = exc.log
        raise ConnectError(str(exc), agent_id) from None
    connector.discovery_log = found.log
    # MCP security: clients MUST refuse to proceed without PKCE support advertised.
    if "S256" not in found.code_challenge_methods_supported:
        raise ConnectError(
            f"The authorization server {found.issuer} does not advertise PKCE with S256, which "
            "MCP requires; mcpadmin will not start a sign-in there.",
            agent_id,
        )
    return clients.server_metadata(connector, found.as_metadata())


def _scope(connector, metadata, holder) -> str | None:
    """MCP scope selection: the 401 challenge's scope, else the resource's scopes_supported,
    else the operator's; plus what a 403 insufficient_scope asked for (the union with what was
    held before), plus offline_access when the server lists it (for a refresh token)."""
    scopes = (
        metadata.get("challenge_scope")
        or " ".join(metadata.get("resource_scopes") or [])
        or connector.oauth_scopes
        or ""
    ).split()
    if holder is not None and holder.step_up_scope:
        scopes += (holder.token_scope or "").split() + holder.step_up_scope.split()
    if "offline_access" in (metadata.get("scopes_supported") or []):
        scopes.append("offline_access")
    return " ".join(dict.fromkeys(scopes)) or None


def _check_issuer(iss, pending, agent_id):
    """RFC 9207 §2.4 (MCP 2026-07-28 authorization response validation): a present ``iss``
    must equal the recorded issuer exactly; an absent one is refused when the server said it
    sends it. On mismatch the response's ``error`` is not shown (it may be an attacker's)."""
    if iss is not None and iss != pending.issuer:
        raise ConnectError(
            "The answer came from another authorization server than the one asked (issuer "
            "mismatch); it was refused. Connect again.",
            agent_id,
        )
    if iss is None and pending.iss_required:
        raise ConnectError(
            "The authorization server did not identify itself (no iss parameter) although it "
            "promised to; the answer was refused. Connect again.",
            agent_id,
        )


def _pending_client(connector, pending, metadata) -> clients.Resolved:
    """The client the flow started as, at the flow's own authorization server."""
    if pending.client_method == "dcr":
        if pending.oauth_client is None:
            raise ConnectError("The client registration is gone: Connect again.", pending.agent_id)
        return clients.registered(pending.oauth_client)
    try:
        return clients.resolve(connector, metadata)
    except clients.NoClient as exc:
        raise ConnectError(str(exc), pending.agent_id) from None


def _purge_expired():
    cutoff = utcnow() - timedelta(seconds=STATE_MAX_AGE)
    db.session.execute(delete(PendingAuthorization).where(PendingAuthorization.created_at < cutoff))
