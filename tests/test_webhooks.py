"""Webhooks against a real receiver on 127.0.0.1: signatures, the Slack shape, retries with
backoff (time driven by ``now``), a dead receiver's sentence in the log, one delivery however
many drivers run, and the page (add with the secret shown once, test, remove)."""

import hashlib
import hmac
import json
import re
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AuditEvent, WebhookDelivery, WebhookEndpoint, utcnow
from mcpadmin.services import agent_keys, webhooks
from tests.peers import free_port


class Receiver:
    """An HTTP server recording each POST (headers and raw body) and answering the statuses
    queued in ``answers`` (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})  # fmt: skip
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/secret-path"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def add_endpoint(app, url, fmt="generic") -> tuple[int, str]:
    with app.app_context():
        endpoint, secret = webhooks.create(url, fmt)
        db.session.commit()
        return endpoint.id, secret


def expiring_key(app, label="laptop"):
    """One Needs attention item: an agent key expiring in two days."""
    with app.app_context():
        agent = Agent(name=f"Agent {label}")
        db.session.add(agent)
        agent_keys.create(agent, label, utcnow() + timedelta(days=2))
        db.session.commit()


def notify(app, now=None):
    with app.app_context():
        try:
            return webhooks.notify(now)
        finally:
            db.session.remove()


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        db.session.expunge_all()
        return rows


def verify(secret: str, request: dict) -> bool:
    """What a receiver does (the README's recipe)."""
    timestamp = request["headers"]["X-Mcpadmin-Timestamp"]
    signed = timestamp.encode() + b"." + request["body"]
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-Mcpadmin-Signature"])


def test_a_new_item_is_posted_signed_once(app, receiver):
    _, secret = add_endpoint(app, receiver.url)
    expiring_key(app)
    now = utcnow()
    summary = notify(app, now)
    assert (summary.enqueued, summary.delivered, summary.failed) == (1, 1, 0)
    (request,) = receiver.requests
    assert request["path"] == "/hooks/secret-path"
    assert verify(secret, request)
    assert not verify(secret + "x", request)
    assert request["headers"]["X-Mcpadmin-Timestamp"] == str(int(now.timestamp()))
    assert request["headers"]["X-Mcpadmin-Event"] == "key_expiring"
    event = json.loads(request["body"])
    assert event["kind"] == "key_expiring" and event["severity"] == "warning"
    assert event["text"].startswith("Key “laptop” of Agent laptop expires in 1 day")
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/agents/\d+#keys", event["url"])
    # Nothing new: nothing sent, however often the driver runs.
    notify(app, now + timedelta(minutes=1))
    assert len(receiver.requests) == 1
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)


def test_a_tampered_body_or_an_old_timestamp_does_not_verify(app, receiver):
    _, secret = add_endpoint(app, receiver.url)
    expiring_key(app)
    notify(app)
    (request,) = receiver.requests
    tampered = {**request, "body": request["body"].replace(b"laptop", b"desk")}
    assert not verify(secret, tampered)
    headers = {**request["headers"], "X-Mcpadmin-Timestamp": "1"}
    assert not verify(secret, {**request, "headers": headers})


def test_slack_endpoints_get_a_text_message_with_the_link(app, receiver):
    _, secret = add_endpoint(app, receiver.url, "slack")
    with app.app_context():
        agent = Agent(name="<!channel> & co")
        db.session.add(agent)
        agent_keys.create(agent, "laptop", utcnow() + timedelta(days=2))
        db.session.commit()
    notify(app)
    (request,) = receiver.requests
    assert verify(secret, request)
    body = json.loads(request["body"])
    assert list(body) == ["text"]
    assert "of &lt;!channel&gt; &amp; co expires" in body["text"]  # no mention, no markup
    assert re.search(r" <http://127\.0\.0\.1:5000/agents/\d+#keys\|Open the agent's keys>$",
                     body["text"])  # fmt: skip


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(app, receiver):
    add_endpoint(app, receiver.url)
    expiring_key(app)
    receiver.answers = [500, 503]
    now = utcnow()
    assert notify(app, now).failed == 1
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert row.last_error.endswith("answered 500; a receiver must answer 2xx.")
    assert row.next_attempt_at == now + timedelta(seconds=30)
    notify(app, now + timedelta(seconds=29))  # not due yet
    assert len(receiver.requests) == 1
    notify(app, now + timedelta(seconds=30))
    (row,) = deliveries(app)
    assert (row.attempts, row.last_status_code) == (2, 503)
    assert row.next_attempt_at == now + timedelta(seconds=30 + 120)
    notify(app, now + timedelta(seconds=150))
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        "delivered", 3, 200, None
    )  # fmt: skip
    assert len(receiver.requests) == 3
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same event each time


def test_a_dead_receiver_ends_as_a_sentence_in_the_log(app, logged_in):
    url = f"http://127.0.0.1:{free_port()}/hooks/secret-path"
    add_endpoint(app, url)
    expiring_key(app)
    now = utcnow()
    with app.app_context():
        app.config["WEBHOOK_MAX_ATTEMPTS"] = 3
    for minutes in (0, 1, 4):  # 30 s, then 2 min, after each failure
        notify(app, now + timedelta(minutes=minutes))
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    label = webhooks.label_of(url)
    assert row.last_error == f"Could not connect to {label}: the server is down or unreachable."
    notify(app, now + timedelta(days=1))
    assert deliveries(app)[0].attempts == 3  # given up
    page = logged_in.get("/attention/webhooks").data.decode()
    assert "Gave up" in page and "the server is down or unreachable" in page
    assert "secret-path" not in page  # the URL's path may be a credential


def test_two_drivers_at_once_send_each_event_once(app, make_app, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "INSERT_ROWS", 2)  # the inserts in pieces, too
    add_endpoint(app, receiver.url)
    for label in ("one", "two", "three"):
        expiring_key(app, label)
    other = make_app({"ALLOW_PRIVATE_NETWORKS": True})
    now = utcnow()
    barrier = threading.Barrier(2)
    results = []

    def drive(which):
        barrier.wait()
        results.append(notify(which, now))

    threads = [threading.Thread(target=drive, args=(a,)) for a in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    assert sum(r.enqueued for r in results) == 3
    assert sum(r.delivered for r in results) == 3
    assert len(receiver.requests) == 3
    assert len({json.loads(r["body"])["key"] for r in receiver.requests}) == 3


def test_an_item_that_ends_and_comes_back_is_sent_again(app, receiver):
    add_endpoint(app, receiver.url)
    expiring_key(app)
    now = utcnow()
    notify(app, now)
    with app.app_context():  # the key is replaced: the item is over
        key = db.session.scalar(select(Agent)).keys[0]
        agent_keys.revoke(key)
        db.session.commit()
    notify(app, now)
    assert deliveries(app)[0].open_key is None
    with app.app_context():
        key = db.session.scalar(select(Agent)).keys[0]
        key.revoked_at = None
        db.session.commit()
    notify(app, now)
    assert len(receiver.requests) == 2


def test_private_addresses_are_refused_unless_allowed(app, make_app):
    strict = make_app({"ALLOW_PRIVATE_NETWORKS": False})
    with strict.app_context(), pytest.raises(webhooks.WebhookError, match="private networks"):
        webhooks.create("http://10.0.0.8/hook", "generic")
    with strict.app_context(), pytest.raises(webhooks.WebhookError, match="http"):
        webhooks.create("ftp://hooks.example/x", "generic")


def test_the_page_adds_an_endpoint_shows_its_secret_once_and_tests_it(app, logged_in, receiver):
    page = logged_in.post("/attention/webhooks", data={"url": receiver.url, "format": "generic"})
    assert page.status_code == 200
    secret = re.search(rb'id="new-secret-value">(whsec_[^<]+)<', page.data).group(1).decode()
    assert b"secret-path" not in page.data
    again = logged_in.get("/attention/webhooks").data
    assert secret.encode() not in again and b"Set</span>" in again
    with app.app_context():
        endpoint_id = db.session.scalar(select(WebhookEndpoint.id))
    sent = logged_in.post(f"/attention/webhooks/{endpoint_id}/test", follow_redirects=True)
    assert b"Test event delivered to http://127.0.0.1:" in sent.data
    (request,) = receiver.requests
    assert verify(secret, request) and json.loads(request["body"])["kind"] == "test"
    assert b"A test event from mcpadmin" in sent.data and b"Delivered" in sent.data
    with app.app_context():
        events = db.session.execute(
            select(AuditEvent.action, AuditEvent.details).order_by(AuditEvent.id)
        ).all()
    assert [action for action, _ in events[-2:]] == ["webhook.created", "webhook.tested"]
    assert secret not in json.dumps([details for _, details in events])


def test_a_test_to_a_receiver_that_refuses_is_a_sentence_not_an_error(app, logged_in, receiver):
    endpoint_id, _ = add_endpoint(app, receiver.url)
    receiver.answers = [403]
    sent = logged_in.post(f"/attention/webhooks/{endpoint_id}/test", follow_redirects=True)
    assert sent.status_code == 200
    assert b"Test event not delivered: http://127.0.0.1:" in sent.data
    assert b"answered 403; a receiver must answer 2xx." in sent.data


def test_a_url_the_policy_refuses_is_an_inline_error(app, logged_in, make_app):
    page = logged_in.post("/attention/webhooks", data={"url": "not a url", "format": "slack"})
    assert page.status_code == 422
    assert b'class="error" id="url-error"' in page.data
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_removing_asks_first_then_stops_the_deliveries(app, logged_in, receiver):
    endpoint_id, _ = add_endpoint(app, receiver.url)
    expiring_key(app)
    notify(app)
    confirm = logged_in.get(f"/attention/webhooks/{endpoint_id}/delete")
    assert b"Remove the webhook http://127.0.0.1:" in confirm.data
    assert b"1 delivery leaves the log" in confirm.data
    done = logged_in.post(f"/attention/webhooks/{endpoint_id}/delete", follow_redirects=True)
    assert b"removed; nothing more is sent to it" in done.data
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        assert db.session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) == (
            "webhook.deleted"
        )  # fmt: skip


def test_flask_notify_sends_and_reports(app, runner, receiver):
    add_endpoint(app, receiver.url)
    expiring_key(app)
    result = runner.invoke(args=["notify"])
    assert result.exit_code == 0, result.output
    assert result.output == "1 new, 1 delivered, 0 failed (to be retried or given up).\n"
    assert len(receiver.requests) == 1


def test_the_notifier_thread_sends_on_its_own_and_is_off_at_zero(app, make_app, receiver):
    add_endpoint(app, receiver.url)
    expiring_key(app)
    assert webhooks.start(app) is None  # NOTIFY_INTERVAL = 0 in tests
    ticking = make_app({"ALLOW_PRIVATE_NETWORKS": True, "NOTIFY_INTERVAL": 1})
    notifier = webhooks.start(ticking)
    try:
        assert notifier.thread.name == "webhooks" and notifier.thread.daemon
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        webhooks.stop(ticking)
    notifier.thread.join(10)
    assert not notifier.thread.is_alive()
    assert len(receiver.requests) == 1


def test_an_address_refused_at_send_time_is_a_sentence(app, make_app, receiver):
    """Checked again when sent: the policy may have changed, or the name now resolves to a
    private address."""
    endpoint_id, _ = add_endpoint(app, receiver.url)
    expiring_key(app)
    strict = make_app({"ALLOW_PRIVATE_NETWORKS": False})
    notify(strict)
    (row,) = deliveries(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "127.0.0.1 is a loopback address" in row.last_error
    assert "secret-path" not in row.last_error
    assert receiver.requests == []
