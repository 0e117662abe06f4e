"""Agent keys: what an agent's MCP client presents at its endpoint.

A key reads ``mcpa_<lookup>_<secret>``: ``mcpa_`` makes it recognisable (to secret scanners
and to people), ``lookup`` (12 base32 characters) finds its row and is shown on the agent page,
and ``secret`` is 256 random bits. The database keeps ``lookup`` and an HMAC-SHA256 of the
whole key under a key derived from ``SECRET_KEY`` (so a copy of the database alone cannot test
guesses), compared in constant time. The key itself is returned once, by ``create``, and is
never stored, logged or shown again. Changing ``SECRET_KEY`` invalidates every agent key.

The caller commits.
"""

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime

from flask import current_app

from ..models import Agent, AgentKey, utcnow

PREFIX = "mcpa_"
LOOKUP_BYTES = 15  # 24 base32 characters; ``lookup`` column holds 32
SECRET_BYTES = 32
KEY_SHAPE = re.compile(r"mcpa_([a-z2-7]{24})_([A-Za-z0-9_-]{43})")
# A key's last use is written at most this often (seconds): a call costs no write otherwise.
TOUCH_INTERVAL = 60


def _hmac_key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret, b"mcpadmin agent keys v1", hashlib.sha256).digest()


def digest(presented: str) -> str:
    """The HMAC the row of this key holds."""
    return hmac.new(_hmac_key(), presented.encode(), hashlib.sha256).hexdigest()


def lookup_of(presented: str) -> str | None:
    """The lookup part of a well-formed key; None for anything else."""
    match = KEY_SHAPE.fullmatch(presented or "")
    return match.group(1) if match else None


def create(agent: Agent, label: str, expires_at: datetime | None = None) -> tuple[AgentKey, str]:
    """A new key for ``agent`` (added to the session): the row and the key, shown only now."""
    lookup = base64.b32encode(secrets.token_bytes(LOOKUP_BYTES)).decode().lower()
    presented = f"{PREFIX}{lookup}_{secrets.token_urlsafe(SECRET_BYTES)}"
    row = AgentKey(label=label, lookup=lookup, key_hmac=digest(presented), expires_at=expires_at)
    agent.keys.append(row)
    return row, presented


def matches(row: AgentKey | None, presented: str) -> bool:
    """Whether ``presented`` is the key of ``row``, in constant time (a missing row costs the
    same HMAC, so timing does not tell an unknown lookup from a wrong secret)."""
    expected = row.key_hmac if row is not None else "0" * 64
    return hmac.compare_digest(digest(presented), expected) and row is not None


def display(row: AgentKey) -> str:
    """How the key is shown once created: its prefix and lookup part, never its secret."""
    return f"{PREFIX}{row.lookup}_…"


def revoke(row: AgentKey, now: datetime | None = None):
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()


def needs_touch(row: AgentKey, now: datetime) -> bool:
    """Whether this use should be written as the key's last use (see ``TOUCH_INTERVAL``)."""
    last = row.last_used_at
    return last is None or (now - last).total_seconds() >= TOUCH_INTERVAL
