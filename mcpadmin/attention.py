"""Needs attention: the page listing what waits for a person, the navigation badge, and the
webhook endpoints those items are sent to (with their delivery log)."""

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.exc import SQLAlchemyError
from wtforms import RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from .extensions import db
from .models import WebhookEndpoint
from .roles import Access, allow
from .services import attention, audit, webhooks
from .services.audit import Action

bp = Blueprint("attention", __name__, url_prefix="/attention")


class WebhookForm(FlaskForm):
    url = StringField(
        "Webhook URL",
        validators=[DataRequired("Enter the URL events are posted to."), Length(max=2048)],
        description="Events are POSTed here as they appear. Up to 2048 characters.",
    )
    format = RadioField(
        "Format",
        choices=[SelectChoice(value, label) for value, label in webhooks.FORMATS.items()],
        default=webhooks.Format.GENERIC,
        validators=[DataRequired()],
    )


@bp.get("/")
@allow(Access.READ)
def index():
    found = attention.items()
    return render_template("attention/index.html", groups=attention.grouped(found),
                           count=len(found))  # fmt: skip


@bp.get("/webhooks")
@allow(Access.READ)
def webhooks_page():
    return _webhooks_page(WebhookForm())


@bp.post("/webhooks")
@allow(Access.OPERATE)
def create_webhook():
    """Add an endpoint and show its signing secret, this once (the answer is the page)."""
    form = WebhookForm()
    if not form.validate_on_submit():
        return _webhooks_page(form), 422
    try:
        endpoint, secret = webhooks.create(form.url.data.strip(), form.format.data)
    except webhooks.WebhookError as exc:
        form.url.errors = [str(exc)]
        return _webhooks_page(form), 422
    audit.record(Action.WEBHOOK_CREATED, endpoint, {"format": endpoint.format, "secret": "set"})
    db.session.commit()
    flash(f"Webhook {endpoint.label} added. Copy its signing secret now.", "success")
    return _webhooks_page(WebhookForm(formdata=None), new={"endpoint": endpoint, "secret": secret})


@bp.post("/webhooks/<int:id>/test")
@allow(Access.OPERATE)
def test_webhook(id):
    """Send a test event now; the delivery log shows how it went."""
    endpoint = get_endpoint(id)
    delivery = webhooks.send_test(endpoint)
    audit.record(Action.WEBHOOK_TESTED, endpoint, {"delivered": delivery.status == "delivered"})
    db.session.commit()
    if delivery.status == webhooks.Status.DELIVERED:
        flash(f"Test event delivered to {endpoint.label}.", "success")
    else:
        flash(f"Test event not delivered: {delivery.last_error}", "error")
    return redirect(url_for("attention.webhooks_page") + "#deliveries")


@bp.route("/webhooks/<int:id>/delete", methods=["GET", "POST"])
@allow(Access.OPERATE)
def delete_webhook(id):
    """GET asks for confirmation; POST removes the endpoint and its delivery log."""
    endpoint = get_endpoint(id)
    if request.method == "GET":
        return render_template("attention/delete_webhook.html", endpoint=endpoint)
    label = endpoint.label
    audit.record(Action.WEBHOOK_DELETED, endpoint, {"format": endpoint.format})
    db.session.delete(endpoint)
    db.session.commit()
    flash(f"Webhook {label} removed; nothing more is sent to it.", "success")
    return redirect(url_for("attention.webhooks_page"))


def get_endpoint(id) -> WebhookEndpoint:
    """:raise 404: no webhook endpoint with this id."""
    return db.get_or_404(WebhookEndpoint, id)


def _webhooks_page(form, new=None):
    endpoints = db.session.scalars(db.select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
    return render_template("attention/webhooks.html", form=form, endpoints=endpoints,
                           deliveries=webhooks.recent(), new=new,
                           formats=webhooks.FORMATS)  # fmt: skip


def nav_badge():
    """The navigation's count, computed only if a page's navigation asks (a signed-in admin's
    full page, not a partial), once per request; None when it cannot be read."""
    if g.get("admin") is None:
        return {}

    def attention_count():
        if "attention_count" not in g:
            try:
                g.attention_count = len(attention.items())
            except SQLAlchemyError:  # the page is being answered anyway: no badge
                g.attention_count = None
        return g.attention_count

    return {"attention_count": attention_count}
