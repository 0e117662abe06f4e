"""Single sign-on: send the browser to the identity provider, and sign the person in when it
comes back. Both are public (nobody is signed in yet); a refusal is the login page with a
sentence, and an audit event."""

from flask import Blueprint, flash, redirect, request, url_for
from sqlalchemy.exc import IntegrityError

from .auth import safe_next, sign_in
from .extensions import db
from .roles import Access, allow
from .services import audit, sso
from .services.audit import Action

bp = Blueprint("sso", __name__, url_prefix="/sso")


@bp.post("/start")
@allow(Access.PUBLIC)
def start():
    """Record a pending sign-in and go to the provider. Form fields: ``next`` (a path here),
    and ``invite``, the raw token of an invite link being redeemed."""
    next_url = safe_next(request.form.get("next"))
    try:
        url = sso.start(next_url, request.form.get("invite") or None)
    except sso.SsoError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("auth.login", next=next_url))
    db.session.commit()
    return redirect(url)


@bp.get("/callback")
@allow(Access.PUBLIC)
def callback():
    """The provider's answer: sign the person in and go where they were going, or back to the
    login page with why not (the pending sign-in stays used up)."""
    try:
        signed_in = sso.finish(request.args)
    except sso.SsoError as exc:
        # Keep the pending sign-in's deletion only: a refusal changes nothing else.
        audit.record(Action.SIGN_IN_FAILED, None, {"via": "sso", "reason": str(exc)},
                     admin_name=exc.who or "(single sign-on)")  # fmt: skip
        db.session.commit()
        flash(str(exc), "error")
        return redirect(url_for("auth.login"))
    person = signed_in.person
    try:
        sign_in(person, {"via": "sso"})
    except IntegrityError:  # the same first sign-in finished twice at once: one of them won
        db.session.rollback()
        flash("This account was being created by another sign-in at the same moment. Sign in "
              "again.", "error")  # fmt: skip
        return redirect(url_for("auth.login"))
    welcome = "Welcome" if signed_in.joined else "Signed in as"
    flash(f"{welcome} {person.username}.", "success")
    return redirect(safe_next(signed_in.next_url))
