"""Log lines that cannot be forged: every control character in a log message is escaped.

Paths, remote error text and tool names come from outside and end up in log messages; a
``\\n`` in them would start a line the attacker wrote (say, a fake setup link before the first
admin exists). The record factory installed here renders each record's message once, escaping
C0 and C1 controls, DEL and the Unicode line and paragraph separators, so every handler
(Flask's, Werkzeug's request log, gunicorn's, pytest's) writes one line per record. Tracebacks
are kept apart from the message and are not touched.

The one exception is the development server's own lines (``flask run``: the ``werkzeug``
logger), which escapes the request's text itself and then styles whole lines: its colours are
shown on a terminal and dropped elsewhere, and its banner keeps its line breaks, every
continuation line indented so none can pass for a record of its own.
"""

import logging
import re
import sys

# \x00-\x1f, \x7f-\x9f, U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}
_TABLE = str.maketrans(_ESCAPES)
# The styles werkzeug's development server puts around its lines (``serving._ansi_style``).
_STYLE = re.compile(r"\x1b\[[0-9;]*m")
DEV_SERVER_LOGGER = "werkzeug"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape."""
    return text.translate(_TABLE)


def dev_server_line(text: str, terminal: bool) -> str:
    """A line of werkzeug's development server: its styles kept on a ``terminal`` and dropped
    elsewhere, its line breaks kept with each continuation line indented, every other
    control character escaped."""
    lines = text.rstrip("\n").split("\n")
    out = []
    for number, line in enumerate(lines):
        styles = [style if terminal else "" for style in _STYLE.findall(line)]
        pieces = [escape_controls(piece) for piece in _STYLE.split(line)]
        line = "".join(p + s for p, s in zip(pieces, [*styles, ""], strict=True))
        out.append(line if number == 0 or line.startswith(" ") else "  " + line)
    return "\n".join(out)


def _needs_escape(text: str) -> bool:
    return any(ord(ch) in _ESCAPES for ch in text)


def install():
    """Make every log record created from now on carry an escaped message. Idempotent.

    A record whose message cannot be rendered is left as it is, for the handler to report as
    logging always has.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "escapes_controls", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (logging's own handleError reports it later)
            return record
        if record.name == DEV_SERVER_LOGGER:
            record.msg, record.args = dev_server_line(message, sys.stderr.isatty()), None
        elif _needs_escape(message):
            record.msg, record.args = escape_controls(message), None
        return record

    factory.escapes_controls = True
    logging.setLogRecordFactory(factory)
