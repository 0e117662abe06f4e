"""Reading the call log and the audit trail: filters from a query string, keyset pages (newest
first, by id, never OFFSET), and the filtered rows in batches for export.

A page costs the same statements at ten rows and at a million: one ``SELECT … WHERE id < :before
ORDER BY id DESC LIMIT n+1`` on the ``(column, id)`` indexes of migration 0008 (the extra row says
whether an older page exists). Bad filter values raise ``FilterError`` with a sentence for the
operator; nothing here touches Flask.
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import or_, select

from ..extensions import db
from ..models import AuditEvent, CallRecord
from .calllog import Kind, Outcome

PAGE_SIZE = 50
EXPORT_BATCH = 1000
# The largest id a filter may name: log ids are 64-bit on PostgreSQL, other ids 32-bit.
MAX_LOG_ID = 2**63 - 1
MAX_ID = 2**31 - 1
MAX_TEXT = 200
# A request id is 16 hex digits (``requestlog``); a filter may give its first few.
REQUEST_ID_DIGITS = 16
MIN_REQUEST_PREFIX = 4
# "(request 9e94…)" as an agent's error ends, or the bare id (or its start) pasted alone.
_TAGGED_ID = re.compile(r"\(request\s+([0-9a-f]+)", re.IGNORECASE)
_BARE_ID = re.compile(r"([0-9a-f]+)(?:…|\.{3})?", re.IGNORECASE)


# Each outcome in words, for the page (a badge is never the only sign).
OUTCOME_WORDS = {
    Outcome.OK: "OK",
    Outcome.TOOL_ERROR: "Tool error",
    Outcome.PROTOCOL: "Protocol error",
    Outcome.NOT_ALLOWED: "Refused: tool not allowed",
    Outcome.DEFINITION_CHANGED: "Refused: definition changed",
    Outcome.NO_CREDENTIAL: "Refused: no credential",
    Outcome.NEEDS_RECONNECT: "Refused: needs reconnect",
    Outcome.TIMEOUT: "Upstream timed out",
    Outcome.DOWN: "Upstream down",
    Outcome.CANCELLED: "Cancelled",
}


# What each kind of row records, in words (``CallRecord.kind``).
KIND_WORDS = {
    Kind.TOOL: "Tool call",
    Kind.RESOURCE: "Resource read",
    Kind.PROMPT: "Prompt get",
    Kind.COMPLETION: "Completion",
    Kind.SUBSCRIPTION: "Subscription",
    Kind.ELICITATION: "Elicitation",
    Kind.SAMPLING: "Sampling",
    Kind.ROOTS: "Roots",
}


def kind_words(kind: str) -> str:
    """The kind in words; a kind this version does not know, as stored."""
    return KIND_WORDS.get(kind, kind)


def outcome_words(outcome: str) -> str:
    """The outcome in words; an outcome this version does not know, as stored."""
    return OUTCOME_WORDS.get(outcome, outcome)


def outcome_kind(outcome: str) -> str:
    """The outcome's family, for its badge's look: ok, refused, cancelled or failed."""
    if outcome == Outcome.OK:
        return "ok"
    if outcome.startswith("refused_"):
        return "refused"
    return "cancelled" if outcome == Outcome.CANCELLED else "failed"


class FilterError(ValueError):
    """A filter value the page cannot use; ``str()`` is the sentence to show."""


@dataclass(frozen=True)
class Window:
    """A time range in UTC: ``start`` inclusive, ``end`` exclusive (either may be open)."""

    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Filters:
    """What the operator asked for: ``values`` the cleaned query-string values (to put back
    into links and the form), ``where`` the SQL conditions they mean."""

    values: dict = field(default_factory=dict)
    where: tuple = ()

    def __bool__(self):
        return bool(self.where)


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first, and the ids the Older / Newer links start from."""

    rows: list
    older: int | None  # ``before=`` for the next older page, None on the oldest
    newer: int | None  # ``after=`` for the next newer page, None on the newest


# --- parsing -------------------------------------------------------------------------------


def call_filters(args: Mapping) -> Filters:
    """Filters for the call log from ``args``: agent id, connector id, kind (``Kind``), tool
    (the name the agent called or the upstream's own: for other kinds the prompt name, the
    URI or the method), outcome, request id (``request_id_of``), ``q`` (words found in either
    name, the agent's or connector's name or the error, any case), from, to.

    :raise FilterError: an id that is not a number in range, an unknown kind or outcome, a
        request id that is not one, a text over 200 characters, a date that is not
        ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``, or a range that ends before it starts.
    """
    values, where = {}, []
    for name, column, label in (
        ("agent", CallRecord.agent_id, "Agent"),
        ("connector", CallRecord.connector_id, "Connector"),
    ):
        if number := _number(args, name, label, MAX_ID):
            values[name] = number
            where.append(column == number)
    if kind := _text(args, "kind", "Kind"):
        if kind not in set(Kind):
            raise FilterError(f"“{kind[:40]}” is not a kind of call; pick one from the list.")
        values["kind"] = kind
        where.append(CallRecord.kind == kind)
    if tool := _text(args, "tool", "Tool"):
        values["tool"] = tool
        where.append(or_(CallRecord.tool == tool, CallRecord.upstream_tool == tool))
    if outcome := _text(args, "outcome", "Outcome"):
        if outcome not in set(Outcome):
            raise FilterError(f"“{outcome}” is not an outcome; pick one from the list.")
        values["outcome"] = outcome
        where.append(CallRecord.outcome == outcome)
    if raw := _text(args, "request", "Request id"):
        request_id = request_id_of(raw)
        values["request"] = request_id
        if len(request_id) == REQUEST_ID_DIGITS:
            where.append(CallRecord.request_id == request_id)
        else:
            where.append(CallRecord.request_id.startswith(request_id, autoescape=True))
    if words := _text(args, "q", "Search"):
        values["q"] = words
        where.append(or_(*(column.icontains(words, autoescape=True) for column in SEARCHED)))
    window = _window(args, values)
    return Filters(values, tuple(where) + _window_where(CallRecord.at, window))


# What the Calls page's search box looks in.
SEARCHED = (CallRecord.tool, CallRecord.upstream_tool, CallRecord.agent_name,
            CallRecord.connector_name, CallRecord.error)  # fmt: skip


def request_id_of(text: str) -> str:
    """The request id (or the start of one, in lower case) in ``text``: the id alone, or
    pasted with what surrounds it in an agent's error, "… (request 9e94…)".

    :raise FilterError: no run of 4 to 16 hex digits where an id goes.
    """
    found = _TAGGED_ID.search(text) or _BARE_ID.fullmatch(text.strip())
    digits = found.group(1).lower() if found else ""
    if not MIN_REQUEST_PREFIX <= len(digits) <= REQUEST_ID_DIGITS:
        raise FilterError(
            f"“{text[:40]}” is not a request id: give its {REQUEST_ID_DIGITS} hex digits (or "
            f"at least the first {MIN_REQUEST_PREFIX}), or paste “(request …)” as the agent "
            "saw it."
        )
    return digits


def audit_filters(args: Mapping) -> Filters:
    """Filters for the audit trail from ``args`` (admin, action, target, from, to); text
    matches exactly.

    :raise FilterError: as ``call_filters`` for dates, or a value over 200 characters.
    """
    values, where = {}, []
    for name, column, label in (
        ("admin", AuditEvent.admin_name, "Admin"),
        ("action", AuditEvent.action, "Action"),
        ("target", AuditEvent.target_name, "Target"),
    ):
        if text := _text(args, name, label):
            values[name] = text
            where.append(column == text)
    window = _window(args, values)
    return Filters(values, tuple(where) + _window_where(AuditEvent.at, window))


def cursor(args: Mapping) -> tuple[int | None, int | None]:
    """``(before, after)``: where a page starts; at most one of them is set.

    :raise FilterError: not a positive number in range, or both given.
    """
    before = _number(args, "before", "The page position", MAX_LOG_ID)
    after = _number(args, "after", "The page position", MAX_LOG_ID)
    if before and after:
        raise FilterError("A page starts either before or after a row, not both.")
    return before, after


def _text(args, name, label) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > MAX_TEXT:
        raise FilterError(f"{label} is too long: at most {MAX_TEXT} characters.")
    return value or None


def _number(args, name, label, maximum) -> int | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1 or int(raw) > maximum:
        raise FilterError(f"{label} “{raw[:40]}” is not one this page knows; choose again.")
    return int(raw)


def _window(args, values) -> Window:
    """The ``from`` / ``to`` range; a bare date in ``to`` includes that whole day, a time in
    ``to`` that whole minute (or second, if it has seconds)."""
    start = _moment(args, "from", "From")
    end = _moment(args, "to", "To", end=True)
    if start and end and end <= start:
        raise FilterError("The range ends before it starts: “To” must come after “From”.")
    for name in ("from", "to"):
        if (args.get(name) or "").strip():
            values[name] = args.get(name).strip()
    return Window(start, end)


def _moment(args, name, label, end=False) -> datetime | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), time(), UTC)
            step = timedelta(days=1)
        else:
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is not None:
                raise ValueError("times are in UTC; no offset")
            # A time to the minute covers that minute; one with seconds, that second.
            step = timedelta(minutes=1) if len(raw) <= 16 else timedelta(seconds=1)
            moment = moment.replace(tzinfo=UTC)
        return moment + step if end else moment
    except (ValueError, OverflowError):
        raise FilterError(
            f"{label} “{raw[:40]}” is not a date and time: use YYYY-MM-DD or "
            "YYYY-MM-DDTHH:MM (UTC)."
        ) from None


def _window_where(column, window: Window) -> tuple:
    where = ()
    if window.start:
        where += (column >= window.start,)
    if window.end:
        where += (column < window.end,)
    return where


# --- pages and exports ---------------------------------------------------------------------


def call_page(filters: Filters, before=None, after=None, size=PAGE_SIZE) -> Page:
    """One page of call records matching ``filters``, newest first, starting just older than
    ``before`` or just newer than ``after`` (else at the newest). One statement."""
    return _page(CallRecord, filters, before, after, size)


def audit_page(filters: Filters, before=None, after=None, size=PAGE_SIZE) -> Page:
    """As ``call_page``, for audit events."""
    return _page(AuditEvent, filters, before, after, size)


def _page(model, filters, before, after, size) -> Page:
    query = select(model).where(*filters.where).limit(size + 1)
    if after:
        rows = db.session.scalars(query.where(model.id > after).order_by(model.id)).all()
        more = len(rows) > size
        rows = rows[:size][::-1]
        return Page(rows, older=rows[-1].id if rows else None, newer=rows[0].id if more else None)
    if before:
        query = query.where(model.id < before)
    rows = db.session.scalars(query.order_by(model.id.desc())).all()
    more = len(rows) > size
    rows = rows[:size]
    # From an older page, the newer link leads back (at worst to the first page).
    newer = rows[0].id if before and rows else None
    return Page(rows, older=rows[-1].id if more else None, newer=newer)


def batches(model, filters: Filters, size: int | None = None) -> Iterator[list]:
    """Every row of ``model`` (``CallRecord`` or ``AuditEvent``) matching ``filters``, newest
    first, ``size`` (``EXPORT_BATCH``) rows per statement: an export never holds more than one
    batch."""
    size = size or EXPORT_BATCH
    before = None
    while True:
        query = select(model).where(*filters.where).order_by(model.id.desc()).limit(size)
        if before:
            query = query.where(model.id < before)
        rows = db.session.scalars(query).all()
        if not rows:
            return
        yield rows
        for row in rows:  # else the session would keep every row the export has read
            db.session.expunge(row)
        if len(rows) < size:
            return
        before = rows[-1].id


def changes(details: dict | None) -> list[str]:
    """An audit event's ``details`` as lines for a person: ``"url: a → b"`` for a field given
    as ``[before, after]``, ``"key: value"`` for any other fact."""
    lines = []
    for key, value in (details or {}).items():
        if isinstance(value, list | tuple) and len(value) == 2:
            lines.append(f"{key}: {_shown(value[0])} → {_shown(value[1])}")
        else:
            lines.append(f"{key}: {_shown(value)}")
    return lines


def _shown(value) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)
