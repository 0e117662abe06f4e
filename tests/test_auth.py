"""Sign-in, first-run setup, the login guard, throttling and the CLI account command."""

import os
import re

from mcpadmin.extensions import db
from mcpadmin.models import AdminUser
from tests.conftest import PASSWORD


def setup_token(app):
    with open(os.path.join(app.instance_path, "setup_token")) as f:
        return f.read().strip()


def test_pages_require_login(client):
    response = client.get("/connectors/")
    assert response.status_code == 302
    assert "/login?next=" in response.headers["Location"]


def test_htmx_request_without_login_gets_hx_redirect(client):
    response = client.hx_post("/agents/1/connectors/1/tools")
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_first_start_logs_one_time_setup_link(app, caplog):
    from mcpadmin.auth import announce_setup_link

    with app.app_context():
        announce_setup_link(app)
    assert f"/setup/{setup_token(app)}" in caplog.text
    assert oct(os.stat(os.path.join(app.instance_path, "setup_token")).st_mode & 0o777) == "0o600"


def test_setup_link_creates_first_admin_and_signs_in(app, client):
    url = f"/setup/{setup_token(app)}"
    client.get(url)
    response = client.post(url, data={"username": "ops", "password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 302
    assert client.get("/connectors/").status_code == 200
    with app.app_context():
        assert db.session.query(AdminUser).one().username == "ops"


def test_setup_link_works_only_once(app, client):
    url = f"/setup/{setup_token(app)}"
    client.get(url)
    client.post(url, data={"username": "ops", "password": PASSWORD, "confirm": PASSWORD})
    assert client.get(url).status_code == 404


def test_setup_refuses_wrong_token(client):
    assert client.get("/setup/not-the-token").status_code == 404


def test_setup_rejects_short_password(app, client):
    url = f"/setup/{setup_token(app)}"
    client.get(url)
    response = client.post(url, data={"username": "ops", "password": "short", "confirm": "short"})
    assert response.status_code == 200
    assert b"at least 10 characters" in response.data


def test_login_and_logout(client, admin):
    client.get("/login")
    response = client.post("/login", data={"username": admin, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/agents/").status_code == 200
    client.post("/logout")
    assert client.get("/agents/").status_code == 302


def test_wrong_password_is_refused(client, admin):
    client.get("/login")
    response = client.post("/login", data={"username": admin, "password": "wrong password!"})
    assert response.status_code == 401
    assert b"Wrong username or password" in response.data


def test_repeated_failed_logins_are_throttled(client, admin):
    client.get("/login")
    for _ in range(5):
        client.post("/login", data={"username": admin, "password": "wrong password!"})
    response = client.post("/login", data={"username": admin, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.data


def test_login_redirects_only_to_local_next(client, admin):
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:x"):
        client.get("/login")
        response = client.post(
            "/login", query_string={"next": target}, data={"username": admin, "password": PASSWORD}
        )
        assert response.headers["Location"] == "/"
        client.get("/connectors/")
        client.post("/logout")


def test_session_cookie_is_httponly_and_samesite_lax(client, admin):
    client.get("/login")
    response = client.post("/login", data={"username": admin, "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_session_cookie_is_secure_behind_https(make_app):
    app = make_app({"PUBLIC_BASE_URL": "https://admin.example"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_post_without_csrf_token_is_refused(logged_in):
    response = logged_in.post("/agents/new", data={"name": "x"}, csrf=False)
    assert response.status_code == 403
    assert b"security token" in response.data


def test_create_admin_cli_reads_password_from_stdin(app, runner):
    result = runner.invoke(args=["create-admin", "cli-admin", "--password-stdin"], input=PASSWORD)
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.query(AdminUser).filter_by(username="cli-admin").count() == 1


def test_create_admin_cli_refuses_short_password(runner):
    result = runner.invoke(args=["create-admin", "x", "--password-stdin"], input="short")
    assert result.exit_code == 1
    assert "at least 10 characters" in result.output


def test_password_is_stored_hashed(app, admin):
    with app.app_context():
        stored = db.session.query(AdminUser).one().password_hash
    assert PASSWORD not in stored and re.match(r"^(scrypt|pbkdf2)", stored)
