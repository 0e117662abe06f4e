"""Client registration: the metadata mcpadmin describes itself with, dynamic client
registration (RFC 7591), and the client ID metadata document MCP prefers where supported."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from .endpoints import is_loopback
from .errors import OAuthError
from .http import Http, HttpError

CLIENT_NAME = "mcpadmin"
GRANT_TYPES = ["authorization_code", "refresh_token"]


class RegistrationError(OAuthError):
    """The authorization server refused or botched the registration."""


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    token_endpoint_auth_method: str


def auth_method(supported: list[str]) -> str:
    """The client authentication to ask for: a secret in the form where the server lists it
    (the most widely accepted), else HTTP Basic, else none."""
    if not supported or "client_secret_post" in supported:
        return "client_secret_post"
    if "client_secret_basic" in supported:
        return "client_secret_basic"
    return "none"


def application_type(redirect_uri: str) -> str:
    """``native`` for a loopback redirect URI, ``web`` otherwise (MCP 2026-07-28 client
    registration: an appropriate application_type MUST be sent)."""
    return "native" if is_loopback(urlsplit(redirect_uri).hostname) else "web"


def client_metadata(redirect_uri: str, method: str, scope: str | None = None) -> dict:
    """The RFC 7591 §2 metadata mcpadmin registers with."""
    metadata = {
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "grant_types": GRANT_TYPES,
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        "application_type": application_type(redirect_uri),
    }
    if scope:
        metadata["scope"] = scope
    return metadata


def metadata_document(client_id: str, redirect_uri: str) -> dict:
    """The client ID metadata document served at ``client_id`` (an https URL): a public
    client, so no secret (MCP client registration, client ID metadata documents)."""
    return {
        "client_id": client_id,
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "grant_types": GRANT_TYPES,
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": application_type(redirect_uri),
    }


def register(http: Http, endpoint: str, metadata: dict) -> Client:
    """POST ``metadata`` to the registration endpoint (RFC 7591 §3).

    :raise RegistrationError: an error response (with the server's ``error_description``),
        an answer without ``client_id``, or no answer.
    """
    try:
        response = http.post(endpoint, json=metadata, headers={"Accept": "application/json"})
    except HttpError as exc:
        raise RegistrationError("unavailable", f"Client registration failed: {exc}") from None
    try:
        body = response.json()
    except HttpError:
        body = None
    if response.status not in (200, 201):
        error = body.get("error", "") if isinstance(body, dict) else ""
        described = body.get("error_description", "") if isinstance(body, dict) else ""
        raise RegistrationError(
            str(error) or str(response.status),
            f"The authorization server refused the client registration ({response.status}"
            f"{', ' + str(error) if error else ''}){': ' + str(described) if described else '.'}",
        )
    if not isinstance(body, dict) or not isinstance(body.get("client_id"), str):
        raise RegistrationError("invalid_response", "The registration answer has no client_id.")
    secret = body.get("client_secret")
    return Client(
        client_id=body["client_id"],
        client_secret=secret if isinstance(secret, str) else None,
        token_endpoint_auth_method=str(
            body.get("token_endpoint_auth_method") or metadata["token_endpoint_auth_method"]
        ),
    )
