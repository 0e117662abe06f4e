"""Agent keys: what an agent's MCP client presents at its endpoint.

A key reads ``mcpa_<lookup>_<secret>``: ``mcpa_`` makes it recognisable (to secret scanners
and to people), ``lookup`` (24 base32 characters) finds its row and is shown on the agent page,
and ``secret`` is 256 random bits. The database keeps ``lookup`` and an HMAC-SHA256 of the
whole key under a key derived from ``SECRET_KEY`` (so a copy of the database alone cannot test
guesses), compared in constant time. The key itself is returned once, by ``create``, and is
never stored, logged or shown again. Changing ``SECRET_KEY`` invalidates every agent key.

Also here: each key's status, the endpoint's URL and the client configuration the agent page
shows, and the failure throttle the endpoint asks (``refusal``, ``count_failure``).

The caller commits (``count_failure`` excepted: it counts in a transaction of its own).
"""

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app

from ..extensions import db
from ..models import Agent, AgentKey, LoginThrottle, utcnow
from . import throttle

PREFIX = "mcpa_"
LOOKUP_BYTES = 15  # 24 base32 characters; ``lookup`` column holds 32
SECRET_BYTES = 32
KEY_SHAPE = re.compile(r"mcpa_([a-z2-7]{24})_([A-Za-z0-9_-]{43})")
# A key's last use is written at most this often (seconds): a call costs no write otherwise.
TOUCH_INTERVAL = 60
# Where a client configuration stands for the key when the key itself is not at hand.
PLACEHOLDER = "<your key>"


class AgentKeyError(LookupError):
    """No such agent or key; the message says which, and never contains a key."""


class KeyStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    # The agent's owner is deactivated: refused until the owner is reactivated.
    SUSPENDED = "suspended"


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


def described(row: AgentKey) -> dict:
    """What the audit trail says of a key: id, label, shown form and expiry; never the key."""
    expires = row.expires_at.isoformat() if row.expires_at else None
    return {"key_id": row.id, "label": row.label, "shown_as": display(row), "expires_at": expires}


def revoke(row: AgentKey, now: datetime | None = None):
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()


def needs_touch(row: AgentKey, now: datetime) -> bool:
    """Whether this use should be written as the key's last use (see ``TOUCH_INTERVAL``)."""
    last = row.last_used_at
    return last is None or (now - last).total_seconds() >= TOUCH_INTERVAL


def status(row: AgentKey, now: datetime | None = None) -> KeyStatus:
    """Revoked wins over expired: a revocation is the operator's deliberate act. A key that
    would work is suspended while its agent's owner is deactivated (the gateway refuses it)."""
    if row.revoked_at is not None:
        return KeyStatus.REVOKED
    if not row.usable(now or utcnow()):
        return KeyStatus.EXPIRED
    owner = row.agent.owner if row.agent is not None else None
    return KeyStatus.SUSPENDED if owner is not None and not owner.active else KeyStatus.ACTIVE


def active(agent: Agent, now: datetime | None = None) -> list[AgentKey]:
    """The agent's keys that work now, the newest first."""
    now = now or utcnow()
    return [k for k in newest_first(agent) if status(k, now) == KeyStatus.ACTIVE]


def newest_first(agent: Agent) -> list[AgentKey]:
    """The agent's keys, revoked and expired ones included, the newest first."""
    return sorted(agent.keys, key=lambda k: (k.created_at, k.id), reverse=True)


def expiry(days: int | None, now: datetime | None = None) -> datetime | None:
    """When a key made now for ``days`` days expires; None (never) for no days."""
    return None if days is None else (now or utcnow()) + timedelta(days=days)


def find(agent: Agent, reference: str) -> AgentKey:
    """The agent's key whose id, lookup, shown form (``mcpa_<lookup>_…``) or whole key is
    ``reference``.

    :raise AgentKeyError: the agent has no such key (the message does not repeat
        ``reference``: it may be a key).
    """
    reference = reference.strip()
    wanted = lookup_of(reference) or reference.removeprefix(PREFIX).split("_", 1)[0].lower()
    for row in agent.keys:
        if reference == str(row.id) or wanted == row.lookup:
            return row
    raise AgentKeyError(f"Agent {agent.name} has no key with that id or lookup.")


def endpoint_url(agent: Agent) -> str:
    """The agent's MCP endpoint, which its clients connect to: built from
    ``PUBLIC_BASE_URL``, never from the request's Host header."""
    return f"{current_app.config['PUBLIC_BASE_URL']}/agents/{agent.id}/mcp"


def server_name(agent: Agent) -> str:
    """The agent's name as an ``mcpServers`` entry: lower case, ``-`` between words."""
    return re.sub(r"[^a-z0-9]+", "-", agent.name.lower()).strip("-") or f"agent-{agent.id}"


def mcp_servers_json(agent: Agent, key: str = PLACEHOLDER) -> str:
    """The ``mcpServers`` entry most MCP clients (Claude Code, Cursor, VS Code…) read."""
    entry = {
        "type": "http",
        "url": endpoint_url(agent),
        "headers": {"Authorization": f"Bearer {key}"},
    }
    return json.dumps({"mcpServers": {server_name(agent): entry}}, indent=2)


def python_snippet(agent: Agent, key: str = PLACEHOLDER) -> str:
    """A few lines listing the agent's tools with the ``mcp`` Python SDK 2.x client."""
    return _PYTHON.format(url=json.dumps(endpoint_url(agent)), key=json.dumps(key))


@dataclass(frozen=True)
class ClientConfig:
    """What an agent's MCP client needs, ready to paste: with a real key only in the answer
    that created it, else with ``PLACEHOLDER``."""

    url: str
    mcp_servers: str
    python: str


def client_config(agent: Agent, key: str = PLACEHOLDER) -> ClientConfig:
    return ClientConfig(
        endpoint_url(agent), mcp_servers_json(agent, key), python_snippet(agent, key)
    )


_PYTHON = """\
import asyncio

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = {url}
KEY = {key}


async def main():
    headers = {{"Authorization": f"Bearer {{KEY}}"}}
    timeout = httpx2.Timeout(30, read=300)  # a tool call may stream for minutes
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            result = await client.list_tools()
            print([tool.name for tool in result.tools])


asyncio.run(main())
"""


def refusal(address: str | None, now: datetime | None = None) -> int | None:
    """Seconds this address must wait because too many of its keys failed; None if it may
    try. One indexed read, no write.

    The endpoint may ask only once a key has failed: a right key then costs nothing, and a
    refused address still cannot guess (256-bit secrets), only be slowed down."""
    row = db.session.get(LoginThrottle, _throttle_key(address))
    now = now or utcnow()
    if row is None or row.locked_until is None or row.locked_until <= now:
        return None
    return max(1, math.ceil((row.locked_until - now).total_seconds()))


def count_failure(address: str | None, now: datetime | None = None) -> int | None:
    """Count a missing, wrong, expired or revoked key from ``address``; the seconds it must
    now wait (as ``refusal`` will say) once ``AGENT_KEY_MAX_FAILURES`` failures fell within
    ``AGENT_KEY_LOCKOUT_SECONDS``, else None. The count is atomic across workers and hosts.

    Commits the session before counting (the caller must have nothing pending) and after,
    as ``throttle.count_attempt`` does.
    """
    cfg = current_app.config
    now = now or utcnow()
    limit = throttle.Limit(_throttle_key(address), cfg["AGENT_KEY_MAX_FAILURES"])
    throttle.count_attempt([limit], now, timedelta(seconds=cfg["AGENT_KEY_LOCKOUT_SECONDS"]))
    return refusal(address, now)


def _throttle_key(address: str | None) -> str:
    return f"agentkey:{address or '-'}"
