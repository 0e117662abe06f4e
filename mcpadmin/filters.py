"""Jinja filters and globals shared by every template."""

from datetime import UTC, datetime

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


def isotime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def init_app(app):
    app.jinja_env.filters["reltime"] = reltime
    app.jinja_env.filters["isotime"] = isotime
    app.jinja_env.globals.update(
        AUTH_TYPES=AUTH_TYPES, CREDENTIAL_MODES=CREDENTIAL_MODES, STATUSES=STATUSES
    )
