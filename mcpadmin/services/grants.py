"""Where an OAuth grant was issued, recorded on the holder when the flow completes.

A grant is only ever sent to the issuer that granted it: refresh, revocation and client
authentication read the ``Grant`` stored with the tokens, never the connector's current
metadata, which a later discovery may have pointed at another authorization server.
"""

from dataclasses import asdict, dataclass, field

from ..extensions import db
from ..models import Connector, OAuthClient
from ..protocol.discovery import canonical_resource
from ..protocol.tokens import ClientAuth
from . import clients


@dataclass(frozen=True)
class Grant:
    issuer: str  # the metadata's issuer, or the token endpoint for hand-entered endpoints
    token_endpoint: str
    revocation_endpoint: str | None
    resource: str | None
    # How mcpadmin was a client there: "pre_registered", "cimd" or "dcr"; None for grants
    # stored before this was recorded (the client is then looked up at the same issuer).
    client_method: str | None = None
    client_id: str | None = None  # the metadata document URL (CIMD); never a secret
    registration_id: int | None = None  # the ``OAuthClient`` row (DCR)
    auth_methods: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)


def issued(metadata: dict, client: "clients.Resolved", resource: str) -> Grant:
    """The grant a flow with this metadata and client is about to obtain."""
    return Grant(
        issuer=clients.registration_key(metadata),
        token_endpoint=metadata["token_endpoint"],
        revocation_endpoint=metadata.get("revocation_endpoint"),
        resource=resource,
        client_method=client.method,
        client_id=client.auth.client_id if client.method == "cimd" else None,
        registration_id=client.registration.id if client.registration else None,
        auth_methods=list(metadata.get("token_endpoint_auth_methods_supported") or []),
    )


def of(place) -> Grant | None:
    """The grant stored on a connector or agent connection (None: none, or unreadable)."""
    stored = place.oauth_grant if place is not None else None
    if not isinstance(stored, dict) or not stored.get("token_endpoint"):
        return None
    known = Grant.__dataclass_fields__
    return Grant(**{k: v for k, v in stored.items() if k in known})


def resource(grant: Grant, connector: Connector) -> str:
    return grant.resource or canonical_resource(connector.url)


def client(grant: Grant, connector: Connector, session=None) -> "clients.Resolved":
    """The client credentials the grant was issued to, for its token endpoint only.

    :raise clients.NoClient: the registration is gone (or the pre-registered client was
        removed from the connector): the grant cannot be refreshed.
    """
    session = session or db.session
    method = grant.client_method
    if method == "cimd" and grant.client_id:
        return clients.Resolved(ClientAuth(grant.client_id), "cimd")
    if method == "dcr" and grant.registration_id is not None:
        stored = session.get(OAuthClient, grant.registration_id)
        if stored is None or stored.issuer != grant.issuer:
            raise clients.NoClient("The OAuth client registration is gone: Reconnect.")
        return clients.registered(stored)
    if method == "pre_registered" and connector.oauth_client_id_enc is None:
        raise clients.NoClient("The pre-registered OAuth client was removed: Reconnect.")
    # Pre-registered, or recorded before the method was: resolve at this grant's issuer (with
    # what the connector knows of that same issuer, such as its CIMD support).
    metadata = {
        "issuer": grant.issuer,
        "token_endpoint": grant.token_endpoint,
        "token_endpoint_auth_methods_supported": grant.auth_methods,
    }
    known = connector.oauth_metadata or {}
    if method is None and known.get("issuer") == grant.issuer:
        metadata = {**known, **metadata}
    return clients.resolve(connector, metadata, session=session)
