"""``/healthz``: whether the app and its database answer. No login needed."""

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .roles import Access, allow

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@allow(Access.PUBLIC)
def healthz():
    """200 ``{"status": "ok"}``, or 503 when the database does not answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
