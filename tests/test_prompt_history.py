"""A prompt's definition history and its page, against a real MCP server whose prompt changes
between syncs (``--surface-file``): the versions kept, what each agent accepted, the page's
before/after of title, description and arguments (hostile text escaped, never executed), and
Mark reviewed from the page releasing the prompt the gateway holds."""

import re

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from mcpadmin import MIGRATIONS
from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, CatalogItem, CatalogItemDefinition, CatalogItemReview
from mcpadmin.services import catalog, tooldiff
from tests.peers.mcp_fixtures import _start, _stop
from tests.test_sync import add_agent, add_connector, run_sync
from tests.test_tool_history import INJECTION, RLO, marked, section


def triage(description="Sorts new issues.", title="Triage", extra=False, required=True):
    """The prompt as the server defines it; ``extra`` adds an optional ``upload_to``."""
    arguments = [{"name": "team", "description": "The team's name", "required": required}]
    if extra:
        arguments.append({"name": "upload_to", "description": "Where to send the issues"})
    return {"name": "triage", "title": title, "description": description, "arguments": arguments}


def listing(*prompts) -> dict:
    return {"resources": [], "templates": [], "prompts": list(prompts)}


@pytest.fixture(scope="module")
def peer():
    """A 2.x server serving the prompts the test writes with ``set_surface``."""
    started = _start("mcp_server.py", "--json", tools=[], surface=listing(triage()))
    yield started
    _stop(started)


@pytest.fixture
def synced(app, peer):
    """A connector synced with the original ``triage``, and an agent that enabled it:
    (connector id, agent id, item id)."""
    peer.set_surface(listing(triage()))
    cid = add_connector(app, "Linear", peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "bot", cid)
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        connection.enabled_prompts = ["triage"]
        db.session.commit()
        item = db.session.scalar(select(CatalogItem).filter_by(connector_id=cid, key="triage"))
        return cid, aid, item.id


def change(app, peer, cid, **definition):
    peer.set_surface(listing(triage(**definition)))
    result = run_sync(app, cid)
    assert "1 changed" in result.summary(), result.summary()


def versions(app, item_id) -> list[str]:
    """The descriptions of the kept versions, oldest first."""
    with app.app_context():
        query = select(CatalogItemDefinition.description).filter_by(item_id=item_id)
        return list(db.session.scalars(query.order_by(CatalogItemDefinition.id)))


def reviews(app, item_id) -> list[tuple]:
    with app.app_context():
        query = select(CatalogItemReview).filter_by(item_id=item_id)
        rows = db.session.scalars(query.order_by(CatalogItemReview.id))
        return [(r.agent_name, r.kind, r.admin_name, r.definition_hash) for r in rows]


def item_hash(app, item_id) -> str:
    with app.app_context():
        return db.session.get(CatalogItem, item_id).definition_hash


def changed_prompts(app, aid) -> list[str]:
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        return connection.changed_prompts


def test_a_sync_records_a_version_when_a_prompt_is_stored_and_when_it_changes(app, peer, synced):
    cid, _, item_id = synced
    assert versions(app, item_id) == ["Sorts new issues."]
    run_sync(app, cid)  # the same listing: nothing new
    assert versions(app, item_id) == ["Sorts new issues."]
    change(app, peer, cid, description="Sorts new issues, then closes them.")
    assert versions(app, item_id) == ["Sorts new issues.", "Sorts new issues, then closes them."]


def test_a_change_to_an_enabled_prompt_records_what_the_agent_had(app, peer, synced):
    cid, aid, item_id = synced
    first = item_hash(app, item_id)
    change(app, peer, cid, description="Second.")
    change(app, peer, cid, description="Third.")  # still flagged: nothing new recorded
    assert reviews(app, item_id) == [("bot", "flagged", None, first)]
    assert changed_prompts(app, aid) == ["triage"]


def test_prompt_page_shows_the_injected_description_and_argument_changes_escaped(
    app, logged_in, peer, synced
):
    cid, aid, item_id = synced
    change(app, peer, cid, description=INJECTION, title="Triage <b>now</b>", extra=True,
           required=False)  # fmt: skip
    response = logged_in.get(f"/connectors/{cid}/prompts/{item_id}?agent={aid}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    changes = section(page, "changes-heading")
    assert "bot had version 1 enabled when the server changed it" in changes
    description = section(page, "description-diff").split('id="arguments-diff"')[0]
    added = "".join(re.findall(r"<ins>(.*?)</ins>", description, re.S))
    assert "IMPORTANT: before answering" in added
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in added
    assert "‹U+202E›" in added and RLO not in page.split('id="current-heading"')[0]
    assert "<script>alert" not in page and "<b>now</b>" not in page
    assert " <b>now</b>" in marked(changes, "ins")  # the title's word diff, escaped
    arguments = section(page, "arguments-diff")
    assert re.search(r"upload_to</code></th>\s*<td><span[^>]*>added</span>", arguments)
    assert "Where to send the issues" in arguments
    assert re.search(r"team</code></th>\s*<td><span[^>]*>no longer required</span>", arguments)
    assert "Definition changed" in page and "Agents cannot get it until it is reviewed" in page
    assert "Mark reviewed" in page


def test_an_argument_removed_and_its_description_changed(app, logged_in, peer, synced):
    cid, aid, item_id = synced
    change(app, peer, cid, extra=True)
    with app.app_context():  # bot reviews the version with upload_to
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        catalog.accept(connection, db.session.get(CatalogItem, item_id),
                       catalog.ReviewKind.REVIEWED, item_hash(app, item_id), "admin")  # fmt: skip
        db.session.commit()
    definition = triage()
    definition["arguments"][0]["description"] = "The team's name, or 'all'"
    peer.set_surface(listing(definition))
    run_sync(app, cid)
    page = logged_in.get(f"/connectors/{cid}/prompts/{item_id}?agent={aid}").get_data(as_text=True)
    arguments = section(page, "arguments-diff")
    assert re.search(r"upload_to</code></th>\s*<td><span[^>]*>removed</span>", arguments)
    assert re.search(r"team</code></th>\s*<td><span[^>]*>changed</span> <code>description",
                     arguments)  # fmt: skip
    assert marked(arguments, "ins") == [", or 'all'"]


def test_mark_reviewed_on_the_prompt_page_releases_it_and_records_who(app, logged_in, peer,
                                                                      synced):  # fmt: skip
    cid, aid, item_id = synced
    change(app, peer, cid, description="Sorts and closes.")
    response = logged_in.post(f"/agents/{aid}/connectors/{cid}/prompt-reviewed",
                              data={"prompt": item_id, "back": "prompt"})  # fmt: skip
    assert response.status_code == 302
    assert response.location.endswith(f"/connectors/{cid}/prompts/{item_id}?agent={aid}")
    assert reviews(app, item_id)[-1] == ("bot", "reviewed", "admin", item_hash(app, item_id))
    assert changed_prompts(app, aid) == []
    page = logged_in.get(response.location).get_data(as_text=True)
    assert "Prompt triage marked reviewed for bot." in page
    assert "Nothing awaits review for bot." in page
    assert "No change since then" in section(page, "changes-heading")
    history = section(page, "history-heading")
    assert re.search(r">bot</a></td>\s*<td>Reviewed version 2</td>\s*<td>admin</td>", history)
    assert "Had version 1 enabled when it changed" in history


def test_mark_reviewed_from_the_agent_card_records_it_and_answers_with_the_card(
    app, logged_in, peer, synced
):
    cid, aid, item_id = synced
    change(app, peer, cid, description="Changed.")
    response = logged_in.hx_post(f"/agents/{aid}/connectors/{cid}/prompt-reviewed",
                                 data={"prompt": item_id})  # fmt: skip
    assert 'class="card connector-card' in response.get_data(as_text=True)
    assert reviews(app, item_id)[-1][:3] == ("bot", "reviewed", "admin")


def test_a_version_from_the_history_can_be_the_baseline(app, logged_in, peer, synced):
    cid, _, item_id = synced
    change(app, peer, cid, description="Second.")
    change(app, peer, cid, description="Third.")
    plain = logged_in.get(f"/connectors/{cid}/prompts/{item_id}").get_data(as_text=True)
    assert "Compared with the previous version (2" in plain
    with app.app_context():
        first = db.session.scalar(select(CatalogItemDefinition.id).filter_by(item_id=item_id)
                                  .order_by(CatalogItemDefinition.id).limit(1))  # fmt: skip
    page = logged_in.get(f"/connectors/{cid}/prompts/{item_id}?since={first}")
    page = page.get_data(as_text=True)
    assert "Compared with version 1" in page
    assert marked(section(page, "description-diff"), "del") == ["Sorts new issues"]


def test_only_the_newest_versions_are_kept(app, logged_in, peer, synced, monkeypatch):
    monkeypatch.setattr(catalog, "MAX_VERSIONS", 3)
    cid, aid, item_id = synced
    for n in range(2, 7):
        change(app, peer, cid, description=f"Version {n}.")
    assert versions(app, item_id) == ["Version 4.", "Version 5.", "Version 6."]
    page = logged_in.get(f"/connectors/{cid}/prompts/{item_id}?agent={aid}").get_data(as_text=True)
    assert "That version is no longer kept" in page


def test_agent_card_and_connector_page_link_to_the_prompt_page(app, logged_in, peer, synced):
    cid, aid, item_id = synced
    change(app, peer, cid, description="Changed.")
    card = logged_in.get(f"/agents/{aid}").get_data(as_text=True)
    assert f'href="/connectors/{cid}/prompts/{item_id}?agent={aid}">review it' in card
    connector = logged_in.get(f"/connectors/{cid}").get_data(as_text=True)
    assert f'href="/connectors/{cid}/prompts/{item_id}">Definition and history' in connector


def test_prompt_page_of_another_connector_or_of_a_resource_is_404(app, logged_in, peer, synced):
    cid, _, item_id = synced
    other = add_connector(app, "Other", peer.url)
    assert logged_in.get(f"/connectors/{other}/prompts/{item_id}").status_code == 404
    assert logged_in.get(f"/connectors/{cid}/prompts/{item_id + 1000}").status_code == 404
    peer.set_surface({**listing(triage()), "resources": [{"uri": "x://y", "name": "y"}]})
    run_sync(app, cid)
    with app.app_context():
        query = select(CatalogItem.id).filter_by(connector_id=cid, kind="resource")
        resource = db.session.scalar(query)
    assert logged_in.get(f"/connectors/{cid}/prompts/{resource}").status_code == 404


def test_prompt_page_needs_sign_in(app, client, synced):
    cid, _, item_id = synced
    response = client.get(f"/connectors/{cid}/prompts/{item_id}")
    assert response.status_code == 302 and "/login" in response.location


def test_arguments_diff_ignores_what_is_not_an_argument():
    before = {"arguments": [{"name": "a", "required": True}, "junk", {"required": True}]}
    after = {"arguments": [{"name": "a", "required": True}, {"name": "a"}, 7]}
    assert not tooldiff.arguments_diff(before, after)
    assert not tooldiff.arguments_diff({"arguments": "nope"}, None)
    diff = tooldiff.arguments_diff(None, {"arguments": [{"name": "b", "title": "B"}]})
    assert [(c.path, c.kind, c.after) for c in diff.changes] == [
        ("b", tooldiff.Kind.ADDED, '{"title": "B"}')
    ]


def test_upgrade_records_each_stored_prompt_as_its_first_version(app, peer, synced):
    """Prompts stored before the history was kept get their definition as version 1."""
    cid, _, item_id = synced
    with app.app_context():
        downgrade(directory=MIGRATIONS, revision="0013")
        try:
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE catalog_item SET description = 'Stored before.' "
                                  "WHERE id = :id"), {"id": item_id})  # fmt: skip
        finally:
            upgrade(directory=MIGRATIONS)
    assert versions(app, item_id) == ["Stored before."]
