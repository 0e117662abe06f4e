"""Validation of URLs, header names and secrets an operator types or a remote document names."""

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

# RFC 9110 §5.1: a field name is a token.
HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the MCP client sets itself or that HTTP owns; an API key must not replace them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
        "Accept", "Accept-Encoding", "Cookie", "Upgrade", "TE", "Trailer", "Keep-Alive",
        "Mcp-Session-Id", "MCP-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID",
    )
)  # fmt: skip


# A token or API key sent as a header value (RFC 9110 §5.5 field-value): printable ASCII, no
# leading or trailing space. RFC 9110 lets obs-text (bytes 0x80-0xFF) through but gives it no
# meaning, so a secret using it would reach each server differently.
_SECRET_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
# RFC 6749 Appendix A.1/A.2: client_id and client_secret are VSCHAR (%x20-7E).
_VSCHAR = re.compile(r"[\x20-\x7e]*")

# Characters RFC 3986 §2 never allows unencoded ("<>\"{}|\\^`" and space), plus the shell
# metacharacters it does allow ("$;'"), which no server or endpoint URL needs and which turn
# a copied command line into something else.
FORBIDDEN_CHARACTERS = frozenset("<>\"{}|\\^`$;'")


def bad_character(value: str) -> str | None:
    """What is wrong with ``value``'s characters, as words for a message, or None: spaces,
    control or invisible characters (Unicode categories C* and Z*), or a forbidden one."""
    for ch in value:
        if unicodedata.category(ch)[0] in "CZ":
            return "spaces, control or invisible characters"
        if ch in FORBIDDEN_CHARACTERS:
            return f"the character {ch!r}"
    return None


class InvalidURL(ValueError):
    """The value is not an acceptable URL; the message says why, for the operator."""


def check_http_url(value: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host and no credentials.

    Refuses whitespace, control or invisible characters anywhere (no trimming tricks),
    backslashes and shell metacharacters (``FORBIDDEN_CHARACTERS``), other schemes
    (``javascript:``, ``data:``, ``file:``), relative URLs, ``user:pass@`` and bad ports.

    :raise InvalidURL: with a sentence fit for the page.
    """
    if not value:
        raise InvalidURL("Enter the server URL.")
    problem = bad_character(value)
    if problem:
        raise InvalidURL(f"The URL must not contain {problem}.")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise InvalidURL("The URL's host is not valid.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidURL("The URL must start with https:// (or http:// for a local server).")
    if not value.lower().startswith(parts.scheme.lower() + "://") or not parts.netloc:
        raise InvalidURL("The URL must be absolute, like https://mcp.example.com/mcp.")
    if "@" in parts.netloc:
        raise InvalidURL("Put credentials in the authentication fields, not in the URL.")
    try:
        valid_port = parts.port is None or parts.port > 0
    except ValueError:
        valid_port = False
    if not valid_port:
        raise InvalidURL("The URL's port is not valid.")
    if not parts.hostname:
        raise InvalidURL("The URL has no host name.")
    return value


def check_header_name(value: str) -> str:
    """Return ``value`` if it can carry an API key.

    :raise ValueError: not an RFC 9110 token, or a header HTTP or MCP reserve.
    """
    if not value or not HEADER_TOKEN.match(value):
        raise ValueError("A header name uses letters, digits and - only, e.g. X-API-Key.")
    if value.lower() in RESERVED_HEADERS:
        raise ValueError(f"{value} is set by mcpadmin itself; choose another header name.")
    return value


def check_secret_header_value(value: str, what: str = "The token") -> str:
    """Return ``value`` if it can be sent as the value of an HTTP header: printable ASCII,
    no leading or trailing space. The message never repeats the value.

    :raise ValueError: with a sentence naming ``what`` for the page.
    """
    if not _SECRET_HEADER_VALUE.fullmatch(value):
        raise ValueError(
            f"{what} may contain only printable ASCII characters (letters, digits, "
            "punctuation, inner spaces); check for a typographic quote, an accent or a line "
            "break pasted with it."
        )
    return value


def check_client_credential(value: str, what: str) -> str:
    """Return ``value`` if it is an OAuth client id or secret: printable ASCII (RFC 6749
    Appendix A.1, A.2). The message never repeats the value.

    :raise ValueError: with a sentence naming ``what`` for the page.
    """
    if not _VSCHAR.fullmatch(value):
        raise ValueError(f"{what} may contain only printable ASCII characters.")
    return value


def unsendable_header(headers: dict) -> str | None:
    """The name of the first header whose value HTTP cannot carry at all (a character
    outside Latin-1, or a line break or NUL that would end the header), or None. Values
    stored before they were checked on entry reach the client this way."""
    for name, value in headers.items():
        text = str(value)
        if any(ch in "\r\n\0" for ch in text):
            return name
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            return name
    return None


# host [":" port] [RFC 9110 §7.2]: an IP literal in brackets, or a name (a trailing dot allowed).
_AUTHORITY = re.compile(
    r"(?:\[(?P<literal>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._~-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def host_and_port(authority: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``host[:port]`` (a ``Host`` header, an ``EXTRA_HOSTS`` entry) as ``(host, port)``: the
    host lower-cased, one trailing dot dropped, an IPv6 literal in brackets and compressed
    (``[0:0::1]`` is ``[::1]``); ``default_port`` when no port is given. None for anything
    else (user info, a path, a port out of range, an empty host)."""
    found = _AUTHORITY.fullmatch(authority.strip().lower())
    if found is None:
        return None
    if found["literal"] is not None:
        try:
            host = f"[{ipaddress.IPv6Address(found['literal']).compressed}]"
        except ValueError:
            return None
    else:
        host = found["name"].removesuffix(".")
        if not host or host.startswith(".") or ".." in host:
            return None
    port = default_port if found["port"] is None else int(found["port"])
    if port is not None and not 0 < port < 65536:
        return None
    return host, port
