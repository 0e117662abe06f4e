"""The data: admins, connectors (MCP servers), their tools, agents and agent connections.

Models hold data and small pure helpers; they never do network I/O and never commit. Every
secret lives in an ``EncryptedText`` column whose name ends in ``_enc``.
"""

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from .crypto import EncryptedText, Sealed
from .extensions import db

AUTH_TYPES = {
    "none": "No authentication",
    "bearer": "Bearer token",
    "api_key_header": "API key header",
    "oauth": "OAuth",
}
CREDENTIAL_MODES = {
    "shared": "Shared (one admin credential for every agent)",
    "per_agent": "Per agent (each agent its own account)",
}
# Auth types whose credential is a secret the operator pastes (not obtained by a flow).
PASTED_SECRET_TYPES = ("bearer", "api_key_header")


# The longest connector slug made from a name; a number may follow to keep slugs unique.
SLUG_LENGTH = 24


# Ids of log tables: 64-bit on PostgreSQL (a busy gateway passes 2**31 calls), INTEGER on SQLite
# (only an INTEGER PRIMARY KEY is the rowid alias that numbers itself).
LogId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Role:
    """What a person may do (``mcpadmin.roles`` holds the rules): an owner everything; an
    operator connectors, every agent, keys, syncs and reviews; an auditor reads everything and
    changes nothing; a member only their own agents."""

    OWNER = "owner"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    MEMBER = "member"
    ALL = (OWNER, OPERATOR, AUDITOR, MEMBER)
    LABELS = {OWNER: "Owner", OPERATOR: "Operator", AUDITOR: "Auditor", MEMBER: "Member"}


class AdminUser(db.Model):
    """A person who signs in, whatever their role (the table keeps its first name): with a
    local password, through the identity provider (``oidc_subject``), or both."""

    __tablename__ = "admin_user"
    __table_args__ = (Index("ix_admin_user_oidc", "oidc_issuer", "oidc_subject", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    # Empty: no local password (signs in through the identity provider only).
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    role: Mapped[str] = mapped_column(String(20), default=Role.OWNER, server_default=Role.OWNER)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(200))
    # Who the identity provider says this is: its issuer and the ID token's ``sub``.
    oidc_issuer: Mapped[str | None] = mapped_column(String(2048))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # Deactivated people cannot sign in, and their agents' keys are refused (kept, not
    # revoked: reactivating restores them).
    active: Mapped[bool] = mapped_column(default=True, server_default="1")
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username


class Invite(db.Model):
    """A single-use link that lets one person join with ``role``. The link carries a random
    token, the row only its SHA-256."""

    __tablename__ = "invite"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    # Who it is for (shown on the People page; SSO sign-in through it must match when set).
    email: Mapped[str | None] = mapped_column(String(320))
    created_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by: Mapped[str | None] = mapped_column(String(80))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and self.revoked_at is None and now < self.expires_at


class SsoSettings(db.Model):
    """Sign-in through an OpenID Connect provider, and whether local passwords still work
    (one row, id 1; edited by owners on the Settings page)."""

    __tablename__ = "sso_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    # The provider's issuer URL; discovery reads ``<issuer>/.well-known/openid-configuration``.
    issuer: Mapped[str | None] = mapped_column(String(2048))
    client_id: Mapped[str | None] = mapped_column(String(500))
    client_secret_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    # Shown on the sign-in button: "Sign in with <label>".
    label: Mapped[str | None] = mapped_column(String(100))
    scopes: Mapped[str | None] = mapped_column(String(500))
    # Lower-case email domains allowed to sign in; empty: any.
    allowed_domains: Mapped[list] = mapped_column(JSON, default=list)
    # The ID token (or userinfo) claim whose values map to roles, such as ``groups``, and the
    # mapping: role → list of claim values. A person matching several gets the strongest.
    role_claim: Mapped[str | None] = mapped_column(String(100))
    role_map: Mapped[dict] = mapped_column(JSON, default=dict)
    # The role of a first sign-in that matches no mapping; None: such a person is refused.
    default_role: Mapped[str | None] = mapped_column(String(20))
    # False: only owners may sign in with a local password (break-glass).
    local_passwords: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OidcPending(db.Model):
    """A sign-in sent to the identity provider and not yet back: the ``state`` in the browser's
    redirect (its SHA-256 here), the nonce the ID token must carry and the PKCE verifier.
    Deleted when the callback uses it, so each is single-use."""

    __tablename__ = "oidc_pending"

    state_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier_enc: Mapped[Sealed] = mapped_column(EncryptedText)
    # The invite this sign-in redeems, if any; where to go afterwards.
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("invite.id", ondelete="CASCADE"))
    next_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AdminSession(db.Model):
    """One signed-in browser. Its cookie carries a random token, the row only the token's
    SHA-256; deleting the row ends that session whatever the cookie says."""

    __tablename__ = "admin_session"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    admin: Mapped[AdminUser] = relationship()


class LoginThrottle(db.Model):
    """Sign-in attempts counted per key (see ``services.throttle``), shared by workers:
    ``failures`` attempts since ``first_failure_at``; ``locked_until`` is set when the key
    reaches its limit."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CredentialColumns:
    """The credential a connector holds in shared mode and an agent connection in per-agent
    mode: a pasted bearer token or API key, or OAuth tokens."""

    secret_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    access_token_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    refresh_token_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the access token was obtained: its lifetime sets how early it is refreshed.
    token_obtained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the OAuth grant was issued (``grants.Grant``): issuer, token and revocation
    # endpoints, resource and client. Refresh and revocation go there and nowhere else.
    oauth_grant: Mapped[dict | None] = mapped_column(JSON)
    token_scope: Mapped[str | None] = mapped_column(String(1000))
    # The scope a server's 403 insufficient_scope asked for; the next Connect requests it too.
    step_up_scope: Mapped[str | None] = mapped_column(String(1000))
    # The right to refresh, held by one worker at a time where the database has no row locks
    # (SQLite): taken by compare-and-swap, released with the new tokens.
    refresh_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))

    def forget_credentials(self):
        """Drop the stored credential and where it was issued (auth changed, or disconnect)."""
        self.secret_enc = None
        self.access_token_enc = None
        self.refresh_token_enc = None
        self.token_expires_at = None
        self.token_obtained_at = None
        self.token_scope = None
        self.oauth_grant = None


class Connector(CredentialColumns, db.Model):
    """One remote MCP server and how mcpadmin authenticates to it."""

    __tablename__ = "connector"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The prefix of this connector's tools at the agent endpoint (``<slug>__<tool>``): given
    # once, from the name, when the connector is first saved, and kept when it is renamed so
    # agents' tool names stay put. Never contains ``__``.
    slug: Mapped[str] = mapped_column(String(SLUG_LENGTH + 4), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    auth_type: Mapped[str] = mapped_column(String(20), default="none")
    credential_mode: Mapped[str] = mapped_column(String(20), default="shared")
    api_key_header_name: Mapped[str | None] = mapped_column(String(100))
    # Keep each call's arguments in the call log (values under secret-looking keys redacted).
    log_arguments: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether members may tick this connector's tools on their own agents (and, per agent,
    # connect their own account to it). They never see its shared credential.
    members_may_use: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    # OAuth, as the operator configured it (all optional: discovery fills the gaps).
    oauth_scopes: Mapped[str | None] = mapped_column(String(1000))
    oauth_authorization_endpoint: Mapped[str | None] = mapped_column(String(2048))
    oauth_token_endpoint: Mapped[str | None] = mapped_column(String(2048))
    oauth_registration_endpoint: Mapped[str | None] = mapped_column(String(2048))
    oauth_revocation_endpoint: Mapped[str | None] = mapped_column(String(2048))
    oauth_client_id_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    oauth_client_secret_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    # OAuth, as discovered: issuer, endpoints, scopes, S256/iss/CIMD support; and the URLs
    # discovery tried with their outcome.
    oauth_metadata: Mapped[dict | None] = mapped_column(JSON)
    discovery_log: Mapped[list | None] = mapped_column(JSON)

    # Tool sync: the protocol era last seen at this server, and the outcome of the last sync.
    protocol_era: Mapped[str | None] = mapped_column(String(20))
    protocol_version: Mapped[str | None] = mapped_column(String(20))
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="not_connected")

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tools: Mapped[list["Tool"]] = relationship(
        back_populates="connector", cascade="all, delete-orphan", order_by="Tool.name"
    )
    connections: Mapped[list["AgentConnection"]] = relationship(
        back_populates="connector", cascade="all, delete-orphan"
    )

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def per_agent(self) -> bool:
        return self.credential_mode == "per_agent"

    @property
    def uses_pasted_secret(self) -> bool:
        return self.auth_type in PASTED_SECRET_TYPES

    # The last listing may be reused until then (the server's ttlMs); for a per-agent
    # connector only when the server called the listing public.
    tools_fresh_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Shared connectors only: the digest of the listing the tool rows now hold
    # (``catalog.listing_hash``); an equal listing is not compared tool by tool. None for a
    # per-agent connector, whose catalog is a union of listings.
    listing_hash: Mapped[str | None] = mapped_column(String(64))
    # What the server declared at the last sync (``capabilities`` of ``initialize`` or
    # ``server/discover``): which of resources (and ``subscribe``), prompts, completions and
    # logging the gateway may offer agents for this connector.
    server_capabilities: Mapped[dict | None] = mapped_column(JSON)

    items: Mapped[list["CatalogItem"]] = relationship(
        back_populates="connector", cascade="all, delete-orphan", order_by="CatalogItem.key"
    )


# ``AgentConnection.enabled_resources`` holding this: every resource and template of the
# connector, those listed later included.
ALL_RESOURCES = "*"


class ItemKind:
    """``CatalogItem.kind``: what besides tools a server lists."""

    RESOURCE = "resource"
    TEMPLATE = "template"
    PROMPT = "prompt"
    ALL = (RESOURCE, TEMPLATE, PROMPT)


class CatalogItem(db.Model):
    """One resource, resource template or prompt a connector's server offers, as last synced
    (``services.surface``). ``key`` is what identifies it upstream: a resource's URI, a
    template's URI template, a prompt's name. ``definition`` is the server's whole definition
    within the storage caps (``_meta`` kept: it is passed on as it is)."""

    __tablename__ = "catalog_item"
    __table_args__ = (UniqueConstraint("connector_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("connector.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(1024))
    name: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text)
    mime_type: Mapped[str | None] = mapped_column(String(255))
    definition: Mapped[dict] = mapped_column(JSON)
    # SHA-256 of the canonical definition (``_meta`` left out), to flag changed prompts.
    definition_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    connector: Mapped["Connector"] = relationship(back_populates="items")

    @property
    def display_title(self) -> str:
        return self.title or self.name or self.key


class Tool(db.Model):
    """One tool a connector's server offers, as last synced."""

    __tablename__ = "tool"
    __table_args__ = (UniqueConstraint("connector_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("connector.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text)
    input_schema: Mapped[dict | None] = mapped_column(JSON)
    annotations: Mapped[dict | None] = mapped_column(JSON)
    output_schema: Mapped[dict | None] = mapped_column(JSON)
    # SHA-256 of the canonical definition, to flag tools whose definition changed.
    definition_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    connector: Mapped[Connector] = relationship(back_populates="tools")

    @property
    def display_title(self) -> str:
        return self.title or (self.annotations or {}).get("title") or self.name


class Agent(db.Model):
    __tablename__ = "agent"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Tool names at the agent endpoint: False, ``<connector>__<tool>`` for every tool; True,
    # each tool's own name wherever no other enabled tool has it.
    keep_tool_names: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The person who runs it (members manage only their own); None: the operators'. An
    # operator can hand it to someone else: its per-agent credentials stay with the agent.
    # No foreign key in the database (SQLite cannot add one to an existing table without
    # recreating it, which would cascade-delete its keys): people are never deleted, only
    # deactivated.
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)
    owner: Mapped[AdminUser | None] = relationship(
        primaryjoin="foreign(Agent.owner_id) == AdminUser.id"
    )

    connections: Mapped[list["AgentConnection"]] = relationship(
        back_populates="agent", cascade="all, delete-orphan"
    )
    keys: Mapped[list["AgentKey"]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", order_by="AgentKey.created_at"
    )


class AgentKey(db.Model):
    """A key an agent's MCP client presents at its endpoint. The key itself is shown once; the
    row keeps its public ``lookup`` part (to find the row and to show) and an HMAC of the whole
    key (``services.agent_keys``)."""

    __tablename__ = "agent_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    key_hmac: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship(back_populates="keys")

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class GatewaySession(db.Model):
    """A legacy-era (``initialize``) session at an agent endpoint, bound to the key that opened
    it. The client holds the id; the row only its SHA-256. In the database, so any worker on
    any host answers it and it outlives a restart."""

    __tablename__ = "gateway_session"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("agent_key.id", ondelete="CASCADE"), index=True)
    protocol_version: Mapped[str] = mapped_column(String(20))
    client_info: Mapped[dict | None] = mapped_column(JSON)
    # The capabilities the client declared in ``initialize`` (elicitation, sampling, roots…):
    # which server requests the gateway may relay to it.
    client_capabilities: Mapped[dict | None] = mapped_column(JSON)
    # The level the client chose with logging/setLevel: upstream log messages at or above it
    # are relayed during its calls.
    log_level: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class GatewayCancellation(db.Model):
    """A legacy client's ``notifications/cancelled`` for a call that another worker may be
    running: that worker looks here while it waits on the upstream."""

    __tablename__ = "gateway_cancellation"

    session_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AgentConnection(CredentialColumns, db.Model):
    """An agent's use of a connector: its own credential (per-agent mode) and its chosen tools."""

    __tablename__ = "agent_connection"
    __table_args__ = (UniqueConstraint("agent_id", "connector_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(ForeignKey("connector.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="not_connected")
    enabled_tools: Mapped[list] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    agent: Mapped[Agent] = relationship(back_populates="connections")
    connector: Mapped[Connector] = relationship(back_populates="connections")

    # Tool sync with this agent's own credential (per-agent connectors): when
    # it last worked and until when its listing is fresh; the tool names this account is
    # offered (None: never listed with it, so the whole catalog applies); enabled tools whose
    # definition changed since the operator last reviewed them.
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tools_fresh_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    offered_tools: Mapped[list | None] = mapped_column(JSON)
    changed_tools: Mapped[list | None] = mapped_column(JSON)

    # The agent's last tool call through this connector: when, and the sentence of its failure
    # (None when it worked).
    last_called_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_call_error: Mapped[str | None] = mapped_column(Text)

    # Besides tools: the prompt names the agent may get, and the resources it may read:
    # ``"*"`` for all of this connector's resources, else resource URIs and URI templates
    # (a template admits every URI it matches). Enabled prompts whose definition changed since
    # the operator last reviewed them, as ``changed_tools``.
    enabled_prompts: Mapped[list] = mapped_column(JSON, default=list)
    enabled_resources: Mapped[list] = mapped_column(JSON, default=list)
    changed_prompts: Mapped[list | None] = mapped_column(JSON)


class OAuthClient(db.Model):
    """mcpadmin's registration at one authorization server (RFC 7591), keyed by issuer and
    redirect URI: never reused at another server (MCP authorization, client registration)."""

    __tablename__ = "oauth_client"
    __table_args__ = (UniqueConstraint("issuer", "redirect_uri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    client_id_enc: Mapped[Sealed] = mapped_column(EncryptedText)
    client_secret_enc: Mapped[Sealed | None] = mapped_column(EncryptedText)
    # How the token endpoint authenticates us: none, client_secret_post or client_secret_basic.
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingAuthorization(db.Model):
    """One started Connect, waiting for the provider to send the browser back. Holds what the
    callback must check and send (PKCE verifier, expected issuer, endpoints); deleted on use."""

    __tablename__ = "pending_authorization"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("connector.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"))
    admin_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"))
    code_verifier_enc: Mapped[Sealed] = mapped_column(EncryptedText)
    # The issuer the authorization server metadata named; None for hand-entered endpoints.
    issuer: Mapped[str | None] = mapped_column(String(2048))
    iss_required: Mapped[bool] = mapped_column(default=False)
    token_endpoint: Mapped[str] = mapped_column(String(2048))
    resource: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str | None] = mapped_column(String(1000))
    # Which client the flow used: "pre_registered", "cimd" or "dcr" (then oauth_client_id).
    client_method: Mapped[str] = mapped_column(String(20))
    oauth_client_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_client.id", ondelete="SET NULL")
    )
    # The authorization server metadata the flow started with: stored on the connector only
    # when the flow completes.
    server_metadata: Mapped[dict | None] = mapped_column(JSON)
    # The connector's URL, auth type and credential mode when the flow started: the callback
    # refuses to store tokens on a connector that no longer matches.
    expected_connector: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    connector: Mapped[Connector] = relationship()
    agent: Mapped[Agent | None] = relationship()
    oauth_client: Mapped[OAuthClient | None] = relationship()


REFRESH_MARGIN = timedelta(minutes=5)
REFRESH_MARGIN_SHARE = 4  # a token is refreshed in the last quarter of its lifetime at most


def refresh_margin(obtained_at: datetime | None, expires_at: datetime) -> timedelta:
    """How long before expiry a token is refreshed: five minutes, or a quarter of its
    lifetime when that is shorter, so a token that lives a minute is not "expiring soon" the
    moment it is issued."""
    if obtained_at is None or obtained_at >= expires_at:
        return REFRESH_MARGIN
    return min(REFRESH_MARGIN, (expires_at - obtained_at) / REFRESH_MARGIN_SHARE)


def expires_soon(expires_at: datetime | None, now: datetime, obtained_at=None) -> bool:
    """Whether a token with this absolute expiry (obtained at ``obtained_at``, when known)
    should be refreshed at ``now``."""
    return expires_at is not None and expires_at - refresh_margin(obtained_at, expires_at) <= now


def slug_base(name: str) -> str:
    """A connector name as a tool-name prefix: ASCII letters and digits in lower case, any
    other run of characters one ``_``, at most ``SLUG_LENGTH`` characters; "connector" when
    nothing is left. Never contains ``__``, which separates it from the tool's name."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:SLUG_LENGTH].strip("_")
    return slug or "connector"


class CatalogState(db.Model):
    """One row whose ``version`` grows with every committed change to what an agent endpoint
    lists: tools, tool choices, connector names and slugs, an agent's naming. Gateway workers
    keep each agent's rendered catalog and trust it while the version read with the caller's
    key is the one it was built at, so a call is checked against the committed choices
    without reading them; their stream watchers look for it moving."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(LogId, default=0)


# The columns whose change changes an agent's catalog (any change to a tool row does).
_CATALOG_COLUMNS = {
    AgentConnection: (
        "agent_id",
        "connector_id",
        "enabled_tools",
        "changed_tools",
        "enabled_prompts",
        "enabled_resources",
        "changed_prompts",
    ),
    Connector: ("name", "slug", "server_capabilities", "members_may_use"),
    Agent: ("keep_tool_names", "owner_id"),
    # A member's agents use only connectors made available to members.
    AdminUser: ("role",),
}
_CATALOG_CHANGED = "mcpadmin.catalog_changed"


@event.listens_for(Session, "before_flush")
def _note_catalog_changes(session, flush_context, instances):
    """Mark the transaction when this flush adds, deletes or edits what a catalog is made of
    (the version is raised at commit: ``_raise_catalog_version``)."""
    if session.info.get(_CATALOG_CHANGED):
        return
    kinds = (Tool, CatalogItem, AgentConnection, Connector)
    for obj in (*session.new, *session.deleted):
        if isinstance(obj, kinds):
            session.info[_CATALOG_CHANGED] = True
            return
    for obj in session.dirty:
        if isinstance(obj, Tool | CatalogItem) and session.is_modified(obj):
            session.info[_CATALOG_CHANGED] = True
            return
        columns = _CATALOG_COLUMNS.get(type(obj), ())
        state = inspect(obj) if columns else None
        if state is not None and any(state.attrs[c].history.has_changes() for c in columns):
            session.info[_CATALOG_CHANGED] = True
            return


@event.listens_for(Session, "before_commit")
def _raise_catalog_version(session):
    """Raise the catalog version in the transaction that changed a catalog, as its last
    statement: the row is locked only for the commit itself, so writers never wait on each
    other holding other locks."""
    session.flush()
    if session.info.pop(_CATALOG_CHANGED, False):
        session.execute(update(CatalogState).values(version=CatalogState.version + 1))


@event.listens_for(Session, "after_rollback")
def _forget_catalog_changes(session):
    session.info.pop(_CATALOG_CHANGED, None)


@event.listens_for(Session, "before_flush")
def _give_slugs(session, flush_context, instances):
    """Give each new connector a slug from its name, unique among the stored ones and those
    in this flush (``slug_base``, then ``_2``, ``_3``…)."""
    new = [c for c in session.new if isinstance(c, Connector) and not c.slug]
    if not new:
        return
    taken = set(session.scalars(select(Connector.slug)).all())
    taken.update(c.slug for c in session.new if isinstance(c, Connector) and c.slug)
    for connector in new:
        base = slug = slug_base(connector.name or "")
        number = 1
        while slug in taken:
            number += 1
            slug = f"{base}_{number}"
        connector.slug = slug
        taken.add(slug)


class CallRecord(db.Model):
    """One agent request that reached tool dispatch, or an operator's call made as the agent
    (``services.calllog``). Names are copied, not referenced: a record outlives its agent,
    key and connector. Never holds a key, a credential or a result; arguments only where the
    connector says so, redacted."""

    __tablename__ = "call_log"
    __table_args__ = (
        Index("ix_call_log_agent_id_id", "agent_id", "id"),
        Index("ix_call_log_connector_id_id", "connector_id", "id"),
        Index("ix_call_log_outcome_id", "outcome", "id"),
        Index("ix_call_log_tool_id", "tool", "id"),
        Index("ix_call_log_kind_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(LogId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The request's id, also in the structured log lines and in the agent's error text.
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    agent_name: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_label: Mapped[str | None] = mapped_column(String(100))
    # The admin who made the call as the agent from the console (no key then); None: the agent.
    operator_name: Mapped[str | None] = mapped_column(String(80))
    connector_id: Mapped[int | None] = mapped_column(Integer)
    connector_name: Mapped[str | None] = mapped_column(String(100))
    # What the agent asked for (``calllog.Kind``): a tool call, a resource read, a prompt
    # get, a completion, or a request the upstream sent back to the agent (elicitation,
    # sampling, roots).
    kind: Mapped[str] = mapped_column(String(20), default="tool", server_default="tool")
    # The name the agent called, and the upstream's own name (None when none was found); for
    # other kinds the prompt's name, the resource's URI or the server request's method.
    tool: Mapped[str] = mapped_column(String(200))
    upstream_tool: Mapped[str | None] = mapped_column(String(200))
    # The upstream's protocol era ("modern" or "legacy"), when the call reached it.
    era: Mapped[str | None] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(40))
    total_ms: Mapped[float] = mapped_column(Float)
    upstream_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(300))
    request_bytes: Mapped[int] = mapped_column(Integer, default=0)
    response_bytes: Mapped[int] = mapped_column(Integer, default=0)
    arguments: Mapped[dict | None] = mapped_column(JSON)


class AuditEvent(db.Model):
    """One thing an admin did (or tried: a failed sign-in), with what changed; never a secret
    (``services.audit``). Names are copied so the trail outlives what it names."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_action_id", "action", "id"),
        Index("ix_audit_event_admin_name_id", "admin_name", "id"),
    )

    id: Mapped[int] = mapped_column(LogId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Who: the signed-in admin, the username a failed sign-in gave, or None (the shell).
    admin_name: Mapped[str | None] = mapped_column(String(80))
    address: Mapped[str | None] = mapped_column(String(64))
    # The role the actor had when acting (None: the shell, or before roles existed).
    actor_role: Mapped[str | None] = mapped_column(String(20))
    # What, e.g. "connector.updated" (``services.audit.Action``), and to which object.
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str | None] = mapped_column(String(20))
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_name: Mapped[str | None] = mapped_column(String(200))
    # What changed: field → [before, after], or other plain facts; never a secret's value.
    details: Mapped[dict | None] = mapped_column(JSON)


class WebhookEndpoint(db.Model):
    """A destination for Needs attention events (``services.webhooks``). The URL is sealed: a
    Slack-style webhook URL is itself the credential; pages show ``label`` (its origin)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    url_enc: Mapped[Sealed] = mapped_column(EncryptedText)
    label: Mapped[str] = mapped_column(String(300))
    # "generic" (signed JSON) or "slack" (``{"text": …}``): ``webhooks.Format``.
    format: Mapped[str] = mapped_column(String(20), default="generic")
    # The key every request is signed with (HMAC-SHA256), shown to the operator once.
    secret_enc: Mapped[Sealed] = mapped_column(EncryptedText)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    deliveries: Mapped[list["WebhookDelivery"]] = relationship(
        back_populates="endpoint", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookDelivery(db.Model):
    """One event for one endpoint, and how sending it went. ``open_key`` holds the event's
    key while the event lasts (unique per endpoint, so each event is sent once however many
    workers notice it) and is cleared when the event is over, so a recurrence is sent again."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "open_key"),
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(LogId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    event_key: Mapped[str] = mapped_column(String(200))
    open_key: Mapped[str | None] = mapped_column(String(200))
    # What is sent: ``attention.Item.event`` (kind, severity, text, link…).
    event: Mapped[dict] = mapped_column(JSON)
    # "pending", "sending" (claimed by ``claimed_by`` until ``claimed_until``), "delivered"
    # or "failed" (given up): ``webhooks.Status``.
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship(back_populates="deliveries")


class ToolDefinition(db.Model):
    """One definition a tool has had, as the catalog stored it (within its storage caps):
    recorded when a sync first stores the tool and whenever its definition hash changes
    (``services.catalog``, which keeps the newest ``MAX_VERSIONS``)."""

    __tablename__ = "tool_definition"
    __table_args__ = (Index("ix_tool_definition_tool_id_id", "tool_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tool.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(
        ForeignKey("connector.id", ondelete="CASCADE"), index=True
    )
    definition_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text)
    input_schema: Mapped[dict | None] = mapped_column(JSON)
    output_schema: Mapped[dict | None] = mapped_column(JSON)
    annotations: Mapped[dict | None] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ToolReview(db.Model):
    """Which definition of a tool (by hash) an agent accepted, and how: reviewed by an admin,
    or enabled when a sync flagged a change (``catalog.ReviewKind``). The agent's name is
    copied so the history outlives the agent."""

    __tablename__ = "tool_review"
    __table_args__ = (Index("ix_tool_review_tool_id_id", "tool_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tool.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent.id", ondelete="SET NULL"), index=True
    )
    agent_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    admin_name: Mapped[str | None] = mapped_column(String(80))
    # None when the tool row has no hash (one not stored by a sync).
    definition_hash: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingAsk(db.Model):
    """A request an upstream server sent back during an agent's call (elicitation, sampling,
    roots), relayed to the agent under ``id``: the agent's answer may reach any worker, which
    stores it here for the worker holding the upstream call (``gateway.asks``)."""

    __tablename__ = "pending_ask"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(100))
    # The agent's JSON-RPC ``result`` or ``error`` (within a size cap), once it answered.
    answer: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ResourceSubscription(db.Model):
    """A legacy agent session's ``resources/subscribe`` to one URI of one connector: the
    session's GET stream relays the upstream's ``notifications/resources/updated`` for it
    while the stream holds."""

    __tablename__ = "resource_subscription"

    session_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(
        ForeignKey("connector.id", ondelete="CASCADE"), primary_key=True
    )
    uri: Mapped[str] = mapped_column(String(1024), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CatalogItemDefinition(db.Model):
    """One definition a prompt has had, as the catalog stored it (within its caps): recorded
    when a sync first stores the prompt and whenever its definition hash changes
    (``services.surface``; ``services.catalog`` keeps the newest ``MAX_VERSIONS``), like a
    tool's ``ToolDefinition``."""

    __tablename__ = "catalog_item_definition"
    __table_args__ = (Index("ix_catalog_item_definition_item_id_id", "item_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("catalog_item.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(
        ForeignKey("connector.id", ondelete="CASCADE"), index=True
    )
    definition_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text)
    # The server's whole definition (a prompt's arguments are read from it).
    definition: Mapped[dict] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CatalogItemReview(db.Model):
    """Which definition of a prompt (by hash) an agent accepted, and how
    (``catalog.ReviewKind``), like a tool's ``ToolReview``; the agent's name is copied so the
    history outlives the agent."""

    __tablename__ = "catalog_item_review"
    __table_args__ = (Index("ix_catalog_item_review_item_id_id", "item_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("catalog_item.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent.id", ondelete="SET NULL"), index=True
    )
    agent_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    admin_name: Mapped[str | None] = mapped_column(String(80))
    definition_hash: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
