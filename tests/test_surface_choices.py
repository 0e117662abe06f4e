"""What a server offers besides tools, on the admin pages (issue 22): the connector page lists
its resources, resource templates and prompts; the agent's card ticks prompts and resources
(all of the connector's, or chosen URIs and URI templates), refuses what the connector does
not offer, flags a changed prompt until it is reviewed, and records each change; the Calls
page filters and exports by kind.

Catalog rows are written straight to the tables, as a sync (``services.surface``) stores them.
"""

import csv
import io
import json

import pytest
from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import (
    Agent,
    AgentConnection,
    AuditEvent,
    CatalogItem,
    Connector,
    ItemKind,
    Tool,
)
from mcpadmin.services import find
from tests.records_helpers import call
from tests.test_agents import card
from tests.test_records_pages import counted

CAPABILITIES = {"tools": {}, "resources": {"subscribe": True}, "prompts": {}, "completions": {}}
TRIAGE = {
    "name": "triage",
    "title": "Triage an issue",
    "description": "Sort an issue into a team",
    "arguments": [
        {"name": "issue", "description": "The issue's id", "required": True},
        {"name": "tone"},
    ],
}


def item(connector_id, kind, key, **values) -> CatalogItem:
    """A catalog row as a sync stores it; added, not committed."""
    definition = values.pop("definition", None) or {"name": key}
    row = CatalogItem(connector_id=connector_id, kind=kind, key=key, definition=definition,
                      definition_hash=values.pop("hash", "h1"), **values)  # fmt: skip
    db.session.add(row)
    return row


@pytest.fixture
def world(app):
    """Agent Ada; shared connector Linear with a tool, two prompts, two resources and a URI
    template; connector Docs synced before it listed anything but tools. Their ids, and
    Linear's items' ids by key."""
    with app.app_context():
        agent = Agent(name="Ada")
        linear = Connector(name="Linear", url="https://l.example/mcp", auth_type="none",
                           status="connected", server_capabilities=CAPABILITIES)  # fmt: skip
        docs = Connector(name="Docs", url="https://d.example/mcp", auth_type="none",
                         status="connected")  # fmt: skip
        db.session.add_all([agent, linear, docs])
        db.session.flush()
        db.session.add(Tool(connector_id=linear.id, name="create_issue"))
        rows = [
            item(linear.id, ItemKind.PROMPT, "triage", name="triage", title="Triage an issue",
                 description="Sort an issue into a team", definition=TRIAGE),
            item(linear.id, ItemKind.PROMPT, "summarize", name="summarize"),
            item(linear.id, ItemKind.RESOURCE, "file:///readme.md", name="readme",
                 title="Read me", mime_type="text/markdown"),
            item(linear.id, ItemKind.RESOURCE, "linear://teams", name="teams"),
            item(linear.id, ItemKind.TEMPLATE, "linear://issues/{id}", name="issue",
                 mime_type="application/json"),
        ]  # fmt: skip
        db.session.commit()
        return {"agent": agent.id, "linear": linear.id, "docs": docs.id,
                **{row.key: str(row.id) for row in rows}}  # fmt: skip


def url(world, action, connector="linear"):
    return f"/agents/{world['agent']}/connectors/{world[connector]}/{action}"


def stored(app, world, connector="linear") -> AgentConnection | None:
    with app.app_context():
        wanted = {"agent_id": world["agent"], "connector_id": world[connector]}
        row = db.session.scalar(select(AgentConnection).filter_by(**wanted))
        db.session.expunge_all()
        return row


def events(app, action) -> list[dict]:
    with app.app_context():
        return [e.details for e in db.session.scalars(select(AuditEvent).filter_by(action=action))]


def connect(app, world, **values):
    with app.app_context():
        db.session.add(AgentConnection(agent_id=world["agent"], connector_id=world["linear"],
                                       enabled_tools=[], **values))  # fmt: skip
        db.session.commit()


# --- the connector page --------------------------------------------------------------------


def test_connector_page_lists_resources_templates_and_prompts(logged_in, world):
    page = logged_in.get(f"/connectors/{world['linear']}").get_data(True)
    resources = page[page.index('id="resources"') : page.index('id="resource-templates"')]
    assert "<code>file:///readme.md</code>" in resources
    assert "Read me" in resources and "text/markdown" in resources
    assert "linear://teams" in resources and "not given" in resources  # its MIME type
    templates = page[page.index('id="resource-templates"') : page.index('id="prompts"')]
    assert "linear://issues/{id}" in templates and "application/json" in templates
    prompts = page[page.index('id="prompts"') :]
    assert "Triage an issue" in prompts and "Sort an issue into a team" in prompts
    assert '<code>issue</code> <span class="badge">required</span>' in prompts
    assert "The issue&#39;s id" in prompts and "<code>tone</code>" in prompts
    assert "argument completion" in page  # what the server declared it offers


def test_connector_page_says_what_was_not_synced_yet(logged_in, world):
    page = logged_in.get(f"/connectors/{world['docs']}").get_data(True)
    assert "Not synced yet: Sync the connector to list its prompts." in page
    assert "Not synced yet: Sync the connector to list its resources." in page
    assert "Server offers" not in page


def test_connector_page_says_the_server_offers_none(logged_in, app, world):
    with app.app_context():
        db.session.get(Connector, world["docs"]).server_capabilities = {"tools": {}, "prompts": {}}
        db.session.commit()
    page = logged_in.get(f"/connectors/{world['docs']}").get_data(True)
    assert "This server offers no resources." in page
    assert "This server offers no resource templates." in page
    assert "This server lists no prompts right now." in page


def test_a_hostile_prompt_definition_shows_as_text(logged_in, app, world):
    with app.app_context():
        arguments = [{"name": "<script>alert(1)</script>"}, "junk", {"x": 1}]
        item(world["docs"], ItemKind.PROMPT, "<b>x</b>", definition={"arguments": arguments})
        item(world["docs"], ItemKind.PROMPT, "odd", definition={"arguments": "not a list"})
        db.session.commit()
    page = logged_in.get(f"/connectors/{world['docs']}").get_data(True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


# --- prompts on the agent's card -----------------------------------------------------------


def test_the_card_offers_the_connectors_prompts_and_resources(logged_in, world):
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["linear"])
    assert "Prompts Ada may get (0 of 2)" in page
    assert f'name="prompts" value="{world["triage"]}"' in page
    assert "Resources Ada may read (0 of 3)" in page
    assert 'name="resources" value="*"' in page and "All resources" in page
    assert f'name="resources" value="{world["linear://issues/{id}"]}"' in page


def test_a_card_of_a_connector_without_them_says_so(logged_in, app, world):
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["docs"])
    assert "No prompts or resources synced yet for Docs." in page
    with app.app_context():
        db.session.get(Connector, world["docs"]).server_capabilities = {"tools": {}}
        db.session.commit()
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["docs"])
    assert "Docs offers no prompts or resources." in page


def test_ticking_a_prompt_enables_it_by_name_and_is_recorded(logged_in, app, world):
    page = logged_in.hx_post(url(world, "prompts"), data={"prompts": [world["triage"]]})
    assert page.status_code == 200
    assert "1 of 2 prompts enabled on Linear." in page.get_data(True)
    ticked = f'id="agent-prompt-{world["triage"]}" name="prompts" value="{world["triage"]}" checked'
    assert ticked in page.get_data(True)
    assert stored(app, world).enabled_prompts == ["triage"]
    [details] = events(app, "agent.prompts_chosen")
    assert details["connector"] == "Linear" and details["enabled"] == ["triage"]


def test_enable_all_and_disable_all_prompts(logged_in, app, world):
    page = logged_in.hx_post(url(world, "prompts"), data={"select": "all"}).get_data(True)
    assert "2 of 2 prompts enabled on Linear." in page
    assert stored(app, world).enabled_prompts == ["summarize", "triage"]
    page = logged_in.hx_post(url(world, "prompts"), data={"select": "none"}).get_data(True)
    assert "0 of 2 prompts enabled on Linear." in page
    assert stored(app, world).enabled_prompts == []
    assert [e["selected"] for e in events(app, "agent.prompts_chosen")] == ["all", "none"]


def test_choosing_the_same_prompts_again_records_nothing(logged_in, app, world):
    connect(app, world, enabled_prompts=["triage"])
    logged_in.hx_post(url(world, "prompts"), data={"prompts": [world["triage"]]})
    assert events(app, "agent.prompts_chosen") == []


@pytest.mark.parametrize("forged", ["nope", "999999", "file:///readme.md", "triage", "*"])
def test_a_forged_prompt_is_refused_with_a_sentence(logged_in, app, world, forged):
    connect(app, world, enabled_prompts=["summarize"])
    # Not ids of its prompts: a resource's id, and a prompt's name rather than its id.
    values = [world["triage"], world[forged] if forged.startswith("file:") else forged]
    response = logged_in.hx_post(url(world, "prompts"), data={"prompts": values})
    assert response.status_code == 200
    assert "Linear does not offer that prompt (any more): nothing was changed" in (
        response.get_data(True)
    )  # fmt: skip
    assert stored(app, world).enabled_prompts == ["summarize"]
    assert events(app, "agent.prompts_chosen") == []


def test_a_prompt_of_another_connector_is_refused(logged_in, app, world):
    with app.app_context():
        other = item(world["docs"], ItemKind.PROMPT, "triage")
        db.session.commit()
        other_id = str(other.id)
    response = logged_in.hx_post(url(world, "prompts"), data={"prompts": [other_id]})
    assert "Linear does not offer that prompt" in response.get_data(True)
    assert stored(app, world) is None


def test_a_plain_post_returns_to_the_card(logged_in, world):
    done = logged_in.post(url(world, "prompts"), data={"prompts": [world["triage"]]})
    assert done.status_code == 302
    assert done.headers["Location"].endswith(
        f"/agents/{world['agent']}?card={world['linear']}#connector-{world['linear']}"
    )


def test_a_choice_needs_the_csrf_token(logged_in, app, world):
    response = logged_in.post(url(world, "prompts"), data={"select": "all"}, csrf=False)
    assert response.status_code == 403
    assert stored(app, world) is None


# --- a changed prompt ----------------------------------------------------------------------


def test_a_changed_enabled_prompt_is_flagged_until_reviewed(logged_in, app, world):
    connect(app, world, enabled_prompts=["triage"], changed_prompts=["triage", "summarize"])
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["linear"])
    assert page.count("Definition changed") == 1  # summarize is not enabled
    assert "agents cannot get it until it is reviewed" in page
    assert f'name="prompt" value="{world["triage"]}"' in page

    done = logged_in.hx_post(url(world, "prompt-reviewed"), data={"prompt": world["triage"]})
    page = done.get_data(True)
    assert "Prompt triage marked reviewed for Ada." in page
    assert "Definition changed" not in card(page, world["linear"])
    assert stored(app, world).changed_prompts == ["summarize"]
    [details] = events(app, "agent.prompt_reviewed")
    assert details == {"connector": "Linear", "prompt": "triage"}


def test_reviewing_a_prompt_the_server_dropped_explains(logged_in, app, world):
    connect(app, world, enabled_prompts=["triage"], changed_prompts=["triage"])
    response = logged_in.hx_post(url(world, "prompt-reviewed"), data={"prompt": "424242"})
    assert "That prompt is no longer offered by Linear" in response.get_data(True)
    assert stored(app, world).changed_prompts == ["triage"]
    assert events(app, "agent.prompt_reviewed") == []


def test_reviewing_without_a_connection_is_404(logged_in, world):
    response = logged_in.hx_post(url(world, "prompt-reviewed"), data={"prompt": world["triage"]})
    assert response.status_code == 404


# --- resources on the agent's card ---------------------------------------------------------


def test_all_resources_is_stored_as_a_star_and_shown_ticked(logged_in, app, world):
    response = logged_in.hx_post(url(world, "resources"), data={"resources": ["*"]})
    page = response.get_data(True)
    assert "All resources of Linear enabled, those it adds later too." in page
    assert stored(app, world).enabled_resources == ["*"]
    assert 'name="resources" value="*" checked' in page
    assert "Resources Ada may read (all)" in page
    assert f'value="{world["linear://teams"]}"\n                checked disabled' in page
    [details] = events(app, "agent.resources_chosen")
    assert details["enabled"] == ["*"]


def test_chosen_resources_store_their_uris_and_uri_templates(logged_in, app, world):
    chosen = [world["linear://teams"], world["linear://issues/{id}"]]
    page = logged_in.hx_post(url(world, "resources"), data={"resources": chosen}).get_data(True)
    assert "2 of 3 resources enabled on Linear." in page
    assert stored(app, world).enabled_resources == ["linear://teams", "linear://issues/{id}"]


def test_unticking_all_resources_enables_none(logged_in, app, world):
    connect(app, world, enabled_resources=["*"])
    page = logged_in.hx_post(url(world, "resources"), data={}).get_data(True)
    assert "0 of 3 resources enabled on Linear." in page
    assert stored(app, world).enabled_resources == []
    [details] = events(app, "agent.resources_chosen")
    assert details["disabled"] == ["*"]


def test_disable_all_resources(logged_in, app, world):
    connect(app, world, enabled_resources=["linear://teams"])
    values = {"select": "none", "resources": [world["linear://teams"]]}
    logged_in.hx_post(url(world, "resources"), data=values)
    assert stored(app, world).enabled_resources == []
    assert events(app, "agent.resources_chosen")[0]["selected"] == "none"


@pytest.mark.parametrize("forged", ["triage", "linear://teams", "**", "-1"])
def test_a_forged_resource_is_refused_with_a_sentence(logged_in, app, world, forged):
    connect(app, world, enabled_resources=["file:///readme.md"])
    values = [world["linear://teams"], world.get(forged, forged)]
    if forged == "linear://teams":  # the URI itself rather than its row's id
        values = ["linear://teams"]
    response = logged_in.hx_post(url(world, "resources"), data={"resources": values})
    assert response.status_code == 200
    assert "Linear does not offer that resource (any more): nothing was changed" in (
        response.get_data(True)
    )  # fmt: skip
    assert stored(app, world).enabled_resources == ["file:///readme.md"]
    assert events(app, "agent.resources_chosen") == []


def test_a_per_agent_connector_offers_choices_once_connected(logged_in, app, world):
    with app.app_context():
        connector = db.session.get(Connector, world["linear"])
        connector.credential_mode, connector.auth_type = "per_agent", "bearer"
        db.session.commit()
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["linear"])
    assert "Prompts Ada may get" not in page and "Resources Ada may read" not in page
    with app.app_context():
        connection = AgentConnection(agent_id=world["agent"], connector_id=world["linear"],
                                     secret_enc=seal("t"), status="connected")  # fmt: skip
        db.session.add(connection)
        db.session.commit()
    page = card(logged_in.get(f"/agents/{world['agent']}").get_data(True), world["linear"])
    assert "Prompts Ada may get (0 of 2)" in page and "Resources Ada may read (0 of 3)" in page


def test_the_agent_page_reads_items_in_the_same_statements_however_many(logged_in, app, world):
    path = f"/agents/{world['agent']}"
    logged_in.get(path)  # the session's first page loads what every page does
    with counted(app) as few:
        logged_in.get(path)
    with app.app_context():
        for n in range(3):
            connector = Connector(name=f"More {n}", url=f"https://m{n}.example/mcp",
                                  auth_type="none", server_capabilities=CAPABILITIES)  # fmt: skip
            db.session.add(connector)
            db.session.flush()
            db.session.add(Tool(connector_id=connector.id, name="t"))
            for i in range(4):
                item(connector.id, ItemKind.PROMPT, f"p{i}")
                item(connector.id, ItemKind.RESOURCE, f"x://{i}")
        db.session.commit()
    with counted(app) as many:
        page = logged_in.get(path).get_data(True)
    assert "Prompts Ada may get (0 of 4)" in page
    assert many[0] == few[0]


def test_an_agent_with_only_prompts_is_found_by_its_connector(app, world):
    connect(app, world, enabled_prompts=["triage"])
    with app.app_context():
        connections = db.session.scalars(select(AgentConnection)).all()
        found = find.agents_connectors(connections)
        assert [c.name for c, _ in found[world["agent"]]] == ["Linear"]


# --- the Calls page ------------------------------------------------------------------------


@pytest.fixture
def calls(app):
    with app.app_context():
        call(request_id="t1", tool="linear__create_issue", upstream_tool="create_issue")
        call(request_id="p1", kind="prompt", tool="linear__triage", upstream_tool="triage")
        call(request_id="r1", kind="resource", tool="mcpadmin://docs/file:///readme.md",
             upstream_tool="file:///readme.md")  # fmt: skip
        call(request_id="e1", kind="elicitation", tool="elicitation/create")
        db.session.commit()


def rows(page) -> list[str]:
    return [part.split('"')[0] for part in page.split('<code class="small">')[1:]]


def test_the_calls_page_shows_each_rows_kind(logged_in, calls):
    page = logged_in.get("/calls/").get_data(True)
    assert '<th scope="col">Kind</th>' in page
    for words in ("Tool call", "Prompt get", "Resource read", "Elicitation"):
        assert f'<td data-label="Kind" class="nowrap">{words}</td>' in page
    assert '<option value="completion">Completion</option>' in page


def test_the_kind_filter_keeps_that_kind(logged_in, calls):
    page = logged_in.get("/calls/?kind=prompt").get_data(True)
    assert "linear__triage" in page and "linear__create_issue" not in page
    assert '<option value="prompt" selected>Prompt get</option>' in page
    page = logged_in.get("/calls/?kind=roots").get_data(True)
    assert "No calls match" in page and "Kind “Roots”" in page


def test_an_unknown_kind_is_a_sentence(logged_in, calls):
    response = logged_in.get("/calls/?kind=telepathy")
    assert response.status_code == 400
    assert "“telepathy” is not a kind of call; pick one from the list." in (
        response.get_data(True)
    )  # fmt: skip
    assert logged_in.get("/calls/export.csv?kind=telepathy").status_code == 400


def test_search_finds_prompt_names_and_uris(logged_in, calls):
    page = logged_in.get("/calls/?q=__TRIAGE").get_data(True)
    assert "linear__triage" in page and "create_issue" not in page
    page = logged_in.get("/calls/?q=readme.md").get_data(True)
    assert "mcpadmin://docs/file:///readme.md" in page and "linear__triage" not in page
    page = logged_in.get("/calls/?tool=file:///readme.md").get_data(True)
    assert "mcpadmin://docs/file:///readme.md" in page


def test_exports_follow_the_kind_filter_and_carry_the_kind(logged_in, calls):
    response = logged_in.get("/calls/export.csv?kind=resource")
    found = list(csv.DictReader(io.StringIO(response.get_data(True))))
    assert [(r["request_id"], r["kind"]) for r in found] == [("r1", "resource")]
    response = logged_in.get("/calls/export.jsonl")
    kinds = [json.loads(line)["kind"] for line in response.get_data(True).splitlines()]
    assert kinds == ["elicitation", "resource", "prompt", "tool"]
    page = logged_in.get("/calls/?kind=prompt").get_data(True)
    assert "/calls/export.csv?kind=prompt" in page
