"""People: invites, joining through one, role changes, deactivation and reactivation, from
the People page, the invite link's page and ``flask people``; each change audited with the
actor and the actor's role."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import (
    AdminSession,
    AdminUser,
    Agent,
    AuditEvent,
    Invite,
    Role,
    SsoSettings,
    utcnow,
)
from mcpadmin.services import agent_keys
from mcpadmin.services import people as service
from mcpadmin.services.audit import Action
from tests.conftest import PASSWORD, Browser

NEW_PASSWORD = "a fine new password"  # noqa: S105 (a test password)


def person(name) -> AdminUser:
    return db.session.scalar(select(AdminUser).where(AdminUser.username == name))


def events(action) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def text(response) -> str:
    return response.get_data(as_text=True)


def made_invite(app, role=Role.OPERATOR, email=None, days=None) -> str:
    """A new invite's token. Commits."""
    with app.app_context():
        _, token = service.invite(role, email, days, "owner")
        db.session.commit()
        return token


def join(app, token, username="newcomer", password=NEW_PASSWORD, confirm=None):
    browser = Browser(app.test_client())
    browser.get(f"/invite/{token}")
    data = {"username": username, "password": password, "confirm": confirm or password}
    return browser, browser.post(f"/invite/{token}", data=data)


# -- the rules (services.people) ------------------------------------------------------------------


def test_the_last_active_owner_cannot_be_demoted(app, people):
    with app.app_context(), pytest.raises(service.PeopleError, match="last active owner"):
        service.change_role(person("owner"), Role.OPERATOR)


def test_an_owner_can_be_demoted_while_another_owner_is_active(app, people):
    with app.app_context():
        person("operator").role = Role.OWNER
        service.change_role(person("owner"), Role.AUDITOR)
        assert person("owner").role == Role.AUDITOR


def test_a_deactivated_owner_does_not_count_as_the_other_owner(app, people):
    with app.app_context():
        person("operator").role, person("operator").active = Role.OWNER, False
        with pytest.raises(service.PeopleError, match="last active owner"):
            service.deactivate(person("owner"), person("auditor"))


def test_nobody_deactivates_themselves(app, people):
    with app.app_context():
        person("operator").role = Role.OWNER
        with pytest.raises(service.PeopleError, match="cannot deactivate yourself"):
            service.deactivate(person("owner"), person("owner"))


def test_an_invite_stores_only_its_tokens_digest_and_works_once(app, people):
    token = made_invite(app)
    with app.app_context():
        row = db.session.scalar(select(Invite))
        assert token not in row.token_sha256 and len(row.token_sha256) == 64
        assert service.usable_invite(token) is row
        service.redeem(row, "member")
        assert service.usable_invite(token) is None
        assert row.used_by == "member"
        with pytest.raises(service.PeopleError, match="has been used"):
            service.redeem(row, "auditor")


def test_an_expired_or_revoked_invite_is_unusable(app, people):
    expired, revoked = made_invite(app), made_invite(app)
    with app.app_context():
        service.find_invite(expired).expires_at = utcnow() - timedelta(seconds=1)
        service.revoke_invite(service.find_invite(revoked))
        assert service.usable_invite(expired) is None
        assert service.usable_invite(revoked) is None
        assert "expired" in service.why_unusable(service.find_invite(expired))
        assert "revoked" in service.why_unusable(service.find_invite(revoked))


@pytest.mark.parametrize("days", [0, 31])
def test_an_invite_lasts_1_to_30_days(app, people, days):
    with app.app_context(), pytest.raises(service.PeopleError, match="1 to 30 days"):
        service.invite(Role.MEMBER, None, days, "owner")


def test_an_invite_lasts_a_week_by_default(app, people):
    with app.app_context():
        row, _ = service.invite(Role.MEMBER, None, None, "owner")
        assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)


# -- the People page ----------------------------------------------------------------------------


def test_the_people_page_lists_everyone_with_role_sign_in_status_and_agents(app, sign_in):
    with app.app_context():
        db.session.add(Agent(name="Mia's bot", owner_id=person("member").id))
        person("member2").active = False
        db.session.commit()
    page = text(sign_in("auditor").get("/people/"))
    row = re.search(r'<tr id="person-\d+" class="person-active">\s*<th scope="row">member<.*?</tr>',
                    page, re.S).group(0)  # fmt: skip
    assert "Member" in row and "password" in row and ">1</td>" in row
    assert "Deactivated" in page and "No pending invites." in page


@pytest.mark.parametrize("name", ["operator", "auditor"])
def test_readers_see_no_owner_actions(sign_in, name):
    page = text(sign_in(name).get("/people/"))
    assert "Deactivate" not in page and "Create invite link" not in page
    assert 'name="role"' not in page and "Reactivate" not in page


def test_an_owner_sees_the_actions_but_cannot_deactivate_themselves(app, sign_in):
    page = text(sign_in("owner").get("/people/"))
    assert "Create invite link" in page and 'name="role"' in page
    with app.app_context():
        own = person("owner").id
    assert f"/people/{own}/deactivate" not in page
    assert page.count("Deactivate…") == 4  # the four others


def test_a_member_is_refused_the_people_page(sign_in):
    response = sign_in("member").get("/people/")
    assert response.status_code == 403 and "Only owners, operators and auditors" in text(response)


@pytest.mark.parametrize("name", ["operator", "auditor", "member"])
def test_only_owners_change_people_refused_with_a_sentence_and_audited(app, sign_in, name):
    browser = sign_in(name)
    with app.app_context():
        target = person("member2").id
    answers = [
        browser.post("/people/invites", data={"role": "owner"}),
        browser.post(f"/people/{target}/role", data={"role": "owner"}),
        browser.post(f"/people/{target}/deactivate"),
        browser.post(f"/people/{target}/reactivate"),
    ]
    assert {r.status_code for r in answers} == {403}
    assert "Only owners can manage people" in text(answers[0])
    with app.app_context():
        refused = events(Action.ACCESS_REFUSED)
        assert len(refused) == 4 and {e.admin_name for e in refused} == {name}
        assert {e.actor_role for e in refused} == {name}
        assert person("member2").role == Role.MEMBER and person("member2").active
        assert db.session.scalar(select(Invite)) is None


def test_an_owner_creates_an_invite_and_sees_its_link_once(app, sign_in):
    browser = sign_in("owner")
    data = {"role": "operator", "email": "ada@example.com", "days": "3"}
    response = browser.hx_post("/people/invites", data=data)
    body = text(response)
    link = re.search(r'<code id="new-invite-link">([^<]+)</code>', body).group(1)
    assert link.startswith(app.config["PUBLIC_BASE_URL"] + "/invite/")
    assert 'id="invites"' in body and "ada@example.com" in body
    assert link not in text(browser.get("/people/"))  # not shown again
    with app.app_context():
        (event,) = events(Action.PERSON_INVITED)
        assert event.admin_name == "owner" and event.actor_role == Role.OWNER
        assert event.details["role"] == "operator" and link.split("/")[-1] not in str(event.details)


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({"role": "member", "days": "90"}, "An invite lasts 1 to 30 days."),
        ({"role": "member", "email": "nobody"}, "Enter an email address such as"),
        ({"role": "member", "email": "a@b.c" + "x" * 400}, "it can have up to 320"),
    ],
)
def test_an_invite_form_error_is_a_sentence(app, sign_in, data, sentence):
    body = text(sign_in("owner").hx_post("/people/invites", data=data))
    assert sentence in body and "new-invite-link" not in body
    with app.app_context():
        assert db.session.scalar(select(Invite)) is None


def test_an_owner_revokes_an_invite(app, sign_in):
    made_invite(app, email="bo@example.com")
    browser = sign_in("owner")
    with app.app_context():
        invite_id = db.session.scalar(select(Invite.id))
    body = text(browser.hx_post(f"/people/invites/{invite_id}/revoke"))
    assert "No pending invites." in body and "revoked" in body
    with app.app_context():
        assert db.session.get(Invite, invite_id).revoked_at is not None
        assert events(Action.INVITE_REVOKED)[0].details["email"] == "bo@example.com"


def test_a_role_change_is_audited_with_before_after_actor_and_role(app, sign_in):
    browser = sign_in("owner")
    with app.app_context():
        target = person("member").id
    body = text(browser.hx_post(f"/people/{target}/role", data={"role": "auditor"}))
    assert 'id="people"' in body and "member is now an auditor." in body
    with app.app_context():
        (event,) = events(Action.ROLE_CHANGED)
        assert event.details == {"role": ["member", "auditor"]}
        assert (event.admin_name, event.actor_role) == ("owner", "owner")
        assert (event.target_type, event.target_name) == ("admin", "member")


def test_the_audit_page_and_exports_show_the_actors_role(app, sign_in):
    browser = sign_in("owner")
    with app.app_context():
        target = person("member").id
    browser.hx_post(f"/people/{target}/role", data={"role": "auditor"})
    page = text(browser.get("/audit/"))
    row = re.search(r'<tr id="event-\d+">(?:(?!</tr>).)*person\.role_changed.*?</tr>', page,
                    re.S).group(0)  # fmt: skip
    assert '<span class="muted small actor-role">owner</span>' in row
    exported = text(browser.get("/audit/export.csv")).splitlines()
    assert exported[0].startswith("id,at,admin_name,actor_role,")
    assert any(",owner,owner," in line and "person.role_changed" in line for line in exported)
    assert '"actor_role": "owner"' in text(browser.get("/audit/export.jsonl"))


def test_demoting_the_last_owner_on_the_page_is_a_sentence(app, sign_in):
    browser = sign_in("owner")
    with app.app_context():
        own = person("owner").id
    body = text(browser.hx_post(f"/people/{own}/role", data={"role": "member"}))
    assert "owner is the last active owner" in body
    with app.app_context():
        assert person("owner").role == Role.OWNER and not events(Action.ROLE_CHANGED)


def test_the_deactivation_page_says_what_happens(app, sign_in):
    with app.app_context():
        target = person("member").id
        db.session.add(Agent(name="Mia's bot", owner_id=target))
        db.session.commit()
    page = text(sign_in("owner").get(f"/people/{target}/deactivate"))
    assert "Their sessions end now" in page and "Mia&#39;s bot" in page
    assert "until you reactivate member" in page and "stay as they are" in page


def test_deactivation_ends_their_sessions_at_once(app, sign_in):
    victim, owner = sign_in("member"), sign_in("owner")
    with app.app_context():
        target = person("member").id
    response = owner.post(f"/people/{target}/deactivate")
    assert response.status_code == 302
    after = victim.get("/agents/")
    assert after.status_code == 302 and "/login" in after.headers["Location"]
    with app.app_context():
        assert not person("member").active and person("member").deactivated_at is not None
        assert not db.session.scalars(select(AdminSession).where(
            AdminSession.admin_id == target)).all()  # fmt: skip
        (event,) = events(Action.PERSON_DEACTIVATED)
        assert (event.admin_name, event.actor_role, event.target_name) == ("owner", "owner",
                                                                           "member")  # fmt: skip
    refused = Browser(app.test_client()).post(
        "/login", data={"username": "member", "password": PASSWORD}
    )
    assert refused.status_code == 401


def test_reactivation_lets_them_sign_in_again(app, sign_in):
    owner = sign_in("owner")
    with app.app_context():
        target = person("member").id
    owner.post(f"/people/{target}/deactivate")
    body = text(owner.hx_post(f"/people/{target}/reactivate"))
    assert "member is active again" in body
    with app.app_context():
        assert person("member").active and person("member").deactivated_at is None
        assert events(Action.PERSON_REACTIVATED)[0].actor_role == Role.OWNER
    sign_in("member")


def test_a_deactivated_owners_agents_keys_show_suspended(app, people):
    with app.app_context():
        agent = Agent(name="bot", owner_id=person("member").id)
        db.session.add(agent)
        row, _ = agent_keys.create(agent, "laptop")
        person("member").active = False
        db.session.commit()
        assert agent_keys.status(row) == agent_keys.KeyStatus.SUSPENDED
        person("member").active = True
        assert agent_keys.status(row) == agent_keys.KeyStatus.ACTIVE


# -- joining through an invite link -------------------------------------------------------------


def test_the_invite_page_names_the_role(app, people):
    token = made_invite(app, role=Role.AUDITOR, email="al@example.com")
    page = text(Browser(app.test_client()).get(f"/invite/{token}"))
    assert "You are invited to mcpadmin as Auditor" in page and "al@example.com" in page
    assert 'name="password"' in page and "Sign in with" not in page


def test_joining_with_a_password_signs_in_with_the_invites_role(app, people):
    token = made_invite(app, role=Role.OPERATOR, email="ada@example.com")
    browser, response = join(app, token, username="ada")
    assert response.status_code == 302
    assert "Welcome, ada" in text(browser.get("/connectors/"))
    with app.app_context():
        ada = person("ada")
        assert ada.role == Role.OPERATOR and ada.email == "ada@example.com"
        assert db.session.scalar(select(Invite)).used_by == "ada"
        (event,) = events(Action.PERSON_JOINED)
        assert (event.admin_name, event.actor_role) == ("ada", "operator")


def test_a_used_invite_link_is_a_404_with_a_sentence(app, people):
    token = made_invite(app)
    join(app, token, username="first")
    _, again = join(app, token, username="second")
    assert again.status_code == 404 and "This invite link has been used" in text(again)
    with app.app_context():
        assert person("second") is None


@pytest.mark.parametrize("token", ["unknown", "x" * 500])
def test_an_unknown_invite_link_is_a_404_with_a_sentence(app, token):
    response = Browser(app.test_client()).get(f"/invite/{token}")
    assert response.status_code == 404 and "ask an owner for a new one" in text(response).lower()


def test_an_expired_invite_link_is_a_404_with_a_sentence(app, people):
    token = made_invite(app)
    with app.app_context():
        service.find_invite(token).expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    response = Browser(app.test_client()).get(f"/invite/{token}")
    assert response.status_code == 404 and "has expired" in text(response)


def test_a_taken_username_or_short_password_is_a_sentence(app, people):
    token = made_invite(app)
    _, taken = join(app, token, username="member")
    assert taken.status_code == 422 and "The username &#39;member&#39; is taken." in text(taken)
    _, short = join(app, token, password="short", confirm="short")
    assert short.status_code == 422 and "at least 10" in text(short)
    with app.app_context():
        assert service.usable_invite(token) is not None  # still usable


def test_a_signed_in_person_opening_an_invite_gets_a_sentence(app, sign_in):
    token = made_invite(app)
    page = text(sign_in("auditor").get(f"/invite/{token}"))
    assert "You are signed in already" in page and 'name="password"' not in page


def test_with_local_passwords_off_only_an_owner_invite_offers_a_password(app, people):
    member_token, owner_token = made_invite(app, Role.MEMBER), made_invite(app, Role.OWNER)
    with app.app_context():
        db.session.add(SsoSettings(id=1, enabled=False, local_passwords=False))
        db.session.commit()
    page = text(Browser(app.test_client()).get(f"/invite/{member_token}"))
    assert 'name="password"' not in page and "Local passwords are turned off" in page
    _, refused = join(app, member_token)
    assert refused.status_code == 400
    assert 'name="password"' in text(Browser(app.test_client()).get(f"/invite/{owner_token}"))


def test_with_single_sign_on_the_invite_page_offers_its_button(app, people):
    if "sso.start" not in app.view_functions:  # before the sign-in blueprint exists
        app.add_url_rule("/sso/start", "sso.start", lambda: "", methods=["POST"])
    token = made_invite(app, Role.MEMBER)
    with app.app_context():
        db.session.add(SsoSettings(id=1, enabled=True, label="Acme ID", local_passwords=False))
        db.session.commit()
    page = text(Browser(app.test_client()).get(f"/invite/{token}"))
    assert "Sign in with Acme ID" in page and 'name="password"' not in page
    assert f'name="invite" value="{token}"' in page and 'name="csrf_token"' in page


# -- the shell ----------------------------------------------------------------------------------


def test_people_list_prints_everyone_and_the_pending_invites(app, runner, people):
    made_invite(app, email="zed@example.com")
    result = runner.invoke(args=["people", "list", "--as", "auditor"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^member\t-\tmember\tpassword\tnever\tactive\t0$", result.output, re.M)
    assert "1 pending invite." in result.output and "zed@example.com" in result.output


def test_people_invite_prints_a_working_link(app, runner, people):
    result = runner.invoke(args=["people", "invite", "--role", "member", "--days", "2"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    with app.app_context():
        assert service.usable_invite(link.rsplit("/", 1)[1]).role == Role.MEMBER
        assert events(Action.PERSON_INVITED)[0].admin_name == "shell"


def test_people_set_role_deactivate_and_reactivate(app, runner, people):
    assert runner.invoke(args=["people", "set-role", "Member", "auditor"]).exit_code == 0
    result = runner.invoke(args=["people", "deactivate", "member", "--as", "owner"])
    assert result.exit_code == 0 and "deactivated" in result.output
    assert runner.invoke(args=["people", "reactivate", "member"]).exit_code == 0
    with app.app_context():
        assert person("member").role == Role.AUDITOR and person("member").active
        actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions == [Action.ROLE_CHANGED, Action.PERSON_DEACTIVATED,
                           Action.PERSON_REACTIVATED]  # fmt: skip
        assert events(Action.PERSON_DEACTIVATED)[0].actor_role == Role.OWNER


@pytest.mark.parametrize(
    "args",
    [
        ["people", "invite", "--role", "owner"],
        ["people", "set-role", "member2", "owner"],
        ["people", "deactivate", "member2"],
        ["people", "reactivate", "member2"],
    ],
)
def test_people_commands_refuse_non_owners(app, runner, people, args):
    result = runner.invoke(args=[*args, "--as", "operator"])
    assert result.exit_code == 1 and "may not run this command" in result.output
    with app.app_context():
        assert person("member2").role == Role.MEMBER and person("member2").active


def test_people_list_refuses_a_member(runner, people):
    result = runner.invoke(args=["people", "list", "--as", "member"])
    assert result.exit_code == 1 and "may not run this command" in result.output


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["people", "set-role", "owner", "member"], "owner is the last active owner"),
        (["people", "deactivate", "nobody"], "No person named 'nobody'."),
        (["people", "deactivate", "owner", "--as", "owner"], "cannot deactivate yourself"),
        (["people", "invite", "--role", "member", "--days", "99"], "1 to 30 days"),
    ],
)
def test_people_commands_say_why_they_refuse(runner, people, args, sentence):
    result = runner.invoke(args=args)
    assert result.exit_code == 1 and sentence in result.output
