"""Which OAuth client mcpadmin is at a connector's authorization server, in MCP's order:
pre-registered by the operator, then a client ID metadata document, then dynamic client
registration (MCP client registration). The caller commits."""

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..crypto import seal
from ..extensions import db
from ..models import Connector, OAuthClient
from ..protocol import registration
from ..protocol.endpoints import ENDPOINTS
from ..protocol.tokens import ClientAuth

CALLBACK_PATH = "/oauth/callback"
METADATA_DOCUMENT_PATH = "/oauth/client-metadata.json"


class NoClient(Exception):
    """No way to be a client of this server; the message tells the operator what to enter."""


@dataclass
class Resolved:
    auth: ClientAuth
    method: str  # "pre_registered", "cimd" or "dcr"
    registration: OAuthClient | None = None


def redirect_uri() -> str:
    """The single callback URL, built from PUBLIC_BASE_URL (never from a request's Host)."""
    return current_app.config["PUBLIC_BASE_URL"] + CALLBACK_PATH


def metadata_document_url() -> str | None:
    """mcpadmin's client ID metadata document URL; None unless the app is served over https
    (the client id must be an https URL)."""
    base = current_app.config["PUBLIC_BASE_URL"]
    return base + METADATA_DOCUMENT_PATH if base.startswith("https://") else None


def server_metadata(connector: Connector, discovered: dict | None = None) -> dict:
    """The endpoints to use: the operator's, where entered, over the discovered ones
    (``discovered``, else the connector's stored metadata)."""
    metadata = dict(discovered if discovered is not None else connector.oauth_metadata or {})
    for name in ENDPOINTS:
        entered = getattr(connector, "oauth_" + name)
        if entered:
            metadata[name] = entered
    return metadata


def registration_key(metadata: dict) -> str:
    """Registrations are bound to one authorization server: its issuer, or the token endpoint
    when the operator entered endpoints by hand."""
    return metadata.get("issuer") or metadata["token_endpoint"]


def resolve(connector: Connector, metadata: dict, http=None, scope=None, session=None) -> Resolved:
    """The client to use; with ``http``, register one when none exists yet. ``session`` is
    where a stored registration is read (the refresh's own session, or the app's).

    :raise NoClient: nothing pre-registered, no metadata document possible, no registration
        endpoint (or, without ``http``, no stored registration).
    :raise registration.RegistrationError: the server refused the registration.
    """
    if connector.oauth_client_id_enc is not None:
        secret = connector.oauth_client_secret_enc
        supported = metadata.get("token_endpoint_auth_methods_supported") or []
        method = registration.auth_method(supported) if secret else "none"
        client_id = connector.oauth_client_id_enc.reveal()
        return Resolved(ClientAuth(client_id, secret and secret.reveal(), method), "pre_registered")
    document = metadata_document_url()
    if document and metadata.get("client_id_metadata_document_supported"):
        return Resolved(ClientAuth(document), "cimd")
    key = registration_key(metadata)
    stored = (session or db.session).scalar(
        select(OAuthClient).filter_by(issuer=key, redirect_uri=redirect_uri())
    )
    if stored is None and http is not None and metadata.get("registration_endpoint"):
        stored = _register(http, metadata, scope)
    if stored is None:
        raise NoClient(
            "This authorization server offers no dynamic client registration: register mcpadmin "
            f"there with the redirect URI {redirect_uri()} and enter the client ID (and secret) "
            "on the connector."
        )
    return registered(stored)


def registered(stored: OAuthClient) -> Resolved:
    """The client a stored dynamic registration makes us."""
    secret = stored.client_secret_enc
    auth = ClientAuth(
        stored.client_id_enc.reveal(), secret and secret.reveal(), stored.token_endpoint_auth_method
    )
    return Resolved(auth, "dcr", stored)


def forget(stored: OAuthClient | None, session=None):
    """Drop a registration the server no longer accepts (``invalid_client``, or too few
    scopes)."""
    if stored is not None:
        (session or db.session).delete(stored)


def _register(http, metadata, scope) -> OAuthClient:
    """Register for every scope the server lists (plus the one asked now), so a later step-up
    does not need a new registration."""
    method = registration.auth_method(metadata.get("token_endpoint_auth_methods_supported") or [])
    scopes = (metadata.get("scopes_supported") or []) + (scope or "").split()
    client = registration.register(
        http,
        metadata["registration_endpoint"],
        registration.client_metadata(redirect_uri(), method, " ".join(dict.fromkeys(scopes))),
    )
    stored = OAuthClient(
        issuer=registration_key(metadata),
        redirect_uri=redirect_uri(),
        client_id_enc=seal(client.client_id),
        client_secret_enc=seal(client.client_secret) if client.client_secret else None,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
    )
    db.session.add(stored)
    db.session.flush()
    return stored
