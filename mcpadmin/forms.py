"""Flask-WTF forms. Secret fields are PasswordFields: they never render a stored value."""

import re
from datetime import UTC, date, datetime, time, timedelta

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from .filters import bidi_controls
from .models import AUTH_TYPES, CREDENTIAL_MODES, Role
from .protocol.urls import (
    InvalidURL,
    check_client_credential,
    check_header_name,
    check_http_url,
    check_secret_header_value,
)
from .services.admins import MIN_PASSWORD_LENGTH

# The longest name, label or header name an operator can type (the columns hold 100).
MAX_NAME = 100


class MaxChars:
    """At most ``max`` characters, or the field is refused with its length: a browser's
    ``maxlength`` would cut a pasted value silently, so the limit is stated under the field
    (the ``field`` macro reads the ``max_chars`` flag) and checked here."""

    def __init__(self, max: int = MAX_NAME):
        self.max = max
        self.field_flags = {"max_chars": max}

    def __call__(self, form, field):
        if field.data and len(field.data) > self.max:
            raise ValidationError(
                f"{field.label.text} is {len(field.data)} characters long; it can have up to "
                f"{self.max}. Shorten it."
            )


def plain_text(form, field):
    """No bidirectional control characters (U+202E and kin): they make text display in
    another order than it is stored, so "Zoë\u202elive" reads as "Zoë evil"."""
    found = bidi_controls(field.data or "")
    if found:
        codes = ", ".join(dict.fromkeys(f"U+{ord(ch):04X}" for ch in found))
        raise ValidationError(
            f"{field.label.text} holds an invisible direction control ({codes}) that makes text "
            "display in another order than it is stored. Type it again without it."
        )


NAME = [MaxChars(), plain_text]


def _choices(labels):
    return [SelectChoice(value, label) for value, label in labels.items()]


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _http_url(form, field):
    if field.data:
        try:
            check_http_url(field.data)
        except InvalidURL as exc:
            raise ValidationError(str(exc)) from exc


def _header_secret(form, field):
    """A token or API key must be sendable as a header value (checked when saved)."""
    if field.data:
        try:
            check_secret_header_value(field.data, "The token or key")
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def _client_credential(form, field):
    if field.data:
        try:
            check_client_credential(field.data, f"The {field.label.text.lower()}")
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()], filters=[_strip])
    password = PasswordField("Password", validators=[DataRequired()])


class SetupForm(FlaskForm):
    username = StringField(
        "Username", validators=[DataRequired(), MaxChars(80), plain_text], filters=[_strip]
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH)]
    )
    confirm = PasswordField(
        "Repeat password", validators=[EqualTo("password", message="The passwords differ.")]
    )


class ConnectorForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), *NAME], filters=[_strip])
    url = StringField(
        "MCP server URL",
        validators=[DataRequired(), Length(max=2048), _http_url],
        filters=[_strip],
        description="The server's Streamable HTTP endpoint, e.g. https://mcp.linear.app/mcp",
    )
    auth_type = SelectField("Authentication", choices=_choices(AUTH_TYPES), default="none")
    credential_mode = RadioField(
        "Credentials", choices=_choices(CREDENTIAL_MODES), default="shared"
    )
    api_key_header_name = StringField(
        "Header name", validators=[Optional(), *NAME], filters=[_strip],
        description="The request header that carries the key, e.g. X-API-Key",
    )  # fmt: skip
    secret = PasswordField(
        "Token or key", validators=[Optional(), Length(max=8192), _header_secret], filters=[_strip]
    )
    clear_secret = BooleanField("Remove the stored token or key")
    oauth_scopes = StringField(
        "Scopes", validators=[Optional(), Length(max=1000)], filters=[_strip],
        description="Space-separated; used only when the server does not say which it needs",
    )  # fmt: skip
    oauth_authorization_endpoint = StringField(
        "Authorization endpoint", validators=[Optional(), Length(max=2048), _http_url],
        filters=[_strip],
    )  # fmt: skip
    oauth_token_endpoint = StringField(
        "Token endpoint", validators=[Optional(), Length(max=2048), _http_url], filters=[_strip]
    )
    oauth_registration_endpoint = StringField(
        "Registration endpoint", validators=[Optional(), Length(max=2048), _http_url],
        filters=[_strip],
    )  # fmt: skip
    oauth_revocation_endpoint = StringField(
        "Revocation endpoint", validators=[Optional(), Length(max=2048), _http_url],
        filters=[_strip],
    )  # fmt: skip
    oauth_client_id = PasswordField(
        "Client ID", validators=[Optional(), Length(max=1000), _client_credential],
        filters=[_strip],
    )  # fmt: skip
    oauth_client_secret = PasswordField(
        "Client secret", validators=[Optional(), Length(max=4096), _client_credential]
    )
    clear_oauth_client = BooleanField("Remove the stored client ID and secret")
    members_may_use = BooleanField(
        "Available to members",
        description="Members may give their own agents this connector's tools (and connect "
        "their own account where it is per agent). They never see a shared credential.",
    )
    log_arguments = BooleanField(
        "Keep call arguments in the call log",
        description="Each call's arguments are stored with its row, values under names that "
        "look secret (token, password, key…) replaced by [redacted]. Off: only the tool name.",
    )
    # Asked only when the URL moves to another origin while pasted secrets are stored.
    moved_secrets = RadioField(
        "Stored tokens and keys",
        choices=_choices(
            {"keep": "Send them to the new host", "forget": "Forget them; enter them again"}
        ),
        validators=[Optional()],
        validate_choice=False,
    )

    def validate(self, extra_validators=None):
        """Field checks, then the ones that depend on the chosen auth type."""
        valid = super().validate(extra_validators)
        if self.auth_type.data == "api_key_header":
            try:
                if not self.api_key_header_name.data:
                    raise ValueError("Enter the header that carries the API key.")
                check_header_name(self.api_key_header_name.data)
            except ValueError as exc:
                self.api_key_header_name.errors = [*self.api_key_header_name.errors, str(exc)]
                valid = False
        endpoints = (self.oauth_authorization_endpoint.data, self.oauth_token_endpoint.data)
        if self.auth_type.data == "oauth" and any(endpoints) and not all(endpoints):
            self.oauth_token_endpoint.errors = [
                *self.oauth_token_endpoint.errors,
                "Enter both the authorization and the token endpoint, or neither "
                "(then they are discovered).",
            ]
            valid = False
        return valid


def _person_id(value) -> int | None:
    """A person's id from the Owner field ("": no owner).

    :raise ValueError: not a number (WTForms says the choice is invalid)."""
    return int(value) if value not in ("", None) else None


class AgentForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), *NAME], filters=[_strip])
    description = TextAreaField("Description", validators=[Optional(), MaxChars(2000)])
    keep_tool_names = BooleanField(
        "Keep each tool's own name where no other tool has it (the endpoint otherwise names "
        "tools <connector>__<tool>)"
    )
    # Offered to owners and operators only: the view removes it for others and fills the
    # choices (a person's id, or "" for no owner), and checks the choice.
    owner_id = SelectField(
        "Owner", choices=[], coerce=_person_id, validate_choice=False,
        description="Who runs this agent. Its per-agent credentials stay with the agent.",
    )  # fmt: skip


# How long a new agent key lasts: days, "" for never, "date" for the date field.
KEY_LIFETIMES = {"": "Never", "30": "30 days", "90": "90 days", "365": "1 year",
                 "date": "Until a date…"}  # fmt: skip


class AgentKeyForm(FlaskForm):
    label = StringField(
        "Label", validators=[DataRequired(), *NAME], filters=[_strip],
        description="Where the key is used, e.g. “laptop” or “CI runner”",
    )  # fmt: skip
    lifetime = SelectField("Expires", choices=_choices(KEY_LIFETIMES), default="")
    until = DateField(
        "Expiry date", validators=[Optional()],
        description="With “Until a date…”: the key stops working at the end of this day (UTC).",
    )  # fmt: skip

    def validate(self, extra_validators=None):
        """Field checks, then the date: required with "Until a date…", refused with any
        other choice (which would ignore it: the operator must say which one they meant)."""
        valid = super().validate(extra_validators)
        if valid and self.lifetime.data == "date":
            if self.until.data is None:
                self.until.errors = ["Choose the day the key expires."]
            elif self.until.data <= datetime.now(UTC).date():
                self.until.errors = ["Choose a day after today."]
            valid = not self.until.errors
        elif valid and self.until.data is not None:
            chosen = KEY_LIFETIMES.get(self.lifetime.data, self.lifetime.data)
            self.until.errors = [
                f"“Expires” says {chosen}, which ignores this date: choose “Until a date…” "
                "to use it, or clear the date."
            ]
            valid = False
        return valid

    def expires_at(self, now: datetime) -> datetime | None:
        """When the key expires, from the validated choice; None for never."""
        if self.lifetime.data == "date":
            return _end_of(self.until.data)
        return now + timedelta(days=int(self.lifetime.data)) if self.lifetime.data else None


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


class SecretForm(FlaskForm):
    """A bearer token or API key entered alone: an agent's own (its card) or the shared one
    (the connector's page). Required: a blank field never erases the stored one."""

    secret = PasswordField(
        "Token or key",
        validators=[DataRequired(), Length(max=8192), _header_secret],
        filters=[_strip],
    )


# Single sign-on settings (the Settings page) ------------------------------------------------

LOCAL_PASSWORDS = {"everyone": "Everyone", "owners": "Owners only (break-glass)"}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _lines(text: str | None) -> list[str]:
    """The non-empty lines of ``text``, stripped, each once, in order."""
    return list(dict.fromkeys(line.strip() for line in (text or "").splitlines() if line.strip()))


class SsoSettingsForm(FlaskForm):
    """The ``SsoSettings`` row as a form. The client secret is write-only: blank keeps the
    stored one. Claim values and domains are one per line (a group name may hold spaces)."""

    enabled = BooleanField("Let people sign in with the identity provider")
    issuer = StringField(
        "Issuer URL", validators=[Optional(), Length(max=2048), _http_url], filters=[_strip],
        description="As the provider spells it, e.g. https://login.example.com/realms/acme",
    )  # fmt: skip
    client_id = StringField(
        "Client ID", validators=[Optional(), Length(max=500), plain_text], filters=[_strip]
    )
    client_secret = PasswordField(
        "Client secret", validators=[Optional(), Length(max=4096), _client_credential]
    )
    label = StringField(
        "Button label", validators=[Optional(), *NAME], filters=[_strip],
        description="The sign-in page shows “Sign in with <label>”, e.g. Okta",
    )  # fmt: skip
    scopes = StringField(
        "Scopes", validators=[Optional(), Length(max=500)], filters=[_strip],
        description="Space-separated; openid is required",
    )  # fmt: skip
    allowed_domains = TextAreaField(
        "Allowed email domains", validators=[Optional(), Length(max=5000)],
        description="One per line, e.g. example.com. Empty: any domain the provider vouches for.",
    )  # fmt: skip
    role_claim = StringField(
        "Role claim", validators=[Optional(), MaxChars(), plain_text], filters=[_strip],
        description="The ID token claim listing the person's groups or roles, e.g. groups",
    )  # fmt: skip
    owner_values = TextAreaField("Owner", validators=[Optional(), Length(max=5000)])
    operator_values = TextAreaField("Operator", validators=[Optional(), Length(max=5000)])
    auditor_values = TextAreaField("Auditor", validators=[Optional(), Length(max=5000)])
    member_values = TextAreaField("Member", validators=[Optional(), Length(max=5000)])
    default_role = SelectField(
        "First sign-in without a matching value",
        choices=[SelectChoice("", "Refused (an invite is needed)"),
                 SelectChoice(Role.MEMBER, "Member"), SelectChoice(Role.AUDITOR, "Auditor"),
                 SelectChoice(Role.OPERATOR, "Operator")],
        default="",
    )  # fmt: skip
    local_passwords = RadioField(
        "Local passwords", choices=_choices(LOCAL_PASSWORDS), default="everyone"
    )
    # Whether a secret is stored (set by the view): enabling needs one.
    has_secret = False

    def role_values(self) -> dict[str, list[str]]:
        """The claim values entered for each role (roles with none left out)."""
        fields = {role: getattr(self, f"{role}_values").data for role in Role.ALL}
        return {role: _lines(text) for role, text in fields.items() if _lines(text)}

    def domains(self) -> list[str]:
        return [d.lower().lstrip("@") for d in _lines(self.allowed_domains.data)]

    def validate(self, extra_validators=None):
        """Field checks, then what depends on other fields: an enabled provider needs its
        issuer, client ID and secret; scopes hold openid; domains are domain names; claim
        values need a claim; owners-only local passwords need single sign-on on."""
        valid = super().validate(extra_validators)
        problems = []
        if self.enabled.data:
            required = ((self.issuer, "Enter the provider's issuer URL."),
                        (self.client_id, "Enter the client ID."),
                        (self.client_secret, "Enter the client secret."))  # fmt: skip
            stored = {self.client_secret.name: self.has_secret}
            problems += [(f, why) for f, why in required if not (f.data or stored.get(f.name))]
        if self.scopes.data and "openid" not in self.scopes.data.split():
            problems.append((self.scopes, "The scopes must include openid."))
        bad = [d for d in self.domains() if not _DOMAIN.match(d)]
        if bad:
            problems.append((self.allowed_domains, f"{bad[0][:100]!r} is not a domain name, "
                                                   "such as example.com."))  # fmt: skip
        if self.role_values() and not self.role_claim.data:
            problems.append((self.role_claim, "Name the claim that carries these values."))
        if self.local_passwords.data == "owners" and not self.enabled.data:
            problems.append((self.local_passwords, "Turn single sign-on on first: otherwise "
                             "only owners could sign in at all."))  # fmt: skip
        for field, sentence in problems:
            field.errors = [*field.errors, sentence]
        return valid and not problems
