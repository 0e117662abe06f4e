"""``/metrics``: the Prometheus scrape endpoint, for a scraper holding ``METRICS_TOKEN``.

Off (404) until the operator sets the token; then a request without ``Authorization: Bearer
<token>`` gets 401. The admin login does not apply: the token is the only way in.
"""

import hmac

from flask import Blueprint, Response, abort, current_app
from sqlalchemy.exc import SQLAlchemyError

from . import security
from .config import setting_name
from .extensions import db
from .roles import Access, allow
from .services import metrics

bp = Blueprint("metrics", __name__)

# RFC 6750 §3: the challenge a protected resource answers with.
CHALLENGE = 'Bearer realm="mcpadmin metrics"'


@bp.get("/metrics")
@allow(Access.PUBLIC)
def scrape():
    """Every metric in the Prometheus text format.

    :raise 404: ``METRICS_TOKEN`` is not set.
    :raise 401: no bearer token, or not the configured one (``WWW-Authenticate`` says so).
    :raise 503: the database did not answer (the reconnect gauge is read from it).
    """
    expected = current_app.config["METRICS_TOKEN"]
    if not expected:
        abort(404)
    given = security.bearer_token()
    if given is None:
        return _refused(CHALLENGE)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return _refused(f'{CHALLENGE}, error="invalid_token"')
    try:
        reconnect = metrics.needing_reconnect()
    except SQLAlchemyError:
        db.session.rollback()
        return Response("The database is unreachable.\n", 503, mimetype="text/plain")
    return Response(metrics.exposition(reconnect), content_type=metrics.CONTENT_TYPE)


def _refused(challenge: str) -> Response:
    return Response(
        f"A bearer token ({setting_name('METRICS_TOKEN')}) is needed.\n",
        401,
        mimetype="text/plain",
        headers={"WWW-Authenticate": challenge},
    )
