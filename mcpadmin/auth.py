"""Admin sign-in, sign-out, first-run setup, and the login guard on every other page."""

import contextlib
import hmac
import os
import secrets
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from . import config, roles
from .extensions import db
from .filters import plural
from .forms import LoginForm, SetupForm
from .models import utcnow
from .roles import Access, allow
from .services import admins, audit, sessions, sso, throttle
from .services.audit import Action

bp = Blueprint("auth", __name__)

SETUP_TOKEN_FILE = "setup_token"  # noqa: S105 (a file name)
SESSION_TOKEN_KEY = "session_token"  # noqa: S105 (the cookie field naming the admin session)


def announce_setup_link(app):
    """With no admin yet, log the one-time link that creates the first one."""
    if admins.any_admin():
        return
    token = config.instance_secret(app, SETUP_TOKEN_FILE, secrets.token_urlsafe(32))
    app.logger.warning(
        "No admin account yet. Create one at %s/setup/%s (or run, from the mcpadmin folder: "
        ".venv/bin/flask --app wsgi create-admin NAME)",
        app.config["PUBLIC_BASE_URL"],
        token,
    )


def discard_setup_token(instance_path):
    """Delete the setup token once an admin exists (the link is dead then anyway); having no
    token file is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(instance_path, SETUP_TOKEN_FILE))


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the connectors index.

    Browsers read ``//host``, ``/\\host`` and ``/<tab>/host`` as another site, and drop tabs
    and newlines anywhere, so a local path is one ``/`` followed by no second ``/`` or ``\\``
    and holds no whitespace, control character or backslash at all. ``next`` arrives
    percent-decoded once, so ``%2F%2Fevil.com`` is checked as ``//evil.com``.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and not any(
            ch.isspace() or ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target
        )  # fmt: skip
    ):
        return target
    return url_for("index")


@bp.before_app_request
def require_login():
    """Load the signed-in admin into ``g.admin`` from a session still open server-side, and
    the client's address (as ``TRUSTED_PROXY_HOPS`` computes it) into ``g.address`` for the
    audit trail; send everyone else to the login page."""
    g.address = request.remote_addr
    token = session.get(SESSION_TOKEN_KEY)
    lifetime = current_app.permanent_session_lifetime
    g.admin = sessions.admin_for(token, utcnow(), lifetime) if token else None
    if token and g.admin is None:
        session.clear()  # signed out elsewhere, or expired: the cookie is worth nothing now
    if roles.required(request.endpoint, request.method) is Access.PUBLIC:
        return None
    if g.admin:  # a path no route matches goes on to its 404
        return roles.check_request() if request.endpoint else None
    login_url = url_for(
        "auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None
    )
    if request.headers.get("HX-Request"):
        return Response(status=401, headers={"HX-Redirect": login_url})
    return redirect(login_url)


@bp.route("/login", methods=["GET", "POST"])
@allow(Access.PUBLIC)
def login():
    """Sign in. Each attempt is counted before its password is checked; over the limit for
    this address and username (or the backstop for the username), 429 until the window ends."""
    if g.admin:
        return redirect(url_for("index"))
    if not admins.any_admin():
        flash("No admin account exists yet: use the setup link printed in the server log.", "info")
    form = LoginForm()
    if not form.validate_on_submit():
        return _login_page(form)
    now, cfg = utcnow(), current_app.config
    keys = throttle.limits(
        request.remote_addr,
        form.username.data,
        cfg["LOGIN_MAX_FAILURES"],
        cfg["LOGIN_USERNAME_MAX_FAILURES"],
    )
    window = timedelta(seconds=cfg["LOGIN_LOCKOUT_SECONDS"])
    refused_until = throttle.count_attempt(keys, now, window)
    if refused_until:
        minutes = max(1, round((refused_until - now).total_seconds() / 60))
        flash(f"Too many failed sign-ins. Try again in {plural(minutes, 'minute')}.", "error")
        return _login_page(form), 429
    admin = admins.authenticate(form.username.data, form.password.data)
    if admin is None:
        audit.record(Action.SIGN_IN_FAILED, admin_name=form.username.data)
        db.session.commit()
        flash("Wrong username or password.", "error")
        return _login_page(form), 401
    if not sso.local_password_allowed(admin):
        reason = "Local passwords are for owners only; everyone else signs in with single sign-on."
        audit.record(Action.SIGN_IN_FAILED, admin, {"reason": reason}, admin_name=admin.username)
        db.session.commit()
        label = sso.button_label()
        flash(f"{reason} Use “Sign in with {label}”." if label else reason, "error")
        return _login_page(form), 403
    throttle.give_back(keys)
    sign_in(admin)
    flash(f"Signed in as {admin.username}.", "success")
    return redirect(safe_next(request.args.get("next")))


@bp.post("/logout")
@allow(Access.SIGNED_IN)
def logout():
    """End this browser's session, server-side: a copy of the cookie stops working too."""
    audit.record(Action.SIGNED_OUT, g.admin)
    sessions.end(session.get(SESSION_TOKEN_KEY))
    db.session.commit()
    session.clear()
    flash("Signed out.", "success")
    return redirect(url_for("auth.login"))


@bp.post("/logout/everywhere")
@allow(Access.SIGNED_IN)
def logout_everywhere():
    """End every session of the signed-in admin, on every browser."""
    audit.record(Action.SIGNED_OUT_EVERYWHERE, g.admin)
    sessions.end_all(g.admin.id)
    db.session.commit()
    session.clear()
    flash("Signed out on every browser.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/setup/<token>", methods=["GET", "POST"])
@allow(Access.PUBLIC)
def setup(token):
    """Create the first admin with the one-time token from the server log.

    :raise 404: the token is wrong, or an admin already exists.
    """
    path = os.path.join(current_app.instance_path, SETUP_TOKEN_FILE)
    if admins.any_admin() or not _token_matches(path, token):
        abort(404)
    form = SetupForm()
    if not form.validate_on_submit():
        return render_template("auth/setup.html", form=form)
    try:
        admin = admins.create_admin(form.username.data, form.password.data)
    except admins.AdminError as exc:
        form.username.errors.append(str(exc))
        return render_template("auth/setup.html", form=form), 400
    audit.record(Action.ADMIN_CREATED, admin, {"via": "setup link"}, admin_name=admin.username)
    db.session.commit()
    discard_setup_token(current_app.instance_path)
    sign_in(admin)
    flash(f"Admin account {admin.username} created. Welcome!", "success")
    return redirect(url_for("connectors.index"))


def _token_matches(path, token):
    try:
        with open(path, encoding="utf-8") as f:
            expected = f.read().strip()
    except FileNotFoundError:
        return False
    return hmac.compare_digest(expected.encode(), token.encode())


def _login_page(form):
    """The sign-in page: the password form, and the single sign-on button when it is on."""
    settings = sso.configured()
    return render_template(
        "auth/login.html",
        form=form,
        sso_label=sso.button_label(),
        owners_only=settings is not None and not settings.local_passwords,
        next_url=safe_next(request.args.get("next")),
    )


def sign_in(admin, details: dict | None = None):
    """Open a server-side session for ``admin`` (committed, with its audit event and the time
    of this sign-in) and put its token in the cookie. ``details``: how, for the audit trail
    (``{"via": "sso"}``)."""
    now = utcnow()
    token = sessions.start(admin, now, current_app.permanent_session_lifetime)
    admin.last_signed_in_at = now
    audit.record(Action.SIGNED_IN, admin, details, admin_name=admin.username)
    db.session.commit()
    session.clear()
    session[SESSION_TOKEN_KEY] = token
    session.permanent = True
