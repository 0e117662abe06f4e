"""The web app against a hostile browser context: open redirects through ``next``, forged and
cross-site posts, and the security headers every page must carry."""

from urllib.parse import quote

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import Agent, Connector, Tool
from mcpadmin.roles import Access, allow
from mcpadmin.security import content_security_policy, origin_of
from tests.conftest import PASSWORD, Browser

CSP_PARTS = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
)


def agent_names(app):
    with app.app_context():
        return db.session.scalars(select(Agent.name)).all()


# -- next / return URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "/\\evil.com",
        "https:evil.com",
        "javascript:alert(1)",
        "http://evil.com",
        "%2F%2Fevil.com",  # sent raw: the app sees "//evil.com"
        "%252F%252Fevil.com",  # double-encoded: the app sees "%2F%2Fevil.com"
        "\\\\evil.com",
        "/\t/evil.com",
        "/%09/evil.com",  # the app sees "/\t/evil.com"
        "https://evil.com@127.0.0.1/",
    ],
)
def test_login_next_to_another_site_lands_on_a_local_page(client, admin, target):
    client.get("/login")
    answer = client.post(
        "/login?next=" + quote(target, safe="%/:@"), data={"username": admin, "password": PASSWORD}
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/"


def test_login_next_to_a_local_page_is_honoured(client, admin):
    client.get("/login")
    answer = client.post("/login?next=/agents/", data={"username": admin, "password": PASSWORD})
    assert answer.headers["Location"] == "/agents/"


# -- CSRF and cross-site posts -------------------------------------------------------------------


def test_htmx_post_without_the_csrf_header_is_refused_with_a_readable_403(app, logged_in):
    answer = logged_in.client.post("/agents/new", data={"name": "x"}, headers={"HX-Request": "1"})
    assert answer.status_code == 403
    assert b"security token" in answer.data
    assert agent_names(app) == []


def test_login_post_without_a_csrf_token_is_refused(client, admin):
    answer = client.post("/login", data={"username": admin, "password": PASSWORD}, csrf=False)
    assert answer.status_code == 403
    assert client.get("/connectors/").status_code == 302  # still signed out


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:5001"])
def test_post_from_another_origin_is_refused_even_with_a_valid_token(app, logged_in, origin):
    answer = logged_in.post("/agents/new", data={"name": "x"}, headers={"Origin": origin})
    assert answer.status_code == 403
    assert b"sent from another web site" in answer.data
    assert agent_names(app) == []


def test_htmx_post_from_another_origin_is_refused(app, logged_in):
    headers = {"HX-Request": "true", "X-CSRFToken": logged_in.token,
               "Origin": "https://evil.example"}  # fmt: skip
    answer = logged_in.client.post("/agents/new", data={"name": "x"}, headers=headers)
    assert answer.status_code == 403
    assert agent_names(app) == []


def test_post_a_browser_marks_cross_site_is_refused(app, logged_in):
    answer = logged_in.post("/agents/new", data={"name": "x"},
                            headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert answer.status_code == 403
    assert agent_names(app) == []


@pytest.mark.parametrize("origin", ["http://localhost", "http://127.0.0.1:5000"])
def test_post_from_this_site_is_accepted(app, logged_in, origin):
    # The test client's host, or the configured PUBLIC_BASE_URL.
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"}
    answer = logged_in.post("/agents/new", data={"name": "x"}, headers=headers)
    assert answer.status_code == 302
    assert agent_names(app) == ["x"]


def test_cross_site_login_post_is_refused(client, admin):
    client.get("/login")
    answer = client.post("/login", data={"username": admin, "password": PASSWORD},
                         headers={"Origin": "https://evil.example"})  # fmt: skip
    assert answer.status_code == 403
    assert client.get("/connectors/").status_code == 302  # not signed in


def test_origin_comparison_ignores_case_and_default_ports():
    assert origin_of("HTTPS://Admin.Example:443/x") == "https://admin.example"
    assert origin_of("http://[::1]:8080") == "http://[::1]:8080"
    assert origin_of("null") is None


# -- security headers ----------------------------------------------------------------------------


def assert_security_headers(answer, cacheable=False):
    csp = answer.headers["Content-Security-Policy"]
    for part in CSP_PARTS:
        assert part in csp, (part, csp)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    assert answer.headers["X-Frame-Options"] == "DENY"
    if not cacheable:
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "url", ["/connectors/", "/connectors/new", "/agents/", "/agents/new", "/no-such-page",
            "/connectors/999", "/healthz"],
)  # fmt: skip
def test_signed_in_pages_and_error_pages_send_the_security_headers(logged_in, url):
    answer = logged_in.get(url)
    assert answer.status_code in (200, 404)
    assert_security_headers(answer)


def test_login_page_and_login_redirect_send_the_security_headers(client):
    assert_security_headers(client.get("/login"))
    assert_security_headers(client.get("/connectors/"))


def test_csrf_refusal_page_sends_the_security_headers(logged_in):
    assert_security_headers(logged_in.post("/agents/new", data={"name": "x"}, csrf=False))


def test_405_page_sends_the_security_headers(logged_in):
    answer = logged_in.client.put("/connectors/")
    assert answer.status_code == 405
    assert_security_headers(answer)


def test_500_page_is_readable_and_sends_the_security_headers(app, admin):
    def boom():
        raise RuntimeError("secret detail")

    app.add_url_rule("/boom", "boom", allow(Access.SIGNED_IN)(boom))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    browser = Browser(app.test_client())
    browser.get("/login")
    browser.post("/login", data={"username": admin, "password": PASSWORD})
    answer = browser.get("/boom")
    assert answer.status_code == 500
    assert b"Something went wrong" in answer.data and b"secret detail" not in answer.data
    assert_security_headers(answer)


def test_static_files_send_csp_and_nosniff_but_stay_cacheable(client):
    answer = client.get("/static/app.css")
    assert answer.status_code == 200
    assert_security_headers(answer, cacheable=True)
    assert answer.headers.get("Cache-Control") != "no-store"
    answer.close()


def test_form_action_allows_https_authorization_servers_but_not_plain_http():
    # Connect is a form post answered by a 302 to the authorization server, and browsers
    # apply form-action to that redirect.
    assert "form-action 'self' https:;" in content_security_policy() + ";"
    assert "http:" not in content_security_policy().replace("https:", "")
    assert "http://127.0.0.1:*" in content_security_policy(allow_http_loopback=True)


def test_pages_carry_no_inline_script_or_style(app, logged_in):
    # style-src/script-src 'self' would block them (the login page and a connector with a
    # tool and an agent card cover every template family).
    with app.app_context():
        connector = Connector(name="Docs", url="https://mcp.example.com/mcp", auth_type="oauth",
                              credential_mode="per_agent")  # fmt: skip
        connector.tools.append(Tool(name="t", description="d", input_schema={"type": "object"}))
        agent = Agent(name="Ada")
        db.session.add_all([connector, agent])
        db.session.commit()
        urls = [f"/connectors/{connector.id}", f"/connectors/{connector.id}/edit",
                f"/agents/{agent.id}", "/connectors/", "/connectors/new", "/agents/"]  # fmt: skip
    for url in urls:
        page = logged_in.get(url).get_data(as_text=True)
        assert "<style" not in page and " style=" not in page, url
        for tag in page.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), (url, tag[:80])
