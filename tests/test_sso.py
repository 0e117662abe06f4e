"""Single sign-on against a real OpenID Connect provider (``oidc_provider.mjs``, the npm
oidc-provider package): the app through Flask's test client, the provider's own login and
consent pages through ``requests``, following the real redirects. The provider's test
controls alter one ID token at a time (tampered, expired, replayed, another issuer or
audience); each refusal is asserted by the sentence the login page shows."""

import hashlib
import html
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, Invite, OidcPending, Role, SsoSettings, utcnow
from mcpadmin.protocol import oidc
from mcpadmin.services import sso
from tests.conftest import PASSWORD
from tests.peers.oidc_fixtures import CLIENT_ID, CLIENT_SECRET, SSO
from tests.test_audit import events, one, trail_text


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def start(client, next_url="/", **fields):
    """Press "Sign in with …"; the provider's authorization URL."""
    answer = client.post("/sso/start", data={"next": next_url, **fields})
    assert answer.status_code == 302, page_text(answer)[:2000]
    return answer.headers["Location"]


def come_back(client, callback_url):
    """The browser arriving at the app's callback; the page it ends on."""
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=True)


def sso_sign_in(client, provider, login, mode=None, **fields):
    """Sign in as ``login`` through the provider (``mode``: how to alter its ID token)."""
    url = start(client, **fields)
    if mode:
        provider.next_id_token(mode)
    return come_back(client, provider.sign_in(url, login))


def person(app, username) -> AdminUser | None:
    with app.app_context():
        return db.session.scalar(select(AdminUser).filter_by(username=username))


def refused(app, answer, sentence):
    """The login page shows ``sentence``, nobody is signed in, and the refusal is audited."""
    text = page_text(answer)
    assert sentence in text, text[:3000]
    assert answer.request.path == "/login"
    failure = events(app, "auth.sign_in_failed")[-1]
    assert failure["details"]["via"] == "sso" and sentence in failure["details"]["reason"]
    assert events(app, "auth.signed_in") == []


# -- signing in ------------------------------------------------------------------------------


def test_a_first_sign_in_creates_the_person_with_the_role_of_their_group(
    app, client, oidc_provider, use_sso
):
    use_sso()
    answer = sso_sign_in(client, oidc_provider, "alice", next_url="/agents/")
    assert answer.request.path == "/agents/"
    assert "Welcome alice." in page_text(answer)
    alice = person(app, "alice")
    assert (alice.role, alice.email, alice.display_name) == ("owner", "alice@example.com",
                                                             "Alice Example")  # fmt: skip
    assert (alice.oidc_issuer, alice.oidc_subject) == (oidc_provider.issuer, "alice")
    assert alice.password_hash == "" and alice.last_signed_in_at is not None
    joined = one(app, "person.joined")
    assert joined["details"] == {"role": "owner", "via": "sso", "invited": False}
    assert one(app, "auth.signed_in")["details"] == {"via": "sso"}
    with app.app_context():
        assert db.session.scalar(select(OidcPending)) is None  # used up


def test_a_later_sign_in_finds_the_person_and_follows_the_group_mapping(
    app, client, oidc_provider, use_sso
):
    use_sso()
    sso_sign_in(client, oidc_provider, "oscar")
    assert person(app, "oscar").role == Role.OPERATOR
    use_sso(role_map={"auditor": ["mcp-operators"]})
    answer = sso_sign_in(client, oidc_provider, "oscar")
    assert "Signed in as oscar." in page_text(answer)
    assert person(app, "oscar").role == Role.AUDITOR
    assert one(app, "person.role_changed")["details"]["role"] == ["operator", "auditor"]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(AdminUser)) == 1


def test_without_a_matching_group_a_first_sign_in_gets_the_default_role_and_keeps_it(
    app, client, oidc_provider, use_sso
):
    use_sso()
    sso_sign_in(client, oidc_provider, "mia")
    assert person(app, "mia").role == Role.MEMBER
    with app.app_context():
        db.session.execute(update(AdminUser).values(role=Role.AUDITOR))
        db.session.commit()
    sso_sign_in(client, oidc_provider, "mia")
    assert person(app, "mia").role == Role.AUDITOR


def test_without_a_matching_group_or_default_role_a_first_sign_in_is_refused(
    app, client, oidc_provider, use_sso
):
    use_sso(default_role=None)
    answer = sso_sign_in(client, oidc_provider, "mia")
    refused(app, answer, "You are not in a group that mcpadmin gives a role to")
    assert person(app, "mia") is None


def test_an_invite_gives_its_role_and_is_used_up(app, client, oidc_provider, use_sso):
    use_sso(default_role=None)
    with app.app_context():
        invite = Invite(token_sha256=_sha256("invite-token"), role=Role.OPERATOR,
                        expires_at=utcnow() + timedelta(days=1))  # fmt: skip
        db.session.add(invite)
        db.session.commit()
    sso_sign_in(client, oidc_provider, "mia", invite="invite-token")
    assert person(app, "mia").role == Role.OPERATOR
    with app.app_context():
        invite = db.session.scalar(select(Invite))
        assert invite.used_by == "mia" and invite.used_at is not None
    assert one(app, "person.joined")["details"]["invited"] is True
    again = client.post("/sso/start", data={"next": "/", "invite": "invite-token"},
                        follow_redirects=True)  # fmt: skip
    assert "This invite link was already used, was revoked or has expired." in page_text(again)


def test_the_userinfo_endpoint_fills_in_claims_the_id_token_lacks(
    app, client, oidc_provider, use_sso
):
    use_sso()
    sso_sign_in(client, oidc_provider, "oscar", mode="bare")
    oscar = person(app, "oscar")
    assert (oscar.role, oscar.email) == (Role.OPERATOR, "oscar@example.com")


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "sentence"),
    [
        ("tamper", "The provider's ID token was refused: its signature does not match"),
        ("expired", "The provider's ID token was refused: it has expired"),
        ("wrong-issuer", "it was issued by http://127.0.0.1:9/elsewhere, not by http://127.0.0.1:"),
        ("wrong-audience", "it was issued for another application (audience another-client)"),
        ("extra-audience", "it is meant for several applications and does not name this one"),
    ],
)
def test_an_altered_id_token_is_refused_with_a_sentence(
    app, client, oidc_provider, use_sso, mode, sentence
):
    use_sso()
    refused(app, sso_sign_in(client, oidc_provider, "alice", mode=mode), sentence)
    assert person(app, "alice") is None


def test_an_id_token_from_another_sign_in_is_refused_as_a_replay(
    app, client, oidc_provider, use_sso
):
    use_sso()
    sso_sign_in(client, oidc_provider, "alice")  # its ID token is the one replayed
    client.post("/logout", data={})
    fresh = type(client)(app.test_client())
    answer = sso_sign_in(fresh, oidc_provider, "alice", mode="replay")
    assert "it belongs to another sign-in (its nonce does not match: a replayed token)" in (
        page_text(answer)
    )
    assert answer.request.path == "/login"
    assert len(events(app, "auth.signed_in")) == 1


def test_a_callback_used_twice_is_refused(app, client, oidc_provider, use_sso):
    use_sso()
    callback = oidc_provider.sign_in(start(client), "alice")
    come_back(client, callback)
    other = type(client)(app.test_client())
    answer = come_back(other, callback)
    assert "This sign-in answer is unknown or was already used. Sign in again." in page_text(answer)
    assert len(events(app, "auth.signed_in")) == 1


def test_an_answer_naming_another_issuer_is_refused(app, client, oidc_provider, use_sso):
    use_sso()
    callback = oidc_provider.sign_in(start(client), "alice")
    forged = callback.replace("iss=http", "iss=https", 1)  # RFC 9207: iss must be the issuer
    assert forged != callback
    refused(app, come_back(client, forged), "The sign-in answer came from another provider")


def test_an_unknown_state_is_refused(app, client, use_sso):
    use_sso()
    answer = client.get("/sso/callback?code=abc&state=made-up", follow_redirects=True)
    refused(app, answer, "This sign-in answer is unknown or was already used. Sign in again.")


def test_a_sign_in_older_than_ten_minutes_is_refused_and_pruned(
    app, client, oidc_provider, use_sso
):
    use_sso()
    url = start(client)
    callback = oidc_provider.sign_in(url, "alice")
    with app.app_context():
        db.session.execute(update(OidcPending).values(created_at=utcnow() - timedelta(minutes=11)))
        db.session.commit()
    refused(app, come_back(client, callback), "The sign-in took longer than ten minutes.")
    with app.app_context():
        assert db.session.scalar(select(OidcPending)) is None


def test_cancelling_at_the_provider_is_shown_as_access_denied(app, client, oidc_provider, use_sso):
    use_sso()
    callback = oidc_provider.cancel(start(client))
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    refused(app, come_back(client, callback), "Test IdP did not sign you in (access denied")


def test_a_deactivated_person_is_refused(app, client, oidc_provider, use_sso):
    use_sso()
    with app.app_context():
        db.session.add(AdminUser(username="alice", password_hash="", role=Role.OWNER,
                                 oidc_issuer=oidc_provider.issuer, oidc_subject="alice",
                                 active=False, deactivated_at=utcnow()))  # fmt: skip
        db.session.commit()
    answer = sso_sign_in(client, oidc_provider, "alice")
    refused(app, answer, "The mcpadmin account alice is deactivated. Ask an owner to reactivate")


def test_an_email_in_another_domain_is_refused(app, client, oidc_provider, use_sso):
    use_sso()
    answer = sso_sign_in(client, oidc_provider, "eve")
    refused(app, answer, "eve@elsewhere.test may not sign in here: only email addresses at "
                         "example.com are allowed.")  # fmt: skip
    assert person(app, "eve") is None


def test_an_unverified_email_is_refused_when_domains_are_set(app, client, oidc_provider, use_sso):
    use_sso()
    answer = sso_sign_in(client, oidc_provider, "uma")
    refused(app, answer, "The provider says your email address uma@example.com is not verified")


def test_sso_start_needs_the_csrf_token(app, client, use_sso):
    use_sso()
    answer = client.post("/sso/start", data={"next": "/"}, csrf=False)
    assert answer.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(OidcPending)) is None


def test_sso_start_while_sso_is_off_says_so(client):
    answer = client.post("/sso/start", data={"next": "/"}, follow_redirects=True)
    assert "Single sign-on is turned off." in page_text(answer)


# -- local passwords -------------------------------------------------------------------------


def test_the_login_page_offers_the_provider_when_sso_is_on(client, use_sso):
    assert "Sign in with" not in page_text(client.get("/login"))
    use_sso()
    assert "Sign in with Test IdP" in page_text(client.get("/login"))


def test_owners_only_refuses_a_correct_password_of_anyone_else(app, client, people, use_sso):
    use_sso(local_passwords=False)
    answer = client.post("/login", data={"username": "operator", "password": PASSWORD})
    assert answer.status_code == 403
    assert ("Local passwords are for owners only; everyone else signs in with single sign-on. "
            "Use “Sign in with Test IdP”.") in page_text(answer)  # fmt: skip
    failure = one(app, "auth.sign_in_failed")
    assert failure["admin"] == "operator" and "owners only" in failure["details"]["reason"]
    owner = client.post("/login", data={"username": "owner", "password": PASSWORD})
    assert owner.status_code == 302
    assert "Owners: sign in with a password" in page_text(type(client)(app.test_client()).get(
        "/login"))  # fmt: skip


# -- the Settings page -----------------------------------------------------------------------


def settings_form(issuer, **overrides):
    return {
        "enabled": "y", "issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "label": "Test IdP", "scopes": "openid email profile", "allowed_domains": "example.com",
        "role_claim": "groups", "owner_values": "mcp-owners", "operator_values": "",
        "auditor_values": "", "member_values": "", "default_role": "member",
        "local_passwords": "everyone", **overrides,
    }  # fmt: skip


def test_settings_are_saved_after_discovery_and_audited_without_the_secret(
    app, sign_in, oidc_provider
):
    owner = sign_in("owner")
    page = owner.get("/settings")
    assert "http://127.0.0.1:5000/sso/callback" in page_text(page)
    answer = owner.post("/settings", data=settings_form(oidc_provider.issuer))
    assert answer.status_code == 302, page_text(answer)[:3000]
    with app.app_context():
        stored = db.session.get(SsoSettings, 1)
        assert (stored.enabled, stored.issuer, stored.allowed_domains, stored.role_map) == (
            True, oidc_provider.issuer, ["example.com"], {"owner": ["mcp-owners"]})  # fmt: skip
        assert stored.client_secret_enc.reveal() == CLIENT_SECRET
    changed = one(app, "settings.sso_changed")
    assert changed["details"]["client_secret"] == "set"
    assert changed["details"]["issuer"] == [None, oidc_provider.issuer]
    assert CLIENT_SECRET not in trail_text(app)
    shown = owner.get("/settings")
    assert CLIENT_SECRET not in shown.get_data(as_text=True)
    assert "A client secret is stored. Leave blank to keep it." in page_text(shown)
    # Blank keeps the secret; a new one is audited as changed, never shown.
    owner.post("/settings", data=settings_form(oidc_provider.issuer, client_secret="",
                                               label="Renamed"))  # fmt: skip
    owner.post("/settings", data=settings_form(oidc_provider.issuer, client_secret="other-1"))
    later = events(app, "settings.sso_changed")
    assert later[1]["details"] == {"label": ["Test IdP", "Renamed"]}
    assert later[2]["details"]["client_secret"] == "changed"


@pytest.mark.parametrize(
    ("issuer", "sentence"),
    [
        ("ftp://id.example.com", "The URL must start with https://"),
        ("http://id.example.com", "Nothing was saved: The issuer URL http://id.example.com is "
                                  "not https"),
    ],
)  # fmt: skip
def test_settings_refuse_a_bad_issuer_url(app, sign_in, issuer, sentence):
    owner = sign_in("owner")
    answer = owner.post("/settings", data=settings_form(issuer))
    assert answer.status_code == 400
    assert sentence in page_text(answer)
    assert CLIENT_SECRET not in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(SsoSettings, 1) is None


def test_settings_show_why_discovery_failed_and_save_nothing(app, sign_in, oidc_provider):
    owner = sign_in("owner")
    answer = owner.post("/settings", data=settings_form(oidc_provider.issuer + "/"))
    assert answer.status_code == 400
    text = page_text(answer)
    assert "Nothing was saved: The provider's metadata names the issuer " in text
    assert "Enter the issuer URL exactly as the provider spells it." in text
    assert CLIENT_SECRET not in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(SsoSettings, 1) is None
    assert events(app, "settings.sso_changed") == []


def test_settings_refuse_owners_only_passwords_without_sso(sign_in, oidc_provider):
    owner = sign_in("owner")
    form = settings_form(oidc_provider.issuer, enabled="", local_passwords="owners")
    answer = owner.post("/settings", data=form)
    assert answer.status_code == 400
    assert "Turn single sign-on on first" in page_text(answer)


@pytest.mark.parametrize("name", ["operator", "auditor", "member"])
def test_only_owners_reach_the_settings_page(sign_in, name):
    assert sign_in(name).get("/settings").status_code == 403


# -- the protocol module, without a provider -------------------------------------------------


METADATA = {
    "issuer": "https://id.example.com",
    "authorization_endpoint": "https://id.example.com/authorize",
    "token_endpoint": "https://id.example.com/token",
    "jwks_uri": "https://id.example.com/jwks",
}


def test_discovery_url_appends_the_well_known_path_to_the_issuer():
    assert oidc.discovery_url("https://id.example.com/realms/acme/") == (
        "https://id.example.com/realms/acme/.well-known/openid-configuration"
    )


def test_metadata_naming_another_issuer_is_refused():
    with pytest.raises(oidc.OidcError, match="names the issuer 'https://evil.example'"):
        oidc.parse_metadata({**METADATA, "issuer": "https://evil.example"}, METADATA["issuer"])


def test_client_secret_post_is_used_only_when_basic_is_not_offered():
    parsed = oidc.parse_metadata(METADATA, METADATA["issuer"])
    assert parsed.client_auth_method() == "client_secret_basic"
    post_only = {**METADATA, "token_endpoint_auth_methods_supported": ["client_secret_post"]}
    assert oidc.parse_metadata(post_only, METADATA["issuer"]).client_auth_method() == (
        "client_secret_post"
    )
    with pytest.raises(oidc.OidcError, match="accepts no client secret"):
        oidc.parse_metadata({**METADATA, "token_endpoint_auth_methods_supported": ["none"]},
                            METADATA["issuer"])  # fmt: skip


def test_an_http_issuer_is_refused_unless_on_loopback_in_development():
    with pytest.raises(oidc.OidcError, match="not https"):
        oidc.check_issuer("http://id.example.com")
    assert oidc.check_issuer("http://127.0.0.1:8080", allow_http_loopback=True)
    with pytest.raises(oidc.OidcError, match="query or a fragment"):
        oidc.check_issuer("https://id.example.com/?tenant=1")


def test_only_public_key_signatures_are_accepted():
    hmac_only = {**METADATA, "id_token_signing_alg_values_supported": ["HS256", "none"]}
    with pytest.raises(oidc.OidcError, match="which mcpadmin does not accept"):
        oidc.parse_metadata(hmac_only, METADATA["issuer"])


def test_the_authorization_url_carries_pkce_state_and_nonce():
    parsed = oidc.parse_metadata(METADATA, METADATA["issuer"])
    url = oidc.authorization_url(parsed, client_id="c", redirect_uri="https://app/cb",
                                 scope="openid email", state="s", nonce="n",
                                 code_challenge="x")  # fmt: skip
    query = parse_qs(urlsplit(url).query)
    assert {k: v[0] for k, v in query.items()} == {
        "response_type": "code", "client_id": "c", "redirect_uri": "https://app/cb",
        "scope": "openid email", "state": "s", "nonce": "n", "code_challenge": "x",
        "code_challenge_method": "S256",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("held", "role"),
    [
        (["engineering", "mcp-operators", "mcp-owners"], "owner"),  # the strongest wins
        ("mcp-auditors", "auditor"),  # a single value as a string
        (["engineering"], None),
        ({"mcp-owners": True}, None),  # not a list of values: no role from it
        (7, None),
        (None, None),
    ],
)
def test_the_strongest_role_whose_values_the_claim_holds_is_chosen(held, role):
    settings = SsoSettings(role_claim="groups", role_map=SSO["role_map"])
    assert sso.mapped_role(settings, {"groups": held}) == role


def _sha256(token):
    return hashlib.sha256(token.encode()).hexdigest()


def test_two_first_sign_ins_of_one_account_at_once_end_with_a_sentence(app, client, monkeypatch):
    """The same first sign-in finishing twice at once: the loser's insert breaks a unique index
    at commit, and the person reads a sentence instead of a 500."""
    with app.app_context():
        db.session.add(AdminUser(username="alice", password_hash="", role=Role.MEMBER))
        db.session.commit()

    def finish(args, now=None):
        twin = AdminUser(username="alice", password_hash="", role=Role.MEMBER)
        db.session.add(twin)
        return sso.SignedIn(twin, joined=True, next_url=None)

    monkeypatch.setattr(sso, "finish", finish)
    answer = client.get("/sso/callback?code=c&state=s", follow_redirects=True)
    assert answer.status_code == 200
    assert b"being created by another sign-in at the same moment" in answer.data
