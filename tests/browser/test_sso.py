"""Single sign-on in a real browser: the app under gunicorn (the session ``live_server``),
Chromium, and the npm oidc-provider package's own login and consent pages."""

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, SsoSettings
from mcpadmin.services import admins
from tests.browser.conftest import axe_violations, shoot
from tests.conftest import PASSWORD
from tests.peers.oidc_fixtures import CLIENT_ID, CLIENT_SECRET, SSO


@pytest.fixture
def provider(oidc_provider, live_server):
    """The session's provider, told the live server's redirect URI."""
    oidc_provider.allow_redirect_uri(live_server.url + "/sso/callback")
    return oidc_provider


@pytest.fixture
def sso_on(make_app, live_server, provider):
    """Single sign-on settings as ``SSO`` says, the client secret sealed with the live
    server's own keys (an app built on its instance folder)."""
    server_app = make_app(instance_path=live_server.instance)
    with server_app.app_context():
        admins.create_admin("owner", PASSWORD)  # who set it up
        db.session.add(SsoSettings(id=1, issuer=provider.issuer, **SSO,
                                   client_secret_enc=seal(CLIENT_SECRET)))  # fmt: skip
        db.session.commit()


def sign_in_at_provider(page, login, shot=None):
    """Press "Sign in with Test IdP" on the login page, then sign in and consent on the
    provider's own pages."""
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.get_by_placeholder("Enter any login").fill(login)
    page.get_by_placeholder("and password").fill("any password")
    if shot:
        shoot(page, shot)
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def stored(app, username) -> AdminUser | None:
    with app.app_context():
        return db.session.scalar(select(AdminUser).filter_by(username=username))


def test_an_owner_sets_up_sso_and_a_colleague_signs_in_for_the_first_time(
    page, app, live_server, provider
):
    with app.app_context():
        admins.create_admin("owner", PASSWORD)
        db.session.commit()
    base = live_server.url
    page.goto(base + "/login")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/connectors/$"))

    page.goto(base + "/settings")
    expect(page.get_by_text(base + "/sso/callback", exact=True)).to_be_visible()
    page.get_by_label("Let people sign in with the identity provider").check()
    page.get_by_label("Issuer URL").fill(provider.issuer)
    page.get_by_label("Client ID").fill(CLIENT_ID)
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_label("Button label").fill("Test IdP")
    page.get_by_label("Allowed email domains").fill("example.com")
    page.get_by_label("Role claim").fill("groups")
    page.get_by_label("Owner", exact=True).fill("mcp-owners")
    page.get_by_label("Operator", exact=True).fill("mcp-operators")
    page.get_by_label("First sign-in without a matching value").select_option("member")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Single sign-on settings saved.")).to_be_visible()
    expect(page.get_by_label("Client secret")).to_have_value("")
    shoot(page, "sso-settings")
    assert axe_violations(page) == []

    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("button", name="Sign in with Test IdP")).to_be_visible()
    shoot(page, "sso-login")
    assert axe_violations(page) == []
    sign_in_at_provider(page, "alice", shot="sso-provider-login")
    page.wait_for_url(re.compile(r"/connectors/$"))
    expect(page.get_by_text("Welcome alice.")).to_be_visible()
    shoot(page, "sso-signed-in")
    alice = stored(app, "alice")
    assert (alice.role, alice.email, alice.oidc_subject) == ("owner", "alice@example.com", "alice")


def test_the_role_comes_from_the_group_claim(page, app, live_server, sso_on):
    page.goto(live_server.url + "/login")
    sign_in_at_provider(page, "mia")
    page.wait_for_url(re.compile(r"/agents/$"))  # members start at their agents
    expect(page.get_by_text("Welcome mia.")).to_be_visible()
    assert stored(app, "mia").role == "member"
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.context.clear_cookies()  # signed out at the provider too: another person's turn
    page.goto(live_server.url + "/login")
    sign_in_at_provider(page, "oscar")
    page.wait_for_url(re.compile(r"/connectors/$"))
    assert stored(app, "oscar").role == "operator"


def test_a_domain_not_allowed_is_refused_with_a_sentence(page, app, live_server, sso_on):
    page.goto(live_server.url + "/login")
    sign_in_at_provider(page, "eve")
    page.wait_for_url(re.compile(r"/login$"))
    expect(page.get_by_text("eve@elsewhere.test may not sign in here: only email addresses at "
                            "example.com are allowed.")).to_be_visible()  # fmt: skip
    shoot(page, "sso-refused")
    assert stored(app, "eve") is None
