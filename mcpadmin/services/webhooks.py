"""Webhooks: each Needs attention item (``services.attention``) sent to every enabled
endpoint once, with retries, and a delivery log.

An endpoint is ``generic`` (the item as JSON) or ``slack`` (``{"text": …}``, what Slack's and
compatible incoming webhooks take). Every request is signed, whatever the format::

    X-Mcpadmin-Timestamp: <unix seconds>
    X-Mcpadmin-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the secret>

The secret is made here and shown once; the URL is sealed too (a Slack webhook URL is its own
credential), and pages and sentences name only its origin (``WebhookEndpoint.label``).

``notify`` drives it all (``flask notify``, or each process's ``Notifier`` thread): it adds a
``WebhookDelivery`` per new item and endpoint (the unique ``(endpoint_id, open_key)`` makes a
second worker's insert a no-op), then sends the deliveries that are due, each one claimed
first with a conditional UPDATE so exactly one worker sends it. A failed attempt is tried
again after ``WEBHOOK_RETRY_SECONDS`` (one delay per attempt, the last repeating) until
``WEBHOOK_MAX_ATTEMPTS``; then the delivery is given up, its last sentence kept. Requests go
through the outbound client (``outbound.http``): its timeouts, size cap and address policy.

Unlike a service called by a view, ``notify`` commits: its claims must be seen by other
workers before it sends, and no transaction is held open while a receiver answers.
"""

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from ..crypto import UnreadableSecret, seal
from ..extensions import db
from ..models import WebhookDelivery, WebhookEndpoint, utcnow
from ..protocol.http import HttpError
from ..protocol.urls import InvalidURL, check_http_url
from . import attention, outbound, scrub

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mcpadmin-Signature"
TIMESTAMP_HEADER = "X-Mcpadmin-Timestamp"
EVENT_HEADER = "X-Mcpadmin-Event"
# A claimed delivery not settled by then is claimed again (its worker died while sending).
CLAIM = timedelta(minutes=5)
BATCH = 50  # deliveries sent per pass at most
INSERT_ROWS = 500  # deliveries per INSERT (SQLite allows 32,766 bound values per statement)
LOG_SIZE = 50  # deliveries the page shows
MAX_ERROR = 300
# Settled deliveries of events that are over are deleted after this long.
KEPT = timedelta(days=30)


class Format(StrEnum):
    GENERIC = "generic"
    SLACK = "slack"


FORMATS = {
    Format.GENERIC: "Generic JSON, signed",
    Format.SLACK: 'Slack-compatible ({"text": …}), signed',
}


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up


class WebhookError(ValueError):
    """The endpoint cannot be added; the message is a sentence for the page."""


@dataclass
class Summary:
    """What one ``notify`` pass did."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0  # attempts that failed (retried later, or given up)


def create(url: str, fmt: str) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint (added to the session) and its signing secret, which only this
    return ever holds in the clear.

    :raise WebhookError: not an http(s) URL, or one the outbound policy refuses.
    """
    try:
        check_http_url(url)
        outbound.http().check_address(url)
    except (InvalidURL, HttpError) as exc:
        raise WebhookError(str(exc)) from None
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(url_enc=seal(url), label=label_of(url), format=Format(fmt),
                               secret_enc=seal(secret), enabled=True)  # fmt: skip
    db.session.add(endpoint)
    return endpoint, secret


def label_of(url: str) -> str:
    """What pages may show of a webhook URL: its origin (the path may be a credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"[:300]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def body_of(fmt: str, event: dict) -> bytes:
    """The request body for ``event`` in ``fmt``."""
    if fmt == Format.SLACK:
        text = _slack_escaped(event["text"])
        link = f" <{event['url']}|{_slack_escaped(event['fix'])}>" if event.get("url") else ""
        return json.dumps({"text": text + link}, ensure_ascii=False).encode()
    return json.dumps(event, ensure_ascii=False, sort_keys=True).encode()


def _slack_escaped(text: str) -> str:
    # Slack's message formatting: only &, < and > are escaped (they mark links and mentions).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_event(now: datetime) -> dict:
    return {"key": f"test/{uuid.uuid4().hex}", "kind": "test", "severity": "info",
            "text": "A test event from mcpadmin: this endpoint receives Needs attention "
                    "events.", "url": absolute_url(attention.Fix("Open", "attention.index")),
            "fix": "Open Needs attention", "at": now.isoformat()}  # fmt: skip


def send_test(endpoint: WebhookEndpoint, now: datetime | None = None) -> WebhookDelivery:
    """Send a test event to ``endpoint`` now and return its delivery (added to the session,
    retried later like any other if it failed); the caller commits."""
    now = now or utcnow()
    event = test_event(now)
    delivery = WebhookDelivery(endpoint=endpoint, event_key=event["key"], event=event,
                               status=Status.PENDING, attempts=0)  # fmt: skip
    db.session.add(delivery)
    for name, value in _outcome(_attempt(Target.of(endpoint), event, now), 0, now).items():
        setattr(delivery, name, value)
    return delivery


def recent(limit: int = LOG_SIZE) -> list[WebhookDelivery]:
    """The last deliveries, newest first, with their endpoints (one statement)."""
    return db.session.scalars(
        select(WebhookDelivery).options(joinedload(WebhookDelivery.endpoint))
        .order_by(WebhookDelivery.id.desc()).limit(limit)
    ).all()  # fmt: skip


def notify(now: datetime | None = None, worker: str | None = None) -> Summary:
    """One pass: enqueue the attention items no enabled endpoint has had yet, then send the
    deliveries due at ``now``. Commits as it goes (see the module's docstring)."""
    now = now or utcnow()
    worker = worker or f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    summary = Summary(enqueued=enqueue(now))
    for delivery_id in _due(now):
        sent = _send_claimed(delivery_id, now, worker)
        if sent is True:
            summary.delivered += 1
        elif sent is False:
            summary.failed += 1
    return summary


def enqueue(now: datetime) -> int:
    """Add a pending delivery for each current item and enabled endpoint that has none open;
    close (``open_key = NULL``) the deliveries of items that are over, so a recurrence is
    sent again; delete settled, closed deliveries older than ``KEPT``. Commits; returns how
    many deliveries were added."""
    endpoints = db.session.scalars(
        select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
    ).all()
    found = attention.items(now) if endpoints else []
    events = {item.key: item.event(absolute_url(item.fix), now) for item in found}
    # End the read before the first write: on SQLite a transaction that read cannot take the
    # write lock once another worker committed (it would fail at once, not wait).
    db.session.rollback()
    over = WebhookDelivery.open_key.is_not(None)
    if events:
        over = and_(over, WebhookDelivery.open_key.not_in(list(events)))
    db.session.execute(update(WebhookDelivery).where(over).values(open_key=None))
    db.session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.created_at < now - KEPT, WebhookDelivery.open_key.is_(None),
            WebhookDelivery.status.in_([Status.DELIVERED, Status.FAILED]))
    )  # fmt: skip
    rows = [{"endpoint_id": endpoint_id, "event_key": key, "open_key": key, "event": event,
             "status": str(Status.PENDING), "attempts": 0, "next_attempt_at": now,
             "created_at": now}
            for endpoint_id in endpoints for key, event in events.items()]  # fmt: skip
    added = 0
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[db.engine.dialect.name]
    for start in range(0, len(rows), INSERT_ROWS):
        statement = dialect.insert(WebhookDelivery.__table__).values(
            rows[start : start + INSERT_ROWS]
        )
        ignored = statement.on_conflict_do_nothing(index_elements=["endpoint_id", "open_key"])
        # Rows counted from RETURNING: a multi-row INSERT's rowcount is -1 on psycopg.
        returned = ignored.returning(WebhookDelivery.__table__.c.id)
        added += len(db.session.execute(returned).all())
    db.session.commit()
    return added


def _claimable(now: datetime):
    return or_(
        and_(WebhookDelivery.status == Status.PENDING, WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.status == Status.SENDING, WebhookDelivery.claimed_until < now),
    )


def _due(now: datetime) -> list[int]:
    ids = db.session.scalars(
        select(WebhookDelivery.id).where(_claimable(now))
        .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)
    ).all()  # fmt: skip
    db.session.rollback()
    return list(ids)


def _send_claimed(delivery_id: int, now: datetime, worker: str) -> bool | None:
    """Claim the delivery, send it, record how it went; None when another worker claimed
    it first, else whether it was delivered."""
    claim = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, _claimable(now))
        .values(status=Status.SENDING, claimed_by=worker, claimed_until=now + CLAIM)
    )
    db.session.commit()
    if claim.rowcount != 1:
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id)
    target, event, attempts = Target.of(delivery.endpoint), delivery.event, delivery.attempts
    db.session.rollback()  # no transaction open while the receiver answers
    outcome = _outcome(_attempt(target, event, now), attempts, now)
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_by == worker)
        .values(**outcome)
    )
    db.session.commit()
    return outcome["status"] == Status.DELIVERED


@dataclass(frozen=True)
class Target:
    """What sending to an endpoint needs, read before the transaction ends."""

    label: str
    format: str
    url_enc: object
    secret_enc: object

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> "Target":
        return cls(endpoint.label, endpoint.format, endpoint.url_enc, endpoint.secret_enc)


@dataclass
class Attempt:
    status_code: int | None
    error: str | None  # a sentence; None when delivered


def _attempt(endpoint: Target, event: dict, now: datetime) -> Attempt:
    """POST ``event`` to ``endpoint``: 2xx is delivered; any other answer, or none, a
    sentence naming the endpoint by its origin only."""
    label = endpoint.label
    try:
        url, secret = endpoint.url_enc.reveal(), endpoint.secret_enc.reveal()
    except UnreadableSecret:
        return Attempt(None, "The endpoint's URL or secret can no longer be decrypted: "
                             "remove the endpoint and add it again.")  # fmt: skip
    body = body_of(endpoint.format, event)
    timestamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(secret, timestamp, body),
               EVENT_HEADER: str(event.get("kind", ""))}  # fmt: skip
    timeout = current_app.config["WEBHOOK_TIMEOUT"]
    try:
        with outbound.http(timeout=timeout, deadline=timeout).open(
            "POST", url, headers=headers, data=body
        ) as answer:
            status = answer.status
    except HttpError as exc:
        return Attempt(None, scrub.one_line(str(exc).replace(url, label), MAX_ERROR))
    if 200 <= status < 300:
        return Attempt(status, None)
    return Attempt(status, f"{label} answered {status}; a receiver must answer 2xx.")


def _outcome(attempt: Attempt, attempts_before: int, now: datetime) -> dict:
    """The delivery's columns after ``attempt`` (its ``attempts_before + 1``-th)."""
    config = current_app.config
    attempts = attempts_before + 1
    values = {"attempts": attempts, "last_status_code": attempt.status_code,
              "last_error": attempt.error, "claimed_by": None, "claimed_until": None}  # fmt: skip
    if attempt.error is None:
        return {**values, "status": Status.DELIVERED, "delivered_at": now, "next_attempt_at": None}
    if attempts >= config["WEBHOOK_MAX_ATTEMPTS"]:
        return {**values, "status": Status.FAILED, "next_attempt_at": None}
    delays = config["WEBHOOK_RETRY_SECONDS"]
    delay = timedelta(seconds=delays[min(attempts, len(delays)) - 1])
    return {**values, "status": Status.PENDING, "next_attempt_at": now + delay}


def absolute_url(fix: attention.Fix) -> str:
    """The fix's page at ``PUBLIC_BASE_URL`` (built without a request: CLI, threads)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    urls = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                    url_scheme=base.scheme)  # fmt: skip
    url = urls.build(fix.endpoint, fix.values, force_external=True)
    return url + (f"#{fix.anchor}" if fix.anchor else "")


class Notifier:
    """A daemon thread that runs ``notify`` every ``NOTIFY_INTERVAL`` seconds in this
    process (``start``). A failing pass is logged by its error's class and tried again at
    the next interval."""

    THREAD_NAME = "webhooks"

    def __init__(self, app):
        self.app = app
        self.interval = app.config["NOTIFY_INTERVAL"]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)

    def _run(self):
        while not self.stopped.wait(self.interval):
            with self.app.app_context():
                try:
                    notify()
                except Exception as exc:  # noqa: BLE001 (a database or bug: try next time)
                    log.warning("webhook notifications failed (%s); trying again in %s s",
                                type(exc).__name__, self.interval)  # fmt: skip
                finally:
                    db.session.remove()

    def stop(self):
        self.stopped.set()


_EXTENSION = "mcpadmin_webhooks"


def start(app) -> Notifier | None:
    """Start this process's notifier for ``app`` unless ``NOTIFY_INTERVAL`` is 0 or it runs."""
    if app.config["NOTIFY_INTERVAL"] <= 0:
        return None
    found = app.extensions.get(_EXTENSION)
    if found is None or not found.thread.is_alive():
        found = app.extensions[_EXTENSION] = Notifier(app)
        found.thread.start()
    return found


def stop(app):
    found = app.extensions.pop(_EXTENSION, None)
    if found is not None:
        found.stop()
