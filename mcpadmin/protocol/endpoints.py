"""Rules for the URLs an authorization server names: its endpoints must be https."""

import ipaddress
from urllib.parse import urlsplit

from ..config import setting
from .addresses import is_loopback_name
from .urls import bad_character

# The authorization server endpoints mcpadmin uses (RFC 8414 §2 names).
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "registration_endpoint",
             "revocation_endpoint")  # fmt: skip


class InsecureEndpoint(ValueError):
    """The URL may not be used as an OAuth endpoint; the message says why."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if is_loopback_name(host):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, allow_http_loopback: bool = False) -> str:
    """Return ``url`` if mcpadmin may send a browser or a token request there.

    MCP requires https for every authorization server endpoint (authorization, security
    considerations: communication security; OAuth 2.1 §1.5 / RFC 8414 §2); plain http is
    accepted only for a loopback host, and only in development mode. Refused, each with its
    own sentence: other schemes (``javascript:``, ``data:``, ``file:``), URLs with
    credentials, spaces, control characters, non-ASCII or shell metacharacters, a bad port,
    no host.

    :raise InsecureEndpoint: with a sentence for the operator.
    """
    if not isinstance(url, str) or not url:
        raise InsecureEndpoint("The endpoint is missing.")
    shown = repr(url[:200])
    problem = bad_character(url)
    if problem:
        raise InsecureEndpoint(f"The endpoint {shown} contains {problem}.")
    if not url.isascii():
        raise InsecureEndpoint(f"The endpoint {shown} is not ASCII (use its punycode form).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InsecureEndpoint(f"The endpoint {shown} has an invalid host or port.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url.lower().startswith(scheme + "://"):
        raise InsecureEndpoint(f"The endpoint {shown} is not an https URL.")
    if not parts.hostname:
        raise InsecureEndpoint(f"The endpoint {shown} has no host.")
    if "@" in parts.netloc:
        raise InsecureEndpoint(f"The endpoint {shown} carries credentials; refused.")
    if port == 0:
        raise InsecureEndpoint(f"The endpoint {shown} has an invalid port.")
    if scheme == "http" and not (allow_http_loopback and is_loopback(parts.hostname)):
        hint = ""
        if is_loopback(parts.hostname):
            hint = f" For a server on this machine, set {setting('ALLOW_HTTP_LOOPBACK', '1')}."
        raise InsecureEndpoint(f"The endpoint {url} is not https; OAuth endpoints must use "
                               f"https.{hint}")  # fmt: skip
    return url
