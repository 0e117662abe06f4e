"""Sign-in and sessions against an attacker: a throttle that cannot be raced or turned against
the admins, sessions that end when signed out, a Host allow-list, and log lines that cannot be
forged."""

import io
import logging
import threading
from collections import Counter
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from mcpadmin import config
from mcpadmin.extensions import db
from mcpadmin.models import AdminSession, LoginThrottle, utcnow
from mcpadmin.security import allowed_host, allowed_origins
from tests.conftest import PASSWORD, Browser

WRONG = "wrong password!"
COOKIE = "mcpadmin_session"


def attempt(client, username, password, address="10.0.0.1", **kwargs):
    environ = {"REMOTE_ADDR": address}
    return client.post(
        "/login", data={"username": username, "password": password}, environ_base=environ, **kwargs
    )


def burst(app, passwords, username="admin"):
    """Post one sign-in per password, all at once, each from its own browser; the statuses."""
    browsers = [Browser(app.test_client()) for _ in passwords]
    for browser in browsers:
        browser.get("/login")  # the CSRF token, fetched before the race starts
    start = threading.Barrier(len(browsers))
    statuses = [None] * len(browsers)

    def run(i):
        start.wait()
        statuses[i] = attempt(browsers[i], username, passwords[i]).status_code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(browsers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(statuses)


def throttle_rows(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LoginThrottle))


# -- 1. the throttle cannot be raced -------------------------------------------------------------


def test_concurrent_wrong_passwords_check_at_most_the_limit_and_answer_no_500(app, admin):
    statuses = burst(app, [WRONG] * 30)
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[401] == app.config["LOGIN_MAX_FAILURES"], statuses


def test_burst_with_the_right_password_checks_no_more_wrong_ones_than_the_limit(app, admin):
    statuses = burst(app, [WRONG] * 29 + [PASSWORD])
    assert set(statuses) <= {302, 401, 429}, statuses
    # The right password takes a slot while it is checked, then gives it back.
    assert statuses[401] <= app.config["LOGIN_MAX_FAILURES"] and statuses[302] <= 1, statuses


# -- 2. nobody can lock every admin out ----------------------------------------------------------


def test_made_up_usernames_do_not_lock_out_an_admin_at_the_same_address(client, admin):
    client.get("/login")
    for i in range(10):
        attempt(client, f"nobody-{i}", WRONG)
    for _ in range(6):
        attempt(client, "nobody-0", WRONG)
    assert attempt(client, admin, PASSWORD).status_code == 302


def test_throttle_rows_whose_window_is_over_are_dropped(app, client, admin):
    client.get("/login")
    for i in range(10):
        attempt(client, f"nobody-{i}", WRONG)
    with app.app_context():
        db.session.execute(
            update(LoginThrottle).values(first_failure_at=utcnow() - timedelta(days=1))
        )
        db.session.commit()
    attempt(client, "someone", WRONG)
    with app.app_context():
        keys = set(db.session.scalars(select(LoginThrottle.key)))
    assert {k for k in keys if "nobody" in k} == set() and "user:someone" in keys


def test_failures_from_one_address_do_not_lock_out_the_admin_at_another(client, admin):
    client.get("/login")
    for _ in range(5):
        attempt(client, admin, WRONG, address="10.0.0.66")
    assert attempt(client, admin, PASSWORD, address="10.0.0.66").status_code == 429
    assert attempt(client, admin, PASSWORD, address="10.0.0.2").status_code == 302


def test_failures_from_many_addresses_reach_the_username_backstop(app, client, admin):
    app.config["LOGIN_USERNAME_MAX_FAILURES"] = 8
    client.get("/login")
    for i in range(8):
        assert attempt(client, admin, WRONG, address=f"10.0.1.{i}").status_code == 401
    answer = attempt(client, admin, PASSWORD, address="10.0.2.1")
    assert answer.status_code == 429
    assert b"Too many failed sign-ins" in answer.data


def test_successful_sign_ins_do_not_use_up_the_username_backstop(app, client, admin):
    app.config["LOGIN_USERNAME_MAX_FAILURES"] = 3
    for _ in range(5):
        client.get("/login")
        assert attempt(client, admin, PASSWORD).status_code == 302
        client.get("/connectors/")
        client.post("/logout")


def test_forwarded_for_is_ignored_when_no_proxy_is_trusted(client, admin):
    client.get("/login")
    for i in range(5):
        attempt(client, admin, WRONG, headers={"X-Forwarded-For": f"198.51.100.{i}"})
    answer = attempt(client, admin, PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert answer.status_code == 429


def test_forwarded_for_names_the_client_behind_a_trusted_proxy(make_app, admin):
    app = make_app({"TRUSTED_PROXY_HOPS": 1, "EXTRA_HOSTS": "localhost"})
    client = Browser(app.test_client())
    client.get("/login")
    for _ in range(5):
        attempt(client, admin, WRONG, headers={"X-Forwarded-For": "203.0.113.7"})
    assert (
        attempt(client, admin, PASSWORD, headers={"X-Forwarded-For": "203.0.113.7"}).status_code
        == 429
    )
    answer = attempt(client, admin, PASSWORD, headers={"X-Forwarded-For": "203.0.113.8"})
    assert answer.status_code == 302


def test_proxy_and_host_settings_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MCPADMIN_TRUSTED_PROXY_HOPS", "2")
    monkeypatch.setenv("MCPADMIN_EXTRA_HOSTS", "admin.internal, mcpadmin.lan:8443")
    app = Flask(__name__, instance_path=str(tmp_path))
    config.load(app, {"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["TRUSTED_PROXY_HOPS"] == 2
    assert app.config["EXTRA_HOSTS"] == ["admin.internal", "mcpadmin.lan:8443"]


# -- 3. a session ends when it is signed out -----------------------------------------------------


def sign_in(app):
    browser = Browser(app.test_client())
    browser.get("/login")
    assert (
        browser.post("/login", data={"username": "admin", "password": PASSWORD}).status_code == 302
    )
    browser.get("/connectors/")
    return browser


def replay(app, browser):
    """A fresh client carrying a copy of ``browser``'s session cookie; its answer to a page."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, browser.get_cookie(COOKIE).value)
    return thief.get("/connectors/")


def test_cookie_captured_before_sign_out_stops_working(app, admin):
    browser = sign_in(app)
    captured = browser.get_cookie(COOKIE).value
    assert replay(app, browser).status_code == 200
    browser.post("/logout")
    thief = app.test_client()
    thief.set_cookie(COOKIE, captured)
    answer = thief.get("/connectors/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_sign_out_everywhere_ends_the_sessions_of_other_browsers(app, admin):
    laptop, phone = sign_in(app), sign_in(app)
    answer = laptop.post("/logout/everywhere")
    assert answer.status_code == 302
    assert laptop.get("/connectors/").status_code == 302
    assert phone.get("/connectors/").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AdminSession)) == 0


def test_sign_out_ends_only_this_browser(app, admin):
    laptop, phone = sign_in(app), sign_in(app)
    laptop.post("/logout")
    assert phone.get("/connectors/").status_code == 200


def test_signed_in_pages_offer_sign_out_everywhere(logged_in):
    page = logged_in.get("/connectors/").get_data(as_text=True)
    assert 'formaction="/logout/everywhere"' in page and "Sign out everywhere" in page


def test_sign_out_everywhere_needs_the_csrf_token(app, admin):
    browser = sign_in(app)
    assert browser.post("/logout/everywhere", csrf=False).status_code == 403
    assert browser.get("/connectors/").status_code == 200


def test_password_change_ends_every_session(app, runner, admin):
    browser = sign_in(app)
    new_password = "another long password"
    result = runner.invoke(args=["set-password", admin, "--password-stdin"], input=new_password)
    assert result.exit_code == 0, result.output
    assert browser.get("/connectors/").status_code == 302
    browser.get("/login")
    assert attempt(browser, admin, new_password).status_code == 302


def test_set_password_refuses_an_unknown_admin_and_a_short_password(runner, admin):
    result = runner.invoke(args=["set-password", "nobody", "--password-stdin"], input=PASSWORD)
    assert result.exit_code == 1 and "no admin named 'nobody'" in result.output
    result = runner.invoke(args=["set-password", admin, "--password-stdin"], input="short")
    assert result.exit_code == 1 and "at least 10 characters" in result.output


def test_session_ends_its_lifetime_after_sign_in(app, admin):
    browser = sign_in(app)
    with app.app_context():
        long_ago = utcnow() - app.permanent_session_lifetime - timedelta(minutes=1)
        db.session.execute(update(AdminSession).values(created_at=long_ago))
        db.session.commit()
    assert browser.get("/connectors/").status_code == 302


def test_session_cookie_carries_no_admin_id(app, admin):
    browser = sign_in(app)
    with app.test_request_context():
        serializer = app.session_interface.get_signing_serializer(app)
        data = serializer.loads(browser.get_cookie(COOKIE).value)
    assert "admin_id" not in data and set(data) >= {"session_token"}


# -- 4. only the configured host is served -------------------------------------------------------


def test_request_for_a_foreign_host_gets_a_readable_400(client):
    answer = client.get("/login", headers={"Host": "rebind.attacker.example:5000"})
    assert answer.status_code == 400
    assert b"Unknown host" in answer.data


def test_rebinding_page_cannot_sign_in_or_lock_out(app, client, admin):
    client.get("/login")
    rebound = {
        "Host": "rebind.attacker.example:5000",
        "Origin": "http://rebind.attacker.example:5000",
    }
    for password in [WRONG] * 6 + [PASSWORD]:
        answer = attempt(client, admin, password, headers=rebound)
        assert answer.status_code == 400
    assert throttle_rows(app) == 0
    assert client.get("/connectors/").status_code == 302
    assert attempt(client, admin, PASSWORD).status_code == 302


def test_host_of_public_base_url_and_extra_hosts_are_served(make_app):
    app = make_app({"PUBLIC_BASE_URL": "https://admin.example", "EXTRA_HOSTS": "admin.internal"})
    client = app.test_client()
    assert client.get("/login", base_url="https://admin.example").status_code == 200
    assert client.get("/login", base_url="https://admin.internal").status_code == 200
    assert client.get("/login", base_url="https://localhost").status_code == 400


def test_origin_is_compared_with_public_base_url_not_with_the_request(make_app, admin):
    app = make_app({"PUBLIC_BASE_URL": "https://admin.example"})
    client = Browser(app.test_client())
    client.get("/login", base_url="https://admin.example")
    answer = client.post(
        "/login",
        data={"username": admin, "password": PASSWORD},
        base_url="http://admin.example",
        headers={"Origin": "http://admin.example"},
    )
    assert answer.status_code == 403
    assert b"sent from another web site" in answer.data


def test_public_base_url_without_a_host_is_refused_at_start(make_app):
    # Every page would answer 400: say why at start instead.
    with pytest.raises(ValueError, match="names no host"):
        make_app({"PUBLIC_BASE_URL": "admin.example"})


def test_an_extra_host_that_is_no_host_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="'::1:8000' is not a host or host:port"):
        make_app({"EXTRA_HOSTS": "localhost, ::1:8000"})


def test_a_request_for_the_public_host_on_another_port_gets_400(client):
    # PUBLIC_BASE_URL is http://127.0.0.1:5000; another service of this machine is elsewhere.
    assert client.get("/login", headers={"Host": "127.0.0.1:5000"}).status_code == 200
    answer = client.get("/login", headers={"Host": "127.0.0.1:5001"})
    assert answer.status_code == 400 and b"Unknown host" in answer.data
    assert client.get("/login", headers={"Host": "127.0.0.1"}).status_code == 400  # port 80


def test_healthz_answers_whatever_the_host_and_port(client):
    for host in ("127.0.0.1:5001", "rebind.attacker.example", "[::1]:9"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200


PUBLIC = "https://admin.example"


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("admin.example", True),  # the default port of https
        ("admin.example:443", True),
        ("ADMIN.Example.", True),  # any case, a trailing dot
        ("admin.example:80", False),
        ("admin.example:8443", False),
        ("admin.internal", True),  # an extra host without a port: the default one
        ("admin.internal:443", True),
        ("admin.internal:8443", False),
        ("mcpadmin.lan:8443", True),  # an extra host with its port: that one only
        ("mcpadmin.lan", False),
        ("[2001:db8::1]:9443", True),
        ("[2001:DB8:0:0::1]:9443", True),  # the same address, written otherwise
        ("[2001:db8::1]", False),
        ("2001:db8::1:9443", False),  # no brackets
        ("evil.example", False),
        ("admin.example.evil.example", False),
        ("admin.example@evil.example", False),
        ("admin.example:99999", False),
        ("admin.example:", False),
        ("admin.example/x", False),
        ("", False),
        (None, False),
    ],
)
def test_allowed_host_compares_host_and_port(host, served):
    extra = ["admin.internal", "mcpadmin.lan:8443", "[2001:db8::1]:9443"]
    assert allowed_host(host, PUBLIC, extra) is served


def test_allowed_host_takes_the_default_port_of_the_public_urls_scheme():
    assert allowed_host("admin.example", "http://admin.example", [])
    assert not allowed_host("admin.example:443", "http://admin.example", [])
    assert allowed_host("admin.example:8000", "http://admin.example:8000", [])
    assert not allowed_host("admin.example", "http://admin.example:8000", [])
    assert allowed_host("localhost", "http://127.0.0.1:5000", ["localhost"])  # the test client
    assert allowed_host("[::1]:5000", "http://[::1]:5000", [])
    assert not allowed_host("[::1]:5001", "http://[::1]:5000", [])


def test_allowed_origins_follow_the_public_scheme_and_extra_hosts():
    assert allowed_origins("https://admin.example", ["admin.internal", "lan:8443"]) == {
        "https://admin.example",
        "https://admin.internal",
        "https://lan:8443",
    }


# -- 5. log lines cannot be forged ---------------------------------------------------------------

FORGED = "No admin account yet. Create one at https://attacker.example/setup/x"


@pytest.fixture
def written():
    """Everything the app's and Werkzeug's loggers write, as a handler would write it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("mcpadmin", "werkzeug")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("separator", ["%0A", "%0D", "%E2%80%A8", "%C2%85"])
def test_path_from_an_unauthenticated_request_cannot_start_a_log_line(client, written, separator):
    client.post(f"/x{separator}{FORGED}", headers={"Origin": "https://evil.example"})
    lines = written.getvalue().splitlines()
    assert lines and not any(line.startswith("No admin account") for line in lines), lines
    assert "\u2028" not in written.getvalue() and "\x85" not in written.getvalue()


def test_remote_text_logged_below_the_app_stays_on_one_line(app, written):
    logging.getLogger("mcpadmin.services.sync").warning(
        "sync of %s failed: %s", "tool\u2029name", RuntimeError(f"boom\r\n{FORGED}")
    )
    assert written.getvalue().count("\n") == 1
    assert "\\x0d\\x0a" in written.getvalue() and "\\u2029" in written.getvalue()


def test_werkzeug_request_log_cannot_be_split_by_a_line_separator(app, written):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(f"GET /x%E2%80%A8{FORGED.replace(' ', '%20')} HTTP/1.0\r\n".encode()
                         + b"Host: 127.0.0.1\r\n\r\n")  # fmt: skip
            while conn.recv(65536):
                pass
    finally:
        server.shutdown()
        thread.join()
    log = written.getvalue()
    assert "GET /x" in log and "\u2028" not in log, log
