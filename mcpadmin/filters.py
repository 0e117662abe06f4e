"""Jinja filters and globals shared by every template."""

import re
import unicodedata
from datetime import UTC, datetime

from markupsafe import Markup, escape

from .models import AUTH_TYPES, CREDENTIAL_MODES, STATUSES


def reltime(value: datetime | None, now: datetime | None = None) -> str:
    """``"3 minutes ago"``, ``"in 2 hours"``, ``"never"``: coarse relative time."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in 1 minute" if future else "1 minute ago"


def plural(count: int, noun: str) -> str:
    """``"1 tool"``, ``"3 tools"``: a count and a regular English noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def isotime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def hidden_characters(text: str) -> list[str]:
    """The invisible characters in ``text`` that can disguise it: Unicode format characters
    (bidi overrides and isolates such as U+202E, zero-width U+200B–U+200D, U+2060, U+FEFF)
    and control characters other than tab and newline."""
    return [ch for ch in text if _hidden(ch)]


def suspicious(value) -> bool:
    """Whether ``value`` is a string holding hidden characters (the Jinja test
    ``{% if tool.name is suspicious %}``)."""
    return isinstance(value, str) and bool(hidden_characters(value))


def _hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cf" or (category == "Cc" and ch not in "\t\n\r")


def remote_text(value, limit: int | None = None) -> Markup:
    """Text a remote server wrote, made safe and honest for a page: HTML-escaped, cut to
    ``limit`` characters (with "…"), and every hidden character (see ``hidden_characters``)
    shown as a visible ``‹U+202E›`` marker in ``<mark class="hidden-char">``, so a bidi
    override cannot reorder what the operator reads and a zero-width space cannot make two
    names look alike. ``None`` gives an empty string.

    Use: ``{{ tool.description|remote_text(400) }}``, ``{{ tool.name|remote_text }}``.
    """
    if value is None:
        return Markup("")
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    # Escaped first; the only markup added is the fixed marker below.
    return Markup(_NOT_PLAIN_ASCII.sub(_marker, str(escape(text))))  # noqa: S704


# Every hidden character lies outside printable ASCII; only those are looked at.
_NOT_PLAIN_ASCII = re.compile(r"[^\t\n\r\x20-\x7e]")


def _marker(match: re.Match) -> str:
    ch = match.group()
    if not _hidden(ch):
        return ch
    code = f"U+{ord(ch):04X}"
    return f'<mark class="hidden-char" title="hidden character {code}">‹{code}›</mark>'


def init_app(app):
    app.jinja_env.filters["reltime"] = reltime
    app.jinja_env.filters["remote_text"] = remote_text
    app.jinja_env.tests["suspicious"] = suspicious
    app.jinja_env.filters["isotime"] = isotime
    app.jinja_env.filters["plural"] = plural
    app.jinja_env.globals.update(
        AUTH_TYPES=AUTH_TYPES, CREDENTIAL_MODES=CREDENTIAL_MODES, STATUSES=STATUSES
    )
