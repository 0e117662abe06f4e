"""The People page (owners, operators and auditors read it; owners invite, change roles,
deactivate and reactivate) and the invite link's page, where a new person joins.

Actions answer an htmx request with their partial (the people table, or the invites) plus
the flash area out of band, and a plain form post with a redirect — except creating an
invite, whose answer is the one place its link is ever shown.
"""

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from sqlalchemy.exc import IntegrityError
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional

from .auth import sign_in
from .errors import render_error
from .extensions import db
from .forms import MaxChars, SetupForm, plain_text
from .models import AdminUser, Invite, Role, SsoSettings, utcnow
from .roles import Access, allow
from .services import audit, people
from .services.audit import Action

bp = Blueprint("people", __name__)


class InviteForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(value, label) for value, label in
                                        Role.LABELS.items()], default=Role.MEMBER)  # fmt: skip
    email = StringField("Email", validators=[Optional(), MaxChars(320), plain_text],
                        filters=[lambda v: v.strip() if isinstance(v, str) else v],
                        description="Optional: who it is for, shown on this page.")  # fmt: skip
    days = IntegerField(
        "Valid for (days)",
        default=people.DEFAULT_INVITE_DAYS,
        validators=[
            Optional(),
            NumberRange(1, people.MAX_INVITE_DAYS,
                        message=f"An invite lasts 1 to {people.MAX_INVITE_DAYS} days.")
        ],
    )  # fmt: skip


def get_person(id) -> AdminUser:
    """:raise 404: no person with this id."""
    return db.get_or_404(AdminUser, id)


@bp.get("/people/")
@allow(Access.READ)
def index():
    """Everyone with their role, how they sign in and their agents; the pending invites."""
    return render_template("people/index.html", **_people_context(), **_invites_context())


@bp.post("/people/invites")
@allow(Access.ADMINISTER)
def invite():
    """Create an invite and show its link, this once: an htmx request gets the invites
    partial with the link's panel, a plain post the whole page with it."""
    form = InviteForm()
    new_invite = None
    if form.validate_on_submit():
        try:
            row, token = people.invite(form.role.data, form.email.data, form.days.data,
                                       g.admin.username)  # fmt: skip
        except people.PeopleError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            db.session.flush()
            audit.record(Action.PERSON_INVITED, None, people.described(row))
            db.session.commit()
            new_invite = {"row": row, "link": people.link(token)}
            form = None  # an empty form for the next invite
    if not request.headers.get("HX-Request"):
        page = render_template("people/index.html", **_people_context(),
                               **_invites_context(form, new_invite))  # fmt: skip
        return page, 200 if new_invite else 422
    return _invites_response(form, new_invite)


@bp.post("/people/invites/<int:id>/revoke")
@allow(Access.ADMINISTER)
def revoke_invite(id):
    """The invite's link stops working at once."""
    row = db.get_or_404(Invite, id)
    if row.revoked_at is None and row.used_at is None:
        audit.record(Action.INVITE_REVOKED, None, people.described(row))
        people.revoke_invite(row)
        db.session.commit()
        flash(f"Invite for {_invitee(row)} revoked: its link no longer works.", "success")
    if not request.headers.get("HX-Request"):
        return redirect(url_for("people.index") + "#invites")
    return _invites_response()


@bp.post("/people/<int:id>/role")
@allow(Access.ADMINISTER)
def change_role(id):
    person = get_person(id)
    before = person.role
    try:
        people.change_role(person, request.form.get("role", ""))
    except people.PeopleError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        if person.role != before:
            audit.record(Action.ROLE_CHANGED, person, {"role": [before, person.role]})
            flash(f"{person.username} is now {_a(person.role)}.", "success")
        db.session.commit()
    return _people_response()


@bp.route("/people/<int:id>/deactivate", methods=["GET", "POST"])
@allow(Access.ADMINISTER)
def deactivate(id):
    """GET says what deactivating does and asks; POST deactivates: their sessions end now
    and their agents' keys are refused until they are reactivated."""
    person = get_person(id)
    if request.method == "GET":
        agents = [a.name for a in people.agents_of(person)]
        return render_template("people/deactivate.html", person=person, agents=agents)
    try:
        was_active = person.active
        people.deactivate(person, g.admin)
    except people.PeopleError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        if was_active:
            audit.record(Action.PERSON_DEACTIVATED, person)
            flash(f"{person.username} is deactivated: signed out everywhere, and their agents' "
                  "keys are refused until you reactivate them.", "success")  # fmt: skip
        db.session.commit()
    return _people_response()


@bp.post("/people/<int:id>/reactivate")
@allow(Access.ADMINISTER)
def reactivate(id):
    person = get_person(id)
    if not person.active:
        people.reactivate(person)
        audit.record(Action.PERSON_REACTIVATED, person)
        db.session.commit()
        flash(f"{person.username} is active again: they can sign in and their agents' keys "
              "work.", "success")  # fmt: skip
    return _people_response()


@bp.route("/invite/<token>", methods=["GET", "POST"])
@allow(Access.PUBLIC)
def join(token):
    """The invite link's page: join with a username and password (when local passwords are
    allowed for the invite's role), or through single sign-on (when it is on).

    :raise 404: the link is unknown, used, revoked or expired (a page saying which).
    """
    if g.admin:
        return render_template("people/join.html", signed_in=True)
    row = people.find_invite(token, lock=request.method == "POST")
    if row is None or not row.usable(utcnow()):
        return render_error(404, "This invite link does not work", people.why_unusable(row))
    settings = db.session.get(SsoSettings, 1)
    sso = settings is not None and settings.enabled and "sso.start" in current_app.view_functions
    context = {
        "invite": row,
        "token": token,
        "local": people.local_passwords_allowed(row.role),
        "sso_label": (settings.label or "single sign-on") if sso else None,
    }
    form = SetupForm()
    if request.method == "GET" or not context["local"]:
        status = 200 if request.method == "GET" else 400
        return render_template("people/join.html", form=form, **context), status
    if not form.validate_on_submit():
        return render_template("people/join.html", form=form, **context), 422
    try:
        person = people.join_with_password(row, form.username.data, form.password.data)
        g.admin = person  # the new person is the actor of their joining
        audit.record(Action.PERSON_JOINED, person, {"role": person.role, "via": "password",
                                                    "invite_id": row.id})  # fmt: skip
        db.session.commit()
    except (people.PeopleError, IntegrityError) as exc:
        db.session.rollback()
        g.admin = None
        taken = f"The username {form.username.data!r} is taken."
        form.username.errors.append(taken if isinstance(exc, IntegrityError) else str(exc))
        return render_template("people/join.html", form=form, **context), 422
    sign_in(person, {"via": "invite"})
    flash(f"Welcome, {person.username}: you joined as {_a(person.role)}.", "success")
    return redirect(url_for("index"))


def _people_context():
    return {
        "people": people.everyone(),
        "agent_counts": people.agent_counts(),
        "sign_in_kind": people.sign_in_kind,
        "roles": Role.LABELS,
    }


def _invites_context(form=None, new_invite=None):
    return {
        "invites": people.pending_invites(),
        "invite_form": form or InviteForm(formdata=None),
        "new_invite": new_invite,
        "max_days": people.MAX_INVITE_DAYS,
    }


def _people_response():
    if not request.headers.get("HX-Request"):
        return redirect(url_for("people.index"))
    body = render_template("people/_people_response.html", **_people_context())
    return body, 200, {"Vary": "HX-Request"}


def _invites_response(form=None, new_invite=None):
    """The invites partial; form errors answer 200 too (htmx swaps only 2xx by default)."""
    body = render_template("people/_invites_response.html", **_invites_context(form, new_invite))
    return body, 200, {"Vary": "HX-Request"}


def _invitee(row: Invite) -> str:
    return row.email or f"{_a(row.role)} (no email given)"


def _a(role: str) -> str:
    label = Role.LABELS.get(role, role).lower()
    return f"{'an' if label[0] in 'aeiou' else 'a'} {label}"
