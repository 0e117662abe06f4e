"""The names agents see: the agent page's "What this agent's client sees" lists exactly what
the official SDK client's ``tools/list`` gets through the gateway, before and after the
connector is renamed (the prefix stays, and the pages say why); the connector page shows the
prefix.
"""

import re

import pytest

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import AgentConnection, Connector
from tests import test_gateway_calls as shared
from tests.gateway_helpers import agent_with_tools, run_async, synced_connector
from tests.test_gateway import sdk_client
from tests.test_gateway_calls import TOKEN

bearer_tools, fresh_pool = shared.bearer_tools, shared.fresh_pool


@pytest.fixture
def cafe(app, served, bearer_tools):
    """Agent Ada with every tool of the shared-bearer connector "Bearer Café" (prefix
    ``bearer_cafe``): (agent id, connector id, endpoint URL, agent key)."""
    with app.app_context():
        connector = synced_connector(bearer_tools.url, "Bearer Café", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Ada")
        return agent.id, connector.id, served.endpoint(agent), key


def listed_by_sdk(url, key) -> list[str]:
    async def main():
        async with sdk_client(url, key) as client:
            return [t.name for t in (await client.list_tools()).tools]

    return run_async(main)


def seen_on_page(logged_in, agent_id) -> tuple[list[str], str]:
    """The names the agent page lists as its client's, and the section's text."""
    response = logged_in.get(f"/agents/{agent_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    section = re.search(r'<section id="seen".*?</section>', page, re.S).group(0)
    return re.findall(r'<code class="seen-name">([^<]+)</code>', section), section


def rename(app, connector_id, name):
    with app.app_context():
        db.session.get(Connector, connector_id).name = name
        db.session.commit()


def test_the_agent_page_lists_what_its_clients_tools_list_gets(logged_in, cafe):
    agent_id, _, url, key = cafe
    names, section = seen_on_page(logged_in, agent_id)
    assert names == listed_by_sdk(url, key)
    assert "bearer_cafe__weather" in names
    assert "What this agent's client sees" in section and "was renamed" not in section


def test_after_a_rename_the_page_keeps_the_old_prefix_and_says_why(logged_in, app, cafe):
    agent_id, connector_id, url, key = cafe
    rename(app, connector_id, "Rainy Days")
    names, section = seen_on_page(logged_in, agent_id)
    assert names == listed_by_sdk(url, key)
    assert "bearer_cafe__weather" in names and not any(n.startswith("rainy") for n in names)
    assert "Rainy Days was renamed after it was created" in section
    assert "keep the prefix <code>bearer_cafe__</code>" in section


def test_a_tool_held_back_for_review_is_not_listed_and_the_page_says_so(logged_in, app, cafe):
    agent_id, _, url, key = cafe
    with app.app_context():
        connection = db.session.query(AgentConnection).one()
        connection.changed_tools = ["weather"]
        db.session.commit()
    names, section = seen_on_page(logged_in, agent_id)
    assert names == listed_by_sdk(url, key) and "bearer_cafe__weather" not in names
    assert "until their changed definitions are reviewed" in section
    assert "<code>bearer_cafe__weather</code>" in section


def test_an_agent_keeping_tool_names_sees_them_as_the_page_lists_them(
    logged_in, app, served, bearer_tools
):
    with app.app_context():
        connector = synced_connector(bearer_tools.url, "Bearer Café", auth_type="bearer",
                                     secret_enc=seal(TOKEN))  # fmt: skip
        agent, key = agent_with_tools([connector], name="Kit", keep_names=True)
        agent_id, url = agent.id, served.endpoint(agent)
    names, _ = seen_on_page(logged_in, agent_id)
    assert names == listed_by_sdk(url, key)
    assert "weather" in names


def test_the_seen_section_alone_is_what_htmx_refreshes(logged_in, cafe):
    agent_id = cafe[0]
    fragment = logged_in.hx_get(f"/agents/{agent_id}/seen").get_data(as_text=True)
    assert '<section id="seen"' in fragment
    assert "<html" not in fragment and "bearer_cafe__weather" in fragment


def test_each_seen_name_links_to_its_calls(logged_in, cafe):
    agent_id = cafe[0]
    _, section = seen_on_page(logged_in, agent_id)
    assert f'href="/calls/?agent={agent_id}&amp;tool=bearer_cafe__weather"' in section


def test_the_connector_page_shows_the_prefix_and_that_a_rename_keeps_it(logged_in, app, cafe):
    _, connector_id, _, _ = cafe
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert '<code class="prefix">bearer_cafe__</code>' in page
    assert "Renaming the connector keeps the prefix" in page
    assert "comes from an earlier name" not in page
    rename(app, connector_id, "Rainy Days")
    page = logged_in.get(f"/connectors/{connector_id}").get_data(as_text=True)
    assert '<code class="prefix">bearer_cafe__</code>' in page
    assert "The prefix comes from an earlier name" in page


def test_the_page_lists_the_prompts_and_resources_its_client_gets(logged_in, app, cafe):
    """Ticked prompts and all resources: the page's names below the tools are what the SDK
    client's prompts/list, resources/list and resources/templates/list give."""
    agent_id, _, url, key = cafe
    with app.app_context():
        connection = db.session.query(AgentConnection).one()
        connection.enabled_prompts = ["greeting"]
        connection.enabled_resources = ["*"]
        db.session.commit()

    async def main():
        async with sdk_client(url, key) as client:
            prompts = [p.name for p in (await client.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await client.list_resources()).resources]
            templates = [t.uri_template for t in (await client.list_resource_templates())
                         .resource_templates]  # fmt: skip
            return prompts + resources + templates

    names, section = seen_on_page(logged_in, agent_id)
    listed = run_async(main)
    assert "bearer_cafe__greeting" in listed and "peer://static/readme" in listed
    assert names == listed_by_sdk(url, key) + listed
    assert "Prompts and resources of Ada" in section and "URI template" in section
