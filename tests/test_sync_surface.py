"""Syncing what a server offers besides tools: resources, resource templates and prompts,
listed in the same session as the tools against real peers in both eras (the 2.x peer
modern and forced legacy, the 1.30.0 peer), every list paged one item per page, then stored
as catalog items with each agent's choices kept within them."""

import pytest
from sqlalchemy import select

from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, CatalogItem, Connector
from mcpadmin.protocol.mcp import Listing
from mcpadmin.services import surface
from tests.peers.mcp_fixtures import LEGACY_PYTHON, _start, _stop, surface_fixtures
from tests.peers.mcp_wrap import generated_tools
from tests.test_sync import add_agent, add_connector, run_sync

FIRST_SUMMARY = "3 tools (3 new), 2 resources (2 new), 1 template (1 new), 2 prompts (2 new)"
# One request per page: 3 tools, 2 resources, 1 template, 2 prompts.
LISTS = ["tools/list"] * 3 + ["resources/list"] * 2 + ["resources/templates/list"]
LISTS += ["prompts/list"] * 2
HANDSHAKE = ["initialize", "notifications/initialized"]


@pytest.fixture(scope="module")
def paged_surface_peer():
    peer = _start("mcp_server.py", "--page-size", "1", tools=generated_tools(3),
                  surface=surface_fixtures())  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(scope="module")
def paged_legacy_surface_peer():
    peer = _start("mcp_legacy_server.py", "--page-size", "1", python=LEGACY_PYTHON,
                  tools=generated_tools(3), surface=surface_fixtures())  # fmt: skip
    yield peer
    _stop(peer)


# (peer fixture, the connector's remembered era, what the peer sees, the era stored)
ERAS = {
    "modern": ("paged_surface_peer", {}, ["server/discover", *LISTS], "modern"),
    "legacy 2.x": (
        "paged_surface_peer",
        {"protocol_era": "legacy", "protocol_version": "2025-11-25"},
        [*HANDSHAKE, *LISTS, None],
        "legacy",
    ),
    "legacy 1.30": (
        "paged_legacy_surface_peer",
        {},
        ["server/discover", *HANDSHAKE, *LISTS, None],
        "legacy",
    ),
}


@pytest.fixture(params=list(ERAS))
def era(request):
    """``(peer, connector fields, rpc methods a first sync sends, era)``, the peer serving
    the fixtures again."""
    fixture, fields, methods, stored_era = ERAS[request.param]
    peer = request.getfixturevalue(fixture)
    peer.set_surface(surface_fixtures())
    peer.set_tools(generated_tools(3))
    return peer, fields, methods, stored_era


def items(app, connector_id) -> dict:
    with app.app_context():
        query = select(CatalogItem).filter_by(connector_id=connector_id)
        return {(i.kind, i.key): i for i in db.session.scalars(query)}


def connection_of(app, agent_id) -> AgentConnection:
    with app.app_context():
        return db.session.scalar(select(AgentConnection).filter_by(agent_id=agent_id))


def test_sync_stores_resources_templates_and_prompts_paged_in_one_session(app, era):
    peer, fields, methods, stored_era = era
    cid = add_connector(app, "Peer", peer.url, **fields)
    before = len(peer.requests())
    result = run_sync(app, cid)
    assert result.summary() == FIRST_SUMMARY and result.era == stored_era
    assert [m for _, m in peer.requests()[before:]] == methods
    assert result.requests == len(methods)
    stored = items(app, cid)
    assert sorted(stored) == [
        ("prompt", "greeting"), ("prompt", "summary"), ("resource", "peer://static/logo"),
        ("resource", "peer://static/readme"), ("template", "peer://items/{id}"),
    ]  # fmt: skip
    readme = stored[("resource", "peer://static/readme")]
    assert (readme.name, readme.title, readme.mime_type) == ("readme", "Read me", "text/plain")
    assert readme.description == "A short text to read first."
    assert stored[("resource", "peer://static/logo")].mime_type == "image/png"
    greeting = stored[("prompt", "greeting")].definition
    assert greeting["arguments"] == [
        {"name": "name", "description": "Who to greet", "required": True}
    ]
    assert stored[("template", "peer://items/{id}")].definition["uriTemplate"] == (
        "peer://items/{id}"
    )
    assert all(len(i.definition_hash) == 64 for i in stored.values())
    with app.app_context():
        capabilities = db.session.get(Connector, cid).server_capabilities
    assert set(capabilities) >= {"tools", "resources", "prompts", "completions"}


def test_a_second_sync_adds_removes_and_flags_changed_enabled_prompts(app, era):
    peer, fields, _methods, _era = era
    cid = add_connector(app, "Peer", peer.url, **fields)
    assert run_sync(app, cid).summary() == FIRST_SUMMARY
    aid = add_agent(app, "Ada", cid)
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        connection.enabled_prompts = ["greeting", "summary"]
        connection.enabled_resources = ["peer://static/logo", "peer://items/{id}"]
        db.session.commit()

    changed = surface_fixtures()
    changed["resources"] = [
        changed["resources"][0],
        {"uri": "peer://static/notes", "name": "notes", "mimeType": "text/markdown"},
    ]  # the logo is gone, notes are new
    changed["prompts"][0]["description"] = "Greets someone warmly."
    peer.set_surface(changed)
    result = run_sync(app, cid)

    assert result.summary() == (
        "3 tools, 2 resources (1 new, 1 removed), 1 template, 2 prompts (1 changed)"
    )
    assert ("resource", "peer://static/logo") not in items(app, cid)
    notes = items(app, cid)[("resource", "peer://static/notes")]
    assert notes.mime_type == "text/markdown"
    assert items(app, cid)[("prompt", "greeting")].description == "Greets someone warmly."
    connection = connection_of(app, aid)
    assert connection.enabled_resources == ["peer://items/{id}"]  # the vanished URI left
    assert connection.enabled_prompts == ["greeting", "summary"]
    assert connection.changed_prompts == ["greeting"]


def test_marking_a_prompt_reviewed_stops_holding_it_and_all_resources_stays_chosen(
    app, paged_surface_peer
):
    paged_surface_peer.set_surface(surface_fixtures())
    cid = add_connector(app, "Peer", paged_surface_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "Ada", cid)
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        connection.enabled_prompts, connection.enabled_resources = ["greeting"], ["*"]
        db.session.commit()
    changed = surface_fixtures()
    changed["prompts"][0]["arguments"][0]["required"] = False
    changed["prompts"] = changed["prompts"][:1]  # summary is gone
    paged_surface_peer.set_surface(changed)
    assert "1 prompt (1 changed, 1 removed)" in run_sync(app, cid).summary()
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        assert (connection.changed_prompts, connection.enabled_resources) == (["greeting"], ["*"])
        item = db.session.scalar(select(CatalogItem).filter_by(connector_id=cid, key="greeting"))
        surface.mark_prompt_reviewed(connection, item)
        db.session.commit()
    assert connection_of(app, aid).changed_prompts == []
    assert run_sync(app, cid).summary() == "3 tools, 2 resources, 1 template, 1 prompt"
    assert connection_of(app, aid).changed_prompts == []  # an unchanged sync flags nothing


def test_a_remembered_modern_server_uses_the_stored_capabilities(app, paged_surface_peer):
    paged_surface_peer.set_surface(surface_fixtures())
    cid = add_connector(app, "Peer", paged_surface_peer.url)
    run_sync(app, cid)
    before = len(paged_surface_peer.requests())
    assert run_sync(app, cid).summary() == "3 tools, 2 resources, 1 template, 2 prompts"
    assert [m for _, m in paged_surface_peer.requests()[before:]] == LISTS


def test_a_remembered_modern_era_without_capabilities_discovers_them_after_the_tools(
    app, paged_surface_peer
):
    paged_surface_peer.set_surface(surface_fixtures())
    cid = add_connector(app, "Peer", paged_surface_peer.url, protocol_era="modern",
                        protocol_version="2026-07-28")  # fmt: skip
    before = len(paged_surface_peer.requests())
    assert run_sync(app, cid).summary() == FIRST_SUMMARY
    methods = [m for _, m in paged_surface_peer.requests()[before:]]
    assert methods == [*LISTS[:3], "server/discover", *LISTS[3:]]


def test_a_server_serving_tools_only_stores_no_items_and_no_such_capabilities(app, json_peer):
    cid = add_connector(app, "Tools", json_peer.url)
    result = run_sync(app, cid)
    assert result.summary() == "4 tools (4 new)" and result.requests == 2
    assert items(app, cid) == {}
    with app.app_context():
        capabilities = db.session.get(Connector, cid).server_capabilities
    assert "tools" in capabilities
    assert not {"resources", "prompts", "completions"} & set(capabilities)


def test_items_no_longer_listed_are_removed_and_leave_the_choices(app, paged_surface_peer):
    paged_surface_peer.set_surface(surface_fixtures())
    cid = add_connector(app, "Peer", paged_surface_peer.url)
    run_sync(app, cid)
    aid = add_agent(app, "Ada", cid)
    with app.app_context():
        connection = db.session.scalar(select(AgentConnection).filter_by(agent_id=aid))
        connection.enabled_prompts = ["summary"]
        db.session.commit()
    paged_surface_peer.set_surface({"resources": surface_fixtures()["resources"]})
    result = run_sync(app, cid)
    assert result.summary() == (
        "3 tools, 2 resources, 0 templates (1 removed), 0 prompts (2 removed)"
    )
    assert sorted(k for _, k in items(app, cid)) == ["peer://static/logo", "peer://static/readme"]
    assert connection_of(app, aid).enabled_prompts == []


def test_hostile_items_are_skipped_or_cut_with_warnings(app, paged_surface_peer):
    long_uri = "peer://static/" + "x" * 2000
    hostile = surface_fixtures()
    hostile["resources"] += [
        {"uri": long_uri, "name": "long"},
        {"uri": "peer://static/readme", "name": "again", "description": "A second readme."},
        {"uri": "peer://static/big", "name": "big", "description": "d" * 1_000_000},
    ]
    hostile["prompts"].append({"name": "p" * 300})
    paged_surface_peer.set_surface(hostile)
    cid = add_connector(app, "Peer", paged_surface_peer.url)
    result = run_sync(app, cid)

    assert result.summary().startswith("3 tools (3 new), 3 resources (3 new), 1 template")
    assert "1 duplicate name skipped; 3 other warnings (see the log)" in result.summary()
    assert any("longer than 1024 characters; skipped" in w for w in result.warnings)
    assert any("has a name longer than 255; skipped" in w for w in result.warnings)
    stored = items(app, cid)
    assert stored[("resource", "peer://static/readme")].name == "readme"  # the first kept
    big = stored[("resource", "peer://static/big")]
    assert len(big.description) == 4096 and big.description.endswith("…")
    assert big.definition["description"] == big.description
    assert not any(len(key) > 1024 for _, key in stored)


def test_a_list_broken_off_after_the_tools_is_a_warning_and_keeps_what_was_stored(
    app, paged_surface_peer
):
    paged_surface_peer.set_surface(surface_fixtures())
    cid = add_connector(app, "Peer", paged_surface_peer.url)
    run_sync(app, cid)
    broken = surface_fixtures()
    broken["resources"].append({"name": "no uri"})  # the SDK refuses to serve that page
    paged_surface_peer.set_surface(broken)
    paged_surface_peer.set_tools(generated_tools(4))
    result = run_sync(app, cid)
    assert result.summary() == (
        "4 tools (1 new), 1 template, 2 prompts; 1 other warning (see the log)"
    )
    assert result.warnings == [
        "The server broke off listing its resources (a page was refused); the stored "
        "resources are kept."
    ]
    assert ("resource", "peer://static/logo") in items(app, cid)
    paged_surface_peer.set_tools(generated_tools(3))


def stored_listing(app, connector_fields, listing, connection_agent=None):
    """``surface.store`` a hand-made listing (what no SDK server would send)."""
    with app.app_context():
        connector = Connector(name="Hand", url="http://127.0.0.1:9/mcp", **connector_fields)
        db.session.add(connector)
        db.session.flush()
        results = surface.store(connector, None, listing)
        db.session.commit()
        return connector.id, results


def test_items_without_a_key_or_not_objects_are_skipped_with_a_warning(app):
    listing = Listing(tools=[], era="modern", version="2026-07-28", capabilities={})
    listing.resources = [{"name": "no uri"}, "not an object", {"uri": ""}, {"uri": "a://b"}]
    listing.templates, listing.prompts = [{"uriTemplate": 7}], [{"name": None}]
    cid, results = stored_listing(app, {}, listing)
    assert listing.warnings == [
        "A resource without a uri was skipped.",
        "A resource without a uri was skipped.",
        "A resource without a uri was skipped.",
        "A resource template without a uriTemplate was skipped.",
        "A prompt without a name was skipped.",
    ]
    assert list(items(app, cid)) == [("resource", "a://b")]
    assert results["resource"].added == ["a://b"]


def test_lists_not_answered_leave_the_stored_items_alone(app):
    listing = Listing(tools=[], era="legacy", version="2025-11-25", capabilities={})
    listing.resources, listing.templates, listing.prompts = [{"uri": "a://b"}], [], []
    cid, _ = stored_listing(app, {}, listing)
    with app.app_context():
        connector = db.session.get(Connector, cid)
        unanswered = Listing(tools=[], era="legacy", version="2025-11-25")  # all None
        assert surface.store(connector, None, unanswered) == {}
        db.session.commit()
        assert connector.server_capabilities == {}
    assert list(items(app, cid)) == [("resource", "a://b")]


def test_a_per_agent_connector_keeps_the_union_of_what_was_listed(app):
    first = Listing(tools=[], era="modern", version="2026-07-28", capabilities={})
    first.resources, first.templates, first.prompts = [{"uri": "a://one"}], [], []
    cid, _ = stored_listing(app, {"credential_mode": "per_agent"}, first)
    with app.app_context():
        connector = db.session.get(Connector, cid)
        second = Listing(tools=[], era="modern", version="2026-07-28", capabilities={})
        second.resources, second.templates, second.prompts = [{"uri": "a://two"}], [], []
        assert surface.store(connector, None, second)["resource"].removed == []
        db.session.commit()
    assert sorted(k for _, k in items(app, cid)) == ["a://one", "a://two"]
