"""The Settings page (owners): single sign-on through an OpenID Connect provider, and whether
local passwords still work for everyone or only for owners."""

from flask import Blueprint, flash, redirect, render_template, request, url_for

from .crypto import seal, secret_state
from .extensions import db
from .forms import SsoSettingsForm
from .models import Role
from .protocol.oidc import OidcError
from .roles import Access, allow
from .services import audit, sso
from .services.audit import Action

bp = Blueprint("settings", __name__)

# The columns the page edits, as the audit trail names their changes.
FIELDS = (
    "enabled", "issuer", "client_id", "client_secret_enc", "label", "scopes", "allowed_domains",
    "role_claim", "role_map", "default_role", "local_passwords",
)  # fmt: skip


@bp.route("/settings", methods=["GET", "POST"])
@allow(Access.ADMINISTER)
def index():
    """Show and save the single sign-on settings. Saving with sign-on turned on first reads
    the provider's metadata: if that fails, its sentence is shown and nothing is saved. The
    change is audited (the client secret as set or changed, never its value)."""
    stored = sso.current()
    row = stored or sso.blank_settings()
    form = SsoSettingsForm(data=_form_data(row) if request.method == "GET" else None)
    form.has_secret = secret_state(row.client_secret_enc) == "set"  # unreadable: enter it again
    if not form.validate_on_submit():
        return _page(form, row), 400 if form.is_submitted() else 200
    if form.enabled.data:
        try:
            sso.check_provider(form.issuer.data)
        except OidcError as exc:
            form.issuer.errors = [*form.issuer.errors, f"Nothing was saved: {exc}"]
            return _page(form, row), 400
    before = audit.snapshot(row, FIELDS)
    _apply(form, row)
    changes = audit.changes(before, row, secret_fields=("client_secret_enc",))
    if not changes:
        flash("Nothing changed.", "info")
        return redirect(url_for("settings.index"))
    if stored is None:
        db.session.add(row)
    audit.record(Action.SSO_SETTINGS_CHANGED, None, changes)
    db.session.commit()
    flash("Single sign-on settings saved.", "success")
    return redirect(url_for("settings.index"))


def _page(form, row):
    return render_template(
        "settings/index.html",
        form=form,
        redirect_uri=sso.redirect_uri(),
        secret_state=secret_state(row.client_secret_enc),
    )


def _form_data(row) -> dict:
    role_map = row.role_map or {}
    return {
        "enabled": row.enabled,
        "issuer": row.issuer,
        "client_id": row.client_id,
        "label": row.label,
        "scopes": row.scopes or sso.DEFAULT_SCOPES,
        "allowed_domains": "\n".join(row.allowed_domains or []),
        "role_claim": row.role_claim,
        **{f"{role}_values": "\n".join(role_map.get(role, [])) for role in Role.ALL},
        "default_role": row.default_role or "",
        "local_passwords": "everyone" if row.local_passwords else "owners",
    }


def _apply(form, row):
    row.enabled = form.enabled.data
    row.issuer = form.issuer.data or None
    row.client_id = form.client_id.data or None
    if form.client_secret.data:  # blank keeps the stored secret
        row.client_secret_enc = seal(form.client_secret.data)
    row.label = form.label.data or None
    row.scopes = " ".join(dict.fromkeys((form.scopes.data or "").split())) or sso.DEFAULT_SCOPES
    row.allowed_domains = form.domains()
    row.role_claim = form.role_claim.data or None
    row.role_map = form.role_values()
    row.default_role = form.default_role.data or None
    row.local_passwords = form.local_passwords.data != "owners"
