"""Jinja filters and globals shared by every template."""

import re
import unicodedata
from datetime import UTC, datetime

from markupsafe import Markup, escape

from .models import AUTH_TYPES, CREDENTIAL_MODES, Role
from .protocol.mcp import is_standard_tool_name

# Characters that print as nothing, or as blank space, although Unicode calls them letters or
# symbols (Hangul fillers, the blank Braille pattern, the Mongolian vowel separator).
_BLANK_GRAPHICS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")

# Unicode's bidirectional formatting characters (UAX #9, section 2): embeddings and overrides
# U+202A–U+202E, isolates U+2066–U+2069, and the marks U+200E, U+200F and U+061C. Each can make
# text display in another order than it is stored.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
_BIDI = re.compile(f"[{''.join(sorted(BIDI_CONTROLS))}]")


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


def bidi_controls(text: str) -> list[str]:
    """The bidirectional control characters in ``text``, in order."""
    return _BIDI.findall(text)


def bidi_safe(value):
    """``value`` with each bidirectional control shown as a visible ``‹U+202E›``, so a name
    stored before such names were refused, or sent by a remote server, cannot reorder what
    the operator reads. Plain text in, plain text out (autoescaped where it lands, so it is
    safe in attributes too); anything but a ``str`` (``Markup`` included) passes unchanged.

    Every ``{{ expression }}`` goes through it (``finalize``, see ``init_app``)."""
    if type(value) is not str or value.isascii():
        return value
    return _BIDI.sub(lambda m: f"‹U+{ord(m.group()):04X}›", value)


def _hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cf" or (category == "Cc" and ch not in "\t\n\r")


def _hidden_in_name(ch: str) -> bool:
    """In a tool name, where two names that look alike call different tools, also every
    space, tab or line break, combining mark (U+034F, U+FE0F) and blank graphic (U+3164,
    U+2800): each makes a lookalike of a plainer name."""
    if ch in "\t\n\r ":
        return True
    return _hidden(ch) or unicodedata.category(ch)[0] in "ZMC" or ch in _BLANK_GRAPHICS


def name_hides_characters(value) -> bool:
    """Whether a tool name holds a character ``tool_name`` shows as a marker (the Jinja test
    ``{% if tool.name is hiding_characters %}``)."""
    return isinstance(value, str) and any(_hidden_in_name(ch) for ch in value)


def nonstandard_name(value) -> bool:
    """Whether ``value`` is a tool name outside the spec's rule (``mcp.TOOL_NAME``): the Jinja
    test ``{% if tool.name is nonstandard_name %}``."""
    return isinstance(value, str) and not is_standard_tool_name(value)


def tool_name(value) -> Markup:
    """A tool name for a page: like ``remote_text``, and every character ``_hidden_in_name``
    finds (a space or tab included, which HTML would collapse) shown as a ``‹U+00A0›``
    marker, so lookalike names read differently."""
    if value is None:
        return Markup("")
    marked = "".join(_marker_for(ch) if _hidden_in_name(ch) else str(escape(ch)) for ch in value)
    return Markup(marked)  # noqa: S704  (each character escaped; markers are fixed markup)


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
    return _marker_for(ch) if _hidden(ch) else ch


def _marker_for(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    return f'<mark class="hidden-char" title="hidden character {code}">‹{code}›</mark>'


def init_app(app):
    app.jinja_env.finalize = bidi_safe
    app.jinja_env.filters["bidi_safe"] = bidi_safe
    app.jinja_env.filters["reltime"] = reltime
    app.jinja_env.filters["remote_text"] = remote_text
    app.jinja_env.tests["suspicious"] = suspicious
    app.jinja_env.filters["tool_name"] = tool_name
    app.jinja_env.tests["hiding_characters"] = name_hides_characters
    app.jinja_env.tests["nonstandard_name"] = nonstandard_name
    app.jinja_env.filters["isotime"] = isotime
    app.jinja_env.filters["plural"] = plural
    app.jinja_env.globals.update(
        AUTH_TYPES=AUTH_TYPES, CREDENTIAL_MODES=CREDENTIAL_MODES, ROLE_LABELS=Role.LABELS
    )
