"""Single sign-on through an OpenID Connect provider (``SsoSettings``, one row).

``start`` records a pending sign-in and returns the provider's URL; ``finish`` uses the
pending sign-in up (single use), redeems the code, checks the ID token, and finds or creates
the person, deciding their email domain and role. The caller commits (a refusal too: the
pending sign-in stays used up) and signs the person in. ``local_password_allowed`` says
whether a person may still sign in with a local password.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

from flask import current_app
from sqlalchemy import delete, func, select

from ..crypto import UnreadableSecret, seal, token_digest
from ..extensions import db
from ..filters import bidi_controls
from ..models import AdminUser, Invite, OidcPending, Role, SsoSettings, utcnow
from ..protocol import oidc, pkce
from ..protocol import tokens as protocol
from . import audit, outbound, people
from .audit import Action

CALLBACK_PATH = "/sso/callback"
DEFAULT_SCOPES = "openid email profile"
# A sign-in not back from the provider within this time starts over.
PENDING_MAX_AGE = timedelta(minutes=10)
# Roles from the strongest: a person whose claim values match several gets the first.
STRONGEST_FIRST = Role.ALL
# Roles an owner may give every unmatched first sign-in (never owner: that is a mapping's).
DEFAULT_ROLES = (Role.MEMBER, Role.AUDITOR, Role.OPERATOR)
USERNAME_MAX = 80
SUBJECT_MAX = 255  # AdminUser.oidc_subject


class SsoError(Exception):
    """A sign-in refused or failed; ``str()`` is the sentence for the login page, ``who`` the
    name the provider gave, when known (for the audit trail)."""

    def __init__(self, message: str, who: str | None = None):
        super().__init__(message)
        self.who = who


@dataclass
class SignedIn:
    person: AdminUser
    joined: bool
    next_url: str | None


def current() -> SsoSettings | None:
    return db.session.get(SsoSettings, 1)


def blank_settings() -> SsoSettings:
    """The row the Settings page starts from before anything was saved (not yet added)."""
    return SsoSettings(id=1, enabled=False, scopes=DEFAULT_SCOPES, allowed_domains=[],
                       role_map={}, local_passwords=True)  # fmt: skip


def configured() -> SsoSettings | None:
    """The settings, when single sign-on is turned on and set up."""
    settings = current()
    if settings and settings.enabled and settings.issuer and settings.client_id:
        return settings
    return None


def button_label() -> str | None:
    """What the sign-in button names ("Sign in with …"); None when single sign-on is off."""
    settings = configured()
    return (settings.label or "single sign-on") if settings else None


def local_password_allowed(person: AdminUser) -> bool:
    """Whether ``person`` may sign in with a local password: everyone, unless an owner
    limited local passwords to owners (break-glass)."""
    settings = current()
    return settings is None or settings.local_passwords or person.role == Role.OWNER


def redirect_uri() -> str:
    """The callback URL to register at the provider, from PUBLIC_BASE_URL (never from a
    request's Host)."""
    return current_app.config["PUBLIC_BASE_URL"] + CALLBACK_PATH


def check_provider(issuer: str) -> oidc.ProviderMetadata:
    """Discover ``issuer`` as a sign-in would (for the Settings page).

    :raise oidc.OidcError: with the sentence.
    """
    return oidc.discover(outbound.http(), issuer, _http_loopback())


def start(next_url: str | None, invite_token: str | None = None,
          now: datetime | None = None) -> str:  # fmt: skip
    """Record a pending sign-in (the state's SHA-256, the nonce, the sealed PKCE verifier,
    the invite and where to go afterwards) and return the provider's authorization URL.

    :raise SsoError: single sign-on is off, the invite is not usable, or discovery failed.
    """
    now = now or utcnow()
    settings = _settings()
    invite = None
    if invite_token:
        invite = people.usable_invite(invite_token, now)
        if invite is None:
            raise SsoError("This invite link was already used, was revoked or has expired. Ask "
                           "an owner for a new one.")  # fmt: skip
    metadata = _discover(settings)
    _prune(now)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    verifier = pkce.make_verifier()
    db.session.add(OidcPending(
        state_sha256=token_digest(state), nonce=nonce, code_verifier_enc=seal(verifier),
        invite_id=invite.id if invite else None, next_url=(next_url or "")[:2048] or None,
        created_at=now,
    ))  # fmt: skip
    return oidc.authorization_url(
        metadata,
        client_id=settings.client_id,
        redirect_uri=redirect_uri(),
        scope=settings.scopes or DEFAULT_SCOPES,
        state=state,
        nonce=nonce,
        code_challenge=pkce.challenge(verifier),
    )


def finish(args, now: datetime | None = None) -> SignedIn:
    """Finish the sign-in the provider's answer (``args``: the callback's query) belongs to.

    In order: the pending sign-in its ``state`` names is deleted (single use) and must be
    under ten minutes old; the answer's ``iss`` must be the issuer; an ``error`` answer is
    refused; the code is redeemed with the PKCE verifier; the ID token's signature and claims
    are checked (its nonce must be the pending one). Then the person with this issuer and
    subject is found, or created on a first sign-in; the email domain, the invite, the role
    mapping and deactivation are applied. Audit events: PERSON_JOINED, ROLE_CHANGED.

    :raise SsoError: with the sentence for the login page; nothing but the pending row's
        deletion is changed then.
    """
    now = now or utcnow()
    pending = _take_pending(args.get("state"), now)
    settings = _settings()
    http = outbound.http()
    metadata = _discover(settings, http)
    try:
        oidc.check_response_issuer(args.get("iss"), metadata)
    except oidc.OidcError as exc:
        raise SsoError(str(exc)) from None
    if args.get("error"):
        raise SsoError(_provider_refusal(args, settings))
    if not args.get("code"):
        raise SsoError("The provider sent no authorization code. Sign in again.")
    claims, tokens = _redeem(settings, metadata, http, args["code"], pending)
    claims = _with_userinfo(settings, claims, http, metadata, tokens, pending.invite)
    return _admit(settings, claims, pending, now)


def mapped_role(settings: SsoSettings, claims: dict) -> str | None:
    """The strongest role whose configured values the ``role_claim`` holds, else None."""
    if not settings.role_claim:
        return None
    held = claims.get(settings.role_claim)
    if isinstance(held, str):
        values = {held}
    elif isinstance(held, list):
        values = {value for value in held if isinstance(value, str)}
    else:
        values = set()
    role_map = settings.role_map or {}
    for role in STRONGEST_FIRST:
        if values & set(role_map.get(role) or []):
            return role
    return None


# -- finishing ------------------------------------------------------------------------------


@dataclass
class _Pending:
    """What a used-up pending sign-in carried."""

    nonce: str
    verifier: str
    invite: Invite | None
    next_url: str | None


def _take_pending(state, now) -> _Pending:
    """Delete the pending sign-in ``state`` names and return what it carried.

    :raise SsoError: no state, unknown or already used (a replayed answer), or too old.
    """
    if not isinstance(state, str) or not state:
        raise SsoError("The sign-in answer carries no state. Start the sign-in again.")
    digest = token_digest(state)
    row = db.session.get(OidcPending, digest)
    if row is None:
        raise SsoError("This sign-in answer is unknown or was already used. Sign in again.")
    created, invite_id = row.created_at, row.invite_id
    try:
        taken = _Pending(row.nonce, row.code_verifier_enc.reveal(), None, row.next_url)
    except UnreadableSecret:
        taken = None  # the keys changed since: refused below, once the row is gone
    # Single use: whoever deletes the row owns the sign-in; a replay finds nothing to delete.
    if db.session.execute(delete(OidcPending).filter_by(state_sha256=digest)).rowcount != 1:
        raise SsoError("This sign-in answer is unknown or was already used. Sign in again.")
    _prune(now)
    if created < now - PENDING_MAX_AGE or taken is None:
        raise SsoError("The sign-in took longer than ten minutes. Sign in again.")
    taken.invite = db.session.get(Invite, invite_id) if invite_id else None
    return taken


def _provider_refusal(args, settings) -> str:
    name = settings.label or "The identity provider"
    if args.get("error") == "access_denied":
        return (f"{name} did not sign you in (access denied: the sign-in was cancelled or "
                "refused there). Sign in again, or ask your administrator for access.")  # fmt: skip
    described = args.get("error_description")
    detail = str(args["error"])[:100] + (f": {str(described)[:200]}" if described else "")
    return f"{name} refused the sign-in ({detail.rstrip('.')}). Sign in again."


def _redeem(settings, metadata, http, code, pending) -> tuple[dict, protocol.Tokens]:
    """Redeem the code and check the ID token it brings.

    :raise SsoError: the token request failed, or the ID token was refused.
    """
    try:
        secret = settings.client_secret_enc.reveal() if settings.client_secret_enc else None
    except UnreadableSecret:
        raise SsoError("The stored client secret can no longer be decrypted: an owner must enter "
                       "it again on the Settings page.") from None  # fmt: skip
    try:
        client = protocol.ClientAuth(settings.client_id, secret, metadata.client_auth_method())
        tokens = protocol.exchange_code(
            http, metadata.token_endpoint, client, code=code, verifier=pending.verifier,
            redirect_uri=redirect_uri(), resource=None,
        )  # fmt: skip
        if not tokens.id_token:
            raise SsoError("The provider's answer has no ID token (is the openid scope asked "
                           "for?). Sign in again.")  # fmt: skip
        keys = oidc.signing_keys(http, metadata)
        claims = oidc.validate_id_token(
            tokens.id_token, keys, metadata, client_id=settings.client_id, nonce=pending.nonce
        )
    except protocol.TokenError as exc:
        raise SsoError(f"The provider did not complete the sign-in: {exc}") from None
    except oidc.OidcError as exc:
        raise SsoError(f"{exc} Sign in again.") from None
    return claims, tokens


def _with_userinfo(settings, claims, http, metadata, tokens, invite) -> dict:
    """``claims`` completed from userinfo when a claim the settings need (the role claim, the
    email for allowed domains or an invite) is not in the ID token."""
    wanted = [settings.role_claim] if settings.role_claim else []
    if settings.allowed_domains or (invite is not None and invite.email):
        wanted.append("email")
    if all(name in claims for name in wanted):
        return claims
    try:
        extra = oidc.userinfo(http, metadata, tokens.access_token, claims["sub"])
    except oidc.OidcError as exc:
        raise SsoError(f"{exc} Sign in again.") from None
    return {**extra, **claims}


def _admit(settings, claims, pending, now) -> SignedIn:
    """Find or create the person ``claims`` describe, once every rule lets them in."""
    email = claims.get("email")
    email = email if isinstance(email, str) and "@" in email and len(email) <= 320 else None
    who = _text(claims.get("preferred_username")) or email or _text(claims["sub"])
    if len(claims["sub"]) > SUBJECT_MAX:
        raise SsoError("The provider identifies you by a subject longer than mcpadmin keeps "
                       f"({SUBJECT_MAX} characters); it cannot sign you in.", who)  # fmt: skip
    _check_email(settings, email, claims.get("email_verified"), who)
    invite = pending.invite
    if invite is not None and not invite.usable(now):
        raise SsoError("This invite link was already used, was revoked or has expired. Ask an "
                       "owner for a new one.", who)  # fmt: skip
    if invite is not None and invite.email and (email or "").lower() != invite.email.lower():
        raise SsoError(f"This invite is for {invite.email}, but you signed in as "
                       f"{email or 'someone without an email address'}.", who)  # fmt: skip
    person = db.session.scalar(
        select(AdminUser).filter_by(oidc_issuer=settings.issuer, oidc_subject=claims["sub"])
    )
    role = mapped_role(settings, claims)
    if person is not None and not person.active:
        raise SsoError(f"The mcpadmin account {person.username} is deactivated. Ask an owner to "
                       "reactivate it.", person.username)  # fmt: skip
    joined = person is None
    if joined:
        role = role or (invite.role if invite else None) or settings.default_role
        if role is None:
            raise SsoError(
                "You are not in a group that mcpadmin gives a role to, and people who are not "
                "are let in only with an invite. Ask an owner to invite you or to map your "
                "group.", who)  # fmt: skip
    # Every refusal comes before this line: the caller commits a refusal as it stands.
    username = _free_username(claims) if joined else person.username
    if invite is not None:
        _use_invite(invite, username, now)
    if joined:
        person = _create(settings, claims, username, email, role)
        audit.record(Action.PERSON_JOINED, person, {"role": role, "via": "sso",
                     "invited": invite is not None}, admin_name=username)  # fmt: skip
    else:
        if role and role != person.role:
            audit.record(Action.ROLE_CHANGED, person,
                         {"role": [person.role, role], "via": "sso", "claim": settings.role_claim},
                         admin_name=username)  # fmt: skip
            person.role = role
        person.email = email or person.email
        person.display_name = _text(claims.get("name"), 200) or person.display_name
    return SignedIn(person, joined, pending.next_url)


def _check_email(settings, email, verified, who):
    """:raise SsoError: allowed domains are set and the email is missing, unverified, or in
    another domain."""
    domains = settings.allowed_domains or []
    if not domains:
        return
    listed = ", ".join(domains)
    if not email:
        raise SsoError(f"Only people with an email address at {listed} may sign in, and the "
                       "provider sent no email address.", who)  # fmt: skip
    if verified is False or verified == "false":
        raise SsoError(f"The provider says your email address {email} is not verified, so it "
                       "cannot admit you. Verify it there, then sign in again.", who)  # fmt: skip
    if email.rsplit("@", 1)[-1].lower() not in domains:
        raise SsoError(f"{email} may not sign in here: only email addresses at {listed} are "
                       "allowed. Ask an owner if you should have access.", who)  # fmt: skip


def _create(settings, claims, username, email, role) -> AdminUser:
    person = AdminUser(
        username=username,
        password_hash="",  # no local password: signs in through the provider only
        role=role,
        email=email,
        display_name=_text(claims.get("name"), 200),
        oidc_issuer=settings.issuer,
        oidc_subject=claims["sub"],
    )
    db.session.add(person)
    return person


def _free_username(claims) -> str:
    """A username for a new person, from ``preferred_username`` or the email (else the
    subject), chosen among those still free: ``name``, then ``name-2``, ``name-3``… (compared
    without case, as ``--as NAME`` finds people)."""
    base = (_text(claims.get("preferred_username")) or _text(claims.get("email"))
            or f"user-{_text(claims['sub'])}")  # fmt: skip
    base = base[: USERNAME_MAX - 6]
    taken = set(db.session.scalars(
        select(func.lower(AdminUser.username))
        .where(func.lower(AdminUser.username).startswith(base.lower(), autoescape=True))
    ))  # fmt: skip
    for n in count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        if candidate.lower() not in taken:
            return candidate
    raise AssertionError("unreachable")


def _use_invite(invite, username, now):
    """Mark the invite used by ``username``, unless another sign-in used it meanwhile.

    :raise SsoError: it was used or revoked since this sign-in checked it.
    """
    try:
        people.redeem(invite, username, now)
    except people.PeopleError as exc:
        raise SsoError("This invite link was used by someone else meanwhile. Ask an owner for "
                       "a new one.", username) from exc  # fmt: skip


# -- helpers --------------------------------------------------------------------------------


def _settings() -> SsoSettings:
    settings = configured()
    if settings is None:
        raise SsoError("Single sign-on is turned off. Sign in with your password, or ask an owner.")
    return settings


def _discover(settings, http=None) -> oidc.ProviderMetadata:
    try:
        return oidc.discover(http or outbound.http(), settings.issuer, _http_loopback())
    except oidc.OidcError as exc:
        raise SsoError(f"Single sign-on is unavailable: {exc}") from None


def _prune(now):
    """Delete pending sign-ins older than ``PENDING_MAX_AGE`` (abandoned at the provider)."""
    db.session.execute(delete(OidcPending).where(OidcPending.created_at < now - PENDING_MAX_AGE))


def _http_loopback() -> bool:
    return current_app.config["ALLOW_HTTP_LOOPBACK"]


def _text(value, limit: int = USERNAME_MAX) -> str | None:
    """A claim as one line of plain text (no control or direction characters), cut to
    ``limit``; None when it is not a non-empty string."""
    if not isinstance(value, str):
        return None
    hidden = set(bidi_controls(value))
    text = "".join(ch for ch in value if ch not in hidden and ch.isprintable()).strip()
    return text[:limit] or None
