"""Rules for the URLs an authorization server names: its endpoints must be https."""

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "localhost.")


class InsecureEndpoint(ValueError):
    """The URL may not be used as an OAuth endpoint; the message says why."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, allow_http_loopback: bool = False) -> str:
    """Return ``url`` if mcpadmin may send a browser or a token request there.

    MCP requires https for every authorization server endpoint (authorization, security
    considerations: communication security); plain http is accepted only for a loopback host,
    and only in development mode. Any other scheme (``javascript:``, ``data:``, ``file:``) is
    refused, as are URLs with credentials or control characters.

    :raise InsecureEndpoint: with a sentence for the operator.
    """
    if not isinstance(url, str) or not url:
        raise InsecureEndpoint("The endpoint is missing.")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        raise InsecureEndpoint(f"The endpoint {url!r} contains spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname and "@" not in parts.netloc:
        return url
    if scheme == "http" and parts.hostname and "@" not in parts.netloc:
        if allow_http_loopback and is_loopback(parts.hostname):
            return url
        raise InsecureEndpoint(f"The endpoint {url} is not https; OAuth endpoints must use https.")
    raise InsecureEndpoint(f"The endpoint {url!r} is not an https URL.")
