"""Members and their own agents (issue 23): a member reaches only their own agents and the
connectors an operator made available to members; agents have owners (set on create, the
index's Owner filter, reassigned by operators); OAuth Connect, its callback, the console and
usage check reach too. A refusal is a 403 with a sentence, an ``access.refused`` audit event
naming the path, and nothing changed."""

import pytest
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, Agent, AgentConnection, AgentKey, AuditEvent, Connector, Tool
from mcpadmin.services import agent_keys
from mcpadmin.services.audit import Action
from tests.oauth_helpers import consent, start
from tests.test_records_pages import counted

SOMEONE_ELSES = "This agent belongs to someone else, so you cannot open or change it."
TOKEN = "member-token-7d6c5b4a"


def person_id(app, name) -> int:
    with app.app_context():
        return db.session.scalar(select(AdminUser.id).where(AdminUser.username == name))


@pytest.fixture
def world(app, people):
    """Member's agent ``mine`` (with a key and a pasted token), member2's agent ``theirs``,
    an agent with no owner; connectors ``open`` (shared, available to members), ``closed``
    (shared, not available) and ``own`` (per-agent bearer, available); two tools each."""
    with app.app_context():
        owners = {p.username: p.id for p in db.session.scalars(select(AdminUser))}
        connectors = {
            "open": Connector(name="Open", url="http://127.0.0.1:9/mcp", auth_type="bearer",
                              secret_enc=seal("shared-secret-1a2b"), status="error",
                              last_error="Upstream said: shared account suspended",
                              members_may_use=True),
            "closed": Connector(name="Closed", url="http://127.0.0.1:9/mcp", auth_type="none",
                                status="connected"),
            "own": Connector(name="Own", url="http://127.0.0.1:9/mcp", auth_type="bearer",
                             credential_mode="per_agent", members_may_use=True),
        }  # fmt: skip
        agents = {
            "mine": Agent(name="Mine", owner_id=owners["member"]),
            "theirs": Agent(name="Theirs", owner_id=owners["member2"]),
            "nobodys": Agent(name="Nobody's"),
        }
        db.session.add_all([*connectors.values(), *agents.values()])
        db.session.flush()
        for connector in connectors.values():
            db.session.add_all(Tool(connector_id=connector.id, name=n) for n in ("read", "write"))
        for agent in agents.values():
            db.session.add(AgentConnection(agent=agent, connector=connectors["own"],
                                           secret_enc=seal(TOKEN), status="connected",
                                           enabled_tools=["read"]))  # fmt: skip
        row, _ = agent_keys.create(agents["theirs"], "laptop", None)
        db.session.commit()
        return {
            **{k: c.id for k, c in connectors.items()},
            **{k: a.id for k, a in agents.items()},
            "key": row.id,
            **{f"{name}_id": i for name, i in owners.items()},
        }


def tool_ids(app, connector_id) -> list[str]:
    with app.app_context():
        return [
            str(t.id) for t in db.session.scalars(select(Tool).filter_by(connector_id=connector_id))
        ]


def state(app) -> dict:
    """What a refused request must leave as it was."""
    with app.app_context():
        return {
            "agents": sorted((a.id, a.name, a.owner_id) for a in db.session.scalars(select(Agent))),
            "connections": sorted(
                (
                    c.agent_id,
                    c.connector_id,
                    tuple(c.enabled_tools or ()),
                    c.secret_enc.reveal() if c.secret_enc else None,
                )  # fmt: skip
                for c in db.session.scalars(select(AgentConnection))
            ),
            "keys": sorted((k.id, k.revoked_at) for k in db.session.scalars(select(AgentKey))),
        }


def refusals(app) -> list[dict]:
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).filter_by(action=Action.ACCESS_REFUSED).order_by(AuditEvent.id)
        )
        return [{"by": e.admin_name, "role": e.actor_role, **e.details} for e in events]


def events(app, action) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(select(AuditEvent).filter_by(action=action)).all()


# Every agent route, as (method, path, form); ``{theirs}``, ``{own}``... name ``world``'s rows.
AGENT_ROUTES = [
    ("GET", "/agents/{theirs}", None),
    ("POST", "/agents/{theirs}", {"name": "Renamed"}),
    ("GET", "/agents/{theirs}/delete", None),
    ("POST", "/agents/{theirs}/delete", {}),
    ("GET", "/agents/delete?ids={theirs}", None),
    ("POST", "/agents/delete", {"ids": ["{mine}", "{theirs}"]}),
    ("POST", "/agents/{theirs}/connectors/{own}/secret", {"secret": "stolen-token"}),
    ("POST", "/agents/{theirs}/connectors/{own}/tools", {"select": "all"}),
    ("POST", "/agents/{theirs}/connectors/{own}/prompts", {"select": "none"}),
    ("POST", "/agents/{theirs}/connectors/{own}/resources", {"select": "all"}),
    ("POST", "/agents/{theirs}/connectors/{own}/sync", {}),
    ("POST", "/agents/{theirs}/connectors/{own}/disconnect", {}),
    ("POST", "/agents/{theirs}/keys", {"label": "mine now"}),
    ("GET", "/agents/{theirs}/keys/{key}/revoke", None),
    ("POST", "/agents/{theirs}/keys/{key}/revoke", {}),
    ("GET", "/agents/{theirs}/seen", None),
    ("GET", "/agents/{theirs}/try", None),
    ("POST", "/agents/{theirs}/try", {"tool": "own__read"}),
    ("GET", "/agents/{theirs}/usage", None),
    ("POST", "/oauth/connect/{own}", {"agent_id": "{theirs}"}),
]


@pytest.mark.parametrize(("method", "path", "form"), AGENT_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in AGENT_ROUTES])  # fmt: skip
def test_a_member_cannot_open_or_change_another_members_agent(app, sign_in, world, method, path,
                                                             form):  # fmt: skip
    member = sign_in("member")
    url = path.format(**world)
    before = state(app)
    if method == "GET":
        response = member.get(url)
    else:
        data = {k: [v.format(**world) for v in vs] if isinstance(vs, list) else vs.format(**world)
                for k, vs in form.items()}  # fmt: skip
        response = member.post(url, data=data)
    assert response.status_code == 403, response.get_data(as_text=True)[:300]
    assert SOMEONE_ELSES in response.get_data(as_text=True)
    assert state(app) == before
    [refused] = refusals(app)
    assert refused["by"] == "member" and refused["role"] == "member"
    assert refused["path"] == url.split("?")[0] and refused["method"] == method
    assert refused["reason"] == SOMEONE_ELSES


@pytest.mark.parametrize("action", ["reviewed", "prompt-reviewed"])
def test_reviews_stay_with_operators(app, sign_in, world, action):
    before = state(app)
    url = f"/agents/{world['mine']}/connectors/{world['own']}/{action}"
    response = sign_in("member").post(url, data={"tool": "1", "prompt": "1"})
    assert response.status_code == 403
    assert "Only owners and operators can change this." in response.get_data(as_text=True)
    assert state(app) == before and refusals(app)[0]["path"] == url


def test_a_member_uses_their_own_agent(app, sign_in, world):
    member = sign_in("member")
    assert member.get(f"/agents/{world['mine']}").status_code == 200
    choose = f"/agents/{world['mine']}/connectors/{world['open']}/tools"
    assert member.post(choose, data={"select": "all"}).status_code == 302
    assert member.post(f"/agents/{world['mine']}/keys", data={"label": "laptop"}).status_code == 200
    with app.app_context():
        connection = db.session.scalar(
            select(AgentConnection).filter_by(agent_id=world["mine"], connector_id=world["open"])
        )
        assert connection.enabled_tools == ["read", "write"]
        assert [k.label for k in db.session.get(Agent, world["mine"]).keys] == ["laptop"]
    assert refusals(app) == []


def test_a_members_agent_page_shows_only_connectors_available_to_members(sign_in, world):
    page = sign_in("member").get(f"/agents/{world['mine']}").get_data(as_text=True)
    assert f'id="connector-{world["open"]}"' in page
    assert f'id="connector-{world["own"]}"' in page
    assert f'id="connector-{world["closed"]}"' not in page


def test_a_member_sees_only_the_status_of_a_shared_credential(sign_in, world):
    """The operator's card says why the shared credential fails; the member's only that it
    does."""
    operator = sign_in("operator").get(f"/agents/{world['mine']}").get_data(as_text=True)
    assert "shared account suspended" in operator
    page = sign_in("member").get(f"/agents/{world['mine']}").get_data(as_text=True)
    card = page[page.index(f'id="connector-{world["open"]}"') :]
    card = card[: card.index("</article>")]
    assert "badge-error" in card
    assert "shared account suspended" not in page
    assert "shared-secret-1a2b" not in page


def test_a_members_card_answer_shows_only_the_status_of_a_shared_credential(sign_in, world):
    url = f"/agents/{world['mine']}/connectors/{world['open']}/tools"
    answer = sign_in("member").hx_post(url, data={"select": "all"}).get_data(as_text=True)
    assert "Tools Mine may use (2 of 2)" in answer and "badge-error" in answer
    assert "shared account suspended" not in answer


@pytest.mark.parametrize(
    "path",
    [
        "/agents/{mine}/connectors/{closed}/tools",
        "/agents/{mine}/connectors/{closed}/sync",
        "/agents/{mine}/connectors/{closed}/disconnect",
    ],
)
def test_a_member_cannot_use_a_connector_not_available_to_members(app, sign_in, world, path):
    before = state(app)
    url = path.format(**world)
    response = sign_in("member").post(url, data={"select": "all"})
    assert response.status_code == 403
    sentence = (
        "The connector Closed is not available to members. Ask an operator to make it available."
    )
    assert sentence in response.get_data(as_text=True)
    assert state(app) == before
    assert refusals(app)[0]["path"] == url


def test_an_operator_uses_any_connector_on_any_agent(app, sign_in, world):
    url = f"/agents/{world['theirs']}/connectors/{world['closed']}/tools"
    assert sign_in("operator").post(url, data={"select": "all"}).status_code == 302
    assert refusals(app) == []


def test_a_members_agents_index_lists_only_their_agents(sign_in, world):
    page = sign_in("member").get("/agents/").get_data(as_text=True)
    assert ">Mine</a>" in page
    assert ">Theirs</a>" not in page and ">Nobody&#39;s</a>" not in page
    assert 'name="owner"' not in page and "Owner</th>" not in page


def test_a_members_agents_index_shows_only_available_connectors(app, sign_in, world):
    with app.app_context():
        db.session.add(AgentConnection(agent_id=world["mine"], connector_id=world["closed"],
                                       enabled_tools=["read"]))  # fmt: skip
        db.session.commit()
    page = sign_in("member").get("/agents/").get_data(as_text=True)
    assert "Own <span" in page and "Closed <span" not in page
    page = sign_in("operator").get("/agents/").get_data(as_text=True)
    assert "Closed <span" in page


def names_listed(page) -> list[str]:
    return [n for n in ("Mine", "Theirs", "Nobody&#39;s") if f">{n}</a>" in page]


@pytest.mark.parametrize(
    ("query", "listed"),
    [
        ("", ["Mine", "Theirs", "Nobody&#39;s"]),
        ("owner=me", []),
        ("owner=none", ["Nobody&#39;s"]),
        ("owner={member2_id}", ["Theirs"]),
        ("owner={member2_id}&q=mine", []),
        ("owner=none&auth=bearer", ["Nobody&#39;s"]),
        ("owner=nonsense", ["Mine", "Theirs", "Nobody&#39;s"]),
    ],
)
def test_the_owner_filter_combines_with_the_others(sign_in, world, query, listed):
    page = sign_in("operator").get("/agents/?" + query.format(**world)).get_data(as_text=True)
    assert names_listed(page) == listed


def test_the_owner_filter_offers_everyone_me_no_owner_and_each_owner(sign_in, world):
    page = sign_in("auditor").get("/agents/").get_data(as_text=True)
    select_ = page[page.index('name="owner"') : page.index("</select>", page.index('name="owner"'))]
    offered = [line.split(">")[1] for line in select_.split("<option")[1:]]
    assert [o.removesuffix("</option") for o in offered] == [
        "Everyone", "Me", "No owner", "member", "member2"
    ]  # fmt: skip
    assert "Owner</th>" in page


@pytest.mark.parametrize("name", ["operator", "member"])
def test_the_agents_index_costs_the_same_statements_with_more_owners(app, sign_in, world, name):
    browser = sign_in(name)

    def statements():
        with counted(app) as seen:
            assert browser.get("/agents/").status_code == 200
        return seen[0]

    few = statements()
    with app.app_context():
        for n in range(5):
            person = AdminUser(username=f"dev{n}", password_hash="", role="member")
            db.session.add(person)
            db.session.flush()
            db.session.add(Agent(name=f"Dev {n}", owner_id=person.id))
        db.session.add(Agent(name="Mine too", owner_id=world["member_id"]))
        db.session.commit()
    assert statements() == few


def test_no_agent_matching_the_owner_filter_says_so(sign_in, world):
    page = sign_in("operator").get("/agents/?owner=me").get_data(as_text=True)
    assert "No agents match" in page and "owner: Me" in page


def test_an_agent_belongs_to_who_creates_it(app, sign_in, people):
    sign_in("member").post("/agents/new", data={"name": "Laptop"})
    sign_in("operator").post("/agents/new", data={"name": "Ops", "owner_id": ""})
    with app.app_context():
        owners = {a.name: a.owner and a.owner.username for a in db.session.scalars(select(Agent))}
    assert owners == {"Laptop": "member", "Ops": None}


def test_the_new_agent_form_offers_operators_the_owner(app, sign_in, people):
    operator = sign_in("operator")
    page = operator.get("/agents/new").get_data(as_text=True)
    assert f'<option selected value="{person_id(app, "operator")}">operator' in page
    assert 'name="owner_id"' not in sign_in("member").get("/agents/new").get_data(as_text=True)
    operator.post("/agents/new", data={"name": "Laptop", "owner_id": person_id(app, "member")})
    with app.app_context():
        assert db.session.scalar(select(Agent)).owner.username == "member"


def test_an_operator_reassigns_an_agent_which_keeps_its_credentials(app, sign_in, world):
    operator = sign_in("operator")
    url = f"/agents/{world['mine']}"
    page = operator.get(url).get_data(as_text=True)
    assert f'<option selected value="{world["member_id"]}">member' in page
    response = operator.post(url, data={"name": "Mine", "owner_id": world["member2_id"]})
    assert response.status_code == 302
    with app.app_context():
        agent = db.session.get(Agent, world["mine"])
        assert agent.owner.username == "member2"
        assert agent.connections[0].secret_enc.reveal() == TOKEN
    [event] = events(app, Action.AGENT_REASSIGNED)
    assert event.details == {"owner": ["member", "member2"]} and event.admin_name == "operator"
    assert events(app, Action.AGENT_UPDATED) == []  # nothing else changed
    # The new owner reaches it; the old one no longer does.
    assert sign_in("member2").get(url).status_code == 200
    assert sign_in("member").get(url).status_code == 403


def test_an_agent_cannot_be_given_to_a_deactivated_person(app, sign_in, world):
    with app.app_context():
        db.session.get(AdminUser, world["member2_id"]).active = False
        db.session.commit()
    url = f"/agents/{world['mine']}"
    response = sign_in("operator").post(url, data={"name": "Mine",
                                                   "owner_id": world["member2_id"]})  # fmt: skip
    assert response.status_code == 422
    assert "Choose an active person as the owner, or No owner." in response.get_data(as_text=True)
    assert events(app, Action.AGENT_REASSIGNED) == []


def test_a_member_cannot_give_their_agent_away(app, sign_in, world):
    before = state(app)
    url = f"/agents/{world['mine']}"
    member = sign_in("member")
    assert 'name="owner_id"' not in member.get(url).get_data(as_text=True)
    response = member.post(url, data={"name": "Mine", "owner_id": world["member2_id"]})
    assert response.status_code == 403
    assert "Only owners and operators can give an agent to someone else." in response.get_data(
        as_text=True
    )
    assert state(app) == before and events(app, Action.AGENT_REASSIGNED) == []
    assert refusals(app)[0]["path"] == url


# OAuth Connect ------------------------------------------------------------------------------


@pytest.fixture
def oauth_connectors(app, oauth_peer):
    """Per-agent OAuth connectors on the real OAuth peer: ``mine`` (available to members)
    and ``locked`` (not), and a shared one."""
    with app.app_context():
        made = {
            "mine": Connector(name="Peer", url=oauth_peer.mcp_url, auth_type="oauth",
                              credential_mode="per_agent", members_may_use=True),
            "locked": Connector(name="Locked", url=oauth_peer.mcp_url, auth_type="oauth",
                                credential_mode="per_agent"),
            "shared": Connector(name="Shared", url=oauth_peer.mcp_url, auth_type="oauth",
                                members_may_use=True),
        }  # fmt: skip
        db.session.add_all(made.values())
        db.session.commit()
        return {k: c.id for k, c in made.items()}


def own_tokens(app, agent_id, connector_id):
    with app.app_context():
        connection = db.session.scalar(
            select(AgentConnection).filter_by(agent_id=agent_id, connector_id=connector_id)
        )
        return connection and connection.access_token_enc


def test_a_member_connects_their_own_agents_account(app, sign_in, world, oauth_connectors):
    member = sign_in("member")
    started = start(member, oauth_connectors["mine"], world["mine"])
    assert started.status_code == 302
    done = member.get(consent(started.headers["Location"]))
    assert done.status_code == 302 and f"/agents/{world['mine']}" in done.headers["Location"]
    assert own_tokens(app, world["mine"], oauth_connectors["mine"]) is not None


def test_a_member_cannot_connect_a_connector_not_available_to_members(
    app, sign_in, world, oauth_connectors
):
    response = start(sign_in("member"), oauth_connectors["locked"], world["mine"])
    assert response.status_code == 403
    assert "The connector Locked is not available to members." in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/oauth/connect/{shared}", "/oauth/disconnect/{shared}"])
def test_a_member_cannot_connect_or_disconnect_a_shared_credential(
    app, sign_in, world, oauth_connectors, path
):
    url = path.format(**oauth_connectors)
    response = sign_in("member").post(url)
    assert response.status_code == 403
    assert "Only owners and operators can" in response.get_data(as_text=True)
    assert refusals(app)[0]["path"] == url
    with app.app_context():
        assert db.session.get(Connector, oauth_connectors["shared"]).access_token_enc is None


def test_a_members_failed_callback_lands_on_their_agents(sign_in, people):
    response = sign_in("member").get("/oauth/callback?state=forged&code=x")
    assert response.status_code == 302 and response.headers["Location"] == "/agents/"


def test_the_callback_refuses_a_member_who_no_longer_reaches_the_agent(
    app, sign_in, world, oauth_connectors
):
    member = sign_in("member")
    started = start(member, oauth_connectors["mine"], world["mine"])
    back = consent(started.headers["Location"])
    with app.app_context():  # meanwhile an operator gave the agent to someone else
        db.session.get(Agent, world["mine"]).owner_id = world["member2_id"]
        db.session.commit()
    response = member.get(back)
    assert response.status_code == 403
    assert SOMEONE_ELSES in response.get_data(as_text=True)
    assert own_tokens(app, world["mine"], oauth_connectors["mine"]) is None
    assert refusals(app)[0]["path"] == "/oauth/callback"
    assert member.get(back).status_code == 302  # used up: "already used", nothing stored


def test_the_callback_refuses_a_connector_made_unavailable_meanwhile(
    app, sign_in, world, oauth_connectors
):
    member = sign_in("member")
    started = start(member, oauth_connectors["mine"], world["mine"])
    back = consent(started.headers["Location"])
    with app.app_context():
        db.session.get(Connector, oauth_connectors["mine"]).members_may_use = False
        db.session.commit()
    response = member.get(back)
    assert response.status_code == 403
    assert "The connector Peer is not available to members." in response.get_data(as_text=True)
    assert own_tokens(app, world["mine"], oauth_connectors["mine"]) is None


def test_the_callback_refuses_a_shared_connect_finished_without_operating(
    app, sign_in, world, oauth_connectors
):
    operator = sign_in("operator")
    started = start(operator, oauth_connectors["shared"])
    back = consent(started.headers["Location"])
    with app.app_context():  # an owner made the operator an auditor meanwhile
        db.session.get(AdminUser, world["operator_id"]).role = "auditor"
        db.session.commit()
    response = operator.get(back)
    assert response.status_code == 403
    assert "Only owners and operators can connect a shared credential." in response.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.get(Connector, oauth_connectors["shared"]).access_token_enc is None


# The console and usage -----------------------------------------------------------------------


def test_the_console_refuses_a_members_tool_of_a_connector_not_available(app, sign_in, world):
    with app.app_context():
        db.session.add(AgentConnection(agent_id=world["mine"], connector_id=world["closed"],
                                       enabled_tools=["read"]))  # fmt: skip
        db.session.commit()
    member = sign_in("member")
    assert member.get(f"/agents/{world['mine']}/try?tool=own__read").status_code == 200
    # The connector's tools are not in a member's agent's catalog at all (the gateway's rule).
    response = member.post(f"/agents/{world['mine']}/try", data={"tool": "closed__read"})
    assert "Unknown tool: closed__read is not one of agent Mine&#39;s tools." in response.get_data(
        as_text=True
    )
    # Nor for an operator trying it as that agent: the agent cannot call it.
    assert (
        sign_in("operator").get(f"/agents/{world['mine']}/try?tool=closed__read").status_code == 404
    )


def test_a_member_reads_their_own_agents_usage(sign_in, world):
    assert sign_in("member").get(f"/agents/{world['mine']}/usage").status_code == 200


# Connectors available to members -------------------------------------------------------------


def test_available_to_members_is_stored_audited_and_shown(app, sign_in, people):
    operator = sign_in("operator")
    form = {"name": "Docs", "url": "http://127.0.0.1:9/mcp", "auth_type": "none",
            "credential_mode": "shared"}  # fmt: skip
    assert "Available to members" in operator.get("/connectors/new").get_data(as_text=True)
    operator.post("/connectors/new", data={**form, "members_may_use": "y"})
    with app.app_context():
        connector = db.session.scalar(select(Connector))
        assert connector.members_may_use is True
    page = operator.get(f"/connectors/{connector.id}").get_data(as_text=True)
    assert "Members may use this connector" in page

    operator.post(f"/connectors/{connector.id}/edit", data=form)
    with app.app_context():
        assert db.session.get(Connector, connector.id).members_may_use is False
    [updated] = events(app, Action.CONNECTOR_UPDATED)
    assert updated.details == {"members_may_use": [True, False]}
    page = operator.get(f"/connectors/{connector.id}").get_data(as_text=True)
    assert "Not available to members" in page
